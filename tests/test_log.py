"""Logging of the hook and the wrapper (issue 8, "where to look when a container fails").

The expectations are the contract written out here, not read from ocishim:
- a log file line is `ISO-TIME ocishim[PID]: LEVEL: MESSAGE` (LINE below);
- journald's native protocol (systemd's "Native Journal Protocol" document): one
  datagram of `KEY=VALUE\\n` fields, or `KEY\\n<u64 LE length><value>\\n`;
- syslog (RFC 3164): `<PRI>TAG[PID]: MSG`, PRI = facility * 8 + severity, user = 1,
  err = 3, warning = 4, info = 6;
- the order of places: the journal, then syslog, then the default file under /var/log.
The journal and syslog sockets are real datagram sockets this test binds in a temp
dir; the module's socket and default-file paths are pointed there so that no test
writes into the host's /var/log. Files the code must not touch are in a guard set
whose hashes and modes are compared before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from ocishim.integrations import log as logmod
from ocishim.integrations.settings import Settings

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}) ocishim\[(\d+)\]: (error|warning|info): (.*)$")
USER, ERR, WARNING, INFO = 1, 3, 4, 6

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root (CI runs as root)")


class Places:
    """The three places, in a temp dir: sockets not bound until a test binds them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / "journal.socket"
        self.syslog = root / "devlog"
        self.default = root / "varlog" / "ocishim.log"
        self.default.parent.mkdir()
        self.sockets: list[socket.socket] = []

    def listen(self, path: Path) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(path))
        s.settimeout(5)
        self.sockets.append(s)
        return s

    def close(self) -> None:
        for s in self.sockets:
            s.close()


@pytest.fixture
def places(tmp_path, monkeypatch) -> Iterator[Places]:
    p = Places(tmp_path)
    monkeypatch.setattr(logmod, "JOURNAL_SOCKET", str(p.journal))
    monkeypatch.setattr(logmod, "SYSLOG_SOCKET", str(p.syslog))
    monkeypatch.setattr(logmod, "DEFAULT_FILE", str(p.default))
    try:
        yield p
    finally:
        p.close()


