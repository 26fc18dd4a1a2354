"""Issue acceptance for `ocishim run`: real containers under crun and runc.

Every expectation is derived from ../shared/design/semantics.md and runtimes.md, the
shipped syscall table (../shared/data/syscalls/syscalls.csv), the profiles and what
the host's libseccomp knows (asked directly through ctypes, as runc and crun link it),
never from ocishim's own output. Where ocishim's output is used (`explain`), it is
checked against that derivation.

crun refuses this machine's hybrid cgroups, so every crun command, `ocishim run
--runtime crun` included, runs under bundles.crun_prefix() (a private mount namespace
with a cgroup2 mount). Each runtime gets a private --root, so `list` shows only the
containers of these tests; one test uses crun's default root /run/crun to check the
documented place of seccomp.bpf.

Errno values are x86_64 Linux: EPERM 1, ENOENT 2, ENOSYS 38.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytest

from . import bundles, probes, rootfs
from .conftest import PROFILES, REPO, SYSCALLS_CSV, run_ocishim, shared_table_x86_64

EPERM, ENOENT, ENOSYS = 1, 2, 38

pytestmark = pytest.mark.runtime

Version = tuple[int, int]

TIMEOUT = 60  # per runtime command; a container of these tests runs for well under a second


# --- the data the expectations come from -------------------------------------------

TABLE = shared_table_x86_64() if SYSCALLS_CSV.exists() else {}


def _named(seccomp: dict) -> set[str]:
    return {n for rule in seccomp.get("syscalls") or () for n in rule["names"]}


def _baseline(seccomp: dict) -> Version:
    """baseline(x86_64) of `auto`: the newest since() among named syscalls."""
    return max(TABLE[n][0] for n in _named(seccomp) if n in TABLE)


def _enosys_set(seccomp: dict, baseline: Version) -> dict[str, int]:
    """E(x86_64) restricted to the table's names: unnamed and newer than baseline."""
    named = _named(seccomp)
    return {n: nr for n, (since, nr) in TABLE.items() if n not in named and since > baseline}


class _Libseccomp:
    """The host libseccomp, the one runc and crun compile profiles with."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")

        class _Version(ctypes.Structure):
            _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

        lib.seccomp_version.restype = ctypes.POINTER(_Version)
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        self._lib = lib
        v = lib.seccomp_version().contents
        self.version = f"{v.major}.{v.minor}.{v.micro}"

    def nr(self, name: str) -> int | None:
        """The native (x86_64) number libseccomp gives name, None when it does not know it."""
        nr = self._lib.seccomp_syscall_resolve_name(name.encode())
        return nr if nr >= 0 else None

    def runc_max(self, seccomp: dict) -> int:
        """runc's stub bound (patchbpf): the largest number libseccomp resolves among the names."""
        return max(nr for nr in map(self.nr, _named(seccomp)) if nr is not None)


