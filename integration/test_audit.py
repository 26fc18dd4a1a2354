"""Audit mode with real runtimes: a Debian trixie container under crun (the BPF annotation)
and runc (listenerPath and a NOTIFY rule in the JSON profile), with `ocishim agent`.

- Audited, the container runs bash, apt-get, perl and a threaded sort exactly as without
  audit: same exit code, same output.
- The agent's log lists the refused calls, checked against strace of the same run: every
  call of the container's processes that strace saw fail with the errno the filter gives
  to that syscall is in the log, with that errno, and the counts agree.
trixie's minbase has no python3: the fixture adds python3-minimal with apt-get in a
copy, cached beside it (.cache/rootfs/trixie-python3). Each wait is bounded.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from ocishim import syscalls
from ocishim.actions import RET_ACTION_FULL, RET_DATA, RET_ERRNO
from ocishim.bpf import reach
from ocishim.arch import BY_NAME

from . import bundles, rootfs

pytestmark = pytest.mark.runtime
TIMEOUT = 120
# clone3 and faccessat2 taken out: glibc 2.41 falls back on ENOSYS (the stub's answer,
# through the agent); pthread_create (sort --parallel) and [ -x ] show it.
MINUS = ("clone3", "faccessat2")
PYTHON = ("import os, threading; t = threading.Thread(target=print, args=('thread',)); t.start(); "
          "t.join(); print('python', os.access('/bin/ls', os.X_OK))")
SCRIPT = ("set -e; [ -x /bin/ls ] && echo executable; apt-get check; "
          f"python3 -c \"{PYTHON}\"; "
          "perl -e 'print qq(perl \\$^V\\n)'; seq 1 300000 > /tmp/n; sort -n --parallel=2 -S 64M /tmp/n | tail -n 1; "
          "echo done")
PYTHON_ROOT = rootfs.CACHE / "trixie-python3"


def _python_rootfs() -> Path:
    """trixie minbase plus python3-minimal, built once from the cached trixie (about 15 s)."""
    base = rootfs.debootstrap_rootfs("trixie")
    if rootfs.is_complete(PYTHON_ROOT):
        return PYTHON_ROOT
    with rootfs.locked(rootfs.CACHE / "trixie-python3.lock"):
        if rootfs.is_complete(PYTHON_ROOT):
            return PYTHON_ROOT
        if reason := rootfs.mirror_unreachable("trixie"):
            raise rootfs.RootfsUnavailable(reason)
        tmp = rootfs.CACHE / f".trixie-python3.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(PYTHON_ROOT, ignore_errors=True)
        try:
            subprocess.run(["cp", "-a", str(base), str(tmp)], check=True, timeout=TIMEOUT)
            (tmp / rootfs.MARKER).unlink()
            shutil.copy("/etc/resolv.conf", tmp / "etc" / "resolv.conf")
            proc = subprocess.run(["chroot", str(tmp), "/bin/sh", "-c",
                                   "apt-get -q update && apt-get -q install -y --no-install-recommends "
                                   "python3-minimal"], capture_output=True, text=True, timeout=600,
                                  env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                       "DEBIAN_FRONTEND": "noninteractive"})
            assert proc.returncode == 0, f"apt-get in the trixie copy failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            (tmp / rootfs.MARKER).write_text(json.dumps({"suite": "trixie", "extra": "python3-minimal"}) + "\n")
            os.rename(tmp, PYTHON_ROOT)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PYTHON_ROOT


def _ocishim() -> list[str]:
    return [sys.executable, "-m", "ocishim"]


@pytest.fixture(scope="module")
def trixie_root() -> Path:
    for runtime in ("runc", "crun"):
        if reason := bundles.missing_runtime(runtime):
            pytest.skip(reason)
    try:
        root = _python_rootfs()
    except rootfs.RootfsUnavailable as exc:
        pytest.skip(str(exc))
    return root


@pytest.fixture(scope="module")
def trixie_bundle(trixie_root, tmp_path_factory) -> Path:
    return _bundle(tmp_path_factory.mktemp("h13-audit") / "bundle", trixie_root, SCRIPT)


def _bundle(bundle: Path, root: Path, script: str) -> Path:
    config_path = bundles.spec(bundle, root, ["/bin/bash", "-c", script], bundles.docker_profile(minus=MINUS))
    config = json.loads(config_path.read_text())
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev"]})
    config_path.write_text(json.dumps(config))
    return bundle


class Agent:
    """`ocishim agent --json` on a socket of its own; stopped and removed by close()."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="h13-agent-")
        self.socket = os.path.join(self.dir, "run", "agent.sock")
        self.log = Path(self.dir) / "agent.log"
        self.proc = subprocess.Popen([*_ocishim(), "agent", "--socket", self.socket, "--json",
                                      "--log", str(self.log)], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            assert self.proc.poll() is None and time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.02)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def agent() -> Iterator[Agent]:
    a = Agent()
    try:
        yield a
    finally:
        a.close()