def guard(paths: list[Path]) -> dict[str, tuple[str, int, int]]:
    """sha256, mode and owner of each file, without following a symlink."""
    out = {}
    for path in paths:
        st = os.lstat(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
        out[str(path)] = (digest, st.st_mode, st.st_uid)
    return out


def lines(path: Path) -> list[tuple[str, str]]:
    text = path.read_text()
    assert text.endswith("\n")
    got = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, line
        assert int(m.group(2)) > 0
        got.append((m.group(3), m.group(4)))
    return got


def journal_fields(datagram: bytes) -> dict[str, str]:
    """Parse the native protocol, both forms."""
    fields, rest = {}, datagram
    while rest:
        head, nl, rest = rest.partition(b"\n")
        assert nl, datagram
        if b"=" in head:
            key, _, value = head.partition(b"=")
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            key, value, rest = head, rest[8:8 + size], rest[8 + size:]
            assert rest[:1] == b"\n"
            rest = rest[1:]
        fields[key.decode()] = value.decode()
    return fields


# --- the file: never follow, never someone else's, root-only ------------------------------

def test_default_file_is_created_0600_even_with_umask_0(places):
    old = os.umask(0)
    try:
        where = logmod.log(Settings(log="auto"), "info", "hello")
    finally:
        os.umask(old)
    assert (where.kind, where.path) == ("file", str(places.default))
    st = os.lstat(places.default)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert lines(places.default) == [("info", "hello")]


def test_the_real_default_is_under_var_log():
    assert logmod.DEFAULT_FILE == "/var/log/ocishim.log"
    assert logmod.JOURNAL_SOCKET == "/run/systemd/journal/socket"
    assert logmod.SYSLOG_SOCKET == "/dev/log"


def test_symlinked_log_file_is_not_followed(places, tmp_path, capsys):
    target = tmp_path / "someone-elses-file"
    target.write_text("precious\n")
    target.chmod(0o600)
    link = tmp_path / "ocishim.log"
    link.symlink_to(target)
    before = guard([target, link])
    where = logmod.log(Settings(log=str(link)), "error", "precreate: refused")
    assert guard([target, link]) == before
    assert os.readlink(link) == str(target)
    # The entry is not lost: it went on down the chain, with a note saying why.
    assert (where.kind, where.path) == ("file", str(places.default))
    got = lines(places.default)
    assert got[0] == ("error", "precreate: refused")
    assert got[1][0] == "warning" and str(link) in got[1][1] and "symbolic link" in got[1][1]
    assert "symbolic link" in capsys.readouterr().err


def test_dangling_symlink_is_not_created(places, tmp_path):
    target = tmp_path / "would-be-created"
    link = tmp_path / "ocishim.log"
    link.symlink_to(target)
    logmod.log(Settings(log=str(link)), "info", "x", stderr=False)
    assert not os.path.lexists(target)
    assert link.is_symlink()


def test_symlinked_default_file_is_not_followed(places, tmp_path):
    target = tmp_path / "target"
    target.write_text("keep\n")
    places.default.symlink_to(target)
    before = guard([target])
    where = logmod.log(Settings(log="auto"), "error", "nowhere to go", stderr=False)
    assert guard([target]) == before
    assert where.kind == "nowhere"


def test_fifo_is_refused_without_blocking(places, tmp_path):
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    # A child, so that a blocking open would be a timeout, not a hung test run.
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from ocishim.integrations import log\n"
            f"log.DEFAULT_FILE = {str(places.default)!r}\n"
            f"log.JOURNAL_SOCKET = log.SYSLOG_SOCKET = {str(tmp_path / 'none')!r}\n"
            "from ocishim.integrations.settings import Settings\n"
            f"print(log.log(Settings(log={str(fifo)!r}), 'info', 'x', stderr=False).path)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(places.default)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert "not a regular file" in places.default.read_text()


def test_file_writable_by_others_is_refused(places, tmp_path):
    path = tmp_path / "open.log"
    path.write_text("old\n")
    path.chmod(0o666)
    before = guard([path])
    logmod.log(Settings(log=str(path)), "info", "x", stderr=False)
    assert guard([path]) == before
    assert "writable by group or others" in places.default.read_text()


@needs_root
def test_file_owned_by_another_user_is_refused(places, tmp_path):
    path = tmp_path / "theirs.log"
    path.write_text("theirs\n")
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    before = guard([path])
    logmod.log(Settings(log=str(path)), "info", "x", stderr=False)
    assert guard([path]) == before
    assert "owned by uid 65534" in places.default.read_text()


def test_hard_link_is_refused(places, tmp_path):
    original = tmp_path / "original"
    original.write_text("one\n")
    original.chmod(0o600)
    link = tmp_path / "linked.log"
    os.link(original, link)
    before = guard([original])
    logmod.log(Settings(log=str(link)), "info", "x", stderr=False)
    assert guard([original]) == before
    assert "2 hard links" in places.default.read_text()


def test_relative_path_is_refused(places, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the hook runs in the bundle directory
    logmod.log(Settings(log="ocishim.log"), "info", "x", stderr=False)
    assert not (tmp_path / "ocishim.log").exists()
    assert "not an absolute path" in places.default.read_text()


def test_existing_own_file_is_appended_and_its_mode_kept(places, tmp_path):
    path = tmp_path / "mine.log"
    path.write_text("2024-01-01T00:00:00+0000 ocishim[1]: info: old entry\n")
    path.chmod(0o640)  # logrotate's usual mode: readable by a group, writable by root only
    logmod.log(Settings(log=str(path)), "warning", "second")
    assert lines(path) == [("info", "old entry"), ("warning", "second")]
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o640
    assert not places.default.exists()


def test_hostile_message_cannot_forge_an_entry(places):
    forged = "x\n2024-01-01T00:00:00+0000 ocishim[1]: info: precreate: patched\r\x1b[2J\x85\ud800"
    logmod.log(Settings(log="auto"), "error", forged)
    [(level, message)] = lines(places.default)
    assert level == "error"
    assert message == ("x\\n2024-01-01T00:00:00+0000 ocishim[1]: info: precreate: patched"
                       "\\r\\x1b[2J\\x85\\ud800")


def test_huge_message_is_capped(places):
    logmod.log(Settings(log="auto"), "error", "k" * 10_000_000)
    [(_, message)] = lines(places.default)
    assert len(message) < 10_000
    assert message.endswith(f"... ({10_000_000 - logmod.MAX_MESSAGE} more characters)")


# --- the order of places --------------------------------------------------------------

def test_journal_first(places):
    journal = places.listen(places.journal)
    syslog = places.listen(places.syslog)
    where = logmod.log(Settings(log="auto"), "error", "line one\nline two")
    assert where.kind == "journal"
    fields = journal_fields(journal.recv(65536))
    assert fields["SYSLOG_IDENTIFIER"] == "ocishim"
    assert fields["PRIORITY"] == str(ERR)
    assert fields["MESSAGE"] == "error: line one\\nline two"
    assert fields["SYSLOG_PID"] == str(os.getpid())
    syslog.setblocking(False)
    with pytest.raises(BlockingIOError):
        syslog.recv(65536)
    assert not places.default.exists()
    assert "journalctl -t ocishim" in str(where)


def test_journal_binary_field_form():
    """A value with a newline (never a cleaned message, but the encoder must be right)."""
    assert journal_fields(logmod._journal_field("K", "a\nb")) == {"K": "a\nb"}
    assert logmod._journal_field("K", "a\nb") == b"K\n" + struct.pack("<Q", 3) + b"a\nb\n"


def test_syslog_when_no_journal(places):
    syslog = places.listen(places.syslog)
    where = logmod.log(Settings(log="auto"), "warning", "unknown syscall name 'frob'")
    assert (where.kind, where.path) == ("syslog", str(places.syslog))
    assert syslog.recv(65536).decode() == (f"<{USER * 8 + WARNING}>ocishim[{os.getpid()}]: "
                                           "warning: unknown syscall name 'frob'")
    assert not places.default.exists()


def test_syslog_setting_skips_the_journal(places):
    places.listen(places.journal)
    syslog = places.listen(places.syslog)
    assert logmod.log(Settings(log="syslog"), "info", "x").kind == "syslog"
    assert syslog.recv(65536).startswith(f"<{USER * 8 + INFO}>ocishim[".encode())


def test_a_socket_nobody_reads_falls_through(places):
    """A stale socket file (daemon gone): connect is refused, the file gets the entry."""
    s = places.listen(places.syslog)
    s.close()
    assert os.path.exists(places.syslog)
    assert logmod.log(Settings(log="auto"), "info", "x").kind == "file"
    assert lines(places.default) == [("info", "x")]


def test_nowhere_prints_on_stderr_only_when_allowed(places, capsys):
    places.default.parent.rmdir()
    assert logmod.log(Settings(log="auto"), "error", "reason", stderr=False).kind == "nowhere"
    assert capsys.readouterr().err == ""
    assert logmod.log(Settings(log="auto"), "error", "reason").kind == "stderr"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: reason" in err


# --- reading back: ocishim log ----------------------------------------------------------

ISOLATE = ("mount --make-rprivate / && mount --bind \"$1\" /var/log && "
           "if [ -e /dev/log ]; then mount --bind /dev/null /dev/log; fi && "
           "if [ -d /run/systemd/journal ]; then mount -t tmpfs none /run/systemd/journal; fi && "
           "shift && exec \"$@\"")


def isolated(argv: list[str], varlog: Path, env: dict[str, str], stdin: str = "") \
        -> subprocess.CompletedProcess[str]:
    """argv in a private mount namespace whose /var/log is varlog and which has no journal
    or syslog socket: the default places are the real paths, the host's are untouched."""
    if os.geteuid() != 0:
        pytest.skip("a private mount namespace needs root (CI runs as root)")
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **env}
    return subprocess.run(["unshare", "-m", "sh", "-c", ISOLATE, "sh", str(varlog), *argv],
                          input=stdin, capture_output=True, text=True, env=full, timeout=120)


def run_cli(*args: str, env: dict[str, str], varlog: Path) -> subprocess.CompletedProcess[str]:
    return isolated([sys.executable, "-m", "ocishim", *args], varlog, env)


@pytest.fixture
def file_settings(tmp_path) -> tuple[Path, Path]:
    log_path = tmp_path / "logs" / "ocishim.log"
    log_path.parent.mkdir()
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"log": str(log_path)}))
    settings.chmod(0o600)
    (tmp_path / "varlog").mkdir()
    return settings, log_path


