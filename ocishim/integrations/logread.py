"""Reading back what integrations/log.py wrote, for `ocishim log`: files, syslog, the journal.

Apart from log.py because every container start imports that one, and only this
command reads.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from ..errors import SystemFailure
from .log import (DEFAULT_FILE, IDENTIFIER, JOURNAL_SOCKET, LEVEL_OF_PRIORITY, PRIORITY,
                  SYSLOG_FILES, LogFileRefused)


@dataclass(frozen=True)
class Entry:
    """One logged decision as read back; time is ISO 8601 with offset, or "" if unknown."""

    time: str
    pid: int | None
    level: str
    message: str
    source: str


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
