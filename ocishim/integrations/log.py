"""Where the hook and the wrapper say what they decided: the journal, syslog, or a file.

podman drops a hook's stderr and a runtime wrapper's stdio belongs to the container, so
every decision and refusal goes to a place an administrator can read later:

    settings "log"       tried in order
    "auto" / "journal"   the journal, syslog (/dev/log), DEFAULT_FILE
    "syslog"             syslog, DEFAULT_FILE
    "/abs/path"          that file, then the journal, syslog, DEFAULT_FILE

The journal is spoken to through journald's native socket (datagrams of KEY=VALUE
fields, the protocol sd_journal_send uses), so no library is needed. A log file is
opened without following a symlink and is refused unless it is a regular file owned
by us, with one link and not writable by group or others: root must never append to
a file of someone else's choice. A new file is created 0600.

Messages may quote hostile input (a key of a pod's config), so control characters are
escaped (a newline could forge a log entry) and length is capped.
`read_recent` (integrations/logread.py, loaded on first use from here) reads the
entries back for `ocishim log`. This module is imported by every hook and wrapper
start, so it imports little: no re, json, dataclasses or typing.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

from ..record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

DEFAULT_FILE = "/var/log/ocishim.log"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_SOCKET = "/dev/log"
IDENTIFIER = "ocishim"
MAX_MESSAGE = 8192  # characters; a hostile config must not fill the log
# Files where rsyslog and syslog-ng put user-facility messages on Debian and Red Hat.
SYSLOG_FILES = ("/var/log/syslog", "/var/log/user.log", "/var/log/messages")

PRIORITY = {"error": 3, "warning": 4, "info": 6}
LEVEL_OF_PRIORITY = {v: k for k, v in PRIORITY.items()}
FACILITY_USER = 1
# podman and buildah run a precreate hook with stderr on /dev/null (their
# RuntimeConfigFilter passes no writer): the one line then goes to theirs.
HOOK_CALLERS = frozenset({"podman", "buildah"})


class LogFileRefused(Exception):
    """A log file ocishim must not write: not regular, a symlink, someone else's."""


class Where(Record):
    """Where one entry went: kind is journal, syslog, file, stderr or nowhere."""

    __slots__ = ("kind", "path")
    kind: str
    path: str

    def __str__(self) -> str:
        if self.kind == "journal":
            return f"the journal (journalctl -t {IDENTIFIER})"
        if self.kind == "syslog":
            return f"syslog ({self.path}, tag {IDENTIFIER})"
        if self.kind == "file":
            return self.path
        return self.kind


# --- writing ------------------------------------------------------------------

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def clean(message: str) -> str:
    """One printable line: control characters escaped, length capped."""
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + f"... ({len(message) - MAX_MESSAGE} more characters)"
    out = []
    for ch in message:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or 0xD800 <= code < 0xE000:
            # C0/C1 controls could drive a terminal; lone surrogates cannot be encoded.
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _send(path: str, data: bytes) -> None:
    # The C module: `socket` itself adds its enum classes, 3-25 ms of a start.
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        sock.send(data)
    finally:
        sock.close()


def _journal_field(key: str, value: str) -> bytes:
    raw = value.encode()
    if b"\n" in raw:  # the native protocol's binary form
        return key.encode() + b"\n" + len(raw).to_bytes(8, "little") + raw + b"\n"
    return f"{key}=".encode() + raw + b"\n"


def journal_datagram(level: str, text: str) -> bytes:
    """The native-protocol datagram for one entry (what sd_journal_send would send)."""
    fields = {"MESSAGE": f"{level}: {text}", "PRIORITY": str(PRIORITY.get(level, 6)),
              "SYSLOG_IDENTIFIER": IDENTIFIER, "SYSLOG_FACILITY": str(FACILITY_USER),
              "SYSLOG_PID": str(os.getpid()), "OCISHIM_LEVEL": level}
    return b"".join(_journal_field(k, v) for k, v in fields.items())


def _to_journal(level: str, text: str) -> Where:
    _send(JOURNAL_SOCKET, journal_datagram(level, text))
    return Where("journal", JOURNAL_SOCKET)


def syslog_datagram(level: str, text: str) -> bytes:
    """An RFC 3164 message without timestamp; syslog daemons and journald add the time."""
    pri = FACILITY_USER * 8 + PRIORITY.get(level, 6)
    return f"<{pri}>{IDENTIFIER}[{os.getpid()}]: {level}: {text}".encode()


def _to_syslog(level: str, text: str) -> Where:
    _send(SYSLOG_SOCKET, syslog_datagram(level, text))
    return Where("syslog", SYSLOG_SOCKET)


