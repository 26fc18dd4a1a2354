"""Issue 9, "No hang", end to end: a profile on which libseccomp 2.5.4 loops forever.

Through the podman hook (`python -m ocishim hook precreate`), the runtime wrapper
(`ocishim-runtime create`, real runtime /bin/true) and `ocishim run --runtime runc`:
each gives up within its time limit with the contract's message, exit 2 (the wrapper:
exit 1 and one JSON line in --log, nothing on stdio, as runtimes.md says), and leaves no
process behind;
the same profile without the loop works.

"No process behind" is asked of the kernel: each command runs under a small runner that
makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so every process the
command leaves, orphans and zombies included, becomes the runner's child; the runner
lists them from /proc, kills them by pid, reaps them and reports them.

The compile limit is lowered to 1 s (OCISHIM_COMPILE_TIMEOUT, a testing aid) so that the
tests do not wait the 10 s default each time; tests/test_compile_no_hang.py checks the
default once. The looping rule set is the one tests/test_compile_no_hang.py pins
against libseccomp itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from .bundles import REPO, busybox_rootfs, container_id, missing_runtime, spec
from .test_podman import ocishim_executable

LIMIT = 1.0  # seconds, OCISHIM_COMPILE_TIMEOUT for these tests
# Python start-up, reading the profile and the kill on top of the limit, on a loaded machine.
SLACK = 6.0
MESSAGE = "libseccomp did not finish compiling these rules within 1 s"


def _rule(action: str, index: int, **extra: Any) -> dict[str, Any]:
    return {"names": ["pivot_root"], "action": action, **extra,
            "args": [{"index": index, "value": 0, "op": "SCMP_CMP_EQ"},
                     {"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]}


# Default ALLOW so that the container without the loop runs busybox; the rules never
# match a real pivot_root (its arguments are pointers).
LOOPING = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [_rule("SCMP_ACT_TRAP", 1), _rule("SCMP_ACT_TRACE", 3, errnoRet=7)]}
UNLOOPED = {**LOOPING, "syscalls": LOOPING["syscalls"][:1]}

# Runs argv as a child subreaper; prints a JSON report. Kills what is left, by pid.
RUNNER = r'''
import ctypes, json, os, signal, subprocess, sys, time
PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d" % ctypes.get_errno())
job = json.loads(sys.stdin.read())
start = time.monotonic()
try:
    proc = subprocess.run(job["argv"], input=job["stdin"].encode(), capture_output=True,
                          env=job["env"], cwd=job["cwd"], timeout=job["timeout"])
    rc, out, err = proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
except subprocess.TimeoutExpired:
    rc, out, err = None, "", "timed out"
took = time.monotonic() - start

def children():
    pids = set()
    for tid in os.listdir("/proc/self/task"):
        with open("/proc/self/task/%s/children" % tid) as f:
            pids.update(int(p) for p in f.read().split())
    return pids

left = []
for pid in sorted(children()):
    try:
        with open("/proc/%d/stat" % pid) as f:
            left.append(f.read().split(")")[0] + ")")
    except OSError:
        left.append(str(pid))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
print(json.dumps({"rc": rc, "stdout": out, "stderr": err, "took": took, "left": left}))
'''


def _run(argv: Sequence[str], env: dict[str, str], cwd: Path, stdin: str = "",
         timeout: float = 120) -> dict[str, Any]:
    job = {"argv": list(argv), "env": env, "cwd": str(cwd), "stdin": stdin, "timeout": timeout}
    proc = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(job), capture_output=True,
                          text=True, timeout=timeout + 60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nohang")


@pytest.fixture(scope="module")
def rootfs(base) -> Path:
    return busybox_rootfs(base / "rootfs")


@pytest.fixture
def settings(tmp_path) -> tuple[Path, Path]:
    """Settings that send ocishim's log to a file here, not the host's."""
    log = tmp_path / "ocishim.log"
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"log": str(log)}))
    path.chmod(0o600)
    return path, log


def _env(settings: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_") and k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    env["OCISHIM_CONFIG"] = str(settings)
    env["OCISHIM_COMPILE_TIMEOUT"] = str(LIMIT)
    env.update(extra)
    return env


def _gave_up(report: dict[str, Any]) -> None:
    assert report["left"] == [], f"processes left behind: {report['left']}"
    assert report["took"] < LIMIT + SLACK, report
    assert report["took"] >= LIMIT, f"gave up before the limit: not the loop ({report})"


# --- the podman hook -----------------------------------------------------------------

@pytest.mark.parametrize("profile, loops", [(LOOPING, True), (UNLOOPED, False)], ids=["loop", "no-loop"])
def test_hook(profile, loops, rootfs, settings, tmp_path):
    settings_path, log = settings
    config = spec(tmp_path / "bundle", rootfs, ["/bin/true"], profile)
    report = _run([sys.executable, "-m", "ocishim", "hook", "precreate"], _env(settings_path),
                  config.parent, stdin=config.read_text())
    if loops:
        _gave_up(report)
        assert report["rc"] == 2 and report["stdout"] == "", report
        err = report["stderr"]
        assert err.startswith(f"ocishim: linux.seccomp: {MESSAGE} (") and err.count("\n") == 1, report
        assert MESSAGE in log.read_text()
    else:
        assert report["left"] == [] and report["rc"] == 0, report
        out = json.loads(report["stdout"])
        assert out["linux"]["seccomp"]["syscalls"][:1] == UNLOOPED["syscalls"]


# --- the runtime wrapper -------------------------------------------------------------

@pytest.mark.parametrize("profile, loops", [(LOOPING, True), (UNLOOPED, False)], ids=["loop", "no-loop"])
def test_wrapper_create(profile, loops, rootfs, settings, tmp_path):
    settings_path, _ = settings
    wrapper = ocishim_executable(tmp_path, "ocishim-runtime")
    config = spec(tmp_path / "bundle", rootfs, ["/bin/true"], profile)
    before = config.read_bytes()
    log = tmp_path / "runtime-log.json"
    report = _run([str(wrapper), "--log", str(log), "--log-format", "json", "create",
                   "--bundle", str(config.parent), container_id("ocishim-nohang")],
                  _env(settings_path, OCISHIM_RUNTIME="/bin/true"), tmp_path)
    if loops:
        _gave_up(report)
        # runtimes.md: errors go to --log as one JSON line, then exit 1.
        assert (report["rc"], report["stdout"], report["stderr"]) == (1, "", ""), report
        lines = log.read_text().splitlines()
        assert len(lines) == 1, lines
        entry = json.loads(lines[0])
        assert entry["level"] == "error" and MESSAGE in entry["msg"], entry
        assert config.read_bytes() == before  # no half-patched config for the runtime
    else:
        assert report["left"] == [] and report["rc"] == 0, report  # /bin/true ran
        assert not log.exists() or log.read_text() == ""
        assert json.loads(config.read_text())["linux"]["seccomp"]["syscalls"][:1] == UNLOOPED["syscalls"]


# --- ocishim run with runc -------------------------------------------------------------

@pytest.fixture
def runc_root(tmp_path) -> Iterator[Path]:
    """A private runc --root; every container left in it is deleted at the end."""
    if reason := missing_runtime("runc"):
        pytest.skip(reason)
    root = tmp_path / "runc-root"
    root.mkdir()
    try:
        yield root
    finally:
        runc = shutil.which("runc")
        listed = subprocess.run([runc, "--root", str(root), "list", "-q"], capture_output=True, text=True)
        for cid in listed.stdout.split():
            subprocess.run([runc, "--root", str(root), "delete", "--force", cid], capture_output=True)


@pytest.mark.runtime
@pytest.mark.parametrize("profile, loops", [(LOOPING, True), (UNLOOPED, False)], ids=["loop", "no-loop"])
def test_run_with_runc(profile, loops, rootfs, settings, runc_root, tmp_path):
    settings_path, _ = settings
    config = spec(tmp_path / "bundle", rootfs, ["/bin/echo", "ran"], profile)
    report = _run([sys.executable, "-m", "ocishim", "run", str(config.parent), "--runtime", "runc",
                   f"--runtime-arg=--root={runc_root}", "--id", container_id("ocishim-nohang")],
                  _env(settings_path), tmp_path)
    if loops:
        _gave_up(report)
        assert report["rc"] == 2 and report["stdout"] == "", report
        assert f"linux.seccomp: {MESSAGE}" in report["stderr"], report
        listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"],
                                capture_output=True, text=True)
        assert listed.stdout.split() == []  # no container
    else:
        assert report["left"] == [] and report["rc"] == 0, report
        assert report["stdout"] == "ran\n", report
