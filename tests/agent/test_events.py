"""The agent's log bounds and the summary, and its socket and log file refusals."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys

import pytest

from ocishim.agent import events, loop, main
from ocishim.errors import UsageError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _record(container: str, syscall: str, answer: str = "ENOSYS") -> dict:
    return {"event": "notified", "container": container, "arch": "x86_64", "syscall": syscall,
            "nr": 1, "answer": answer, "errno": 38, "enosys_would_fix": False}


def _feed(log: events.EventLog, container: str, syscall: str) -> None:
    key = (syscall.encode(), 38)
    if log.seen(container, key):
        log.logged(container, key, _record(container, syscall))


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_loop_on_one_call_costs_one_line_per_window():
    out, clock = io.StringIO(), Clock()
    log = events.EventLog(out, clock=clock)
    for second in range(60):
        for _ in range(1000):
            _feed(log, "c1", "reboot")
        clock.t += 1
        log.flush()
    log.flush("c1", final=True)
    lines = _lines(out)
    assert lines[0]["event"] == "notified"
    repeated = [l for l in lines if l["event"] == "repeated"]
    assert 5 <= len(repeated) <= 60 // events.WINDOW + 2
    assert 1 + sum(l["count"] for l in repeated) == 60_000  # every call counted once
    assert repeated[-1]["total"] == 60_000


def test_many_kinds_of_call_are_bounded_by_the_bucket():
    out, clock = io.StringIO(), Clock()
    log = events.EventLog(out, clock=clock)
    for i in range(20_000):
        _feed(log, "c2", f"call{i}")
    # No time passed: at most the burst of full lines.
    assert len(out.getvalue().splitlines()) == events.BURST
    clock.t += 10
    log.flush()
    written = len(out.getvalue().splitlines())
    assert written <= events.BURST + 10 * events.RATE + 1
    log.flush("c2", final=True)
    lines = _lines(out)
    counted = sum(1 for l in lines if l["event"] == "notified") + \
        sum(l["count"] for l in lines if l["event"] == "repeated")
    assert counted == 20_000
    assert any(l.get("syscall", "").startswith("(beyond") for l in lines)


SUMMARY_LOG = """\
{"event":"attached","container":"web"}
{"event":"notified","container":"web","arch":"x86_64","syscall":"clone3","answer":"EPERM","enosys_would_fix":true}
{"event":"repeated","container":"web","arch":"x86_64","syscall":"clone3","answer":"EPERM","count":41,"enosys_would_fix":true}
{"event":"notified","container":"web","arch":"x86_64","syscall":"reboot","answer":"ENOSYS","enosys_would_fix":false}
{"event":"notified","container":"db","arch":"x86_64","syscall":"faccessat2","answer":"ENOSYS","enosys_would_fix":false}
"""

SUMMARY_TABLE = """\
container db
  syscall                  arch     answer          count  ENOSYS would fix
  faccessat2               x86_64   ENOSYS              1  
container web
  syscall                  arch     answer          count  ENOSYS would fix
  clone3                   x86_64   EPERM              42  yes
  reboot                   x86_64   ENOSYS              1  
"""


def test_summary_table(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text(SUMMARY_LOG)
    out = io.StringIO()
    assert main.summarize(str(path), out) == 0
    assert out.getvalue() == SUMMARY_TABLE


def test_summary_of_a_text_log_is_refused(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text("time=now event=notified\n")
    proc = subprocess.run([sys.executable, "-m", "ocishim", "agent", "--summary", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "line 1: not JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_socket_directory_must_be_root_only(tmp_path):
    d = tmp_path / "open"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    with pytest.raises(UsageError, match="mode 0700"):
        loop.listen(str(d / "agent.sock"))
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UsageError, match="not a directory"):
        loop.listen(str(tmp_path / "link" / "agent.sock"))
    (tmp_path / "real" / "agent.sock").write_text("a file")
    with pytest.raises(UsageError, match="not a socket"):
        loop.listen(str(tmp_path / "real" / "agent.sock"))


def test_socket_is_0600(tmp_path):
    sock = loop.listen(str(tmp_path / "new" / "agent.sock"))
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "new" / "agent.sock").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
    finally:
        sock.close()


def test_log_file_is_not_followed_through_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "audit.log").symlink_to(target)
    with pytest.raises(UsageError, match="--log"):
        main.open_log(str(tmp_path / "audit.log"))
    assert target.read_text() == ""
    with pytest.raises(UsageError, match="--log"):
        main.open_log(str(tmp_path))  # a directory


def test_a_full_disk_does_not_stop_the_log(tmp_path):
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    log = events.EventLog(Full())
    assert log.write({"event": "x"}) is False
    assert log.suppressed == 1
