"""The OCI listenerPath protocol, agent side: one connection, one message, one listener fd.

A runtime connects to listenerPath and sends the container process state as JSON
(runtime-spec `ContainerProcessState`: ociVersion, fds, pid, metadata, state) with
the fds it names attached by SCM_RIGHTS, then closes. Everything here is untrusted
bytes: a bad message is a `Refused` with the reason, every fd that came with it is
closed by the caller, and nothing raises past `parse`.
"""

from __future__ import annotations

import array
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from . import notify

MAX_MESSAGE = 1 << 20  # runc's and crun's messages are a few KiB plus the metadata
MAX_FDS = 16  # more than any runtime sends; the rest of a message's fds are cut off


class Refused(ValueError):
    """A message the agent drops; the text says why, for the log."""


@dataclass
class Pending:
    """A connection whose message is not complete yet."""

    sock: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    truncated: bool = False

    def close(self) -> None:
        for fd in self.fds:
            _close(fd)
        self.fds.clear()
        self.sock.close()


@dataclass(frozen=True)
class Hello:
    """What a valid message says: the container, its process and the listener fd."""

    container: str
    pid: int
    bundle: str
    metadata: str
    listener: int


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def receive(pending: Pending) -> bool:
    """Read what the socket has; True when the peer is done (EOF) or the message is complete."""
    try:
        data, ancdata, flags, _ = pending.sock.recvmsg(
            65536, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as exc:
        raise Refused(f"reading the message: {exc.strerror or exc}") from None
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            pending.fds += fds.tolist()
    if flags & socket.MSG_CTRUNC:
        pending.truncated = True
    if not data:
        return True
    pending.data += data
    if len(pending.data) > MAX_MESSAGE:
        raise Refused(f"message larger than {MAX_MESSAGE} bytes")
    return _complete(pending.data)


def _complete(data: bytes) -> bool:
    """Whether data already holds one whole JSON object (the peer may not close at once)."""
    text = data.strip()
    if not text.endswith(b"}"):
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # deep nesting is refused in parse()
        return False
    return True


def _field(obj: dict[str, Any], key: str, kind: type, where: str):
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Refused(f"{where}{key}: missing or not a {kind.__name__}")
    return value


def parse(pending: Pending) -> Hello:
    """The message's meaning, or Refused; the listener fd is taken out of pending.fds."""
    if pending.truncated:
        raise Refused(f"more than {MAX_FDS} fds or a truncated control message")
    try:
        obj = json.loads(bytes(pending.data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(f"not a JSON state message: {str(exc)[:80]}") from None
    except RecursionError:
        raise Refused("not a JSON state message: nested too deeply") from None
    if not isinstance(obj, dict):
        raise Refused("not a JSON object")
    names = _field(obj, "fds", list, "")
    if not all(isinstance(n, str) for n in names):
        raise Refused("fds: not a list of strings")
    if names.count("seccompFd") != 1:
        raise Refused("fds: must name seccompFd once")
    if len(names) != len(pending.fds):
        raise Refused(f"fds: names {len(names)} fd(s), {len(pending.fds)} came with the message")
    state = _field(obj, "state", dict, "")
    container = _field(state, "id", str, "state.")
    pid = _field(obj, "pid", int, "")
    bundle = state.get("bundle") if isinstance(state.get("bundle"), str) else ""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), str) else ""
    listener = pending.fds[names.index("seccompFd")]
    if not notify.is_listener(listener):
        raise Refused("seccompFd is not a seccomp listener")
    pending.fds.remove(listener)
    return Hello(container, pid, bundle, metadata, listener)
