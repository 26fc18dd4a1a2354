"""A lacked name with a known alias (issue 9): arm 341 is sync_file_range2, which
libseccomp 2.5.4 lacks (a pseudo number there), and arm_sync_file_range, which it knows.

Rules on arm_sync_file_range are in libseccomp's program P; rules on sync_file_range2
are not. ocishim's rule block for 341 holds the rules on both names, and where none of
them matches it answers the default itself (stub.DEFAULT_LEAF) instead of going on into
P as blocks for numbers without an alias do. Rule 12 of semantics.md: the rules mean
what libseccomp makes of them on a name it knows, here all of them on one number.

The profile below tells the two apart. Its three ALLOW rules (default EPERM) mean

    allow  if  (a0 <= 3 and a2 == 1)  or  a0 >= 3  or  a0 > 3        (low words: arm)

libseccomp on a known name compiles exactly that (checked below: rename the lacked name
to its alias). But libseccomp 2.5.4's program for the two alias rules alone allows
a0 = 0, a2 = 3 (it loses the test on a2 under a0 <= 3), where no rule holds: a block
that falls through into P there would allow a call the profile refuses. The block must
answer EPERM there, and the checked build must need no repair.
"""

from __future__ import annotations

import copy

import pytest

from ocishim import libseccomp, syscalls
from ocishim.actions import RET_ALLOW, RET_ERRNO
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.compile import compile_profile
from ocishim.patch import build, parse_mode, patch_profile
from ocishim.profile.parse import parse_seccomp

ARM = BY_NAME["arm"]
NR = 341
EPERM_RET = RET_ERRNO | 1
U32 = 0xFFFFFFFF

pytestmark = pytest.mark.skipif(libseccomp.version() != (2, 5, 4),
                                reason="the alias and the merge bug that tells the blocks apart are "
                                       "libseccomp 2.5.4's (Debian 12)")


def _cond(index: int, op: str, value: int) -> dict:
    return {"index": index, "value": value, "op": f"SCMP_CMP_{op}"}


SECCOMP = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [
        {"names": ["arm_sync_file_range"], "action": "SCMP_ACT_ALLOW",
         "args": [_cond(0, "LE", 3), _cond(2, "EQ", 1)]},
        {"names": ["arm_sync_file_range"], "action": "SCMP_ACT_ALLOW", "args": [_cond(0, "GE", 3)]},
        {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW", "args": [_cond(0, "GT", 3)]},
    ],
}


def means(args: tuple[int, ...]) -> int:
    """The profile, written out again: any rule holding allows, else the default EPERM."""
    a0, _, a2 = (a & U32 for a in args[:3])
    return RET_ALLOW if (a0 <= 3 and a2 == 1) or a0 >= 3 or a0 > 3 else EPERM_RET


# Every rule's edges on a0 and a2, and the point where P alone departs (a0 = 0, a2 = 3).
PROBES = [(a0, 0, a2) for a0 in (0, 1, 2, 3, 4, 5, U32) for a2 in (0, 1, 2, 3, U32)]
DEPARTS = (0, 0, 3)


def _profile(seccomp: dict):
    return parse_seccomp(copy.deepcopy(seccomp), "linux.seccomp")


def _answers(program, probes=PROBES) -> dict[tuple[int, ...], int]:
    return {args: emu.run(program, ARM, NR, args).ret for args in probes}


def test_the_setting():
    """The table has both names at 341; libseccomp knows only the alias there."""
    assert syscalls.resolve("arm", "sync_file_range2") == syscalls.resolve("arm", "arm_sync_file_range") == NR
    assert libseccomp.resolve_name(ARM, "arm_sync_file_range") == NR
    assert libseccomp.resolve_name(ARM, "sync_file_range2") < 0
    compiled = compile_profile(_profile(SECCOMP), ARM)
    assert {(p.name, p.alias) for p in compiled.pending} == {("arm_sync_file_range", True),
                                                             ("sync_file_range2", False)}


def test_libseccomp_on_a_known_name_means_the_rules():
    """Rule 12's oracle: the same three rules with the lacked name renamed to its alias,
    compiled by libseccomp, answer what `means` says at every probe."""
    known = dict(SECCOMP, syscalls=[dict(r, names=["arm_sync_file_range"]) for r in SECCOMP["syscalls"]])
    compiled = compile_profile(_profile(known), ARM)
    assert not compiled.pending
    assert _answers(compiled.program) == {args: means(args) for args in PROBES}


def test_falling_through_into_p_would_answer_otherwise():
    """P, libseccomp's program with the alias rules alone, allows DEPARTS, where no rule
    holds: the premise that makes a fall-through block wrong there."""
    compiled = compile_profile(_profile(SECCOMP), ARM)
    assert means(DEPARTS) == EPERM_RET
    assert emu.run(compiled.program, ARM, NR, DEPARTS).ret == RET_ALLOW


@pytest.mark.parametrize("mode", ["unnamed", "off", "max"])
def test_the_alias_block_answers_the_default_itself(mode):
    """The stub as built (no check, no repair): the block for 341 answers what the rules
    mean at every probe, EPERM at DEPARTS."""
    compiled = compile_profile(_profile(SECCOMP), ARM)
    patched = build(compiled, parse_mode(mode))
    assert patched.stub_length > 0
    assert _answers(patched.program) == {args: means(args) for args in PROBES}


def test_the_checked_build_needs_no_repair():
    """What containers get (patch_profile, checked): the same answers, nothing repaired,
    no note. A fall-through block would be found weaker and repaired here."""
    patched = patch_profile(_profile(SECCOMP), "unnamed", native=ARM)
    assert patched.repaired == () and patched.notes == ()
    assert _answers(patched.program) == {args: means(args) for args in PROBES}


def test_a_block_without_the_alias_falls_through():
    """The same rules, marked as having no alias (as a block for a number P does not hold):
    the block goes on into P where none matches, and P allows DEPARTS. This is the
    behaviour the alias block must not have, built here by the stub itself."""
    compiled = compile_profile(_profile(SECCOMP), ARM)
    unaliased = compiled.replace(pending=tuple(p.replace(alias=False)
                                                            for p in compiled.pending))
    patched = build(unaliased, parse_mode("unnamed"))
    assert emu.run(patched.program, ARM, NR, DEPARTS).ret == RET_ALLOW
