"""ocishim-runtime under a real containerd (1.6, io.containerd.runc.v2 shim) with runc.

containerd runs here without systemd (runtimes.md): this module starts its own daemon
with a config.toml whose root, state and socket are under a temporary directory, and
stops it by its pid at the end, whatever happened. Containers live in a namespace of
their own, so nothing here can meet another containerd's containers.

The wrapper is what containerd's shim runs as runc (`ctr run --runc-binary`, the same
options.BinaryName the CRI section of examples/containerd/config.toml sets). Two small
recording scripts sit around it, test scaffolding only: one in front of the wrapper
(the command lines the shim sends, and a copy of config.json as containerd wrote it),
one as the real runtime (the command lines the wrapper passes on, then real runc). The
real runtime is chosen by OCISHIM_RUNTIME and the settings by OCISHIM_CONFIG, both in
containerd's environment: the shim passes its environment on to the runtime.
/etc/ocishim/config.json is never written.

Only runc runs here, so the container gets the JSON rewrite plus runc's own stub
(ProbeContract.runc in test_podman.py), not crun's annotation.

The CRI section of the example cannot be exercised without a CRI client, a pod
sandbox image and CNI, none of which this machine has: the test checks that
containerd accepts it, that the CRI plugin loads with the ocishim runtime configured,
and ctr exercises the same BinaryName mechanism.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from . import probes
from .bundles import REPO, busybox_rootfs, missing_runtime
from .conftest import run_ocishim
from .test_podman import ENOSYS, EPERM, ProbeContract, answers, ocishim_executable, probe_profile

pytestmark = pytest.mark.runtime

EXAMPLE = REPO / "examples" / "containerd" / "config.toml"
EXAMPLE_BINARY = "/usr/bin/ocishim-runtime"  # the Debian package's path
STARTUP_TIMEOUT = 30


def _config_toml(base: Path, example: str) -> str:
    """A containerd config: root, state and socket under base, then the example's text
    (which lists runc next to ocishim, as a whole config.toml must for CRI)."""
    text = (f'root = "{base / "root"}"\nstate = "{base / "state"}"\n'
            f"{example}\n"
            f'[grpc]\n  address = "{base / "containerd.sock"}"\n')
    tomllib.loads(text)  # a test bug, not containerd's, if this does not parse
    return text


@dataclass
class Containerd:
    base: Path
    process: subprocess.Popen
    namespace: str
    log: Path

    @property
    def address(self) -> str:
        return str(self.base / "containerd.sock")

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", self.address, "--namespace", self.namespace, *args],
                              capture_output=True, text=True, timeout=timeout)

    def task_dir(self, cid: str) -> Path:
        return self.base / "state" / "io.containerd.runtime.v2.task" / self.namespace / cid


def start_containerd(base: Path, example: str, env: dict[str, str]) -> Containerd:
    """containerd --config FILE in the background; returns once its socket answers."""
    base.mkdir(parents=True, exist_ok=True)
    config = base / "config.toml"
    config.write_text(_config_toml(base, example))
    log = base / "containerd.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    daemon = Containerd(base, proc, f"ocishim-test-{uuid.uuid4().hex[:8]}", log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"containerd exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            # ctr waits for a socket that is not there yet: ask only once it is.
            if os.path.exists(daemon.address) and daemon.ctr(
                    "--connect-timeout", "2s", "version", timeout=10).returncode == 0:
                return daemon
            if time.monotonic() > deadline:
                raise AssertionError(f"containerd did not answer in {STARTUP_TIMEOUT} s:\n"
                                     f"{log.read_text()[-3000:]}")
            time.sleep(0.1)
    except BaseException:
        stop_containerd(daemon)
        raise


def stop_containerd(daemon: Containerd) -> None:
    """Remove what is left in our namespace, then stop the daemon by its pid."""
    try:
        for line in daemon.ctr("task", "ls", "-q", timeout=30).stdout.split():
            daemon.ctr("task", "kill", "-s", "SIGKILL", line, timeout=30)
            for _ in range(50):
                if daemon.ctr("task", "delete", line, timeout=30).returncode == 0:
                    break
                time.sleep(0.1)
        for line in daemon.ctr("container", "ls", "-q", timeout=30).stdout.split():
            daemon.ctr("container", "delete", line, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        daemon.process.send_signal(signal.SIGTERM)  # by its pid: only the daemon we started
        try:
            daemon.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
        # runc's root for our namespace, under the shim's default root.
        shutil.rmtree(f"/run/containerd/runc/{daemon.namespace}", ignore_errors=True)
        remove_namespace_cgroups(daemon.namespace)


def remove_namespace_cgroups(namespace: str) -> None:
    """The namespace's own cgroup in each hierarchy, which ctr's containers sit under
    (/NAMESPACE/ID): runc removes the container's, not that parent. Emptied above, so
    rmdir takes it; one still in use is left."""
    for hierarchy in Path("/sys/fs/cgroup").glob("*/"):
        for directory in (hierarchy / namespace, Path("/sys/fs/cgroup") / namespace):
            try:
                directory.rmdir()
            except OSError:
                pass


@dataclass(frozen=True)
class Setup:
    daemon: Containerd
    wrapper: Path  # what containerd runs as runc: the recorder in front of ocishim-runtime
    wrapper_argv: Path  # one line per call the shim made
    runtime_argv: Path  # one line per call the wrapper passed on to real runc
    originals: Path  # config.json as containerd wrote it, per container id
    settings: Path
    log: Path  # the settings' log file
    rootfs: Path
    profile: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    if reason := probes.missing_tools():
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("containerd")
    originals = base / "originals"
    originals.mkdir()
    ocishim_runtime = ocishim_executable(base, "ocishim-runtime")
    wrapper_argv, runtime_argv = base / "wrapper-argv.log", base / "runtime-argv.log"
    wrapper = base / "ocishim-runtime-recorded"
    wrapper.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {shlex.quote(str(wrapper_argv))}
prev=
for a in "$@"; do
    case "$prev" in --bundle|-b) cp "$a/config.json" {shlex.quote(str(originals))}/"$(basename "$a")".json;; esac
    prev=$a
done
exec {shlex.quote(str(ocishim_runtime))} "$@"
""")
    real = base / "real-runc"
    real.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {shlex.quote(str(runtime_argv))}