def test_log_command_reads_the_file(file_settings, tmp_path):
    settings, log_path = file_settings
    log_path.write_text("".join(f"2024-05-0{i}T10:00:00+0000 ocishim[{100 + i}]: info: entry {i}\n"
                                for i in range(1, 6)) + "garbled line\n")
    log_path.chmod(0o600)
    env, varlog = {"OCISHIM_CONFIG": str(settings)}, tmp_path / "varlog"
    proc = run_cli("log", "-n", "3", "--json", env=env, varlog=varlog)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        {"time": "2024-05-04T10:00:00+0000", "pid": 104, "level": "info", "message": "entry 4",
         "source": str(log_path)},
        {"time": "2024-05-05T10:00:00+0000", "pid": 105, "level": "info", "message": "entry 5",
         "source": str(log_path)},
        # a line that does not parse is shown, not hidden
        {"time": "", "pid": None, "level": "unknown", "message": "garbled line", "source": str(log_path)},
    ]
    text = run_cli("log", "-n", "1", env=env, varlog=varlog)
    assert text.returncode == 0 and text.stdout.splitlines() == ["? ocishim unknown: garbled line"]
    assert run_cli("log", "-n", "-1", env=env, varlog=varlog).returncode == 2

    # An entry that fell back to the default file (/var/log/ocishim.log) is shown too, in time order.
    (varlog / "ocishim.log").write_text("2024-05-04T12:00:00+0000 ocishim[7]: error: fell back\n")
    proc = run_cli("log", "-n", "3", "--json", env=env, varlog=varlog)
    assert proc.returncode == 0, proc.stderr
    assert [(e["message"], e["source"]) for e in json.loads(proc.stdout)] == [
        ("fell back", "/var/log/ocishim.log"), ("entry 5", str(log_path)), ("garbled line", str(log_path))]


