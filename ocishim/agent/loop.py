"""One epoll loop for the agent socket, the connections on it and every container's listener.

Each notified call is answered by running it through the audited program that came in
the listener metadata (ocishim/audit.py): the errno the unaudited filter gives. A
notification the program does not explain, or a listener without ocishim's metadata,
gets ENOSYS, the kernel's own answer when there is no agent. Nothing the agent reads
from /proc is trusted until ID_VALID says the call is still pending. Nothing a peer
sends can stop the loop: bad messages are logged and dropped, and a slow peer is cut
off after CONNECT_TIMEOUT.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Sequence

from .. import audit, syscalls
from ..arch import arch_of_nr
from ..bpf.insn import ABS, LD, W, Insn
from ..errors import SystemFailure, UsageError
from . import events, notify, protocol

ENOSYS = 38
CONNECT_TIMEOUT = 5.0  # a runtime sends its message at once; a peer that does not is dropped
MAX_PENDING = 256  # connections waiting to complete; the oldest goes first beyond that
CACHE_LIMIT = 65536  # answers remembered per container
HOUSEKEEPING = 0.25  # seconds between looks at timeouts and due log lines
PROC_TIMEOUT = 0.1  # seconds to read a process's exe and cmdline from /proc
SD_LISTEN_FDS_START = 3


@dataclass
class Container:
    """A listener fd and what the agent knows about its filter."""

    id: str
    pid: int
    fd: int
    program: tuple[Insn, ...] | None
    reads_ip: bool
    cache: dict[bytes, int] = field(default_factory=dict)
    total: int = 0


def _reads_ip(program: Sequence[Insn] | None) -> bool:
    """Whether the answer can depend on the instruction pointer (libseccomp's never does)."""
    return program is not None and any(i.code == LD | W | ABS and i.k in (8, 12) for i in program)


def _check_directory(path: str) -> None:
    """The socket's directory must be a real directory only its owner (root) can enter."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError("--socket", f"{path} is not a directory")
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise UsageError("--socket", f"{path} must be owned by uid {os.geteuid()} with mode 0700 "
                                     f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}): "
                                     "whoever can reach the socket can hand the agent fds")


def listen(path: str) -> socket.socket:
    """The agent socket: 0600 in a root-only directory (created 0700 if missing)."""
    if not os.path.isabs(path):
        raise UsageError("--socket", f"must be an absolute path: {path!r}")
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _check_directory(directory)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise UsageError("--socket", f"{path} exists and is not a socket")
            os.unlink(path)  # a socket left by an agent that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # Bound under a temporary name and renamed once listening: a runtime that finds
        # the path can connect at once (no ECONNREFUSED between bind and listen).
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        old = os.umask(0o177)
        try:
            sock.bind(tmp)
        finally:
            os.umask(old)
        sock.listen(128)
        os.rename(tmp, path)
    except OSError as exc:
        raise SystemFailure("--socket", f"{path}: {exc.strerror or exc}") from None
    return sock


def activated_socket() -> socket.socket | None:
    """The socket systemd passed (socket activation), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    return socket.socket(fileno=SD_LISTEN_FDS_START)


class Agent:
    """Serves listener fds until stop() (or SIGTERM/SIGINT through serve_forever)."""

    def __init__(self, sock: socket.socket, log: events.EventLog) -> None:
        self.sock = sock
        self.log = log
        self.channel = notify.Channel(notify.notif_sizes())
        self.epoll = select.epoll()
        self.pending: dict[int, protocol.Pending] = {}
        self.containers: dict[int, Container] = {}
        self.stopping = False
        self.next_housekeeping = 0.0
        self.readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="proc")
        sock.setblocking(False)
        self.epoll.register(sock.fileno(), select.EPOLLIN)

    # --- connections -------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: log, keep serving
                self.log.write({"event": "error", "reason": f"accept: {exc.strerror or exc}"})
                return
            conn.setblocking(False)
            if len(self.pending) >= MAX_PENDING:
                oldest = next(iter(self.pending))
                self._drop(oldest, "too many connections at once")
            self.pending[conn.fileno()] = protocol.Pending(conn, time.monotonic() + CONNECT_TIMEOUT)
            self.epoll.register(conn.fileno(), select.EPOLLIN)

    def _drop(self, fd: int, reason: str) -> None:
        pending = self.pending.pop(fd)
        self.epoll.unregister(fd)
        pending.close()
        self.log.write({"event": "refused-message", "reason": reason})

    def _read(self, fd: int) -> None:
        pending = self.pending[fd]
        try:
            done = protocol.receive(pending)
        except protocol.Refused as exc:
            self._drop(fd, str(exc))
            return
        if not done:
            return
        try:
            hello = protocol.parse(pending)
        except protocol.Refused as exc:
            self._drop(fd, str(exc))
            return
        self.pending.pop(fd)
        self.epoll.unregister(fd)
        pending.close()  # the other fds a message named are not the agent's business
        self._attach(hello)

    def _attach(self, hello: protocol.Hello) -> None:
        program = audit.from_metadata(hello.metadata)
        sync = notify.sync_wake_up(hello.listener)
        self.containers[hello.listener] = Container(hello.container, hello.pid, hello.listener,
                                                    program, _reads_ip(program))
        self.epoll.register(hello.listener, select.EPOLLIN)
        self.log.write({"event": "attached", "container": hello.container, "pid": hello.pid,
                        "bundle": hello.bundle, "audited": program is not None,
                        "sync_wake_up": sync}, force=True)

    def _detach(self, fd: int) -> None:
        c = self.containers.pop(fd)
        self.epoll.unregister(fd)
        os.close(fd)
        self.log.flush(c.id, final=True)
        self.log.write({"event": "detached", "container": c.id, "notifications": c.total}, force=True)

    # --- notifications -------------------------------------------------------------

    def _answer(self, c: Container, data: bytes) -> int:
        key = data if c.reads_ip else data[:8] + data[16:]
        err = c.cache.get(key)
        if err is None:
            err = (audit.answer(c.program, data, sys.byteorder)
                   if c.program is not None else None) or ENOSYS
            if len(c.cache) >= CACHE_LIMIT:
                c.cache.clear()
            c.cache[key] = err
        return err

    def _notified(self, c: Container) -> None:
        n = self.channel.recv(c.fd)
        if n is None:
            return
        err = self._answer(c, n.data)
        c.total += 1
        key = (n.data[:8], err)
        full = self.log.seen(c.id, key)
        record = self._record(c, n, err) if full else None
        if record is not None and not notify.id_valid(c.fd, n.id):
            record["pid_info"] = "gone before it could be trusted"
            record["exe"] = record["cmdline"] = None
        self.channel.send_error(c.fd, n.id, err)
        if record is not None:
            self.log.logged(c.id, key, record)

    def _process(self, pid: int) -> tuple[str | None, list[str] | None]:
        """exe and cmdline, or None for what /proc does not give within PROC_TIMEOUT.

        Reading another process's cmdline takes its mmap lock, which a process can hold
        for long (a fault on a userfaultfd page): in a worker thread, so that one
        container cannot stall the answers to all the others.
        """
        try:
            return self.readers.submit(_process, pid).result(timeout=PROC_TIMEOUT)
        except (FutureTimeout, RuntimeError):
            return None, None

    def _record(self, c: Container, n: notify.Notification, err: int) -> dict:
        arch = arch_of_nr(n.arch, n.nr & 0xFFFFFFFF)
        name = syscalls.name(arch.name, n.nr & 0xFFFFFFFF) if arch is not None else None
        exe, cmdline = self._process(n.pid)
        return {"event": "notified", "container": c.id, "pid": n.pid, "exe": exe, "cmdline": cmdline,
                "arch": arch.name if arch is not None else f"audit:{n.arch:#x}", "syscall": name,
                "nr": n.nr & 0xFFFFFFFF, "args": [f"{a:#x}" for a in n.args],
                "answer": errno.errorcode.get(err, str(err)), "errno": err,
                "breaks": events.breaks(name, err, arch.name if arch else None),
                "enosys_would_fix": events.enosys_would_fix(name, err, arch.name if arch else None),
                **({} if c.program is not None else {"note": "no ocishim metadata: answered ENOSYS"})}

    # --- the loop -------------------------------------------------------------------

    def run_once(self, timeout: float) -> None:
        try:
            ready = self.epoll.poll(timeout)
        except InterruptedError:
            return
        for fd, mask in ready:
            if fd == self.sock.fileno():
                self._accept()
            elif fd in self.containers:
                c = self.containers[fd]
                if mask & select.EPOLLIN:
                    try:
                        self._notified(c)
                    except OSError as exc:
                        self.log.write({"event": "error", "container": c.id,
                                        "reason": f"listener: {exc.strerror or exc}"})
                        self._detach(fd)
                        continue
                if mask & (select.EPOLLHUP | select.EPOLLERR) and not mask & select.EPOLLIN:
                    self._detach(fd)
            elif fd in self.pending:
                try:
                    self._read(fd)
                except Exception as exc:  # a peer's bytes must never stop the loop
                    if fd in self.pending:
                        self._drop(fd, f"internal error on this message: {type(exc).__name__}: "
                                       f"{str(exc)[:200]}")
        self._expire()

    def _expire(self) -> None:
        """Drop slow peers and write due `repeated` lines, at most every HOUSEKEEPING seconds."""
        t = time.monotonic()
        if t < self.next_housekeeping:
            return
        self.next_housekeeping = t + HOUSEKEEPING
        for fd in [fd for fd, p in self.pending.items() if p.deadline < t]:
            self._drop(fd, f"no complete message within {CONNECT_TIMEOUT:g} s")
        self.log.flush()

    def serve_forever(self) -> None:
        def stop(signum, frame):
            self.stopping = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not self.stopping:
            self.run_once(1.0)
        self.close()

    def close(self) -> None:
        for fd in list(self.pending):
            self._drop(fd, "agent stopping")
        for fd in list(self.containers):
            self._detach(fd)
        self.epoll.close()
        self.readers.shutdown(wait=False, cancel_futures=True)


def _process(pid: int) -> tuple[str | None, list[str] | None]:
    """exe and cmdline of pid (psutil); None where /proc does not say."""
    import psutil

    try:
        proc = psutil.Process(pid)
        exe = proc.exe()[:events.MAX_TEXT] or None
    except (psutil.Error, OSError):
        exe = None
    try:
        cmdline = [a[:events.MAX_TEXT] for a in psutil.Process(pid).cmdline()[:64]]
    except (psutil.Error, OSError):
        cmdline = None
    return exe, cmdline
