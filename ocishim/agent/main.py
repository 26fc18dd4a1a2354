"""What `ocishim agent` does, callable from Python: serve a socket, or summarize a log."""

from __future__ import annotations

import io
import os
import stat
import sys
from typing import TextIO

from ..errors import SystemFailure, UsageError
from . import events, loop, summary


def open_log(path: str) -> TextIO:
    """stdout for `-`, else FILE opened for appending: regular file, no symlink, created 0600."""
    if path == "-":
        return sys.stdout
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise UsageError("--log", f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError("--log", f"{path}: not a regular file")
    os.set_blocking(fd, True)
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=True), encoding="utf-8", line_buffering=False)


def serve(socket_path: str | None, log_path: str, as_json: bool) -> int:
    """Run the agent until SIGTERM or SIGINT."""
    out = open_log(log_path)
    sock = loop.activated_socket()
    if sock is None:
        if socket_path is None:
            raise UsageError("--socket", "give the socket path (or start it by systemd socket activation)")
        sock = loop.listen(socket_path)
    try:
        agent = loop.Agent(sock, events.EventLog(out, as_json=as_json))
    except OSError as exc:
        raise SystemFailure("seccomp", f"user notification is not available: {exc.strerror or exc}") from None
    agent.log.write({"event": "started", "socket": socket_path or "(socket activation)",
                     "pid": os.getpid()}, force=True)
    agent.serve_forever()
    agent.log.write({"event": "stopped"}, force=True)
    return 0


def summarize(path: str, out: TextIO) -> int:
    """Print the per-container table of a JSON-lines log."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = summary.tally(f, path)
    except OSError as exc:
        raise UsageError(path, exc.strerror or str(exc)) from None
    summary.print_table(rows, out)
    return 0
