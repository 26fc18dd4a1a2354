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
`read_recent` reads the entries back for `ocishim log`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import struct
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

from ..errors import SystemFailure

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


@dataclass(frozen=True)
class Where:
    """Where one entry went: kind is journal, syslog, file, stderr or nowhere."""

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


@dataclass(frozen=True)
class Entry:
    """One logged decision as read back; time is ISO 8601 with offset, or "" if unknown."""

    time: str
    pid: int | None
    level: str
    message: str
    source: str


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
    import socket  # here: only the journal and syslog sinks need it (3-25 ms a start)

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(path)
        s.send(data)


def _journal_field(key: str, value: str) -> bytes:
    raw = value.encode()
    if b"\n" in raw:  # the native protocol's binary form
        return key.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
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


# --- reading back -----------------------------------------------------------------

FILE_LINE = re.compile(r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}) "
                       + IDENTIFIER + r"\[(?P<pid>\d+)\]: (?P<level>[a-z]+): (?P<message>.*)$")
# rsyslog's default file format: "May  1 12:00:00 host ocishim[12]: info: ..." or RFC 3339.
SYSLOG_LINE = re.compile(r"^(?P<time>\S+(?: +\d+ \d\d:\d\d:\d\d)?) \S+ "
                         + IDENTIFIER + r"\[(?P<pid>\d+)\]: (?P<level>[a-z]+): (?P<message>.*)$")


def _tail_lines(fd: int, n: int, block: int = 65536) -> list[bytes]:
    """The last n lines of an open file, reading backwards (log files grow large)."""
    end = os.lseek(fd, 0, os.SEEK_END)
    data, pos = b"", end
    while pos > 0 and data.count(b"\n") <= n:
        step = min(block, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
    lines = data.splitlines()
    if pos > 0:
        lines = lines[1:]  # the first one is cut
    return lines[-n:] if n else []


def _read_file(path: str, n: int, pattern: re.Pattern[str], whole_file: bool) -> list[Entry]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LogFileRefused(f"{path}: not a regular file")
        # A shared syslog file holds other programs' lines: scan more of it.
        lines = _tail_lines(fd, n if whole_file else max(n * 200, 20000))
    finally:
        os.close(fd)
    out: deque[Entry] = deque(maxlen=n)
    for raw in lines:
        line = raw.decode(errors="backslashreplace")
        m = pattern.match(line)
        if m:
            out.append(Entry(m["time"], int(m["pid"]), m["level"], m["message"], path))
        elif whole_file:  # ocishim's own file: never hide a line that does not parse
            out.append(Entry("", None, "unknown", line, path))
    return list(out)


def _journal_time(usec: str) -> str:
    seconds = int(usec) / 1e6
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def _read_journal(n: int) -> list[Entry]:
    import subprocess

    proc = subprocess.run(["journalctl", "-t", IDENTIFIER, "-n", str(n), "-o", "json", "--no-pager"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise OSError(proc.returncode, f"journalctl: {proc.stderr.strip()}")
    out = []
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        message = record.get("MESSAGE", "")
        if isinstance(message, list):  # journalctl's form for non-UTF-8 bytes
            message = bytes(message).decode(errors="backslashreplace")
        level, sep, rest = message.partition(": ")
        if not sep or level not in PRIORITY:
            level, rest = LEVEL_OF_PRIORITY.get(int(record.get("PRIORITY", 6)), "info"), message
        pid = record.get("SYSLOG_PID") or record.get("_PID")
        out.append(Entry(_journal_time(record.get("__REALTIME_TIMESTAMP", "0")),
                         int(pid) if pid else None, level, rest, "journal"))
    return out


def sources(settings: Any) -> list[str]:
    """Where entries may have gone, given the settings: "journal" and file paths."""
    target = getattr(settings, "log", None) or "auto"
    found: list[str] = []
    if target not in ("auto", "journal", "syslog"):
        found.append(target)
    import shutil

    # journald also receives what is sent to /dev/log on a systemd host.
    if os.path.exists(JOURNAL_SOCKET) and shutil.which("journalctl"):
        found.append("journal")
    else:
        found += [p for p in SYSLOG_FILES if os.path.isfile(p)]
    if DEFAULT_FILE not in found:
        found.append(DEFAULT_FILE)
    return found


def read_recent(settings: Any, n: int = 20, paths: Iterable[str] | None = None) -> list[Entry]:
    """The last n entries ocishim logged, oldest first, from every source it may have used."""
    import subprocess

    per_source: list[list[Entry]] = []
    for source in (list(paths) if paths is not None else sources(settings)):
        try:
            if source == "journal":
                found = _read_journal(n)
            elif source in SYSLOG_FILES:
                found = _read_file(source, n, SYSLOG_LINE, whole_file=False)
            else:
                found = _read_file(source, n, FILE_LINE, whole_file=True)
        except FileNotFoundError:
            if paths is not None:  # asked for by name: its absence is news
                raise SystemFailure(source, "no such file") from None
            continue  # a place nothing was logged to yet
        except LogFileRefused as exc:
            raise SystemFailure("", f"refusing to read {exc}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
                raise SystemFailure(source, "refusing to read: is a symbolic link") from None
            raise SystemFailure(source, f"cannot read: {exc.strerror or exc}") from None
        except (ValueError, subprocess.TimeoutExpired) as exc:  # journalctl's output or a hang
            raise SystemFailure(source, f"cannot read: {exc}") from None
        if found:
            per_source.append(found)
    if len(per_source) == 1:
        entries = per_source[0]
    else:
        # ISO times with one offset sort as text. A line without a time sorts with the
        # entry before it; the sort is stable, so each source keeps its own order.
        keyed = []
        for found in per_source:
            last = ""
            for e in found:
                last = e.time or last
                keyed.append((last, e))
        keyed.sort(key=lambda pair: pair[0])
        entries = [e for _, e in keyed]
    return entries[-n:] if n else []


def entry_dict(entry: Entry) -> dict[str, Any]:
    return asdict(entry)
