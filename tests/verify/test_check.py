"""The checker on programs whose faults are known: libseccomp's two pinned merge bugs
(confirmed on the real kernel), small deliberately wrong programs, and mutants of the
checker that must make these tests fail.

Expected answers are written out here (the rule's condition as a Python expression),
never taken from ocishim.verify.meaning.
"""

from __future__ import annotations

import errno
from typing import Callable

import pytest

from ocishim import libseccomp, syscalls
from ocishim.actions import RET_ALLOW, RET_KILL_THREAD, action_value
from ocishim.arch import BY_NAME
from ocishim.bpf.insn import (ABS, ALU, AND, JEQ, JGT, JMP, JSET, K, LD, OFF_ARCH, OFF_NR, RET, W,
                              Insn)
from ocishim.compile import compile_profile
from ocishim.profile.model import ArgCond, Profile, Rule
from ocishim.verify import check, regions
from ocishim.verify.check import Difference, InternalError, check_program
from ocishim.verify.meaning import Meaning

from kernel.harness import Call, ia32_available, kernel_results, require_kernel

X86_64, X86 = BY_NAME["x86_64"], BY_NAME["x86"]
EPERM_RET = action_value("SCMP_ACT_ERRNO", None)
EACCES_RET = action_value("SCMP_ACT_ERRNO", errno.EACCES)
PERSONALITY = {a: syscalls.resolve(a, "personality") for a in ("x86_64", "x86")}


def _rule(action, errno_ret, *conds) -> Rule:
    return Rule(("personality",), action, errno_ret, tuple(ArgCond(*c) for c in conds), "syscalls[0]")


def _profile(*rules: Rule, arches=()) -> Profile:
    return Profile("SCMP_ACT_ERRNO", None, tuple(arches),
                   syscalls=tuple(r.__class__(r.names, r.action, r.errno_ret, r.args, f"syscalls[{i}]")
                                  for i, r in enumerate(rules)))


# --------------------------------------------------------------------------------------
# libseccomp 2.5.4's pinned merge bugs (tests/patch/test_rules.py::test_libseccomp_departs_*).
# --------------------------------------------------------------------------------------

def bug_64bit_ranges():
    """arg2 < 10 OR arg2 > 0x1_0000000a -> EACCES, on x86_64."""
    profile = _profile(_rule("SCMP_ACT_ERRNO", errno.EACCES, (2, 10, 0, "SCMP_CMP_LT"),
                             (2, 2**32 + 10, 0, "SCMP_CMP_GT")))

    def means(arch, nr, args):
        assert arch == "x86_64" and nr == PERSONALITY["x86_64"]
        return EACCES_RET if args[2] < 10 or args[2] > 2**32 + 10 else EPERM_RET
    return profile, X86_64, ("x86_64",), means


def bug_or_with_ne_32bit():
    """(a0 != 1 AND a1 == 0) OR a0 == 0 -> ALLOW, on i386 (low words only)."""
    profile = _profile(_rule("SCMP_ACT_ALLOW", None, (0, 1, 0, "SCMP_CMP_NE"), (1, 0, 0, "SCMP_CMP_EQ")),
                       _rule("SCMP_ACT_ALLOW", None, (0, 0, 0, "SCMP_CMP_EQ")), arches=("SCMP_ARCH_X86",))

    def means(arch, nr, args):
        assert nr == PERSONALITY[arch]
        width = 2**64 - 1 if arch == "x86_64" else 0xFFFFFFFF
        a0, a1 = args[0] & width, args[1] & width
        return RET_ALLOW if (a0 != 1 and a1 == 0) or a0 == 0 else EPERM_RET
    return profile, X86_64, ("x86_64", "x86"), means


BUGS = {"or of 64-bit ranges": bug_64bit_ranges, "or with ne on 32-bit": bug_or_with_ne_32bit}


def _bug_differences(case) -> tuple[list[Difference], Callable]:
    profile, native, arch, means = case()
    compiled = compile_profile(profile, native)
    report = check_program(compiled.program, Meaning(profile, compiled.arches))
    assert not report.undecided, report.undecided
    for d in report.differences:
        assert d.witness.arch in arch, d.text()
        # the meaning written out here, not the checker's, says what the witness should get
        assert d.want == means(d.witness.arch, d.witness.nr, d.witness.args) != d.got, d.text()
    return list(report.differences), compiled.program


@pytest.mark.skipif(libseccomp.version() >= (2, 6, 0), reason="the bugs are those of libseccomp < 2.6")
@pytest.mark.parametrize("name", BUGS)
def test_pinned_libseccomp_bugs_are_reported_with_witnesses(name):
    differences, _ = _bug_differences(BUGS[name])
    assert differences, f"{name}: the checker finds libseccomp's program equal to the profile"


