"""Every shared profile, on the arches its filter carries: libseccomp's program means the
profile, except where the host libseccomp lacks a name (a known difference ocishim
repairs, confirmed here by asking libseccomp itself), and the patched program keeps rule 1
in every mode.
"""

from __future__ import annotations

import functools

import pytest

from ocishim import libseccomp, syscalls
from ocishim.actions import action_value
from ocishim.arch import BY_NAME
from ocishim.compile import compile_profile
from ocishim.patch import build, parse_kernel, parse_mode
from ocishim.profile import load
from ocishim.verify.check import check_program, check_rule1
from ocishim.verify.meaning import Meaning
from ocishim.verify.profile import verify
from tests import shared_data

PROFILES = shared_data.PROFILES
NAMES = sorted(p.name for p in PROFILES.glob("*.json"))
MODES = ("unnamed", "auto", "max", "off", "kernel:5.4")
NATIVE = BY_NAME["x86_64"]

# Where the written meaning is silent: nowhere in the shared profiles (socketcall and
# ipc are modelled since issue 9).
UNDECIDED: dict[str, set] = {}


def test_the_profiles_are_there():
    assert len(NAMES) >= 10, f"{PROFILES}: {NAMES}"


@functools.cache
def _compiled(name: str):
    profile = load(str(PROFILES / name)).profile
    return profile, compile_profile(profile, NATIVE)


@pytest.mark.parametrize("name", NAMES)
def test_libseccomp_program_means_the_profile(name):
    profile, compiled = _compiled(name)
    report = check_program(compiled.program, Meaning(profile, compiled.arches))
    default = action_value(profile.default_action, profile.default_errno_ret)
    undecided = {(u.witness.arch, syscalls.name(u.witness.arch, u.witness.nr)) for u in report.undecided}
    assert undecided == UNDECIDED.get(name, set())
    for d in report.differences:
        arch = BY_NAME[d.witness.arch]
        lacked = syscalls.name(arch.name, d.witness.nr)
        # libseccomp itself says it cannot name the syscall, so its rules were dropped
        assert lacked is not None and libseccomp.resolve_name(arch, lacked) < 0, d.text()
        assert d.got == default, d.text()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_patched_program_keeps_rule_1(name, mode):
    profile, compiled = _compiled(name)
    patched = build(compiled, parse_mode(mode))
    own: dict[str, list[int]] = {}
    for p in compiled.pending:
        own.setdefault(p.arch, []).append(p.nr)
    report = check_rule1(patched.program, compiled.program, Meaning(profile, compiled.arches),
                         patched.enosys, own)
    assert not report.differences, [d.text() for d in report.differences[:5]]
    undecided = {(u.witness.arch, syscalls.name(u.witness.arch, u.witness.nr)) for u in report.undecided}
    assert undecided <= UNDECIDED.get(name, set())


def test_emulated_kernel_keeps_rule_1():
    profile, compiled = _compiled("docker-default.json")
    patched = build(compiled, parse_mode("unnamed"), parse_kernel("5.4"))
    report = check_rule1(patched.program, compiled.program, Meaning(profile, compiled.arches),
                         patched.enosys, {p.arch: [p.nr] for p in compiled.pending})
    assert report.agrees and not report.differences


def test_verify_docker_default_end_to_end():
    """verify(): both reports agree; the known differences are exactly the lacked names."""
    profile, compiled = _compiled("docker-default.json")
    result = verify(profile, "unnamed", native=NATIVE)
    assert result.agrees
    lib = result.reports[0]
    assert {(d.witness.arch, d.witness.nr) for d in lib.differences} == \
        {(p.arch, p.nr) for p in compiled.pending if not p.alias}


# Every arch whose filter the host libseccomp builds here: the little-endian ones of the
# syscall table. Big-endian filters come out of libseccomp 2.5.4 on this little-endian
# host as corrupt programs (compile refuses them, tests/test_compile_meaning.py), and
# parisc and loongarch64 have no table here.
EVERY_ARCH = ("x86_64", "x86", "x32", "aarch64", "arm", "ppc64le", "riscv64", "mipsel", "mipsel64",
              "mipsel64n32")


@functools.cache
def _alone(name: str, arch: str):
    """The profile with no architectures of its own, compiled for arch as the native one."""
    
    profile = load(str(PROFILES / name)).profile.replace(architectures=())
    compiled = compile_profile(profile, BY_NAME[arch])
    assert [a.name for a in compiled.arches] == [arch]
    return profile, compiled


@pytest.mark.parametrize("arch", EVERY_ARCH)
@pytest.mark.parametrize("name", NAMES)
def test_every_arch_and_mode(name, arch):
    """semantics.md and issue 9: for every shared profile, every arch and every mode,
    libseccomp's program equals the meaning (but for names it lacks), and the patched
    program, as built for containers (with the check), keeps rule 1."""
    profile, compiled = _alone(name, arch)
    meaning = Meaning(profile, compiled.arches)
    report = check_program(compiled.program, meaning)
    assert not report.undecided, [u.text() for u in report.undecided[:3]]
    for d in report.differences:
        lacked = syscalls.name(arch, d.witness.nr)
        assert lacked is not None and libseccomp.resolve_name(BY_NAME[arch], lacked) < 0, d.text()
    for mode in MODES:
        patched = build(compiled, parse_mode(mode))
        own: dict[str, list[int]] = {}
        for p in compiled.pending:
            own.setdefault(p.arch, []).append(p.nr)
        rule1 = check_rule1(patched.program, compiled.program, meaning, patched.enosys, own)
        assert rule1.agrees and not rule1.differences, (mode, [d.text() for d in rule1.differences[:3]])
        # and what containers get: patch_profile with the check, nothing to repair
        checked = verify(profile, mode, native=BY_NAME[arch])
        assert checked.patched.repaired == () and checked.patched.program == patched.program, mode