def _check_log_file(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise LogFileRefused(f"{path}: is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise LogFileRefused(f"{path}: not a regular file")
    if st.st_uid != os.geteuid():
        raise LogFileRefused(f"{path}: owned by uid {st.st_uid}, not {os.geteuid()}")
    if st.st_mode & 0o022:
        raise LogFileRefused(f"{path}: writable by group or others (mode {st.st_mode & 0o7777:04o})")
    if st.st_nlink != 1:
        raise LogFileRefused(f"{path}: has {st.st_nlink} hard links")


def open_log_file(path: str) -> int:
    """A descriptor to append to path, created 0600; LogFileRefused if path is unsafe.

    lstat first, so that a device or FIFO is never opened (opening some devices acts);
    O_NOFOLLOW and the fstat of the open file close the race with a swap in between.
    """
    if not os.path.isabs(path):
        raise LogFileRefused(f"{path}: not an absolute path")
    try:
        _check_log_file(path, os.lstat(path))
    except FileNotFoundError:
        pass
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
             | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component became a symlink
            raise LogFileRefused(f"{path}: is a symbolic link") from None
        raise
    try:
        _check_log_file(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_line(level: str, text: str) -> str:
    """One line of a log file: `2024-05-01T12:00:00+0000 ocishim[PID]: LEVEL: MESSAGE`."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {IDENTIFIER}[{os.getpid()}]: {level}: {text}\n"


def _to_file(path: str) -> Callable[[str, str], Where]:
    def write(level: str, text: str) -> Where:
        fd = open_log_file(path)
        try:
            data = file_line(level, text).encode()
            # One write of an O_APPEND file: concurrent hooks do not interleave lines.
            if os.write(fd, data) != len(data):
                raise OSError(28, "short write")
        finally:
            os.close(fd)
        return Where("file", path)
    return write


def _chain(target: str) -> list[tuple[str, Callable[[str, str], Where]]]:
    journal = ("the journal", _to_journal)
    syslog = (f"syslog {SYSLOG_SOCKET}", _to_syslog)
    default = (DEFAULT_FILE, _to_file(DEFAULT_FILE))
    if target in ("auto", "journal"):
        return [journal, syslog, default]
    if target == "syslog":
        return [syslog, default]
    rest = [journal, syslog] + ([default] if target != DEFAULT_FILE else [])
    return [(target, _to_file(target))] + rest


def log(settings: Any, level: str, message: str, stderr: bool = True) -> Where:
    """Log one entry where settings.log says, falling back so that it is never lost.

    stderr=False when stderr is the container's (the wrapper's create/run): nothing is
    printed then, even when no sink takes the entry. Returns where the entry went.
    """
    text = clean(message)
    target = getattr(settings, "log", None) or "auto"
    problems: list[str] = []
    for name, sink in _chain(target):
        try:
            where = sink(level, text)
        except LogFileRefused as exc:
            problems.append(f"log file refused: {exc}")
            continue
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
            continue
        if problems and target not in ("auto", "journal", "syslog"):
            # The administrator chose a file that failed: say so where the entry went.
            note = f"log target {target} unusable ({'; '.join(problems)}); logging to {where}"
            try:
                sink("warning", clean(note))
            except (OSError, LogFileRefused):
                pass
            if stderr:
                print(f"{IDENTIFIER}: {note}", file=sys.stderr)
        return where
    if stderr:
        print(f"{IDENTIFIER}[{os.getpid()}]: {level}: {text} (not logged: {'; '.join(problems)})",
              file=sys.stderr)
        return Where("stderr", "")
    return Where("nowhere", "")


# --- the one line for the caller --------------------------------------------------

def _is_devnull(fd: int) -> bool:
    """fd is the null device (1:3), or the very file /dev/null names (it is not always a
    device: a sandbox may have a regular file there)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return True  # closed: as good as /dev/null
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
        return True
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (null.st_dev, null.st_ino)


# pidfd_getfd(2): the same number on every arch since the 424+ numbers were unified
# (alpha adds 110). os.uname, not platform: every hook and wrapper start imports this.
SYS_PIDFD_GETFD = 548 if os.uname().machine == "alpha" else 438


def _dup_from(pid: int, target: int) -> int | None:
    """pidfd_getfd: a copy of pid's descriptor target, sharing its file offset (so that
    a caller whose stderr is a regular file keeps writing after our line, not over it).
    Needs ptrace rights on pid: root has them; otherwise None."""
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None
    try:
        # The pidfd pins the process: if our parent is still pid now, it is the one we hold.
        if os.getppid() != pid:
            return None
        import ctypes  # only on a refusal: not on every start

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(ctypes.c_long(SYS_PIDFD_GETFD), ctypes.c_int(pidfd), ctypes.c_int(target),
                          ctypes.c_uint(0))
        return fd if fd >= 0 else None
    finally:
        os.close(pidfd)


def _parent_stderr() -> int | None:
    """The stderr of a podman/buildah that started us, for one line; else None."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/comm") as f:
            if f.read().strip() not in HOOK_CALLERS:
                return None
    except OSError:
        return None
    fd = _dup_from(ppid, 2)
    if fd is not None:
        st = os.fstat(fd)
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISREG(st.st_mode):
            return fd
        os.close(fd)
        return None
    # Without ptrace rights (rootless): a new open of the same pipe or terminal. Not of a
    # regular file: our own offset would write over the caller's output, or it over ours.
    try:
        fd = os.open(f"/proc/{ppid}/fd/2",
                     os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    # The parent may have died and been replaced as our parent while we opened its fd.
    if os.getppid() != ppid or not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        os.close(fd)
        return None
    return fd


def tell_caller(line: str) -> None:
    """Print one line on stderr; under podman/buildah, whose hooks' stderr goes to
    /dev/null, on the caller's own stderr instead, so that the user sees it."""
    data = (clean(line) + "\n").encode()
    if not _is_devnull(2):
        try:
            os.write(2, data)
        except OSError:
            pass
        return
    fd = _parent_stderr()
    if fd is None:
        return
    try:
        os.write(fd, data)
    except OSError:
        pass  # a full pipe or a gone reader: the log still has it
    finally:
        os.close(fd)


_READING = ("FILE_LINE", "SYSLOG_LINE", "Entry", "entry_dict", "read_recent", "sources")


def __getattr__(name: str) -> Any:
    if name not in _READING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import logread

    return getattr(logread, name)