@pytest.mark.skipif(libseccomp.version() >= (2, 6, 0), reason="the bugs are those of libseccomp < 2.6")
@pytest.mark.parametrize("name", BUGS)
def test_the_kernel_confirms_each_witness(name):
    """The neutralised filter, loaded for real, answers each witness as the checker says."""
    require_kernel()
    differences, program = _bug_differences(BUGS[name])
    calls = []
    for d in differences:
        abi = "i386" if d.witness.arch == "x86" else "x86_64"
        if abi == "i386" and (reason := ia32_available()):
            pytest.fail(f"i386 calls are needed to confirm {d.text()}: {reason}")
        calls.append(Call(d.witness.nr, d.witness.args, abi))
    got = kernel_results(program, calls)
    assert got == [d.got for d in differences]
    assert all(d.got != d.want for d in differences)


# --------------------------------------------------------------------------------------
# Deliberately wrong programs: each fault must be reported, at a witness that shows it.
# Profile: on x86_64 and x86, personality is allowed when arg0 <= 10 (64-bit compare on
# x86_64, low word on x86); everything else EPERM.
# --------------------------------------------------------------------------------------

PLANTED_PROFILE = _profile(_rule("SCMP_ACT_ALLOW", None, (0, 10, 0, "SCMP_CMP_LE")), arches=("SCMP_ARCH_X86",))


def planted_means(arch: str, nr: int, args) -> int:
    if nr != PERSONALITY[arch]:
        return EPERM_RET
    value = args[0] if arch == "x86_64" else args[0] & 0xFFFFFFFF
    return RET_ALLOW if value <= 10 else EPERM_RET


def _ld(off):
    return Insn(LD | W | ABS, 0, 0, off)


def _ret(v):
    return Insn(RET | K, 0, 0, v)


def _j(op, k, jt, jf):
    return Insn(JMP | op | K, jt, jf, k)


def _assemble(items) -> tuple[Insn, ...]:
    """Instructions and labels (str); a jump is (op, k, true_label, false_label), labels or 0 = next."""
    where, pc = {}, 0
    for it in items:
        if isinstance(it, str):
            where[it] = pc
        else:
            pc += 1
    out, pc = [], 0
    for it in items:
        if isinstance(it, str):
            continue
        if isinstance(it, tuple) and not isinstance(it, Insn):
            op, k, t, f = it
            off = [0 if x == 0 else where[x] - pc - 1 for x in (t, f)]
            it = Insn(JMP | op | K, off[0], off[1], k)
        out.append(it)
        pc += 1
    return tuple(out)


def _program(x86_64_arg_test: list, x86_arg_test: list, other_arch=RET_KILL_THREAD) -> tuple[Insn, ...]:
    """arch dispatch; per arch: nr == personality ? <arg test> : EPERM. An arg test jumps to
    the labels "<arch>_allow" or "<arch>_deny"; x86_64 numbers from 2^30 but -1 are a bad arch."""
    def body(arch, test):
        return [t.replace("ALLOW", f"{arch}_allow").replace("DENY", f"{arch}_deny") if isinstance(t, str)
                else (t[0], t[1], *(x.replace("ALLOW", f"{arch}_allow").replace("DENY", f"{arch}_deny")
                                    if isinstance(x, str) else x for x in t[2:]))
                if isinstance(t, tuple) and not isinstance(t, Insn) else t for t in test]
    return _assemble(
        [_ld(OFF_ARCH), (JEQ, X86_64.audit, "x86_64", 0), (JEQ, X86.audit, "x86", "bad"),
         "x86_64", _ld(OFF_NR), (JGT, 0x3FFFFFFF, "high", 0),
         (JEQ, PERSONALITY["x86_64"], 0, "x86_64_deny")] + body("x86_64", x86_64_arg_test) +
        ["x86_64_allow", _ret(RET_ALLOW), "high", (JEQ, 0xFFFFFFFF, 0, "bad"),
         "x86_64_deny", _ret(EPERM_RET),
         "x86", _ld(OFF_NR), (JEQ, PERSONALITY["x86"], 0, "x86_deny")] + body("x86", x86_arg_test) +
        ["x86_allow", _ret(RET_ALLOW), "x86_deny", _ret(EPERM_RET), "bad", _ret(other_arch)])


# x86_64: arg0 <= 10 as hi == 0 and lo <= 10
GOOD_X86_64 = [_ld(20), (JEQ, 0, 0, "DENY"), _ld(16), (JGT, 10, "DENY", "ALLOW")]
GOOD_X86 = [_ld(16), (JGT, 10, "DENY", "ALLOW")]

