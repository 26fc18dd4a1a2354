"""Issue 9 acceptance: `ocishim run --runtime crun` gives the profile's answer for the
witness of every libseccomp 2.5.4 bug pinned in tests/verify/test_libseccomp_bugs.py.

Each bug is a bundle whose linux.seccomp is that bug's rule set (on personality, with
ERRNO actions, tests/verify/libseccomp_bugs.py: the new bugs and the two pinned in
tests/patch/test_rules.py), running a static probe that makes the witness call and
prints its errno. A rule set with an ALLOW default is the whole profile; one with an
ERRNO default (the first pinned bug) takes the place of personality's rules in Docker's
default profile, so that the probe itself can run. The probes: integration/probe/
syscall_probe for x86_64 and x32 calls, int80_probe for i386 calls (`int $0x80`).
The expected errno is the rules' meaning, written out in libseccomp_bugs.py, never
ocishim's output: 0 where the rules let the call through (personality then runs, which
only sets the probe's own execution domain), the rule's errno where they refuse it.

Plain crun, which loads libseccomp's program as it is, gives libseccomp's answer (for
most of these bugs the call gets through where the rules refuse it). That is why the
ocishim test fails until ocishim repairs libseccomp's program (issue 9, build item 2).
Where libseccomp's answer is only stricter than the rules' (ERRNO where they allow),
ocishim keeps it (never loosen): the container gets libseccomp's answer with ocishim too.

crun refuses this machine's hybrid cgroups, so it runs under bundles.crun_prefix() with
--cgroup-manager=disabled and a private --root, as in test_run.py.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from . import bundles, probes
from .conftest import REPO

pytestmark = pytest.mark.runtime

TIMEOUT = 60
ENOSYS = 38
ID_PREFIX = "h9-bugwit"


def _load_bugs():
    """tests/verify/libseccomp_bugs.py, loaded from its file (tests/ is not a package)."""
    path = REPO / "tests" / "verify" / "libseccomp_bugs.py"
    spec = importlib.util.spec_from_file_location("_libseccomp_bugs_h9", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BUGS_MODULE = _load_bugs()
ALL = {**BUGS_MODULE.PINNED, **BUGS_MODULE.BUGS}
PERSONALITY = BUGS_MODULE.PERSONALITY
RET_ERRNO, RET_ALLOW = 0x00050000, 0x7FFF0000


def _only_stricter(bug) -> bool:
    """libseccomp refuses (ERRNO) where the rules allow, at every witness (semantics.md
    rule 10: ERRNO is stricter than ALLOW; two ERRNO answers are equal)."""
    return all(bug.lib_says != RET_ALLOW and bug.means(arch, args) == RET_ALLOW
               for arch, args in bug.witnesses)


BUGS = {name: bug for name, bug in ALL.items() if not _only_stricter(bug)}
STRICTER = {name: bug for name, bug in ALL.items() if _only_stricter(bug)}


class WrongAnswer(AssertionError):
    """The container's call got another answer than the profile's: the failure this test
    expects until ocishim repairs libseccomp's program."""


def expected_errno(ret: int) -> int:
    """The errno a call sees under a seccomp return: 0 for ALLOW (personality succeeds)."""
    if ret == RET_ALLOW:
        return 0
    assert ret & 0xFFFF0000 == RET_ERRNO, hex(ret)
    return ret & 0xFFFF


def _calls(bug) -> list[str]:
    """The probe's command line: the probe for the witnesses' ABI, LABEL=NR:ARGS per witness."""
    abis = {"i386" if arch == "x86" else "64" for arch, _ in bug.witnesses}
    assert len(abis) == 1, bug.witnesses
    probe = "int80_probe" if abis == {"i386"} else "syscall_probe"
    return [f"/bin/{probe}"] + [f"w{i}={PERSONALITY[arch]}:{','.join(hex(a) for a in args)}"
                                for i, (arch, args) in enumerate(bug.witnesses)]


def _answers(out: str) -> dict[str, int]:
    return {label: int(errno) for label, errno in (line.split() for line in out.splitlines())}