def test_log_command_refuses_a_symlinked_file(file_settings, tmp_path):
    settings, log_path = file_settings
    secret = tmp_path / "secret"
    secret.write_text("2024-05-01T10:00:00+0000 ocishim[1]: info: not from ocishim\n")
    log_path.symlink_to(secret)
    proc = run_cli("log", "--json", env={"OCISHIM_CONFIG": str(settings)}, varlog=tmp_path / "varlog")
    assert proc.returncode != 0 and "not from ocishim" not in proc.stdout
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_log_command_reads_a_big_file_from_its_end(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "w") as f:
        for i in range(200_000):
            f.write(f"2024-05-01T10:00:00+0000 ocishim[{i + 1}]: info: entry {i}\n")
    entries = logmod.read_recent(Settings(), 2, [str(path)])
    assert [(e.pid, e.message) for e in entries] == [(199_999, "entry 199998"), (200_000, "entry 199999")]


# --- the hook: every decision and refusal, and the one line -------------------------------

UNKNOWN_NAME = "ocishim_test_no_such_syscall"


def hook(config: dict, settings: Path, **kw) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "OCISHIM_CONFIG": str(settings)}
    return subprocess.run([sys.executable, "-m", "ocishim", "hook", "precreate"], input=json.dumps(config),
                          capture_output=True, text=True, env=env, timeout=120, **kw)