exec {shlex.quote(shutil.which("runc"))} "$@"
""")
    for script in (wrapper, real):
        script.chmod(0o755)
    log = base / "ocishim.log"
    settings = base / "settings.json"
    settings.write_text(json.dumps({"log": str(log)}))

    root = busybox_rootfs(base / "rootfs")
    shutil.copy2(probes.build("enosys_probe"), root / "bin" / "enosys_probe")
    profile = base / "profile.json"
    profile.write_text(json.dumps(probe_profile(), indent=1))

    example = EXAMPLE.read_text()
    assert EXAMPLE_BINARY in example
    env = {**os.environ, "OCISHIM_RUNTIME": str(real), "OCISHIM_CONFIG": str(settings)}
    env.pop("PYTHONPATH", None)  # the wrapper must find ocishim by itself
    daemon = start_containerd(base / "daemon", example.replace(EXAMPLE_BINARY, str(wrapper)), env)
    try:
        yield Setup(daemon, wrapper, wrapper_argv, runtime_argv, originals, settings, log, root, profile)
    finally:
        stop_containerd(daemon)


def _run(setup: Setup, cid: str, cmd: Sequence[str], wrapped: bool = True,
         flags: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    runtime = ["--runc-binary", str(setup.wrapper)] if wrapped else []
    return setup.daemon.ctr("run", "--rm", "--seccomp", *flags, *runtime,
                            "--rootfs", str(setup.rootfs), cid, *cmd)


def _probe(setup: Setup, flags: Sequence[str] = (), wrapped: bool = True) -> tuple[str, dict[str, int]]:
    cid = f"probe-{uuid.uuid4().hex[:8]}"
    proc = _run(setup, cid, ["/bin/enosys_probe"], wrapped, flags)
    assert proc.returncode == 0, f"ctr run exited {proc.returncode}:\n{proc.stderr}"
    return cid, answers(proc.stdout)


def _calls(path: Path, cid: str) -> list[list[str]]:
    """The recorded command lines for one container, global flags left out."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else ():
        words = line.split()
        if cid in words:
            i = words.index("--log-format") + 2 if "--log-format" in words else 0
            out.append(words[i:])
    return out


