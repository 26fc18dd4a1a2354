"""The cold build checks on two cores (compile.CompileJob, patch.check._both_checks): the
compile's child checks libseccomp's program while this process builds and checks the
patched one. Whatever the child does, the result is the one the sequential check gives,
byte for byte, notes and repairs included; when the child fails, or the two checks
together pass the budget, this process checks again in order, as it always did."""

from __future__ import annotations

import copy
import os

import pytest

from ocishim import compile as compile_module
from ocishim.arch import BY_NAME
from ocishim.errors import OcishimError
from ocishim.patch import check as build_check
from ocishim.patch import parse_kernel, patch_profile
from ocishim.profile import load
from ocishim.profile.model import ArgCond, Profile, Rule
from ocishim.profile.parse import parse_seccomp
from tests.verify.libseccomp_bugs import BUGS, PINNED
from tests import shared_data

PROFILES = shared_data.PROFILES
NAMES = sorted(p.name for p in PROFILES.glob("*.json"))
NATIVE = BY_NAME["x86_64"]


def _outcome(profile: Profile, mode: str = "unnamed", emulate=None) -> tuple:
    try:
        p = patch_profile(profile, mode, emulate, NATIVE)
    except OcishimError as exc:
        return ("error", type(exc).__name__, exc.where, exc.message)
    return (p.program, p.stub_length, dict(p.enosys), p.repaired, p.notes, p.compiled)


@pytest.fixture
def isolated(monkeypatch):
    """Compile in a child, as shipped (the suite's conftest turns that off)."""
    monkeypatch.setattr(compile_module, "ISOLATE", True)


def _both(profile: Profile, monkeypatch, mode: str = "unnamed", emulate=None) -> tuple[tuple, tuple]:
    monkeypatch.setattr(compile_module, "ISOLATE", True)
    parallel = _outcome(profile, mode, emulate)
    monkeypatch.setattr(compile_module, "ISOLATE", False)
    sequential = _outcome(profile, mode, emulate)
    return parallel, sequential


def _exploding(n: int) -> Profile:
    rules = tuple(Rule(("personality",), "SCMP_ACT_ERRNO", 1 + i % 3,
                       (ArgCond(i % 6, i + 1, 0, "SCMP_CMP_GT"), ArgCond((i + 1) % 6, i + 7, 0, "SCMP_CMP_LT")),
                       f"syscalls[{i}]") for i in range(n))
    return Profile("SCMP_ACT_ALLOW", None, ("SCMP_ARCH_X86_64",), syscalls=rules)


@pytest.mark.parametrize("mode", ["unnamed", "max", "kernel:5.4"])
@pytest.mark.parametrize("name", NAMES)
def test_shared_profiles_same_in_parallel(name, mode, monkeypatch):
    profile = load(str(PROFILES / name)).profile
    parallel, sequential = _both(profile, monkeypatch, mode)
    assert parallel == sequential


def test_emulated_kernel_same_in_parallel(monkeypatch):
    profile = load(str(PROFILES / "docker-default.json")).profile
    parallel, sequential = _both(profile, monkeypatch, "unnamed", parse_kernel("5.4"))
    assert parallel == sequential


@pytest.mark.parametrize("name", sorted({**BUGS, **PINNED}))
def test_repaired_profiles_same_in_parallel(name, monkeypatch):
    """libseccomp's bugs: repairs and their notes come out the same from either path."""
    bug = {**BUGS, **PINNED}[name]
    profile = parse_seccomp(copy.deepcopy(bug.seccomp), "linux.seccomp")
    parallel, sequential = _both(profile, monkeypatch)
    assert parallel == sequential
    assert parallel[4], "a libseccomp bug profile makes a note"


def test_the_child_checks(isolated, monkeypatch):
    """The child's check is used: this process does not check libseccomp's program again."""
    profile = load(str(PROFILES / "docker-default.json")).profile
    here = []
    original = build_check._check_libseccomp

    def counting(*args, **kwargs):
        if os.getpid() == parent:
            here.append(1)
        return original(*args, **kwargs)

    parent = os.getpid()
    monkeypatch.setattr(build_check, "_check_libseccomp", counting)
    patched = patch_profile(profile, "unnamed", None, NATIVE)
    assert here == [] and patched.notes == ()


def test_a_failing_child_check_changes_nothing(isolated, monkeypatch):
    profile = load(str(PROFILES / "docker-default.json")).profile
    expected = _outcome(profile)

    def broken(profile):
        def then(compiled):
            raise RuntimeError("the child's check breaks")
        return then

    monkeypatch.setattr(build_check, "checking_child", broken)
    assert _outcome(profile) == expected

    def killed(profile):
        def then(compiled):
            os._exit(3)
        return then

    monkeypatch.setattr(build_check, "checking_child", killed)
    assert _outcome(profile) == expected


@pytest.mark.parametrize("budget", [10, 60, 200, 10**7])
def test_the_budget_holds_for_both_checks_together(budget, monkeypatch):
    """Each check alone may fit a budget that the two together pass: the result is then the
    sequential one (unchecked, with its note), never two half-budgets that both pass."""
    monkeypatch.setattr(build_check, "BUDGET", budget)
    parallel, sequential = _both(_exploding(3), monkeypatch)
    assert parallel == sequential


def test_an_exploding_profile_same_in_parallel(monkeypatch):
    parallel, sequential = _both(_exploding(12), monkeypatch)
    assert parallel == sequential
    assert parallel[4][0].startswith("unchecked: cannot decide within the checker's budget")


def test_compile_errors_same_in_parallel(monkeypatch):
    """An error of the compile itself comes out of the job as it comes out of compile_profile."""
    profile = Profile("SCMP_ACT_ERRNO", 4095, ("SCMP_ARCH_X86_64",),
                      syscalls=(Rule(("read",), "SCMP_ACT_ALLOW", None, (), "syscalls[0]"),))
    parallel, sequential = _both(profile, monkeypatch)
    assert parallel == sequential and parallel[0] == "error"


def test_no_child_is_left(isolated):
    profile = load(str(PROFILES / "docker-default.json")).profile
    patch_profile(profile, "unnamed", None, NATIVE)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
