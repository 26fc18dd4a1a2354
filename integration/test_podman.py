"""The podman precreate hook with real podman, runc and crun.

The hooks.d file is the one `ocishim install podman-hook` writes. The probe
(probe/enosys_probe.c, static, in a busybox rootfs) reports what six syscalls answer
inside the container. The expected answers are computed by `ProbeContract` below from
the contract alone: semantics.md (E(A) per mode, the rules that always hold), the
shipped syscall table, the profile's JSON, what the host libseccomp knows (asked
directly through ctypes) and runtimes.md's account of what each runtime does with a
rewritten config:
- crun loads ocishim's program from the run.oci.seccomp_bpf_data annotation, so the
  container gets exactly the semantics of `ocishim exec` / `ocishim run --runtime crun`;
- runc ignores that annotation: only the JSON rule (E(A) names the host libseccomp
  knows) and runc's own stub (ENOSYS above the largest number it resolved) apply.

Errno values are x86_64 Linux: EPERM 1, ENOENT 2, EINVAL 22, ENOSYS 38.
test_containerd.py and test_wrapper.py import ProbeContract and the profile from here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from . import probes, rootfs
from .bundles import REPO, busybox_rootfs, docker_profile, missing_runtime
from .conftest import shared_table_x86_64

EPERM, ENOENT, EINVAL, ENOSYS = 1, 2, 22, 38

pytestmark = pytest.mark.runtime

Version = tuple[int, int]

# --- the contract model, shared with test_containerd.py -----------------------------

# What each probe call gets when it reaches the kernel (6.18), see enosys_probe.c.
KERNEL_ANSWERS = {"faccessat2": 0, "clone3": EINVAL, "fchmodat2": ENOENT, "mseal": 0,
                  "nr1000": ENOSYS, "getpgid": 0}
PROBE_NR = {"faccessat2": 439, "clone3": 435, "fchmodat2": 452, "mseal": 462,
            "nr1000": 1000, "getpgid": 121}
AUDIT_ARCH_X86_64 = 0xC000003E
EXPLICIT_DENY = {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}


def probe_profile() -> dict[str, Any]:
    """Docker's default (OCI form, EPERM default) minus faccessat2, getpgid denied explicitly.

    faccessat2 is the syscall glibc >= 2.33 needs ENOSYS for; the explicit deny shows
    that a named syscall keeps its errno (rule 1).
    """
    profile = docker_profile(minus=["faccessat2", "getpgid"])
    profile["syscalls"].append(dict(EXPLICIT_DENY))
    return profile


@functools.cache
def _libseccomp() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    return lib


@functools.cache
def host_libseccomp_nr(name: str) -> int | None:
    """The x86_64 number the host libseccomp gives name, None when it does not know it."""
    nr = _libseccomp().seccomp_syscall_resolve_name_arch(AUDIT_ARCH_X86_64, name.encode())
    return None if nr < 0 else nr


def _version(text: str) -> Version:
    major, minor = text.split(".")
    return int(major), int(minor)


@dataclass(frozen=True)
class ProbeContract:
    """What each enosys_probe call answers under an OCI linux.seccomp, per the contract."""

    profile: dict[str, Any]

    @cached_property
    def table(self) -> dict[str, tuple[Version, int]]:
        return shared_table_x86_64()

    @cached_property
    def named(self) -> frozenset[str]:
        return frozenset(n for rule in self.profile["syscalls"] for n in rule["names"])

    @cached_property
    def default_errno(self) -> int:
        assert self.profile["defaultAction"] == "SCMP_ACT_ERRNO"
        return self.profile.get("defaultErrnoRet", EPERM)

    @cached_property
    def baseline(self) -> Version:
        """auto mode's baseline(x86_64): the newest since() among named names."""
        return max(self.table[n][0] for n in self.named if n in self.table)

    def nr(self, name: str) -> int:
        return PROBE_NR[name] if name in PROBE_NR else self.table[name][1]

    def since(self, call: str) -> Version | None:
        """None: unknown(x86_64, nr) (nr1000 is in no table)."""
        entry = self.table.get(call)
        return entry[0] if entry else None

    def rule_answer(self, call: str) -> int:
        """What the profile's own rule for a named call answers (no argument conditions here)."""
        rules = [r for r in self.profile["syscalls"] if call in r["names"]]
        assert len(rules) == 1 and not rules[0].get("args"), rules
        if rules[0]["action"] == "SCMP_ACT_ALLOW":
            return KERNEL_ANSWERS[call]
        assert rules[0]["action"] == "SCMP_ACT_ERRNO", rules[0]
        return rules[0].get("errnoRet", EPERM)

    def in_enosys_set(self, call: str, mode: str) -> bool:
        """call's number is in E(x86_64) for --enosys mode (semantics.md); call is a
        probe call or any name of the table."""
        if call in self.named or mode == "off":
            return False
        since = self.since(call)
        if mode == "unnamed":
            return True
        if mode == "max":
            return self.nr(call) > max(self.table[n][1] for n in self.named if n in self.table)
        base = self.baseline if mode == "auto" else _version(mode.removeprefix("kernel:"))
        return since is None or since > base

    def emulated(self, call: str, emulate: str | None) -> bool:
        since = self.since(call)
        return emulate is not None and (since is None or since > _version(emulate))

    def bpf(self, mode: str, emulate: str | None = None) -> dict[str, int]:
        """ocishim's program as loaded (crun's annotation, ocishim exec): the whole contract.
        Named calls keep their rule whether or not the host libseccomp knows them (rule 7)."""
        out = {}
        for call in KERNEL_ANSWERS:
            if self.emulated(call, emulate):
                out[call] = ENOSYS
            elif call in self.named:
                out[call] = self.rule_answer(call)
            elif self.in_enosys_set(call, mode):
                out[call] = ENOSYS
            else:
                out[call] = self.default_errno
        return out

    def plain_crun(self) -> dict[str, int]:
        """crun with the profile only: rules for names the host libseccomp lacks are dropped."""
        return {call: self.rule_answer(call)
                if call in self.named and host_libseccomp_nr(call) is not None
                else self.default_errno for call in KERNEL_ANSWERS}

    def runc(self, mode: str = "off") -> dict[str, int]:
        """runc with the config rewritten for mode (off: as without ocishim).

        The JSON rule holds the calls of E(A) the host libseccomp knows; runc drops
        rules for unknown names and prepends "nr > largest resolved number -> ENOSYS".
        """
        # Any name of E(x86_64) may be in the rule, and raise runc's maximum.
        rule = {n for n in (*self.table, *KERNEL_ANSWERS)
                if self.in_enosys_set(n, mode) and host_libseccomp_nr(n) is not None}
        resolved = [nr for n in self.named | rule if (nr := host_libseccomp_nr(n)) is not None]
        runc_max = max(resolved)
        out = {}
        for call in KERNEL_ANSWERS:
            if call in self.named and host_libseccomp_nr(call) is not None:
                out[call] = self.rule_answer(call)
            elif call in rule or self.nr(call) > runc_max:
                out[call] = ENOSYS
            else:
                out[call] = self.default_errno
        return out


