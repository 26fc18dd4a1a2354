"""Issue 8: a podman container refused by the hook on a host without syslog.

podman 4.3 runs a precreate hook with stderr on /dev/null and reports only
"executing [...]: exit status 2" (measured here). The hook therefore logs the reason
and writes one line naming where onto podman's own stderr. This test runs real podman
with runc and the hooks.d file `ocishim install podman-hook` writes, whose settings
file does not set "log", on "a host without syslog" made honest: a private mount
namespace in which
- no journal socket and no /dev/log answer (checked inside, by connecting, before podman
  starts; on a host that has them they are covered by mounts), and
- /var/log is a fresh temp dir, so the default file is the real path
  /var/log/ocishim.log while the host's /var/log is never touched.
The expectations are the contract (errors name the field; the one stderr line says
where the reason is), not ocishim's own output read back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from .bundles import busybox_rootfs, missing_runtime
from .test_podman import ocishim_executable

pytestmark = pytest.mark.runtime

DEFAULT_FILE = "/var/log/ocishim.log"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ocishim\[\d+\]: (error|warning|info): (.*)$")
PODMAN_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
RUN_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

# Inside the namespace: hide whatever syslog or journal the host has, put /var/log on
# the temp dir given as $1, then run the rest of the arguments.
ISOLATE = ("mount --make-rprivate / && "
           "if [ -e /dev/log ] || [ -L /dev/log ]; then mount --bind /dev/null /dev/log; fi && "
           "if [ -d /run/systemd/journal ]; then mount -t tmpfs none /run/systemd/journal; fi && "
           "mount --bind \"$1\" /var/log && shift && exec \"$@\"")

# Run first inside the namespace: the premise, checked by the kernel, then exec podman.
NO_SYSLOG_THEN_EXEC = """
import errno, os, socket, sys
for path in ("/dev/log", "/run/systemd/journal/socket"):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
        except OSError as exc:
            assert exc.errno in (errno.ENOENT, errno.ECONNREFUSED), (path, exc)
        else:
            sys.exit(f"premise failed: {path} answers inside the namespace")
assert os.listdir("/var/log") == [], os.listdir("/var/log")
os.execvp(sys.argv[1], sys.argv[1:])
"""


def host_log_mentions(marker: str) -> bool:
    """Whether the host's own default file holds marker (other tests may write to it
    concurrently, so its hash is no guard; a marker unique to this run is)."""
    try:
        with open(DEFAULT_FILE, "rb") as f:
            return marker.encode() in f.read()
    except FileNotFoundError:
        return False


def entries(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        assert m, line
        out.append((m.group(1), m.group(2)))
    return out


def isolated(argv: Sequence[str], varlog: Path, check_premise: bool = False) -> subprocess.CompletedProcess[str]:
    if check_premise:
        argv = [sys.executable, "-c", NO_SYSLOG_THEN_EXEC, *argv]
    return subprocess.run(["unshare", "-m", "sh", "-c", ISOLATE, "sh", str(varlog), *argv],
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[dict]:
    for tool in ("podman", "runc", "unshare"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    work = tmp_path_factory.mktemp("refusal-log")
    exe = ocishim_executable(work)
    settings = work / "settings.json"
    settings.write_text(json.dumps({"enosys": "unnamed"}))  # no "log": the default places
    settings.chmod(0o600)
    hooks = work / "hooks.d"
    proc = subprocess.run([str(exe), "install", "podman-hook", "--dir", str(hooks), "--ocishim", str(exe),
                           "--config", str(settings)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    names: list[str] = []
    try:
        yield {"exe": exe, "hooks": hooks, "rootfs": busybox_rootfs(work / "rootfs"), "work": work,
               "names": names}
    finally:
        for name in names:
            subprocess.run(["podman", "rm", "--force", "--ignore", name], capture_output=True, timeout=120)


def podman_run(setup: dict, varlog: Path, cmd: Sequence[str], extra: Sequence[str]) \
        -> tuple[subprocess.CompletedProcess[str], str]:
    name = f"ocishim-refusal-log-{uuid.uuid4().hex[:10]}"
    setup["names"].append(name)
    argv = ["podman", "--hooks-dir", str(setup["hooks"]), *PODMAN_FLAGS, "run", "--rm", "--name", name,
            *RUN_FLAGS, *extra, "--rootfs", str(setup["rootfs"]), *cmd]
    return isolated(argv, varlog, check_premise=True), name


def _leftover(name: str) -> bool:
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}"],
                         capture_output=True, text=True, timeout=60).stdout
    return name in out.split()


def test_refused_container_reason_is_where_the_line_says(setup, tmp_path):
    varlog = tmp_path / "varlog"
    varlog.mkdir()
    bogus = f"bogus-{uuid.uuid4().hex[:10]}"
    proc, name = podman_run(setup, varlog, ["/bin/echo", "container ran"],
                            ["--annotation", f"ocishim.enosys={bogus}"])
    assert "premise failed" not in proc.stderr, proc.stderr
    assert proc.returncode != 0 and "container ran" not in proc.stdout, proc.stderr
    assert "exit status 2" in proc.stderr, proc.stderr  # podman's own report
    assert not _leftover(name)

    # Exactly one line from ocishim on podman's stderr, and it names the place.
    ours = [line for line in proc.stderr.splitlines() if line.startswith("ocishim:")]
    assert len(ours) == 1, proc.stderr
    assert DEFAULT_FILE in ours[0], ours[0]

    # The reason is there: the field and the value, as an error entry.
    log = varlog / "ocishim.log"
    [(level, message)] = entries(log)
    assert level == "error"
    assert "annotations.ocishim.enosys" in message and bogus in message, message
    st = os.lstat(log)
    assert st.st_uid == 0 and (st.st_mode & 0o777) == 0o600

    # And `ocishim log` finds it (same default places, same namespace set-up).
    shown = isolated([str(setup["exe"]), "log", "--json"], varlog)
    assert shown.returncode == 0, shown.stderr
    [entry] = json.loads(shown.stdout)
    assert (entry["level"], entry["source"]) == ("error", DEFAULT_FILE)
    assert "annotations.ocishim.enosys" in entry["message"]
    assert not host_log_mentions(bogus)


def test_decisions_and_unknown_names_are_logged(setup, tmp_path):
    """A container that runs: the warning about a name nobody knows and the decision."""
    varlog = tmp_path / "varlog"
    varlog.mkdir()
    unknown = f"ocishim_test_unknown_{uuid.uuid4().hex[:10]}"
    profile = tmp_path / "profile.json"
    default = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    default["syscalls"].append({"names": [unknown], "action": "SCMP_ACT_ALLOW"})
    profile.write_text(json.dumps(default))
    proc, _ = podman_run(setup, varlog, ["/bin/echo", "container ran"],
                         ["--security-opt", f"seccomp={profile}"])
    assert (proc.returncode, proc.stdout) == (0, "container ran\n"), proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("ocishim:")]
    got = entries(varlog / "ocishim.log")
    assert [level for level, _ in got] == ["warning", "info"], got
    assert unknown in got[0][1]
    assert got[1][1].startswith("precreate: patched (--enosys unnamed)")
    assert not host_log_mentions(unknown)