# --- the configuration ------------------------------------------------------------

def test_containerd_accepts_the_example(setup):
    """The example's runtime section loads: CRI is up, with the ocishim runtime in it."""
    plugins = setup.daemon.ctr("plugins", "ls").stdout
    cri = [line.split() for line in plugins.splitlines() if line.split()[:2] == ["io.containerd.grpc.v1", "cri"]]
    assert cri and cri[0][-1] == "ok", plugins
    started = [line for line in setup.daemon.log.read_text().splitlines() if "Start cri plugin with config" in line]
    assert started
    assert re.search(r"ocishim:\{Type:io\.containerd\.runc\.v2 .*Options:map\[BinaryName:"
                     + re.escape(str(setup.wrapper)) + r"\]", started[0]), started[0]


def test_example_alone_keeps_cri(tmp_path):
    if reason := missing_runtime("containerd"):
        pytest.skip(reason)
    daemon = start_containerd(tmp_path, EXAMPLE.read_text(), dict(os.environ))
    try:
        plugins = daemon.ctr("plugins", "ls").stdout
    finally:
        stop_containerd(daemon)
    cri = [line.split() for line in plugins.splitlines() if line.split()[:2] == ["io.containerd.grpc.v1", "cri"]]
    assert cri and cri[0][-1] == "ok", daemon.log.read_text()[-2000:]


# --- the filter a container gets ----------------------------------------------------

def _contract_of(setup: Setup, cid: str) -> ProbeContract:
    """The contract for the profile containerd put into this container's config."""
    original = json.loads((setup.originals / f"{cid}.json").read_text())
    return ProbeContract(original["linux"]["seccomp"])


def test_containerd_default_profile(setup):
    """`--seccomp`: containerd's own default profile, auto mode (the settings' default)."""
    cid, got = _probe(setup)
    contract = _contract_of(setup, cid)
    assert got == contract.runc("auto")
    _, plain = _probe(setup, wrapped=False)
    assert plain == contract.runc("off")


@pytest.mark.parametrize("mode", ["auto", "unnamed", "kernel:5.4"])
def test_profile_file(mode, setup):
    """`--seccomp-profile`: Docker's minus faccessat2, mode per container by annotation."""
    cid, got = _probe(setup, ["--seccomp-profile", str(setup.profile),
                              "--annotation", f"ocishim.enosys={mode}"])
    contract = ProbeContract(probe_profile())
    assert _contract_of(setup, cid).named == contract.named  # containerd passed it as it is
    assert got == contract.runc(mode)
    if mode != "auto":
        assert got["faccessat2"] == ENOSYS
    _, plain = _probe(setup, ["--seccomp-profile", str(setup.profile)], wrapped=False)
    assert plain == contract.runc("off") and plain["faccessat2"] == EPERM


# --- a long-running container: every command goes through the wrapper ----------------