def answers(stdout: str) -> dict[str, int]:
    return {name: int(value) for name, value in (line.split() for line in stdout.splitlines())}


ENTRY_POINTS = {"ocishim": "ocishim.cli", "ocishim-runtime": "ocishim.runtime"}


def ocishim_executable(tmp: Path, name: str = "ocishim") -> Path:
    """The `ocishim`/`ocishim-runtime` console script of make test's .venv, else the same
    kind of script for this checkout and this Python: podman runs hooks with an empty
    environment, and the wrapper knows itself by argv[0] (a `sh -c python` script hides it)."""
    venv = REPO / ".venv" / "bin" / name
    if venv.is_file() and os.access(venv, os.X_OK):
        return venv
    script = tmp / name
    script.write_text(f"#!{sys.executable}\n"
                      "import sys\n"
                      f"sys.path.insert(0, {str(REPO)!r})\n"
                      f"from {ENTRY_POINTS[name]} import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    return script


# --- podman ----------------------------------------------------------------------

TRIXIE_GLIBC = "2.41"
BASH_TEST_X = "[ -x /bin/ls ] && echo yes || echo no"
NAME_PREFIX = "ocishim-podman-test"


@dataclass(frozen=True)
class Runtime:
    """How podman is told to use a runtime on this machine kind (runtimes.md)."""
    name: str
    global_flags: tuple[str, ...]
    run_flags: tuple[str, ...] = ()


@dataclass
class Podman:
    rootfs: Path
    empty_hooks: Path
    names: list[str]

    def run(self, runtime: Runtime, cmd: Sequence[str], hooks: Path | None = None,
            extra: Sequence[str] = (), rootfs: str | None = None,
            name: str | None = None) -> subprocess.CompletedProcess[str]:
        name = name or self.new_name()
        argv = ["podman", "--hooks-dir", str(hooks or self.empty_hooks), *runtime.global_flags,
                "--cgroup-manager", "cgroupfs", "run", "--rm", "--name", name,
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                *runtime.run_flags, *extra, "--rootfs", rootfs or str(self.rootfs), *cmd]
        return subprocess.run(argv, capture_output=True, text=True, timeout=180)

    def probe(self, runtime: Runtime, hooks: Path | None, extra: Sequence[str] = ()) -> dict[str, int]:
        proc = self.run(runtime, ["/bin/enosys_probe"], hooks, extra)
        assert proc.returncode == 0, f"podman exited {proc.returncode}:\n{proc.stderr}"
        return answers(proc.stdout)

    def new_name(self) -> str:
        name = f"{NAME_PREFIX}-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name


def _leftover(name: str) -> bool:
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}"],
                         capture_output=True, text=True, timeout=60).stdout
    return name in out.split()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    for tool in ("podman", "runc"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    if platform.machine() != "x86_64":
        pytest.skip(f"the probe is an x86_64 program, not {platform.machine()}")
    if reason := probes.missing_tools():
        pytest.skip(reason)
    return tmp_path_factory.mktemp("podman")


@pytest.fixture(scope="module")
def ocishim_exe(workdir) -> Path:
    return ocishim_executable(workdir)


@pytest.fixture(scope="module")
def hooks(workdir, ocishim_exe) -> Path:
    """A hooks directory with exactly the file `ocishim install podman-hook` writes."""
    directory = workdir / "hooks.d"
    proc = subprocess.run([str(ocishim_exe), "install", "podman-hook", "--dir", str(directory),
                           "--ocishim", str(ocishim_exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in directory.iterdir()] == ["ocishim-precreate.json"]
    return directory


@pytest.fixture(scope="module")
def podman(workdir) -> Iterator[Podman]:
    probe = probes.build("enosys_probe")
    root = busybox_rootfs(workdir / "rootfs")
    shutil.copy2(probe, root / "bin" / "enosys_probe")
    empty = workdir / "no-hooks.d"
    empty.mkdir()
    p = Podman(root, empty, [])
    try:
        yield p
    finally:
        for name in p.names:  # --rm removes them; this is for runs that failed half-way
            subprocess.run(["podman", "rm", "--force", "--ignore", name],
                           capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def runc() -> Runtime:
    return Runtime("runc", ("--runtime", "runc"))


@pytest.fixture(scope="module")
def crun(workdir) -> Runtime:
    """crun under runtimes.md's unshare wrapper. podman lets only a runtime named crun
    (or krun) run with --cgroups=disabled, so the wrapper is called crun too."""
    if reason := missing_runtime("crun"):
        pytest.skip(reason)
    real = shutil.which("crun")
    (workdir / "crun-bin").mkdir()
    wrapper = workdir / "crun-bin" / "crun"
    inner = ('mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup && '
             f'exec {shlex.quote(real)} "$@"')
    wrapper.write_text(f'#!/bin/sh\nexec unshare -m sh -c {shlex.quote(inner)} sh "$@"\n')
    wrapper.chmod(0o755)
    return Runtime("crun", ("--runtime", str(wrapper)), ("--cgroups=disabled",))


@pytest.fixture(scope="module")
def profile_file(workdir) -> Path:
    path = workdir / "profile.json"
    path.write_text(json.dumps(probe_profile(), indent=1))
    return path


@pytest.fixture(scope="module")
def contract() -> ProbeContract:
    return ProbeContract(probe_profile())


def _seccomp(profile_file: Path, *annotations: str) -> list[str]:
    out = ["--security-opt", f"seccomp={profile_file}"]
    for a in annotations:
        out += ["--annotation", a]
    return out


# --- the hooks.d file -------------------------------------------------------------

def test_installed_hook_is_the_example(hooks, ocishim_exe, workdir):
    """install writes examples/podman/ocishim-precreate.json, with the given path."""
    written = json.loads((hooks / "ocishim-precreate.json").read_text())
    example = json.loads((REPO / "examples" / "podman" / "ocishim-precreate.json").read_text())
    assert example["hook"]["path"] == "/usr/bin/ocishim"  # the Debian package's path
    example["hook"]["path"] = str(ocishim_exe)
    assert written == example

    # --config adds only the hook's environment (podman runs hooks with an empty one).
    settings = workdir / "settings-for-install.json"
    settings.write_text("{}")  # install refuses a settings file that is not there
    proc = subprocess.run([str(ocishim_exe), "install", "podman-hook", "--dir", str(workdir / "h2"),
                           "--ocishim", str(ocishim_exe), "--config", str(settings)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with_config = json.loads((workdir / "h2" / "ocishim-precreate.json").read_text())
    example["hook"]["env"] = [f"OCISHIM_CONFIG={settings}"]
    assert with_config == example


# --- premises the expectations rest on ------------------------------------------

def test_premises(contract):
    # Docker's profile names syscalls up to 6.13, so auto mode's baseline is 6.13 and
    # faccessat2 (5.8, unnamed here) is "old": auto keeps EPERM for it.
    assert contract.baseline == (6, 13)
    assert contract.since("faccessat2") == (5, 8) and "faccessat2" not in contract.named
    assert contract.since("nr1000") is None  # unknown(x86_64, 1000)
    # Debian 12's libseccomp knows faccessat2 and fchmodat2 (backported), not mseal:
    # plain runtimes drop the profile's mseal rule, ocishim compiles it (rule 7).
    assert host_libseccomp_nr("faccessat2") == 439 and host_libseccomp_nr("fchmodat2") == 452
    assert host_libseccomp_nr("mseal") is None
    assert contract.default_errno == EPERM


# --- podman + crun: the whole program through the annotation -------------------------

CRUN_CASES = {
    "off": ("off", None),
    "auto": ("auto", None),
    "unnamed": ("unnamed", None),
    "max": ("max", None),
    "kernel:5.7": ("kernel:5.7", None),
    "emulate-5.4": ("auto", "5.4"),
}


def test_crun_without_hook(podman, crun, profile_file, contract):
    """The baseline: crun drops the mseal rule and has no stub at all."""
    got = podman.probe(crun, None, _seccomp(profile_file))
    assert got == contract.plain_crun() == {**KERNEL_ANSWERS, "faccessat2": EPERM, "clone3": ENOSYS,
                                            "mseal": EPERM, "nr1000": EPERM, "getpgid": EPERM,
                                            "fchmodat2": ENOENT}


@pytest.mark.parametrize("case", list(CRUN_CASES))
def test_crun_with_hook(case, podman, crun, hooks, profile_file, contract):
    """Per-container mode by annotation; the container gets ocishim's program exactly."""
    mode, emulate = CRUN_CASES[case]
    notes = [f"ocishim.enosys={mode}"] + ([f"ocishim.emulate-kernel={emulate}"] if emulate else [])
    got = podman.probe(crun, hooks, _seccomp(profile_file, *notes))
    assert got == contract.bpf(mode, emulate), case


# --- podman + runc: the JSON rule and runc's own stub -----------------------------

@pytest.mark.parametrize("mode", ["auto", "unnamed", "kernel:5.4"])
def test_runc_with_hook(mode, podman, runc, hooks, profile_file, contract):
    got = podman.probe(runc, hooks, _seccomp(profile_file, f"ocishim.enosys={mode}"))
    assert got == contract.runc(mode), mode
    # runc cannot get the mseal rule (unknown to the host libseccomp): its stub says
    # ENOSYS above 456, where crun with the annotation says ALLOW.
    assert got["mseal"] == ENOSYS


def test_runc_without_hook(podman, runc, profile_file, contract):
    got = podman.probe(runc, None, _seccomp(profile_file))
    assert got == contract.runc("off")
    assert got["faccessat2"] == EPERM  # what the hook changes in unnamed and kernel:X modes


def test_podman_default_profile(podman, runc, crun, hooks):
    """podman's own default profile (containers-common) answers ENOSYS by default:
    rule 2, no stub. The hook then changes nothing a probe call can see."""
    default = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    assert default["defaultAction"] == "SCMP_ACT_ERRNO" and default["defaultErrnoRet"] == ENOSYS
    for runtime in (runc, crun):
        without = podman.probe(runtime, None)
        assert podman.probe(runtime, hooks) == without, runtime.name
        # Unnamed calls get the profile's own ENOSYS default (nothing here names mseal).
        assert without["mseal"] == without["nr1000"] == ENOSYS


# --- a real newer userland: bash `[ -x ]` with glibc 2.41 ------------------------------

@pytest.fixture(scope="module")
def trixie(workdir) -> Path:
    try:
        root = rootfs.debootstrap_rootfs("trixie")
    except rootfs.RootfsUnavailable as exc:
        pytest.skip(str(exc))
    libc = rootfs.package_version(root, "libc6")
    assert libc is not None and libc.startswith(TRIXIE_GLIBC + "-"), libc
    return root


@pytest.mark.parametrize("runtime_name,mode", [("runc", "unnamed"), ("runc", "kernel:5.4"),
                                               ("crun", "kernel:5.4")])
def test_trixie_bash_test_x(runtime_name, mode, request, podman, hooks, profile_file, trixie):
    """glibc >= 2.33 tries faccessat2 first and falls back only on ENOSYS. Under this
    profile auto mode keeps EPERM for faccessat2 (baseline 6.13, see test_premises);
    unnamed and kernel:5.4 put it in E(A)."""
    runtime = request.getfixturevalue(runtime_name)
    # :O = an overlay on the shared cached rootfs, so that podman never writes into it.
    rootfs_arg = f"{trixie}:O"
    cmd = ["/bin/bash", "-c", BASH_TEST_X]
    with_hook = podman.run(runtime, cmd, hooks, _seccomp(profile_file, f"ocishim.enosys={mode}"),
                           rootfs=rootfs_arg)
    assert (with_hook.returncode, with_hook.stdout) == (0, "yes\n"), with_hook.stderr
    without = podman.run(runtime, cmd, None, _seccomp(profile_file), rootfs=rootfs_arg)
    assert (without.returncode, without.stdout) == (0, "no\n"), without.stderr


# --- settings, the log, failures ----------------------------------------------------

@pytest.fixture
def logged_hooks(tmp_path, ocishim_exe) -> tuple[Path, Path, Path]:
    """A hook whose settings file (via --config) sets kernel:5.4 and logs to a file."""
    log = tmp_path / "ocishim.log"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"enosys": "kernel:5.4", "log": str(log)}))
    directory = tmp_path / "hooks.d"
    subprocess.run([str(ocishim_exe), "install", "podman-hook", "--dir", str(directory),
                    "--ocishim", str(ocishim_exe), "--config", str(settings)],
                   check=True, capture_output=True, timeout=60)
    return directory, settings, log


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ocishim\[\d+\]: (info|error): (.*)$")


def _log_messages(log: Path) -> list[tuple[str, str]]:
    lines = log.read_text().splitlines()
    matches = [LOG_LINE.match(line) for line in lines]
    assert all(matches), lines
    return [(m.group(1), m.group(2)) for m in matches]


def test_settings_file_and_log(podman, runc, logged_hooks, profile_file, contract):
    hooks_dir, _, log = logged_hooks
    assert podman.probe(runc, hooks_dir, _seccomp(profile_file)) == contract.runc("kernel:5.4")
    # An annotation overrides the settings file for one container.
    assert podman.probe(runc, hooks_dir, _seccomp(profile_file, "ocishim.enosys=off")) \
        == contract.runc("off")
    (l1, m1), (l2, m2) = _log_messages(log)
    assert l1 == l2 == "info"
    assert re.fullmatch(r"precreate: patched \(--enosys kernel:5\.4\): \d+ instructions, "
                        r"JSON rule with [1-9]\d* names", m1), m1
    assert re.fullmatch(r"precreate: patched \(--enosys off\): \d+ instructions, "
                        r"JSON rule with 0 names", m2), m2


@pytest.mark.parametrize("stdin,message", [
    ("garbage\n", "ocishim: stdin: invalid JSON at line 1 column 1"),
    ("[1, 2]\n", "ocishim: stdin: the config must be a JSON object"),
])
def test_hook_garbage_stdin(stdin, message, ocishim_exe, tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "OCISHIM_CONFIG": str(tmp_path / "absent.json")}
    proc = subprocess.run([str(ocishim_exe), "hook", "precreate"], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""  # podman must not get a config to run
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("runtime_name", ["runc", "crun"])
def test_failing_hook_stops_the_container(runtime_name, request, podman, logged_hooks):
    """A bad per-container setting fails the hook: no container, the reason in the log."""
    runtime = request.getfixturevalue(runtime_name)
    hooks_dir, _, log = logged_hooks
    name = podman.new_name()
    proc = podman.run(runtime, ["/bin/echo", "container ran"], hooks_dir,
                      ["--annotation", "ocishim.enosys=bogus"], name=name)
    assert proc.returncode != 0
    assert "container ran" not in proc.stdout
    assert "precreate" in proc.stderr and "exit status 2" in proc.stderr, proc.stderr
    assert not _leftover(name)
    [(level, message)] = _log_messages(log)
    assert level == "error"
    assert "unknown mode 'bogus'" in message and "the container is not created" in message


def test_broken_settings_file_stops_the_container(podman, runc, logged_hooks):
    hooks_dir, settings, _ = logged_hooks
    settings.write_text("{not json")
    name = podman.new_name()
    proc = podman.run(runc, ["/bin/echo", "container ran"], hooks_dir, name=name)
    assert proc.returncode != 0 and "container ran" not in proc.stdout
    assert "exit status 2" in proc.stderr, proc.stderr
    assert not _leftover(name)