PLANTED = {
    # fault: (program, a predicate a witness showing the fault must satisfy)
    "high word not tested": (_program([_ld(16), (JGT, 10, "DENY", "ALLOW")], GOOD_X86),
                             lambda w: w.arch == "x86_64" and w.args[0] >> 32 and w.args[0] & 0xFFFFFFFF <= 10),
    "a jset lets bit 5 through": (_program(GOOD_X86_64, [_ld(16), (JSET, 0x20, "ALLOW", 0)] + GOOD_X86),
                                  lambda w: w.arch == "x86" and w.args[0] & 0x20),
    "the x86 section is wrong": (_program(GOOD_X86_64, [_ld(16), (JGT, 11, "DENY", "ALLOW")]),
                                 lambda w: w.arch == "x86" and w.args[0] & 0xFFFFFFFF == 11),
    "off by one at the boundary": (_program([_ld(20), (JEQ, 0, 0, "DENY"), _ld(16), (JGT, 9, "DENY", "ALLOW")],
                                            GOOD_X86),
                                   lambda w: w.arch == "x86_64" and w.args[0] == 10),
    "masked test": (_program(GOOD_X86_64, [_ld(16), Insn(ALU | AND | K, 0, 0, 0xF0), (JEQ, 0x40, "ALLOW", 0)]
                             + GOOD_X86),
                    lambda w: w.arch == "x86" and w.args[0] & 0xF0 == 0x40 and w.args[0] & 0xFFFFFFFF > 10),
    "unknown arch allowed": (_program(GOOD_X86_64, GOOD_X86, other_arch=RET_ALLOW),
                             lambda w: w.arch is None and w.audit not in (X86_64.audit, X86.audit)),
}


def planted_findings() -> None:
    """Every planted fault is reported, only faults are, and the sound program agrees."""
    meaning = Meaning(PLANTED_PROFILE, (X86_64, X86))
    sound = check_program(_program(GOOD_X86_64, GOOD_X86), meaning)
    assert sound.agrees and not sound.differences, [d.text() for d in sound.differences]
    for fault, (program, shows) in PLANTED.items():
        report = check_program(program, meaning)
        assert report.differences, f"{fault}: not reported"
        for d in report.differences:
            want = RET_KILL_THREAD if d.witness.arch is None else \
                planted_means(d.witness.arch, d.witness.nr, d.witness.args)
            assert d.want == want != d.got, f"{fault}: {d.text()}"
        assert any(shows(d.witness) for d in report.differences), \
            f"{fault}: no witness shows it: {[d.text() for d in report.differences]}"


def test_planted_faults_are_reported():
    planted_findings()


def test_pinned_bugs_and_planted_faults():
    """What the mutants below must break: both suites together."""
    planted_findings()
    if libseccomp.version() < (2, 6, 0):
        for case in BUGS.values():
            assert _bug_differences(case)[0]


# --------------------------------------------------------------------------------------
# Mutants of the checker: each must make the suites above fail.
# --------------------------------------------------------------------------------------

def _skip_high_word(monkeypatch):
    """The walk never splits on the high word of arg0 or arg2 (x86_64): always taken."""
    real = regions._jump_atom

    def mutant(pc, insn, acc):
        atom = real(pc, insn, acc)
        return True if isinstance(atom, regions.Atom) and atom.word in (20, 36) else atom
    monkeypatch.setattr(regions, "_jump_atom", mutant)


def _ignore_jset(monkeypatch):
    real = regions._jump_atom

    def mutant(pc, insn, acc):
        atom = real(pc, insn, acc)
        return False if isinstance(atom, regions.Atom) and atom.op == "set" else atom
    monkeypatch.setattr(regions, "_jump_atom", mutant)


def _ignore_an_arch(monkeypatch):
    """Only the first arch of the filter is walked."""
    real = check.by_arch

    def mutant(meaning, region):
        first = meaning.arches[0].audit
        for part, arch in real(meaning, region):
            if arch is not None and arch.audit == first:
                yield part, arch
    monkeypatch.setattr(check, "by_arch", mutant)


def _drop_range_boundaries(monkeypatch):
    """The meaning's pieces are not cut at range conditions (only at equalities)."""
    real = check.condition_atoms
    monkeypatch.setattr(check, "condition_atoms", lambda arch, c: [a for a in real(arch, c) if a.op != "gt"])


def _boundary_off_by_one(monkeypatch):
    real = regions.split_gt
    monkeypatch.setattr(regions, "split_gt", lambda ws, k: real(ws, min(k + 1, 0xFFFFFFFF)))


MUTANTS = {"skips an argument word": _skip_high_word, "ignores jset": _ignore_jset,
           "ignores an arch": _ignore_an_arch, "drops a region boundary": _drop_range_boundaries,
           "moves a region boundary": _boundary_off_by_one}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_mutants_fail_the_suite(monkeypatch, mutant):
    MUTANTS[mutant](monkeypatch)
    with pytest.raises((AssertionError, InternalError)):
        test_pinned_bugs_and_planted_faults()