def _wait_stopped(daemon: Containerd, cid: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [line.split() for line in daemon.ctr("task", "ls").stdout.splitlines()[1:]]
        if any(r[0] == cid and r[-1] == "STOPPED" for r in rows):
            return
        time.sleep(0.1)
    raise AssertionError(f"task {cid} did not stop")


def test_lifecycle(setup):
    daemon, cid = setup.daemon, f"long-{uuid.uuid4().hex[:8]}"
    flags = ["--seccomp", "--seccomp-profile", str(setup.profile), "--annotation", "ocishim.enosys=unnamed",
             "--runc-binary", str(setup.wrapper)]
    proc = daemon.ctr("run", "-d", *flags, "--rootfs", str(setup.rootfs), cid, "/bin/sleep", "600")
    assert proc.returncode == 0, proc.stderr

    # The bundle's config.json is what `ocishim patch --format config` makes of the
    # original, with unknown fields and annotations kept.
    bundle_config = json.loads((daemon.task_dir(cid) / "config.json").read_text())
    expected = run_ocishim(["patch", "--format", "config", "--enosys", "unnamed",
                            str(setup.originals / f"{cid}.json")])
    assert expected.returncode == 0, expected.stderr
    assert bundle_config == json.loads(expected.stdout)

    # An exec'd process gets the container's patched filter (runc exec applies it).
    proc = daemon.ctr("task", "exec", "--exec-id", "probe1", cid, "/bin/enosys_probe")
    assert proc.returncode == 0, proc.stderr
    assert answers(proc.stdout) == ProbeContract(probe_profile()).runc("unnamed")

    proc = daemon.ctr("task", "kill", "--signal", "SIGKILL", cid)
    assert proc.returncode == 0, proc.stderr
    _wait_stopped(daemon, cid)
    for args in (("task", "delete", cid), ("container", "delete", cid)):
        proc = daemon.ctr(*args)
        assert proc.returncode == 0, (args, proc.stderr)
    assert cid not in daemon.ctr("container", "ls", "-q").stdout.split()

    calls = _calls(setup.wrapper_argv, cid)
    assert [c[0] for c in calls] == ["create", "start", "exec", "kill", "delete", "delete"], calls
    assert calls[3][-2:] == [cid, "9"]
    # The wrapper passed every command line on unchanged, to the runtime OCISHIM_RUNTIME names.
    assert _calls(setup.runtime_argv, cid) == calls
    logged = [line for line in setup.log.read_text().splitlines() if cid in line]
    assert len(logged) == 1 and re.search(
        rf"info: create: patched {re.escape(str(daemon.task_dir(cid)))}/config\.json "
        r"\(--enosys unnamed\), \d+ instructions$", logged[0]), logged


def test_create_error_reaches_ctr(setup):
    """A bad per-container setting: the wrapper's message in ctr's error, no container."""
    cid = f"bad-{uuid.uuid4().hex[:8]}"
    proc = _run(setup, cid, ["/bin/echo", "container ran"],
                flags=["--annotation", "ocishim.enosys=bogus"])
    assert proc.returncode != 0
    assert "container ran" not in proc.stdout
    assert "OCI runtime create failed: ocishim: annotations.ocishim.enosys: unknown mode 'bogus'" in proc.stderr, proc.stderr
    assert cid not in setup.daemon.ctr("container", "ls", "-q").stdout.split()
    assert cid not in setup.daemon.ctr("task", "ls", "-q").stdout.split()
    # Nothing reached real runc but the shim's cleanup.
    assert [c[0] for c in _calls(setup.runtime_argv, cid)] in ([], ["delete"])


def test_stopping_removes_the_namespace_cgroups(tmp_path):
    """A container run by ctr sits under /NAMESPACE/ID in each cgroup hierarchy; runc
    removes ID, and stop_containerd the NAMESPACE cgroup, so test runs leave none."""
    for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    root = busybox_rootfs(tmp_path / "rootfs")
    daemon = start_containerd(tmp_path / "daemon", EXAMPLE.read_text().replace(EXAMPLE_BINARY, shutil.which("runc")),
                              dict(os.environ))
    stopped = False
    try:
        proc = daemon.ctr("run", "--rm", "--rootfs", str(root), f"cg-{uuid.uuid4().hex[:8]}", "/bin/true")
        assert proc.returncode == 0, proc.stderr
        made = [d for d in Path("/sys/fs/cgroup").glob(f"*/{daemon.namespace}") if d.is_dir()]
        made += [d for d in [Path("/sys/fs/cgroup") / daemon.namespace] if d.is_dir()]
        assert made, "the premise: ctr's container made its namespace's cgroup"
        stop_containerd(daemon)
        stopped = True
        assert [d for d in made if d.exists()] == []
    finally:
        if not stopped:
            stop_containerd(daemon)