def _docker_minus_faccessat2() -> dict:
    """Docker's default (OCI form, EPERM default) minus faccessat2, with getpgid moved
    to an explicit deny so that the probe sees an explicit EPERM (rule 1)."""
    seccomp = bundles.docker_profile(minus=["faccessat2", "getpgid"])
    seccomp["syscalls"].append({"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})
    return seccomp


def _docker_20_10_minus_faccessat2() -> dict:
    """Docker 20.10.0's profile as a runtime receives it (amd64, Docker's default caps,
    the running kernel 6.18), minus faccessat2: the profile before Docker added it."""
    from ocishim.profile import load, to_oci

    seccomp = to_oci(load(str(PROFILES / "docker-default-20.10.0.json"), kernel=(6, 18),
                          arch="amd64").profile)
    for rule in seccomp["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "faccessat2"]
    seccomp["syscalls"] = [r for r in seccomp["syscalls"] if r["names"]]
    seccomp["defaultErrnoRet"] = EPERM
    return seccomp


# --- runtimes -----------------------------------------------------------------------

def _hash_tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@dataclass
class Runtime:
    """crun or runc with a private state root; remembers the ids it was given to clean up."""

    name: str
    root: Path | None  # None: the runtime's default root
    tmpdir: Path  # TMPDIR of `ocishim run`: where its private bundle goes
    created: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        return bundles.crun_prefix() if self.name == "crun" else []

    @property
    def global_args(self) -> list[str]:
        root = ["--root", str(self.root)] if self.root is not None else []
        return root + (list(bundles.CRUN_ARGS) if self.name == "crun" else [])

    def new_id(self) -> str:
        cid = bundles.container_id()
        self.created.append(cid)
        return cid

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, self.name, *self.global_args, *args]

    def run_plain(self, bundle: Path | str, cid: str, cwd: Path | None = None,
                  **kw: Any) -> subprocess.CompletedProcess[str]:
        """`RUNTIME run` of the bundle as it is: what the runtime does without ocishim.
        With cwd, run there with PWD set as a shell sets it (runc's os.Getwd() reads it)."""
        if cwd is not None:
            kw.update(cwd=cwd, env={**os.environ, "PWD": str(cwd)})
        return subprocess.run(self.command("run", "--bundle", str(bundle), cid),
                              capture_output=True, text=True, timeout=TIMEOUT, **kw)

    def ocishim_command(self, bundle: Path | str, cid: str, flags: Sequence[str] = ()) -> list[str]:
        runtime_args = [f"--runtime-arg={a}" for a in self.global_args]
        return [*self.prefix, sys.executable, "-m", "ocishim", "run", "--runtime", self.name,
                "--id", cid, *runtime_args, *flags, str(bundle)]

    def env(self, cwd: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["TMPDIR"] = str(self.tmpdir)
        if cwd is not None:
            env["PWD"] = str(cwd)  # as a shell sets it; runc's os.Getwd() reads it
        return env

    def run_ocishim(self, bundle: Path | str, cid: str, flags: Sequence[str] = (),
                    cwd: Path | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        return subprocess.run(self.ocishim_command(bundle, cid, flags), text=True, cwd=cwd,
                              env=self.env(cwd), timeout=TIMEOUT, **kw)

    def ids(self) -> list[str]:
        proc = subprocess.run([self.name, *(["--root", str(self.root)] if self.root else []), "list"],
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
        return [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()]

    def leftovers(self) -> list[str]:
        """What `ocishim run` left in its TMPDIR (nothing, when it cleaned up)."""
        return sorted(p.name for p in self.tmpdir.iterdir())

    def cleanup(self) -> None:
        for cid in self.created:
            subprocess.run(self.command("delete", "--force", cid), capture_output=True,
                           timeout=TIMEOUT)
        self.created.clear()


def _runtime(name: str, factory: pytest.TempPathFactory, default_root: bool = False) -> Runtime:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the probes are x86_64 Linux programs, not {platform.system()} {platform.machine()}")
    if reason := bundles.missing_runtime(name):
        pytest.skip(reason)
    if name == "crun" and (reason := bundles.missing_runtime("unshare")):
        pytest.skip(reason)
    root = None if default_root else factory.mktemp(f"{name}-root")
    return Runtime(name, root, factory.mktemp(f"{name}-tmpdir"))


@pytest.fixture
def crun(tmp_path_factory):
    rt = _runtime("crun", tmp_path_factory)
    yield rt
    rt.cleanup()


@pytest.fixture
def runc(tmp_path_factory):
    rt = _runtime("runc", tmp_path_factory)
    yield rt
    rt.cleanup()


@pytest.fixture(params=["crun", "runc"])
def runtime(request, tmp_path_factory):
    rt = _runtime(request.param, tmp_path_factory)
    yield rt
    rt.cleanup()


@pytest.fixture(autouse=True, scope="module")
def _shared_data() -> None:
    for path in (PROFILES, SYSCALLS_CSV):
        if not path.exists():
            pytest.skip(f"{path} is not there (the shared test data)")


@pytest.fixture(scope="module")
def libseccomp() -> _Libseccomp:
    try:
        return _Libseccomp()
    except OSError as exc:
        pytest.skip(f"no host libseccomp: {exc}")


@pytest.fixture(scope="module")
def probe_bins() -> dict[str, Path]:
    if reason := probes.missing_tools():
        pytest.skip(reason)
    return {name: probes.build(name) for name in ("enosys_probe", "syscall_probe")}


@pytest.fixture(scope="module")
def busybox(tmp_path_factory, probe_bins) -> Path:
    """A busybox-static rootfs with the static probes in /bin."""
    if not bundles.BUSYBOX.exists():
        pytest.skip("/bin/busybox missing (apt-get install busybox-static)")
    return bundles.busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs", probe_bins.values())


@pytest.fixture(scope="module")
def trixie() -> Path:
    try:
        return rootfs.debootstrap_rootfs("trixie")
    except rootfs.RootfsUnavailable as exc:
        pytest.skip(str(exc))


def _bundle_for(tmp_path: Path, rootfs_dir: Path, args: Sequence[str], seccomp: dict | None,
                name: str = "bundle") -> Path:
    """tmp_path/name, a bundle as `runc spec` writes it, running args in rootfs_dir."""
    if shutil.which("runc") is None:
        pytest.skip("the bundles are written by `runc spec`: runc not found (make test installs it)")
    bundle = tmp_path / name
    bundles.spec(bundle, rootfs_dir, args, seccomp)
    return bundle


def _answers(out: str) -> dict[str, int]:
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def _ok(proc: subprocess.CompletedProcess[str], what: str) -> str:
    assert proc.returncode == 0, (f"{what} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                  f"stderr:\n{proc.stderr}")
    return proc.stdout


def _ocishim_ok(rt: Runtime, bundle: Path, flags: Sequence[str] = ()) -> str:
    cid = rt.new_id()
    out = _ok(rt.run_ocishim(bundle, cid, flags), f"ocishim run --runtime {rt.name} {' '.join(flags)}")
    assert cid not in rt.ids(), f"ocishim run left container {cid} behind"
    assert rt.leftovers() == [], f"ocishim run left {rt.leftovers()} in its TMPDIR"
    return out


def _plain_ok(rt: Runtime, bundle: Path) -> str:
    return _ok(rt.run_plain(bundle, rt.new_id()), f"{rt.name} run (no ocishim)")


def _probe_cmd(probe: Path, calls: dict[str, tuple[int, Sequence[int]]]) -> list[str]:
    """syscall_probe arguments: LABEL=NR:ARGS per call."""
    return [f"/bin/{probe.name}"] + [
        f"{label}={nr}" + (f":{','.join(str(a) for a in args)}" if args else "")
        for label, (nr, args) in calls.items()]


class _Waiting:
    """A process whose stdout is read line by line with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def line(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if ready:
                return self.proc.stdout.readline()
        raise AssertionError(f"no output within {timeout} s")


# A container that says when it is ready and exits with 128+signal on SIGTERM/SIGINT.
# It traps them because a container's init ignores signals it has no handler for
# (busybox `sleep` as pid 1 would never end on SIGTERM, under any runtime).
TRAPPING = ["sh", "-c", 'trap "exit 143" TERM; trap "exit 130" INT; echo ready; sleep 60 & wait']


# --- 1. crun: the bytes crun loads are ocishim's, and a probe's answers --------------

@pytest.mark.parametrize("flags", [[], ["--enosys", "kernel:5.4"], ["--emulate-kernel", "5.4"]],
                         ids=["default", "kernel:5.4", "emulate-5.4"])
def test_crun_loads_the_patched_program(flags, busybox, tmp_path, tmp_path_factory):
    """crun's <root>/<id>/seccomp.bpf (default root /run/crun, visible from the host: the
    private mount namespace shares the file system) is `ocishim patch --format bpf`."""
    crun = _runtime("crun", tmp_path_factory, default_root=True)
    try:
        bundle = _bundle_for(tmp_path, busybox, TRAPPING, _docker_minus_faccessat2())
        expected = subprocess.run(
            [sys.executable, "-m", "ocishim", "patch", str(bundle), "--format", "bpf", *flags],
            capture_output=True, env=crun.env(), timeout=TIMEOUT, check=True).stdout
        assert len(expected) % 8 == 0 and expected

        cid = crun.new_id()
        proc = subprocess.Popen(crun.ocishim_command(bundle, cid, flags), stdout=subprocess.PIPE,
                                text=True, env=crun.env())
        try:
            assert _Waiting(proc).line() == "ready\n"
            loaded = Path("/run/crun", cid, "seccomp.bpf").read_bytes()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 143
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert loaded == expected, f"crun loaded {len(loaded) // 8} instructions, " \
                                   f"ocishim patch gives {len(expected) // 8}"
        assert cid not in crun.ids() and not Path("/run/crun", cid).exists()
        assert crun.leftovers() == []

        # Without ocishim, crun compiles the profile itself: other bytes.
        cid = crun.new_id()
        proc = subprocess.Popen(crun.command("run", "--bundle", str(bundle), cid),
                                stdout=subprocess.PIPE, text=True)
        try:
            assert _Waiting(proc).line() == "ready\n"
            assert Path("/run/crun", cid, "seccomp.bpf").read_bytes() != expected
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 143
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        crun.cleanup()


# What each enosys_probe call gets when it reaches the kernel (6.18): faccessat2 on "/"
# succeeds, fchmodat2 on a missing path is ENOENT, mseal of an empty range is 0, nr 1000
# is ENOSYS. clone3 and getpgid never reach it: the profile answers them.
# Outside E(A) the answer is the profile's (rule 1): ALLOW for fchmodat2 and mseal
# (mseal's rule compiled by ocishim, rule 7), the profile's ERRNO(ENOSYS) for clone3,
# the explicit EPERM for getpgid, the default EPERM for unnamed faccessat2 and 1000.
PROFILE_ANSWERS = {"faccessat2": EPERM, "clone3": ENOSYS, "fchmodat2": ENOENT, "mseal": 0,
                   "nr1000": EPERM, "getpgid": EPERM}

CRUN_PROBE_CASES = {
    # Plain crun: mseal's rule is dropped by libseccomp 2.5.4 (premise below), so the
    # default EPERM; crun has no stub, so 1000 gets EPERM too.
    "plain": (None, {**PROFILE_ANSWERS, "mseal": EPERM}),
    # auto: baseline 6.13 (setxattrat & co.), faccessat2 (5.8) is older: EPERM stays.
    "auto": (["--enosys", "auto"], {**PROFILE_ANSWERS, "nr1000": ENOSYS}),
    "kernel:5.4": (["--enosys", "kernel:5.4"], {**PROFILE_ANSWERS, "faccessat2": ENOSYS, "nr1000": ENOSYS}),
    "unnamed": (["--enosys", "unnamed"], {**PROFILE_ANSWERS, "faccessat2": ENOSYS, "nr1000": ENOSYS}),
    # The syscall surface of 5.4: fchmodat2 (6.6) and mseal (6.10) too, although allowed.
    "emulate-5.4": (["--emulate-kernel", "5.4"],
                    {**PROFILE_ANSWERS, "faccessat2": ENOSYS, "fchmodat2": ENOSYS, "mseal": ENOSYS,
                     "nr1000": ENOSYS}),
}


def test_premises_crun_probe(libseccomp):
    seccomp = _docker_minus_faccessat2()
    assert _baseline(seccomp) == (6, 13) and TABLE["faccessat2"][0] == (5, 8)
    assert TABLE["fchmodat2"][0] == (6, 6) and TABLE["mseal"][0] == (6, 10)
    assert max(nr for _, nr in TABLE.values()) < 1000
    allowed = {n for r in seccomp["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for n in r["names"]}
    assert {"fchmodat2", "mseal"} <= allowed and "faccessat2" not in _named(seccomp)
    assert libseccomp.nr("fchmodat2") == 452 and libseccomp.nr("mseal") is None


@pytest.mark.parametrize("case", list(CRUN_PROBE_CASES))
def test_crun_probe(case, crun, busybox, probe_bins, tmp_path):
    flags, expected = CRUN_PROBE_CASES[case]
    bundle = _bundle_for(tmp_path, busybox, [f"/bin/{probe_bins['enosys_probe'].name}"],
                         _docker_minus_faccessat2())
    out = _plain_ok(crun, bundle) if flags is None else _ocishim_ok(crun, bundle, flags)
    assert _answers(out) == expected, f"{case}: got {out!r}"


# --- 2. runc: the JSON rewrite, runc's own stub, and what explain says is left -------

# Arguments that the kernel refuses (or that do nothing) should a call get through.
# Every syscall a test calls must be here: a new name in E(A) fails the test until
# someone has read its signature and written harmless arguments for it.
HARMLESS: dict[str, tuple[int, ...]] = {
    "pidfd_getfd": (-1, -1, 0),                   # bad pidfd: EBADF
    "faccessat2": (-1, 0, 0, 0),                  # NULL path: EFAULT
    "process_madvise": (-1, 0, 0, 0, 0),          # bad pidfd, empty vector
    "mount_setattr": (-1, 0, 0, 0, 0),            # attr size 0: EINVAL
    "quotactl_fd": (-1, 0, 0, 0),                 # bad fd: EBADF
    "set_mempolicy_home_node": (0, 0, 0, 1),      # flags must be 0: EINVAL
    "lsm_get_self_attr": (0, 0, 0, -1),           # unknown flags: EINVAL
    "lsm_set_self_attr": (0, 0, 0, -1),           # flags must be 0: EINVAL
    "lsm_list_modules": (0, 0, -1),               # flags must be 0: EINVAL
    "open_tree_attr": (-1, 0, -1, 0, 0),          # unknown flags: EINVAL
    "file_getattr": (-1, 0, 0, 0, -1),            # unknown at_flags: EINVAL
    "file_setattr": (-1, 0, 0, 0, -1),            # unknown at_flags: EINVAL
    "listns": (0, 0, 0, -1),                      # unknown flags: EINVAL (6.19: not on 6.18)
    "rseq_slice_yield": (),                       # a yield (7.0: not on 6.18)
    "statmount": (0, 0, 0, 0),                    # NULL request: EFAULT
    "listmount": (0, 0, 0, 0),                    # NULL request: EFAULT
    "mseal": (0, 0, 0),                           # empty range: 0, nothing sealed
    "getxattrat": (-1, 0, -1, 0, 0, 0),           # unknown at_flags: EINVAL
    "setxattrat": (-1, 0, -1, 0, 0, 0),
    "listxattrat": (-1, 0, -1, 0, 0),
    "removexattrat": (-1, 0, -1, 0),
}
NEVER_CALL = {"uretprobe", "uprobe"}  # 335, 336: kill a caller outside a probe trampoline

RUNC_MODE = ["--enosys", "kernel:5.4"]


def _runc_case(libseccomp: _Libseccomp) -> tuple[dict, dict[str, int], int]:
    """The profile, its E(x86_64) in kernel:5.4 mode (table names), runc's bound.

    kernel:5.4 rather than auto: in auto mode this profile's E(A) holds only names
    newer than 6.13, none of which libseccomp 2.5.4 knows, so the JSON rule would be
    empty here and the test would only show runc's own stub.
    """
    seccomp = _docker_minus_faccessat2()
    return seccomp, _enosys_set(seccomp, (5, 4)), libseccomp.runc_max(seccomp)


def test_premises_runc(libseccomp):
    seccomp, enosys, runc_max = _runc_case(libseccomp)
    known = {n for n in enosys if libseccomp.nr(n) is not None}
    assert "faccessat2" in known and len(known) >= 5, known
    # What neither the JSON rule nor runc's stub reaches: unknown to libseccomp, at or
    # below runc's bound.
    assert {n for n in enosys if n not in known and enosys[n] <= runc_max} == {"uprobe"}
    assert runc_max == 456  # futex_requeue: the newest name 2.5.4 knows in this profile


def test_runc_enosys_for_e_a(runc, crun, busybox, probe_bins, libseccomp, tmp_path):
    seccomp, enosys, runc_max = _runc_case(libseccomp)
    callable_ = {n: nr for n, nr in enosys.items() if n not in NEVER_CALL}
    if missing := sorted(set(callable_) - set(HARMLESS)):
        pytest.fail(f"E(A) has syscalls without reviewed harmless arguments: {missing}")
    calls = {n: (nr, HARMLESS[n]) for n, nr in callable_.items()}
    calls["nr1000"] = (1000, (0, 0, 0))
    bundle = _bundle_for(tmp_path, busybox, _probe_cmd(probe_bins["syscall_probe"], calls), seccomp)

    # ocishim's view of E(A) agrees with the contract's (named syscalls answering
    # ENOSYS by their own rule, such as clone3, are not in E(A)).
    explain = run_ocishim(["explain", str(bundle), "--arch", "x86_64", "--json", *RUNC_MODE])
    assert explain.returncode == 0, explain.stderr
    entries = json.loads(explain.stdout)
    assert {e["name"] for e in entries if e["after"] == "ERRNO(ENOSYS)"
            and e["before"] != "ERRNO(ENOSYS)"} == set(enosys)

    all_enosys = {label: ENOSYS for label in calls}
    # Through ocishim, runc answers ENOSYS for all of them: the names libseccomp knows
    # by the appended rule, the others (all above runc's bound) by runc's own stub.
    assert _answers(_ocishim_ok(runc, bundle, RUNC_MODE)) == all_enosys
    # crun loads the whole patched program: the same.
    assert _answers(_ocishim_ok(crun, bundle, RUNC_MODE)) == all_enosys
    # Plain runc: only its stub, above its bound; below it the default EPERM.
    plain = {n: (ENOSYS if nr > runc_max else EPERM) for n, (nr, _) in calls.items()}
    assert EPERM in plain.values()
    assert _answers(_plain_ok(runc, bundle)) == plain


def test_explain_names_what_runc_cannot_cover(libseccomp, busybox, tmp_path):
    seccomp, enosys, runc_max = _runc_case(libseccomp)
    bundle = _bundle_for(tmp_path, busybox, ["true"], seccomp)
    proc = run_ocishim(["explain", str(bundle), "--arch", "x86_64", "faccessat2", *RUNC_MODE])
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout[proc.stdout.index("host libseccomp"):].splitlines()
    assert notes[0] == f"host libseccomp {libseccomp.version}"
    # Rules plain runc and crun drop (the line also has names of the filter's other
    # arches, such as x32's map_shadow_stack).
    unknown = {n for n in _named(seccomp) if n in TABLE and libseccomp.nr(n) is None}
    assert "does not know" in notes[1] and unknown <= set(notes[1].split(": ", 1)[1].split(", ")), notes[1]
    assert f"x86_64 {runc_max}" in proc.stdout
    uncovered = sorted((nr, n) for n, nr in enosys.items() if libseccomp.nr(n) is None and nr <= runc_max)
    assert f"    x86_64: {' '.join(f'{n}({nr})' for nr, n in uncovered)}" in notes, notes


# --- 3. names the host libseccomp cannot resolve -------------------------------------

UNRESOLVED = ("statmount", "listmount", "mseal", "getxattrat", "setxattrat", "listxattrat",
              "removexattrat")


def test_names_the_host_libseccomp_lacks(crun, runc, busybox, probe_bins, libseccomp, tmp_path):
    seccomp = bundles.docker_profile()
    allowed = {n for r in seccomp["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for n in r["names"]}
    # Premises: Docker's profile allows them, libseccomp 2.5.4 cannot name them, and
    # they are above runc's bound (so runc's stub answers ENOSYS).
    runc_max = libseccomp.runc_max(seccomp)
    for name in UNRESOLVED:
        assert name in allowed and libseccomp.nr(name) is None and TABLE[name][1] > runc_max, name
    calls = {n: (TABLE[n][1], HARMLESS[n]) for n in UNRESOLVED}
    cmd = _probe_cmd(probe_bins["syscall_probe"], calls)
    host = _answers(_ok(subprocess.run([str(probe_bins["syscall_probe"]), *cmd[1:]],
                                       capture_output=True, text=True), "the probe on the host"))
    # The running kernel implements them: its own answers, none ENOSYS or EPERM.
    assert not {ENOSYS, EPERM} & set(host.values()), host

    bundle = _bundle_for(tmp_path, busybox, cmd, seccomp)
    assert _answers(_ocishim_ok(crun, bundle)) == host
    assert _answers(_plain_ok(crun, bundle)) == dict.fromkeys(UNRESOLVED, EPERM)
    assert _answers(_plain_ok(runc, bundle)) == dict.fromkeys(UNRESOLVED, ENOSYS)
    # A JSON rewrite cannot give runc a rule for a name its libseccomp lacks: through
    # ocishim runc still answers with its stub. explain says so (the "does not know" line).
    assert _answers(_ocishim_ok(runc, bundle)) == dict.fromkeys(UNRESOLVED, ENOSYS)
    explain = run_ocishim(["explain", str(bundle), "--arch", "x86_64", "mseal"])
    assert explain.returncode == 0, explain.stderr
    lacking = next(line for line in explain.stdout.splitlines() if "does not know" in line)
    assert set(UNRESOLVED) <= set(lacking.split(": ", 1)[1].split(", ")), lacking


# --- 4. a newer userland: trixie's bash `[ -x /bin/ls ]` ------------------------------

BASH_TEST_X = ["/bin/bash", "-c", "[ -x /bin/ls ] && echo yes || echo no"]

TRIXIE_CASES = {
    # Docker's current profile minus faccessat2. auto: baseline 6.13 > 5.8, so
    # faccessat2 is not in E(A): EPERM, bash says no (the contract, see test_exec).
    "docker/runc": ("docker", "runc", None, "no"),
    "docker/crun": ("docker", "crun", None, "no"),
    "docker/crun/default": ("docker", "crun", [], "yes"),  # unnamed: faccessat2 has no rule
    "docker/runc/default": ("docker", "runc", [], "yes"),
    "docker/crun/auto": ("docker", "crun", ["--enosys", "auto"], "no"),
    "docker/crun/kernel:5.4": ("docker", "crun", ["--enosys", "kernel:5.4"], "yes"),
    "docker/crun/unnamed": ("docker", "crun", ["--enosys", "unnamed"], "yes"),
    "docker/runc/auto": ("docker", "runc", ["--enosys", "auto"], "no"),
    "docker/runc/kernel:5.4": ("docker", "runc", ["--enosys", "kernel:5.4"], "yes"),
    "docker/runc/unnamed": ("docker", "runc", ["--enosys", "unnamed"], "yes"),
    # Docker 20.10.0 minus faccessat2: newest named openat2 (5.6), auto gives ENOSYS.
    # Plain runc says yes as well: its stub answers ENOSYS above its bound, the largest
    # number of the profile libseccomp knows, openat2 437 < faccessat2 439 (premise).
    "docker-20.10/crun": ("docker-20.10", "crun", None, "no"),
    "docker-20.10/runc": ("docker-20.10", "runc", None, "yes"),
    "docker-20.10/crun/auto": ("docker-20.10", "crun", [], "yes"),
    "docker-20.10/runc/auto": ("docker-20.10", "runc", [], "yes"),
}

TRIXIE_PROFILES = {"docker": lambda: bundles.docker_profile(minus=["faccessat2"]),
                   "docker-20.10": _docker_20_10_minus_faccessat2}


def test_premises_trixie(libseccomp):
    docker = TRIXIE_PROFILES["docker"]()
    assert docker["defaultErrnoRet"] == EPERM and "faccessat2" not in _named(docker)
    assert _baseline(docker) == (6, 13) > TABLE["faccessat2"][0] == (5, 8)
    old = TRIXIE_PROFILES["docker-20.10"]()
    assert old["defaultErrnoRet"] == EPERM and "faccessat2" not in _named(old)
    assert _baseline(old) == TABLE["openat2"][0] == (5, 6) < TABLE["faccessat2"][0]
    assert libseccomp.runc_max(old) == TABLE["openat2"][1] == 437 < TABLE["faccessat2"][1]
    assert libseccomp.nr("faccessat2") == 439  # so the JSON rule can carry it


@pytest.mark.parametrize("case", list(TRIXIE_CASES))
def test_trixie_bash_test_x(case, trixie, tmp_path, tmp_path_factory):
    which, name, flags, expected = TRIXIE_CASES[case]
    rt = _runtime(name, tmp_path_factory)
    try:
        bundle = _bundle_for(tmp_path, trixie, BASH_TEST_X, TRIXIE_PROFILES[which]())
        out = _plain_ok(rt, bundle) if flags is None else _ocishim_ok(rt, bundle, flags)
        assert out == f"{expected}\n", f"{case}: got {out!r}"
    finally:
        rt.cleanup()


# --- 5. bad input, faults, exit codes, stdio, signals --------------------------------

def _broken_json(bundle: Path) -> Path:
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "process": {')
    return bundle


def _no_config(bundle: Path) -> Path:
    (bundle / "config.json").unlink()
    return bundle


def _config_is_a_dir(bundle: Path) -> Path:
    (bundle / "config.json").unlink()
    (bundle / "config.json").mkdir()
    return bundle


def _bad_op(bundle: Path) -> Path:
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["seccomp"]["syscalls"][3]["args"] = [{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    return bundle


# (make the bundle bad, what stands in for BUNDLE on the command line, message part)
BAD_BUNDLES = {
    "broken-json": (_broken_json, "bundle", "invalid JSON"),
    "missing-dir": (lambda b: b, "nonexistent", "no such file or directory"),
    "no-config": (_no_config, "bundle", "has no config.json"),
    "config-is-a-dir": (_config_is_a_dir, "bundle", "is a directory"),
    "bad-op": (_bad_op, "bundle", 'linux.seccomp.syscalls[3].args[0].op: unknown operator "SCMP_CMP_FOO"'),
}


@pytest.mark.parametrize("case", list(BAD_BUNDLES))
def test_bad_bundle(case, runtime, busybox, tmp_path):
    spoil, arg, message = BAD_BUNDLES[case]
    bundle = spoil(_bundle_for(tmp_path, busybox, ["true"], bundles.docker_profile()))
    before = _hash_tree(tmp_path)
    cid = runtime.new_id()
    proc = runtime.run_ocishim(bundle if arg == "bundle" else tmp_path / arg, cid)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert cid not in runtime.ids()
    assert runtime.leftovers() == []
    assert _hash_tree(tmp_path) == before


@pytest.mark.parametrize("given, message", [
    ("nosuch", "runtime 'nosuch' not found"),
    ("/nonexistent/crun", "/nonexistent/crun is not an executable file"),
])
def test_unknown_runtime(given, message, busybox, tmp_path):
    bundle = _bundle_for(tmp_path, busybox, ["true"], bundles.docker_profile())
    before = _hash_tree(tmp_path)
    proc = run_ocishim(["run", "--runtime", given, str(bundle)])
    assert proc.returncode == 2 and f"--runtime: {message}" in proc.stderr, proc.stderr
    assert _hash_tree(tmp_path) == before


def test_runtime_fails(runtime, busybox, tmp_path):
    """The runtime cannot start the process: its error, its non-zero exit, nothing left."""
    bundle = _bundle_for(tmp_path, busybox, ["/nonexistent-binary"], bundles.docker_profile())
    before = _hash_tree(tmp_path)
    cid = runtime.new_id()
    proc = runtime.run_ocishim(bundle, cid)
    assert proc.returncode != 0
    assert "nonexistent-binary" in proc.stderr, proc.stderr
    assert cid not in runtime.ids() and runtime.leftovers() == []
    assert _hash_tree(tmp_path) == before


def test_exit_code_and_stdio(runtime, busybox, tmp_path):
    script = 'read line; echo "out:$line"; echo "err:$line" >&2; exit 7'
    bundle = _bundle_for(tmp_path, busybox, ["sh", "-c", script], bundles.docker_profile())
    before = _hash_tree(tmp_path)
    cid = runtime.new_id()
    proc = runtime.run_ocishim(bundle, cid, input="hello\n")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "out:hello\n"
    assert proc.stderr.endswith("err:hello\n"), proc.stderr
    assert cid not in runtime.ids() and runtime.leftovers() == []
    assert _hash_tree(tmp_path) == before


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signals_are_forwarded(sig, code, runtime, busybox, tmp_path):
    bundle = _bundle_for(tmp_path, busybox, TRAPPING, bundles.docker_profile())
    cid = runtime.new_id()
    proc = subprocess.Popen(runtime.ocishim_command(bundle, cid), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=runtime.env())
    try:
        assert _Waiting(proc).line() == "ready\n"
        assert cid in runtime.ids()
        started = time.monotonic()
        proc.send_signal(sig)
        # The container's trap answers with 128+signal: the signal reached it.
        assert proc.wait(timeout=20) == code, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert cid not in runtime.ids() and runtime.leftovers() == []


def test_no_seccomp_runs_unfiltered(runtime, busybox, probe_bins, tmp_path):
    """A config without linux.seccomp gets no filter from ocishim (rule 9)."""
    bundle = _bundle_for(tmp_path, busybox, [f"/bin/{probe_bins['enosys_probe'].name}"], None)
    host = _answers(_ok(subprocess.run([str(probe_bins["enosys_probe"])], capture_output=True,
                                       text=True), "the probe on the host"))
    assert _answers(_ocishim_ok(runtime, bundle)) == host


def test_existing_id_is_left_alone(runtime, busybox, tmp_path):
    """`--id` naming a container that exists: refused, and that container keeps running
    (ocishim deletes the container it ran, so it must not take over another's id)."""
    bundle = _bundle_for(tmp_path, busybox, TRAPPING, bundles.docker_profile())
    cid = runtime.new_id()
    other = subprocess.Popen(runtime.command("run", "--bundle", str(bundle), cid),
                             stdout=subprocess.PIPE, text=True)
    try:
        assert _Waiting(other).line() == "ready\n"
        proc = runtime.run_ocishim(bundle, cid)
        assert proc.returncode == 2 and f"--id: a container '{cid}' already exists" in proc.stderr, \
            (proc.returncode, proc.stderr)
        assert cid in runtime.ids() and other.poll() is None
        assert runtime.leftovers() == []
        other.send_signal(signal.SIGTERM)
        assert other.wait(timeout=20) == 143
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
