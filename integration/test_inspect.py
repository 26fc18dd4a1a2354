"""`ocishim inspect` on containers that real runtimes started (issue 10).

Each container runs probe/ptrace_self.c as its first process: for a few seconds it
forks children that ask to be traced (PTRACE_TRACEME) and stop, checks each stops as
its tracee, and counts signals nobody sent it. While it runs, `ocishim inspect` seizes,
reads and detaches it. The probe then says whether anything failed; the container must
exit 0 with failures=0 signals=0 final_tracer=0.

The expected stub is what the runtime is known to load (runc always prepends its own
stub, libcontainer/seccomp/patchbpf; crun loads the annotation's program, ocishim's, or
libseccomp's program alone), and the expected mode is the one the front end was given.
For crun the filter read back is also compared with the bytes crun itself wrote to
<root>/<id>/seccomp.bpf, and with `ocishim patch --format bpf` of the bundle.
"""

from __future__ import annotations

import json
import os
import platform
import select
import shlex
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from . import bundles, dockerd, probes
from .conftest import PROFILES, run_ocishim
from .test_containerd import start_containerd, stop_containerd
from .test_podman import ocishim_executable

pytestmark = pytest.mark.runtime

PROBE = "/bin/ptrace_self"
PROBE_SECONDS = "60"  # at most: the probe ends once the test creates CTL/go
CTL = "/tmp/ctl"  # a host directory bind-mounted read-only into each container
TIMEOUT = 120
PREFIX = "h10-inspect"


@dataclass
class Started:
    proc: subprocess.Popen
    target: str  # what `ocishim inspect` is given: an id, or a pid
    ctl: Path  # the host side of CTL: creating ctl/go lets the probe finish
    roots: tuple[str, ...] = ()  # extra --root for a daemon's private state directory
    crun_state: Path | None = None  # crun's state dir of the container, for seccomp.bpf


@dataclass
class World:
    base: Path
    rootfs: Path
    oci_profile: Path  # linux.seccomp, as runc/crun bundles and ctr take it
    docker_profile: Path  # Docker format, as podman and docker take it
    ocishim: Path
    ocishim_runtime: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def ctl(self, name: str) -> Path:
        path = self.base / "ctl" / name
        path.mkdir(parents=True)
        return path

    def bundle(self, name: str, ctl: Path) -> Path:
        bundle = self.base / "bundles" / name
        seccomp = json.loads(self.oci_profile.read_text())
        bundles.spec(bundle, self.rootfs, [PROBE, PROBE_SECONDS, f"{CTL}/go"], seccomp)
        config = json.loads((bundle / "config.json").read_text())
        config["mounts"].append({"destination": CTL, "type": "bind", "source": str(ctl),
                                 "options": ["bind", "ro"]})
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    if platform.machine() != "x86_64":
        pytest.skip(f"the probe is an x86_64 program, not {platform.machine()}")
    if reason := bundles.missing_runtime("runc") or probes.missing_tools():
        pytest.skip(reason)
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there (the shared test data)")
    base = tmp_path_factory.mktemp(PREFIX)
    root = bundles.busybox_rootfs(base / "rootfs", [probes.build("ptrace_self")])
    os.rename(root / "bin" / probes.build("ptrace_self").name, root / PROBE.lstrip("/"))
    oci = base / "oci.json"
    oci.write_text(json.dumps(bundles.docker_profile()))
    w = World(base, root, oci, PROFILES / "docker-default.json", ocishim_executable(base),
              ocishim_executable(base, "ocishim-runtime"))
    try:
        yield w
    finally:
        for cleanup in reversed(w.cleanups):
            cleanup()


def _popen(argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_started(proc: subprocess.Popen) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if line != "started\n":
        proc.kill()
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"the container did not start: {line!r}{out}\n{err}")


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, f"exit {proc.returncode}: {out}\n{err}"
    return out