def seccomp_config(names: list[str], annotations: dict[str, str] | None = None) -> dict:
    return {"ociVersion": "1.0.2", "annotations": annotations or {},
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                                  "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}}}


def test_hook_refusal_one_line_names_where(file_settings):
    settings, log_path = file_settings
    proc = hook(seccomp_config(["read"], {"ocishim.enosys": "bogus"}), settings)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert str(log_path) in line
    [(level, message)] = lines(log_path)
    assert level == "error"
    assert "annotations.ocishim.enosys" in message and "bogus" in message
    assert stat.S_IMODE(os.lstat(log_path).st_mode) == 0o600


def test_hook_logs_decisions_and_unknown_name_warnings(file_settings):
    settings, log_path = file_settings
    proc = hook(seccomp_config(["read", UNKNOWN_NAME]), settings)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    json.loads(proc.stdout)
    got = lines(log_path)
    assert [lvl for lvl, _ in got] == ["warning", "info"], got
    assert UNKNOWN_NAME in got[0][1]
    assert got[1][1].startswith("precreate: patched (--enosys unnamed)")

    # No linux.seccomp: no filter, and that is a decision too.
    proc = hook({"ociVersion": "1.0.2"}, settings)
    assert proc.returncode == 0
    assert lines(log_path)[-1] == ("info", "precreate: the config has no linux.seccomp: no filter, "
                                           "left unchanged")


def test_hook_broken_settings_logged_to_the_default_places(tmp_path):
    """A settings file that cannot be read cannot say where to log: the defaults are used,
    here the default file, /var/log/ocishim.log (a temp dir in a private mount namespace)."""
    varlog = tmp_path / "varlog"
    varlog.mkdir()
    settings = tmp_path / "settings.json"
    settings.write_text("{not json")
    settings.chmod(0o600)
    proc = isolated([sys.executable, "-m", "ocishim", "hook", "precreate"], varlog,
                    {"OCISHIM_CONFIG": str(settings)}, stdin="{}")
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "/var/log/ocishim.log" in line and str(settings) in line
    [(level, message)] = lines(varlog / "ocishim.log")
    assert level == "error" and str(settings) in message
    assert stat.S_IMODE(os.lstat(varlog / "ocishim.log").st_mode) == 0o600


# --- the one line under podman: its stderr, since podman gives the hook /dev/null --------

def _tell_from_child(tmp_path: Path, parent_name: str, stderr_file: Path | None = None) \
        -> subprocess.CompletedProcess[str]:
    """Run tell_caller with stderr on /dev/null (as podman runs a hook), from a parent
    program called parent_name (a script: its comm is its file name) that writes
    "before" and "after" on its own stderr around it."""
    child = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
             "from ocishim.integrations.log import tell_caller\n"
             "tell_caller('ocishim: refused (logged to /var/log/ocishim.log)')\n")
    parent = tmp_path / parent_name
    parent.write_text(f"#!{sys.executable}\n"
                      "import subprocess, sys\n"
                      "sys.stderr.write('before\\n'); sys.stderr.flush()\n"
                      f"code = subprocess.run([sys.executable, '-c', {child!r}],\n"
                      "                      stderr=subprocess.DEVNULL).returncode\n"
                      "sys.stderr.write('after\\n'); sys.stderr.flush()\n"
                      "sys.exit(code)\n")
    parent.chmod(0o755)
    if stderr_file is None:
        return subprocess.run([str(parent)], capture_output=True, text=True, timeout=60)
    with open(stderr_file, "w") as err:  # "w", not "a": the parent writes at its own offset
        return subprocess.run([str(parent)], stdout=subprocess.PIPE, stderr=err, text=True, timeout=60)


LINE_FOR_USER = "ocishim: refused (logged to /var/log/ocishim.log)\n"


def test_tell_caller_reaches_podman_stderr(tmp_path):
    proc = _tell_from_child(tmp_path, "podman")
    assert proc.returncode == 0
    assert proc.stderr == "before\n" + LINE_FOR_USER + "after\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="pidfd_getfd on the parent needs ptrace rights (root)")