def _run(runtime: str, bundle: Path, audit_socket: str | None, root: Path,
         strace_to: Path | None = None) -> subprocess.CompletedProcess[str]:
    cid = bundles.container_id("h13-audit")
    args = [*_ocishim(), "run", "--runtime", runtime, "--id", cid, str(bundle)]
    if audit_socket:
        args += ["--audit", "--audit-socket", audit_socket]
    if runtime == "crun":
        args = bundles.crun_prefix() + args + [f"--runtime-arg={a}" for a in bundles.CRUN_ARGS]
    else:
        args += [f"--runtime-arg=--root={root}"]
    if strace_to is not None:
        # Pids as this namespace sees them, also in clone's results inside the container.
        args = ["strace", "-f", "--pidns-translation", "-qq", "-s", "0", "-o", str(strace_to)] + args
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        base = ["runc", f"--root={root}"] if runtime == "runc" else None
        if base:
            subprocess.run(base + ["delete", "--force", cid], capture_output=True, timeout=30)


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_audited_container_runs_as_without_audit(runtime, trixie_bundle, agent, tmp_path):
    plain = _run(runtime, trixie_bundle, None, tmp_path / "root")
    audited = _run(runtime, trixie_bundle, agent.socket, tmp_path / "root")
    assert plain.returncode == 0, plain.stderr
    assert "executable" in plain.stdout and "300000" in plain.stdout
    assert "thread\npython True" in plain.stdout
    assert (audited.returncode, audited.stdout) == (plain.returncode, plain.stdout), audited.stderr
    agent.stop()
    lines = agent.lines()
    attached = [l for l in lines if l["event"] == "attached"]
    assert len(attached) == 1 and attached[0]["audited"]
    names = {(l["syscall"], l["answer"]) for l in lines if l["event"] in ("notified", "repeated")}
    # Both runtimes notify E(A): faccessat2 (bash's [ -x ]) and clone3 (sort's threads).
    assert {("faccessat2", "ENOSYS"), ("clone3", "ENOSYS")} <= names


# "PID name(args) = RESULT [ERRNO]", or, when strace -f interleaves calls,
# "PID <... name resumed>...) = RESULT [ERRNO]" (the unfinished half carries no result).
# With --pidns-translation a pid from inside the container is followed by
# "/* PID in strace's PID NS */".
_LINE = re.compile(r"^(\d+) +(?:<\.\.\. )?(\w+)(?:\(| resumed>)(.*)\) += (-?\d+|\?)"
                   r"(?: /\* (\d+) in strace's PID NS \*/)?(?: (E\w+))?")


def _container_failures(trace: str) -> list[tuple[str, str]]:
    """(syscall, errno) of every failed call of the container's processes after the filter
    was loaded, from an strace -f --pidns-translation log."""
    lines = trace.splitlines()
    init = next((int(line.split()[0]) for line in lines if 'execve("/bin/bash"' in line), None)
    assert init is not None, "no execve of /bin/bash in the trace"
    filtered: set[int] = set()
    out: list[tuple[str, str]] = []
    for line in lines:
        m = _LINE.match(line)
        if not m:
            continue
        pid, name, result, translated, err = int(m.group(1)), m.group(2), m.group(4), m.group(5), m.group(6)
        if pid == init and name == "seccomp" and result not in ("-1", "?") and init not in filtered:
            filtered.add(init)  # the filter is loaded from here on
            continue
        if pid not in filtered:
            continue
        if name in ("clone", "clone3", "fork", "vfork") and result not in ("-1", "?", "0"):
            filtered.add(int(translated or result))  # children inherit the filter
        if result == "-1" and err:
            out.append((name, err))
    return out


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_agent_log_matches_strace(runtime, trixie_bundle, agent, tmp_path):
    if shutil.which("strace") is None:
        pytest.skip("strace not found (make test installs it)")
    trace = Path(os.environ.get("H13_TRACE_DIR", str(tmp_path))) / f"strace-{runtime}.txt"
    proc = _run(runtime, trixie_bundle, agent.socket, tmp_path / "root", strace_to=trace)
    assert proc.returncode == 0, proc.stderr
    agent.stop()
    lines = agent.lines()
    failures = _container_failures(trace.read_text())
    # The calls the filter refuses whatever the arguments: a failure of those is seccomp's.
    from ocishim.patch import patch_profile
    from ocishim.profile import load

    profile = load(str(trixie_bundle / "config.json")).profile
    patched = patch_profile(profile)
    x86 = BY_NAME["x86_64"]
    refused: dict[str, str] = {}
    for name in {n for n, _ in failures}:
        nr = syscalls.resolve("x86_64", name)
        answers = reach.answers(patched.program, x86, nr) if nr is not None else frozenset()
        if len(answers) == 1 and next(iter(answers)) & RET_ACTION_FULL == RET_ERRNO:
            refused[name] = errno.errorcode[next(iter(answers)) & RET_DATA]
    seen = [(n, e) for n, e in failures if refused.get(n) == e]
    notified = {}
    for l in lines:
        if l["event"] == "notified":
            notified[(l["syscall"], l["answer"])] = notified.get((l["syscall"], l["answer"]), 0) + 1
        elif l["event"] == "repeated":
            notified[(l["syscall"], l["answer"])] = notified.get((l["syscall"], l["answer"]), 0) + l["count"]
    strace_counts: dict[tuple[str, str], int] = {}
    for key in seen:
        strace_counts[key] = strace_counts.get(key, 0) + 1
    if runtime == "runc":
        # runc gets NOTIFY only on ocishim's JSON rule (E(A) names); its default answers stay plain.
        strace_counts = {k: v for k, v in strace_counts.items() if k[1] == "ENOSYS"}
    assert strace_counts, "strace saw no refused call"
    assert notified == strace_counts
    detached = [l for l in lines if l["event"] == "detached"]
    assert [d["notifications"] for d in detached] == [sum(strace_counts.values())]