class Crun:
    """crun with a private state root; remembers the ids it was given, to delete them."""

    def __init__(self, root: Path, tmpdir: Path) -> None:
        self.root, self.tmpdir, self.created = root, tmpdir, []

    @property
    def global_args(self) -> list[str]:
        return ["--root", str(self.root), *bundles.CRUN_ARGS]

    def new_id(self) -> str:
        cid = bundles.container_id(ID_PREFIX)
        self.created.append(cid)
        return cid

    def plain(self, bundle: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*bundles.crun_prefix(), "crun", *self.global_args, "run", "--bundle",
                               str(bundle), self.new_id()], capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL)

    def ocishim(self, bundle: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["TMPDIR"] = str(self.tmpdir)
        return subprocess.run([*bundles.crun_prefix(), sys.executable, "-m", "ocishim", "run",
                               "--runtime", "crun", "--id", self.new_id(),
                               *(f"--runtime-arg={a}" for a in self.global_args), str(bundle)],
                              capture_output=True, text=True, env=env, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)

    def cleanup(self) -> None:
        for cid in self.created:
            subprocess.run([*bundles.crun_prefix(), "crun", *self.global_args, "delete", "--force", cid],
                           capture_output=True, timeout=TIMEOUT)
        self.created.clear()


@pytest.fixture
def crun(tmp_path_factory):
    # runc writes the bundles (`runc spec`)
    yield from _runtime(Crun, ("crun", "unshare", "runc"), "", tmp_path_factory)


def _runtime(cls, tools, tag: str, factory):
    """A runtime with private directories, skipped with the reason when a tool is missing;
    its containers deleted afterwards."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the probes are x86_64 Linux programs, not {platform.system()} {platform.machine()}")
    for tool in tools:
        if reason := bundles.missing_runtime(tool):
            pytest.skip(reason)
    rt = cls(factory.mktemp(f"{ID_PREFIX}{tag}-root"), factory.mktemp(f"{ID_PREFIX}{tag}-tmp"))
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    """A busybox-static rootfs with both probes in /bin."""
    if reason := probes.missing_tools():
        pytest.skip(reason)
    if not bundles.BUSYBOX.exists():
        pytest.skip("/bin/busybox missing (apt-get install busybox-static)")
    bins = [probes.build("syscall_probe"), probes.build("int80_probe")]
    root = bundles.busybox_rootfs(tmp_path_factory.mktemp(f"{ID_PREFIX}-busybox") / "rootfs")
    for b in bins:
        # probes.build names the binary after its hash; the bundle calls it by its name
        (root / "bin" / b.name.rsplit("-", 1)[0]).write_bytes(b.read_bytes())
        (root / "bin" / b.name.rsplit("-", 1)[0]).chmod(0o755)
    return root


def seccomp_of(bug) -> dict:
    """The bug's rule set as a profile a container runs under (see the module doc)."""
    if bug.seccomp["defaultAction"] == "SCMP_ACT_ALLOW":
        return bug.seccomp
    docker = bundles.docker_profile(minus=["personality"])
    assert docker["defaultAction"] == bug.seccomp["defaultAction"], docker["defaultAction"]
    assert docker.get("defaultErrnoRet") == bug.seccomp["defaultErrnoRet"]
    docker["syscalls"] += bug.seccomp["syscalls"]
    return docker


def _bundle(tmp_path: Path, rootfs: Path, bug) -> Path:
    bundle = tmp_path / "bundle"
    bundles.spec(bundle, rootfs, _calls(bug), seccomp_of(bug))
    return bundle


def _ok(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, int]:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return _answers(proc.stdout)


@pytest.mark.parametrize("name", ALL)
def test_plain_crun_gives_libseccomps_answer(name, crun, rootfs, tmp_path):
    """Without ocishim the witness call gets libseccomp's answer, not the profile's (for
    the new bugs it gets through where the rules refuse it): crun loads libseccomp's
    program as it is."""
    bug = ALL[name]
    got = _ok(crun.plain(_bundle(tmp_path, rootfs, bug)), "crun run (no ocishim)")
    for i, (arch, args) in enumerate(bug.witnesses):
        lib = {expected_errno(bug.lib_says)}
        if bug.lib_says == RET_ALLOW and arch == "x32":
            lib.add(ENOSYS)  # let through, an x32 call answers ENOSYS when the kernel lacks x32
        assert expected_errno(bug.means(arch, args)) not in lib, (arch, args)
        assert got[f"w{i}"] in lib, f"{bug.why}: {arch} {args}: errno {got[f'w{i}']}, libseccomp's {lib}"


@pytest.mark.parametrize("name", BUGS)
def test_ocishim_run_gives_the_profiles_answer(name, crun, rootfs, tmp_path):
    bug = BUGS[name]
    got = _ok(crun.ocishim(_bundle(tmp_path, rootfs, bug)), "ocishim run --runtime crun")
    want = {f"w{i}": expected_errno(bug.means(arch, args)) for i, (arch, args) in enumerate(bug.witnesses)}
    if got != want:
        raise WrongAnswer(f"{bug.why}: the container's errno {got}, the profile's {want}")


@pytest.mark.parametrize("name", STRICTER)
def test_ocishim_run_keeps_a_stricter_answer(name, crun, rootfs, tmp_path):
    """Where libseccomp's program only refuses more than the rules, ocishim keeps it: the
    repair never loosens a filter."""
    bug = STRICTER[name]
    got = _ok(crun.ocishim(_bundle(tmp_path, rootfs, bug)), "ocishim run --runtime crun")
    assert got == {f"w{i}": expected_errno(bug.lib_says) for i in range(len(bug.witnesses))}, bug.why


class Runc(Crun):
    """runc with a private state root: it compiles the JSON profile with its own libseccomp."""

    @property
    def global_args(self) -> list[str]:
        return ["--root", str(self.root)]

    def ocishim(self, bundle: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["TMPDIR"] = str(self.tmpdir)
        return subprocess.run([sys.executable, "-m", "ocishim", "run", "--runtime", "runc", "--id",
                               self.new_id(), *(f"--runtime-arg={a}" for a in self.global_args), str(bundle)],
                              capture_output=True, text=True, env=env, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)

    def cleanup(self) -> None:
        for cid in self.created:
            subprocess.run(["runc", *self.global_args, "delete", "--force", cid],
                           capture_output=True, timeout=TIMEOUT)
        self.created.clear()


@pytest.fixture
def runc(tmp_path_factory):
    yield from _runtime(Runc, ("runc",), "-runc", tmp_path_factory)


@pytest.mark.parametrize("name", BUGS)
def test_ocishim_run_runc_is_never_weaker(name, runc, rootfs, tmp_path):
    """runc compiles the JSON with its own (the same, buggy) libseccomp: where ocishim had
    to repair a syscall, JSON readers get its rules as one unconditional rule with the
    strictest of their actions and the default. Never weaker than the profile: every
    witness the rules refuse is refused, and since that rule is unconditional, every
    witness gets the same answer."""
    bug = BUGS[name]
    got = _ok(runc.ocishim(_bundle(tmp_path, rootfs, bug)), "ocishim run --runtime runc")
    assert len(set(got.values())) == 1, got
    for i, (arch, args) in enumerate(bug.witnesses):
        if bug.means(arch, args) != RET_ALLOW:
            assert got[f"w{i}"] != 0, f"{bug.why}: {arch} {args} got through under runc"