def test_tell_caller_into_a_regular_file_keeps_both(tmp_path):
    """podman 2>file: the line shares podman's offset, so nothing overwrites anything."""
    err = tmp_path / "podman.err"
    proc = _tell_from_child(tmp_path, "podman", err)
    assert proc.returncode == 0
    assert err.read_text() == "before\n" + LINE_FOR_USER + "after\n"


def test_tell_caller_writes_nothing_into_another_parent(tmp_path):
    proc = _tell_from_child(tmp_path, "notpodman")
    assert proc.returncode == 0 and proc.stderr == "before\nafter\n" and proc.stdout == ""


# --- a real journald: the native protocol as journald reads it, and `ocishim log` ---------

JOURNALD = Path("/lib/systemd/systemd-journald")
JOURNALD_SCRIPT = r"""
set -e
mount --make-rprivate /
mkdir -p /run/systemd /run/log
mount -t tmpfs none /run/systemd
mkdir /run/systemd/journal
mount -t tmpfs none /run/log
mount -t tmpfs none /var/log   # journald's persistent store, and the default file
"$JOURNALD" &
JPID=$!
trap 'kill $JPID; wait $JPID || true' EXIT
i=0
until [ -S /run/systemd/journal/socket ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "journald did not start" >&2; exit 3; }
    sleep 0.1
done
"$PYTHON" -c "$LOG_CODE" > "$OUT/where"
i=0
until [ "$(journalctl -t ocishim -o json --no-pager | grep -c "$MARKER")" = 2 ]; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "entry not in the journal" >&2; exit 4; }
    sleep 0.1
done
journalctl -t ocishim -o json --no-pager > "$OUT/journalctl.json"
"$PYTHON" -m ocishim log --json > "$OUT/ocishim-log.json"
[ ! -e /var/log/ocishim.log ]
"""


def test_real_journald(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a private mount namespace for journald needs root (CI runs as root)")
    if not JOURNALD.exists():
        pytest.skip(f"{JOURNALD} missing (the systemd package; make test installs it)")
    marker = f"marker-{os.getpid()}-{tmp_path.name}"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from ocishim.integrations.log import log\n"
            "from ocishim.integrations.settings import Settings\n"
            f"print(log(Settings(log='auto'), 'error', 'refused: {marker}\\nsecond line ä').kind)\n"
            # journald's syslog socket (what /dev/log is on a systemd host) reads RFC 3164.
            "from ocishim.integrations import log as m\n"
            "m.SYSLOG_SOCKET = '/run/systemd/journal/dev-log'\n"
            f"print(log(Settings(log='syslog'), 'warning', 'via syslog {marker}').kind)\n")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "JOURNALD": str(JOURNALD),
           "PYTHON": sys.executable, "LOG_CODE": code, "OUT": str(tmp_path), "MARKER": marker,
           "OCISHIM_CONFIG": str(tmp_path / "no-settings.json")}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", JOURNALD_SCRIPT], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "where").read_text() == "journal\nsyslog\n"
    records = [json.loads(line) for line in (tmp_path / "journalctl.json").read_text().splitlines()]
    native, syslog = [r for r in records if marker in r.get("MESSAGE", "")]
    assert native["SYSLOG_IDENTIFIER"] == "ocishim" and native["PRIORITY"] == str(ERR)
    assert native["_TRANSPORT"] == "journal"  # the native socket, not /dev/log
    assert native["MESSAGE"] == f"error: refused: {marker}\\nsecond line ä"
    assert syslog["_TRANSPORT"] == "syslog" and syslog["SYSLOG_IDENTIFIER"] == "ocishim"
    assert syslog["PRIORITY"] == str(WARNING) and syslog["SYSLOG_FACILITY"] == str(USER)
    assert syslog["MESSAGE"] == f"warning: via syslog {marker}"
    assert syslog["SYSLOG_PID"] == native["SYSLOG_PID"]
    shown = json.loads((tmp_path / "ocishim-log.json").read_text())
    assert [(e["level"], e["message"], e["source"]) for e in shown if marker in e["message"]] == [
        ("error", f"refused: {marker}\\nsecond line ä", "journal"),
        ("warning", f"via syslog {marker}", "journal")]
