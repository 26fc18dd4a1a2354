"""Every shared profile, on the arches its filter carries: libseccomp's program means the
profile, except where the host libseccomp lacks a name (a known difference ocishim
repairs, confirmed here by asking libseccomp itself), and the patched program keeps rule 1
in every mode.
"""

from __future__ import annotations

import functools
from pathlib import Path

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

PROFILES = Path(__file__).resolve().parents[3] / "shared" / "data" / "profiles"
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