@pytest.mark.parametrize("runtime", ["crun", "runc"])
def test_container_survives_the_agent_killed(runtime, trixie_root, agent, tmp_path):
    """SIGKILL to the agent while the container loops on a notified call (faccessat2): the
    container goes on (the kernel answers ENOSYS now, glibc falls back as before) and ends
    normally; every wait is bounded."""
    script = "for i in $(seq 1 20000); do [ -x /bin/ls ] || exit 3; done; echo survived"
    bundle = _bundle(tmp_path / "loop", trixie_root, script)
    cid = bundles.container_id("h13-kill")
    args = [*_ocishim(), "run", "--runtime", runtime, "--id", cid, "--audit", "--audit-socket", agent.socket,
            str(bundle)]
    root = tmp_path / "root"
    if runtime == "crun":
        args = bundles.crun_prefix() + args + [f"--runtime-arg={a}" for a in bundles.CRUN_ARGS]
    else:
        args += [f"--runtime-arg=--root={root}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(l["event"] == "notified" for l in agent.lines()):
            assert proc.poll() is None, proc.communicate(timeout=10)
            assert time.monotonic() < deadline, "no notification reached the agent"
            time.sleep(0.02)
        os.kill(agent.proc.pid, signal.SIGKILL)
        agent.proc.wait(10)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if runtime == "runc":
            subprocess.run(["runc", f"--root={root}", "delete", "--force", cid], capture_output=True, timeout=30)
    assert (proc.returncode, out) == (0, "survived\n"), err
    detached = [l for l in agent.lines() if l["event"] == "detached"]
    assert not detached  # killed before the container ended: nothing more was written


def test_wrapper_with_audit_settings(trixie_root, agent, tmp_path):
    """ocishim-runtime in front of runc with "audit": "on" in the settings: the config it
    writes sends the listener to the settings' socket, the container runs, the agent logs it."""
    from .test_podman import ocishim_executable

    runc = shutil.which("runc")
    wrapper = ocishim_executable(tmp_path, "ocishim-runtime")
    bundle = _bundle(tmp_path / "bundle", trixie_root, "[ -x /bin/ls ] && echo executable")
    settings_dir = Path(tempfile.mkdtemp(prefix="h13-settings-"))
    try:
        settings = settings_dir / "config.json"
        settings.write_text(json.dumps({"audit": "on", "audit-socket": agent.socket,
                                        "log": str(settings_dir / "ocishim.log")}))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OCISHIM_CONFIG": str(settings),
               "OCISHIM_RUNTIME": runc}
        cid = bundles.container_id("h13-wrap")
        root = tmp_path / "root"
        try:
            proc = subprocess.run([str(wrapper), "--root", str(root), "run", "--bundle", str(bundle), cid],
                                  capture_output=True, text=True, env=env, timeout=TIMEOUT)
        finally:
            subprocess.run([runc, f"--root={root}", "delete", "--force", cid], capture_output=True, timeout=30)
        assert (proc.returncode, proc.stdout) == (0, "executable\n"), proc.stderr
        seccomp = json.loads((bundle / "config.json").read_text())["linux"]["seccomp"]
        assert seccomp["listenerPath"] == agent.socket
    finally:
        shutil.rmtree(settings_dir, ignore_errors=True)
    agent.stop()
    lines = agent.lines()
    assert [l["container"] for l in lines if l["event"] == "attached"] == [cid]
    assert ("faccessat2", "ENOSYS") in {(l["syscall"], l["answer"]) for l in lines if l["event"] == "notified"}
