"""Issue 7 acceptance, first bullet: a newer userland just works, through every front end,
with no mode flag and no mode setting.

The userland is Debian trixie (glibc 2.41, bash 5.2), built once by debootstrap and
copied here, plus probe/spawn_probe.c built *dynamically* on the host: inside the
container it runs on trixie's libc.so.6, so pthread_create and posix_spawn are glibc
2.41's. The two cases, and what the contract says of each (semantics.md, `unnamed`,
the default):
- spawn: Docker 20.10.0's profile names no clone3 (nor any rule for it without
  CAP_SYS_ADMIN). glibc >= 2.34 calls clone3 first and falls back to clone only on
  ENOSYS. The plain runtime answers clone3 with the default errno, EPERM (runc's own
  stub only covers numbers above faccessat2, 439, the largest the profile names;
  clone3 is 435), so both calls return EPERM. With ocishim clone3 is unnamed, so
  ENOSYS, and glibc falls back to clone, which the profile allows for these flags.
- test-x: Docker's current profile minus faccessat2. glibc >= 2.33 faccessat() calls
  faccessat2 first and falls back only on ENOSYS; bash `[ -x /bin/ls ]` is false when
  faccessat2 answers EPERM, true with ENOSYS.

Front ends: `ocishim run --runtime runc|crun`, podman with the precreate hook (runc:
the JSON rewrite, crun: the raw BPF annotation), `ocishim-runtime` under containerd
(ctr --runc-binary) and under dockerd (--add-runtime). Each control is the same front
end's plain runtime with the same profile: the same bundle for runc/crun, the same
--security-opt for podman (with no hooks) and docker (--runtime runc), the same
--seccomp-profile for ctr (without --runc-binary).

Profiles reach each front end as a user hands them over: docker and podman take the
Docker-format file and convert it themselves; runc/crun bundles and ctr take the OCI
linux.seccomp, converted here by ocishim's Docker loader (Docker's default caps, the
running kernel, amd64), used identically by the ocishim run and its control.

"No mode setting": the settings file every ocishim process reads (OCISHIM_CONFIG)
names only a log file; no --enosys flag, no ocishim.* annotation anywhere.

Errno values are x86_64 Linux: EPERM 1.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from . import bundles, dockerd, probes, rootfs
from .conftest import PROFILES
from .test_containerd import Containerd, start_containerd, stop_containerd
from .test_podman import ocishim_executable

pytestmark = pytest.mark.runtime

EPERM = 1
TRIXIE_GLIBC = "2.41"
TIMEOUT = 180
PROBE = "/usr/local/bin/spawn_probe"


# --- the cases, with the contract's expectations written out ------------------------

@dataclass(frozen=True)
class Case:
    docker_profile: str  # file name in ../shared/data/profiles
    minus: tuple[str, ...]  # names taken out of the profile
    cmd: tuple[str, ...]
    works: str  # stdout when the userland gets ENOSYS and falls back
    broken: str  # stdout when it gets EPERM


CASES = {
    "spawn": Case("docker-default-20.10.0.json", (), (PROBE,),
                  works="pthread_create 0\nposix_spawn 0\nchild_exit 0\n",
                  broken=f"pthread_create {EPERM}\nposix_spawn {EPERM}\n"),
    "test-x": Case("docker-default.json", ("faccessat2",),
                   ("/bin/bash", "-c", "[ -x /bin/ls ] && echo yes || echo no"),
                   works="yes\n", broken="no\n"),
}


@dataclass(frozen=True)
class Profiles:
    docker: Path  # Docker format: what docker and podman are given
    oci: Path  # OCI linux.seccomp: what bundles and ctr are given


def _without(names: list[str], minus: Sequence[str]) -> list[str]:
    return [n for n in names if n not in minus]


def _write_profiles(case: Case, directory: Path) -> Profiles:
    from ocishim.profile import load, to_oci

    docker = json.loads((PROFILES / case.docker_profile).read_text())
    for rule in docker["syscalls"]:
        rule["names"] = _without(rule["names"], case.minus)
    docker["syscalls"] = [r for r in docker["syscalls"] if r["names"]]
    directory.mkdir(parents=True, exist_ok=True)
    docker_file = directory / "docker.json"
    docker_file.write_text(json.dumps(docker, indent=1))
    # Docker's default caps, the running kernel, the host arch: what dockerd would use.
    oci = to_oci(load(str(docker_file)).profile)
    oci_file = directory / "oci.json"
    oci_file.write_text(json.dumps(oci, indent=1))
    return Profiles(docker_file, oci_file)


# --- module setup: the userland, the profiles, ocishim's executables, settings -------

@dataclass(frozen=True)
class Setup:
    base: Path
    rootfs: Path  # trixie + the probe; shared, read-only to runc/crun, overlaid by podman
    profiles: dict[str, Profiles]
    ocishim: Path
    ocishim_runtime: Path
    settings: Path
    log: Path  # the settings' log: every ocishim process that patched a config says so here

    def env(self) -> dict[str, str]:
        env = {**os.environ, "OCISHIM_CONFIG": str(self.settings)}
        env.pop("PYTHONPATH", None)  # the console scripts find ocishim by themselves
        return env

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def _build_dynamic_probe(dest: Path) -> Path:
    """spawn_probe linked against libc.so.6 (probes.build links statically, which would
    bring the host's glibc 2.36 along instead of using trixie's)."""
    source = probes.SOURCES / "spawn_probe.c"
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(dest), str(source)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"compiling {source.name} failed:\n{proc.stderr}"
    return dest


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the probe and errno values are x86_64 Linux, not {platform.system()} "
                    f"{platform.machine()}")
    if reason := bundles.missing_runtime("runc"):  # also: bundles are written by `runc spec`
        pytest.skip(reason)
    if reason := probes.missing_tools():
        pytest.skip(reason)
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there (the shared test data)")
    try:
        trixie = rootfs.debootstrap_rootfs("trixie")
    except rootfs.RootfsUnavailable as exc:
        pytest.skip(str(exc))
    base = tmp_path_factory.mktemp("newer-userland")
    try:
        # A private copy (~200 MB): the probe goes in, and ctr may write into it.
        root = base / "rootfs"
        subprocess.run(["cp", "-a", str(trixie), str(root)], check=True, timeout=TIMEOUT)
        _build_dynamic_probe(root / PROBE.lstrip("/"))
        log = base / "ocishim.log"
        settings = base / "settings.json"
        settings.write_text(json.dumps({"log": str(log)}) + "\n")
        yield Setup(base=base, rootfs=root,
                    profiles={name: _write_profiles(case, base / "profiles" / name)
                              for name, case in CASES.items()},
                    ocishim=ocishim_executable(base, "ocishim"),
                    ocishim_runtime=ocishim_executable(base, "ocishim-runtime"),
                    settings=settings, log=log)
    finally:
        # The front ends' fixtures (daemons, containers) are finalized before this one.
        shutil.rmtree(base / "rootfs", ignore_errors=True)


# --- front ends -----------------------------------------------------------------------

def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Ran:
    proc: subprocess.CompletedProcess[str]
    marker: str | None  # in the settings' log line of this container's patch; None: no
    # per-container line (ocishim run is called directly, nothing to prove)


class Front:
    """One way of running a container, with or without ocishim in the path."""

    name: str

    def run(self, case: str, with_ocishim: bool) -> Ran:
        raise NotImplementedError


@dataclass
class RunFront(Front):
    """`ocishim run --runtime NAME` against `NAME run` on the same bundle."""

    setup: Setup
    runtime: str
    root: Path
    bundles_dir: Path
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = f"run-{self.runtime}"

    def _prefix(self) -> list[str]:
        return bundles.crun_prefix() if self.runtime == "crun" else []

    def _globals(self) -> list[str]:
        return ["--root", str(self.root)] + (list(bundles.CRUN_ARGS) if self.runtime == "crun" else [])

    def bundle(self, case: str) -> Path:
        bundle = self.bundles_dir / case
        if not (bundle / "config.json").exists():
            seccomp = json.loads(self.setup.profiles[case].oci.read_text())
            bundles.spec(bundle, self.setup.rootfs, CASES[case].cmd, seccomp)
        return bundle

    def run(self, case: str, with_ocishim: bool) -> Ran:
        bundle, cid = self.bundle(case), _new_id("ocishim-nu")
        self.ids.append(cid)
        if with_ocishim:
            argv = [str(self.setup.ocishim), "run", "--runtime", self.runtime, "--id", cid,
                    *(f"--runtime-arg={a}" for a in self._globals()), str(bundle)]
        else:
            argv = [self.runtime, *self._globals(), "run", "--bundle", str(bundle), cid]
        return Ran(subprocess.run([*self._prefix(), *argv], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, env=self.setup.env(), timeout=TIMEOUT),
                   None)

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([*self._prefix(), self.runtime, *self._globals(), "delete", "--force", cid],
                           capture_output=True, timeout=TIMEOUT)


@dataclass
class PodmanFront(Front):
    """podman --hooks-dir HOOKS (the file `ocishim install podman-hook` writes) against an
    empty hooks dir, same --security-opt seccomp=DOCKER_FILE."""

    setup: Setup
    runtime: str
    runtime_flags: tuple[str, ...]
    run_flags: tuple[str, ...]
    hooks: Path
    no_hooks: Path
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = f"podman-{self.runtime}"

    def run(self, case: str, with_ocishim: bool) -> Ran:
        name = _new_id("ocishim-nu")
        self.names.append(name)
        argv = ["podman", "--hooks-dir", str(self.hooks if with_ocishim else self.no_hooks),
                *self.runtime_flags, "--cgroup-manager", "cgroupfs", "run", "--rm", "--name", name,
                "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                *self.run_flags, "--security-opt", f"seccomp={self.setup.profiles[case].docker}",
                # :O = an overlay, so that podman never writes into the shared rootfs
                "--rootfs", f"{self.setup.rootfs}:O", *CASES[case].cmd]
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env=self.setup.env(), timeout=TIMEOUT)
        return Ran(proc, "precreate: patched")  # the hook does not know the container's name

    def cleanup(self) -> None:
        for name in self.names:  # --rm removes them; this is for runs that failed half-way
            subprocess.run(["podman", "rm", "--force", "--ignore", name], capture_output=True,
                           timeout=TIMEOUT)


@dataclass
class ContainerdFront(Front):
    """ctr run --seccomp --seccomp-profile OCI_FILE, with --runc-binary ocishim-runtime or without."""

    setup: Setup
    daemon: Containerd
    name: str = "containerd"

    def run(self, case: str, with_ocishim: bool) -> Ran:
        cid = _new_id("nu")
        wrapper = ["--runc-binary", str(self.setup.ocishim_runtime)] if with_ocishim else []
        proc = self.daemon.ctr("run", "--rm", "--seccomp", "--seccomp-profile",
                               str(self.setup.profiles[case].oci), *wrapper,
                               "--rootfs", str(self.setup.rootfs), cid, *CASES[case].cmd,
                               timeout=TIMEOUT)
        return Ran(proc, f"create: patched {self.daemon.task_dir(cid)}/config.json")


@dataclass
class DockerFront(Front):
    """docker run --runtime ocishim (ocishim-runtime, real runtime runc) against
    --runtime runc, same --security-opt seccomp=DOCKER_FILE, same image."""

    setup: Setup
    daemon: dockerd.Dockerd
    image: str
    name: str = "dockerd"

    def run(self, case: str, with_ocishim: bool) -> Ran:
        cidfile = self.setup.base / f"docker-{uuid.uuid4().hex[:10]}.cid"
        proc = self.daemon.docker(
            "run", "--rm", "--network", "none", "--cidfile", str(cidfile),
            "--runtime", "ocishim" if with_ocishim else "runc",
            "--security-opt", f"seccomp={self.setup.profiles[case].docker}",
            self.image, *CASES[case].cmd, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        cid = cidfile.read_text().strip() if cidfile.exists() else "<no container id>"
        return Ran(proc, f"create: patched {self.daemon.exec_root}/containerd/daemon/"
                         f"io.containerd.runtime.v2.task/moby/{cid}/config.json")


# One fixture per front end, module-scoped: each daemon starts once, and only when a
# test of its front end runs.

@pytest.fixture(scope="module")
def run_runc(setup) -> Iterator[RunFront]:
    front = RunFront(setup, "runc", setup.base / "runc-root", setup.base / "bundles-runc")
    yield front
    front.cleanup()


@pytest.fixture(scope="module")
def run_crun(setup) -> Iterator[RunFront]:
    for tool in ("crun", "unshare"):
        if reason := bundles.missing_runtime(tool):
            pytest.skip(reason)
    front = RunFront(setup, "crun", setup.base / "crun-root", setup.base / "bundles-crun")
    yield front
    front.cleanup()


def _hooks(setup: Setup) -> tuple[Path, Path]:
    hooks, empty = setup.base / "hooks.d", setup.base / "no-hooks.d"
    if not hooks.exists():
        proc = subprocess.run([str(setup.ocishim), "install", "podman-hook", "--dir", str(hooks),
                               "--ocishim", str(setup.ocishim), "--config", str(setup.settings)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        empty.mkdir()
    return hooks, empty


@pytest.fixture(scope="module")
def podman_runc(setup) -> Iterator[PodmanFront]:
    if reason := bundles.missing_runtime("podman"):
        pytest.skip(reason)
    front = PodmanFront(setup, "runc", ("--runtime", "runc"), (), *_hooks(setup))
    yield front
    front.cleanup()


@pytest.fixture(scope="module")
def podman_crun(setup) -> Iterator[PodmanFront]:
    """crun under runtimes.md's unshare wrapper. podman lets only a runtime named crun
    run with --cgroups=disabled, so the wrapper is called crun too."""
    for tool in ("podman", "crun", "unshare"):
        if reason := bundles.missing_runtime(tool):
            pytest.skip(reason)
    (setup.base / "crun-bin").mkdir()
    wrapper = setup.base / "crun-bin" / "crun"
    inner = ('mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup && '
             f'exec {shlex.quote(shutil.which("crun") or "crun")} "$@"')
    wrapper.write_text(f'#!/bin/sh\nexec unshare -m sh -c {shlex.quote(inner)} sh "$@"\n')
    wrapper.chmod(0o755)
    front = PodmanFront(setup, "crun", ("--runtime", str(wrapper)), ("--cgroups=disabled",),
                        *_hooks(setup))
    yield front
    front.cleanup()


@pytest.fixture(scope="module")
def containerd(setup) -> Iterator[ContainerdFront]:
    for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if reason := bundles.missing_runtime(tool):
            pytest.skip(reason)
    # The shim passes containerd's environment on to the runtime it runs.
    env = {**setup.env(), "OCISHIM_RUNTIME": shutil.which("runc") or "runc"}
    daemon = start_containerd(setup.base / "containerd", "", env)
    try:
        yield ContainerdFront(setup, daemon)
    finally:
        stop_containerd(daemon)


@pytest.fixture(scope="module")
def docker(setup) -> Iterator[DockerFront]:
    if reason := dockerd.missing_tools():
        pytest.skip(reason)
    # dockerd -> its containerd -> the shim -> ocishim-runtime: the environment reaches it.
    env = {**setup.env(), "OCISHIM_RUNTIME": shutil.which("runc") or "runc"}
    daemon = dockerd.start(setup.base / "dockerd", {"ocishim": str(setup.ocishim_runtime)}, env)
    try:
        image = "ocishim-test/trixie:newer-userland"
        tar = subprocess.Popen(["tar", "-C", str(setup.rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        try:
            imported = daemon.docker("import", "-", image, stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            assert tar.wait(timeout=TIMEOUT) == 0
        assert imported.returncode == 0, imported.stderr
        yield DockerFront(setup, daemon, image)
    finally:
        dockerd.stop(daemon)


FRONTS = ["run-runc", "run-crun", "podman-runc", "podman-crun", "containerd", "dockerd"]
FIXTURES = {"run-runc": "run_runc", "run-crun": "run_crun", "podman-runc": "podman_runc",
            "podman-crun": "podman_crun", "containerd": "containerd", "dockerd": "docker"}


def _front(request, name: str) -> Front:
    return request.getfixturevalue(FIXTURES[name])


# --- premises the expectations rest on --------------------------------------------------

def _named(oci: dict) -> set[str]:
    return {n for rule in oci["syscalls"] for n in rule["names"]}


def test_premises(setup):
    # The userland: trixie's glibc, and a probe that uses it (dynamically linked).
    libc = rootfs.package_version(setup.rootfs, "libc6")
    assert libc is not None and libc.startswith(TRIXIE_GLIBC + "-"), libc
    needed = subprocess.run(["readelf", "-d", str(setup.rootfs / PROBE.lstrip("/"))],
                            capture_output=True, text=True, check=True).stdout
    assert "Shared library: [libc.so.6]" in needed, needed
    # Without a filter, in the rootfs, both calls work and bash finds /bin/ls executable.
    for case in CASES.values():
        proc = subprocess.run(["chroot", str(setup.rootfs), *case.cmd], capture_output=True,
                              text=True, timeout=60)
        assert (proc.returncode, proc.stdout) == (0, case.works), proc.stderr
    version = subprocess.run(["chroot", str(setup.rootfs), "/lib/x86_64-linux-gnu/libc.so.6"],
                             capture_output=True, text=True, timeout=60).stdout
    assert re.search(rf"\brelease version {re.escape(TRIXIE_GLIBC)}\b", version), version

    # The profiles: an EPERM default, the syscall the userland tries first unnamed, and
    # (for spawn) clone allowed for the flags glibc's fallback uses.
    spawn = json.loads(setup.profiles["spawn"].oci.read_text())
    assert spawn["defaultAction"] == "SCMP_ACT_ERRNO" and spawn.get("defaultErrnoRet", EPERM) == EPERM
    assert "clone3" not in _named(spawn) and "clone" in _named(spawn)
    docker_spawn = json.loads(setup.profiles["spawn"].docker.read_text())
    assert "clone3" not in {n for r in docker_spawn["syscalls"] for n in r["names"]}
    # runc's stub bound: faccessat2 (439) is named, clone3 (435) is below it.
    assert "faccessat2" in _named(spawn)
    test_x = json.loads(setup.profiles["test-x"].oci.read_text())
    assert test_x["defaultAction"] == "SCMP_ACT_ERRNO" and test_x["defaultErrnoRet"] == EPERM
    assert "faccessat2" not in _named(test_x) and "faccessat" in _named(test_x)

    # No mode setting: the settings name only the log.
    assert json.loads(setup.settings.read_text()) == {"log": str(setup.log)}


# --- the acceptance matrix ----------------------------------------------------------------

def _check(front: Front, case: str, with_ocishim: bool, setup: Setup) -> None:
    before = len(setup.log_lines())
    ran = front.run(case, with_ocishim)
    expected = CASES[case].works if with_ocishim else CASES[case].broken
    what = f"{front.name} {'with' if with_ocishim else 'without'} ocishim, {case}"
    assert (ran.proc.returncode, ran.proc.stdout) == (0, expected), \
        f"{what}: exit {ran.proc.returncode}\nstdout:\n{ran.proc.stdout}\nstderr:\n{ran.proc.stderr[-3000:]}"
    # ocishim really was in the path (or really was not): its patch of this container was
    # logged, and the control logged nothing.
    new = setup.log_lines()[before:]
    if not with_ocishim:
        assert new == [], (what, new)
    elif ran.marker is not None:
        assert any(ran.marker in line for line in new), (what, ran.marker, new)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("front_name", FRONTS)
def test_works_with_ocishim(front_name, case, request, setup):
    _check(_front(request, front_name), case, True, setup)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("front_name", FRONTS)
def test_fails_with_the_plain_runtime(front_name, case, request, setup):
    _check(_front(request, front_name), case, False, setup)