def _inspect(started: Started) -> dict:
    args = ["inspect", started.target, "--json"] + [f"--root={r}" for r in started.roots]
    proc = run_ocishim(args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- front ends: each starts the probe in a container and says how to find it ---------

def _runtime_run(world: World, runtime: str, ocishim: bool, mode: str | None = None) -> Started:
    cid = f"{PREFIX}-{uuid.uuid4().hex[:8]}"
    ctl = world.ctl(cid)
    bundle = world.bundle(cid, ctl)
    prefix = bundles.crun_prefix() if runtime == "crun" else []
    globals_ = list(bundles.CRUN_ARGS) if runtime == "crun" else []
    if ocishim:
        argv = [str(world.ocishim), "run", "--runtime", runtime, "--id", cid,
                *(f"--runtime-arg={a}" for a in globals_), *(["--enosys", mode] if mode else []),
                str(bundle)]
    else:
        argv = [runtime, *globals_, "run", "--bundle", str(bundle), cid]
    proc = _popen([*prefix, *argv])
    world.cleanups.append(lambda: subprocess.run([*prefix, runtime, *globals_, "delete", "--force", cid],
                                                 capture_output=True, timeout=60))
    state = Path("/run/crun") / cid if runtime == "crun" else None
    return Started(proc, cid, ctl, (), state)


@pytest.fixture(scope="module")
def podman_hooks(world) -> Path:
    if reason := bundles.missing_runtime("podman"):
        pytest.skip(reason)
    hooks = world.base / "hooks.d"
    proc = subprocess.run([str(world.ocishim), "install", "podman-hook", "--dir", str(hooks),
                           "--ocishim", str(world.ocishim)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return hooks


def _crun_wrapper(world: World) -> Path:
    """crun under runtimes.md's unshare wrapper, named crun so podman allows --cgroups=disabled."""
    wrapper = world.base / "crun-bin" / "crun"
    if not wrapper.exists():
        wrapper.parent.mkdir()
        inner = ('mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup && '
                 f'exec {shlex.quote(shutil.which("crun") or "crun")} "$@"')
        wrapper.write_text(f'#!/bin/sh\nexec unshare -m sh -c {shlex.quote(inner)} sh "$@"\n')
        wrapper.chmod(0o755)
    return wrapper


def _podman(world: World, hooks: Path, runtime: str) -> Started:
    name = f"{PREFIX}-{uuid.uuid4().hex[:8]}"
    ctl = world.ctl(name)
    flags = ["--runtime", "runc"] if runtime == "runc" else ["--runtime", str(_crun_wrapper(world))]
    run_flags = ["--cgroups=disabled"] if runtime == "crun" else []
    proc = _popen(["podman", "--hooks-dir", str(hooks), *flags, "--cgroup-manager", "cgroupfs", "run",
                   "--rm", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024",
                   "--ulimit", "nproc=1024:1024", *run_flags,
                   "--security-opt", f"seccomp={world.docker_profile}", "-v", f"{ctl}:{CTL}:ro",
                   "--rootfs", f"{world.rootfs}:O", PROBE, PROBE_SECONDS, f"{CTL}/go"])
    world.cleanups.append(lambda: subprocess.run(["podman", "rm", "--force", "--ignore", name],
                                                 capture_output=True, timeout=60))
    _wait_started(proc)
    cid = subprocess.run(["podman", "inspect", "--format", "{{.Id}}", name], capture_output=True,
                         text=True, timeout=60).stdout.strip()
    assert cid, f"podman does not know {name}"
    return Started(proc, cid, ctl, (), Path("/run/crun") / cid if runtime == "crun" else None)


@pytest.fixture(scope="module")
def containerd(world):
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if reason := bundles.missing_runtime(tool):
            pytest.skip(reason)
    env = {**os.environ, "OCISHIM_RUNTIME": shutil.which("runc") or "runc"}
    daemon = start_containerd(world.base / "containerd", "", env)
    world.cleanups.append(lambda: stop_containerd(daemon))
    return daemon


@pytest.fixture(scope="module")
def docker(world):
    if reason := dockerd.missing_tools():
        pytest.skip(reason)
    env = {**os.environ, "OCISHIM_RUNTIME": shutil.which("runc") or "runc"}
    daemon = dockerd.start(world.base / "dockerd", {"ocishim": str(world.ocishim_runtime)}, env)
    world.cleanups.append(lambda: dockerd.stop(daemon))
    image = f"ocishim-test/{PREFIX}:busybox"
    tar = subprocess.Popen(["tar", "-C", str(world.rootfs), "--numeric-owner", "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    try:
        imported = daemon.docker("import", "-", image, stdin=tar.stdout)
    finally:
        tar.stdout.close()
        assert tar.wait(timeout=TIMEOUT) == 0
    assert imported.returncode == 0, imported.stderr
    return daemon, image


# --- the tests ----------------------------------------------------------------------------

def _check(started: Started, stub: str | None, matches: list[str]) -> dict:
    """Inspect while the probe runs, then check the probe saw nothing."""
    report = _inspect(started)
    assert started.proc.poll() is None, "the container ended before inspect was done"
    (started.ctl / "go").touch()
    assert len(report["filters"]) == 1, report
    only = report["filters"][0]
    assert only["index"] == 0 and only["length"] > 0
    assert only["stub"] == stub
    assert only["matches"] == matches
    # the probe forks traced children now and then: they are the container's processes too
    assert report["processes"][0] == report["pid"]
    out = _finish(started.proc)
    assert "failures=0" in out and "final_tracer=0" in out and "signals=0" in out, out
    assert int(out.split("iterations=")[1].split()[0]) > 10, out
    return report


def _filter_bytes(pid: int) -> bytes:
    from ocishim.bpf.insn import encode
    from ocishim.inspect import read_filters

    (program,) = read_filters(pid)
    return encode(program)


def _crun_pid(state: Path) -> int:
    """The container's pid from crun's status file, which crun may write after the
    container's process has started (and printed)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return json.loads((state / "status").read_text())["pid"]
        except (FileNotFoundError, ValueError, KeyError):
            assert time.monotonic() < deadline, f"crun wrote no {state}/status"
            time.sleep(0.05)


def test_runc_plain(world):
    started = _runtime_run(world, "runc", ocishim=False)
    _wait_started(started.proc)
    report = _check(started, "runc", ["off"])  # runc's own stub and the profile: ocishim's off on runc
    assert report["filters"][0]["enosys"]["x86_64"][-1][1] == 0x3FFFFFFF


def test_ocishim_run_runc(world):
    started = _runtime_run(world, "runc", ocishim=True)
    _wait_started(started.proc)
    _check(started, "runc", ["unnamed"])


def _crun_checks(world: World, started: Started, mode: str | None) -> None:
    """The filter read back is the bytes crun says it loaded, and, given a mode, what
    `ocishim patch` makes of the bundle's profile in that mode."""
    pid = _crun_pid(started.crun_state)
    loaded = _filter_bytes(pid)
    assert loaded == (started.crun_state / "seccomp.bpf").read_bytes()
    if mode is not None:
        patched = world.base / f"patched-{mode}.bpf"
        proc = run_ocishim(["patch", str(world.oci_profile), "--format", "bpf", "--enosys", mode,
                            "-o", str(patched)])
        assert proc.returncode == 0, proc.stderr
        assert loaded == patched.read_bytes()


def test_crun_plain(world):
    if reason := bundles.missing_runtime("crun"):
        pytest.skip(reason)
    started = _runtime_run(world, "crun", ocishim=False)
    _wait_started(started.proc)
    _crun_checks(world, started, None)
    _check(started, None, [])


def test_ocishim_run_crun_max(world):
    if reason := bundles.missing_runtime("crun"):
        pytest.skip(reason)
    started = _runtime_run(world, "crun", ocishim=True, mode="max")
    _wait_started(started.proc)
    _crun_checks(world, started, "max")
    report = _check(started, "ocishim", ["max"])
    # max: ENOSYS above the highest number the profile names (x86_64: the shared table's).
    assert report["filters"][0]["enosys"]["x86_64"][-1][1] == 0x3FFFFFFF


def test_podman_runc_hook(world, podman_hooks):
    _check(_podman(world, podman_hooks, "runc"), "runc", ["unnamed"])


def test_podman_crun_hook(world, podman_hooks):
    if reason := bundles.missing_runtime("crun"):
        pytest.skip(reason)
    started = _podman(world, podman_hooks, "crun")
    _crun_checks(world, started, None)
    _check(started, "ocishim", ["unnamed"])


def test_containerd_wrapper(world, containerd):
    cid = f"{PREFIX}-{uuid.uuid4().hex[:8]}"
    ctl = world.ctl(cid)
    proc = _popen(["ctr", "--address", containerd.address, "--namespace", containerd.namespace,
                   "run", "--rm", "--seccomp", "--seccomp-profile", str(world.oci_profile),
                   "--runc-binary", str(world.ocishim_runtime),
                   "--mount", f"type=bind,src={ctl},dst={CTL},options=rbind:ro",
                   "--rootfs", str(world.rootfs), cid, PROBE, PROBE_SECONDS, f"{CTL}/go"])
    _wait_started(proc)
    # containerd's shim keeps runc's state under /run/containerd/runc/<namespace>: found by id.
    _check(Started(proc, cid, ctl), "runc", ["unnamed"])


def test_dockerd_wrapper(world, docker):
    daemon, image = docker
    cidfile = world.base / f"{uuid.uuid4().hex[:8]}.cid"
    ctl = world.ctl(cidfile.stem)
    env = {**os.environ, "DOCKER_CONFIG": str(daemon.base / "cli")}
    proc = _popen([dockerd.cli() or "docker", "-H", f"unix://{daemon.socket}", "run", "--rm",
                   "--network", "none", "--cidfile", str(cidfile), "--runtime", "ocishim",
                   "--security-opt", f"seccomp={world.docker_profile}", "-v", f"{ctl}:{CTL}:ro",
                   image, PROBE, PROBE_SECONDS, f"{CTL}/go"], env=env)
    _wait_started(proc)
    cid = cidfile.read_text().strip()
    # A private daemon keeps runc's state under its own exec-root: --root names it.
    roots = tuple(str(p) for p in sorted(daemon.exec_root.glob("runtime-*/moby")))
    assert roots, f"no runtime state under {daemon.exec_root}"
    _check(Started(proc, cid[:12], ctl, roots), "runc", ["unnamed"])
