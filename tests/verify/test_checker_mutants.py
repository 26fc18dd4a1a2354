"""Mutants of the checker (issue 9): a checker made to skip an argument word, a jset, an
arch or a region boundary must fail these tests.

The suite the mutants run against (`suite`) holds only answers that come from outside
the checker:
- libseccomp's bugs (tests/verify/libseccomp_bugs.py): the checker must report each one,
  every witness must carry the answer the rules mean (written out in that module) and
  the answer the real kernel gives to libseccomp's program (neutralised);
- programs that are right: each new bug's rule set less one rule (where libseccomp's
  program is right) and a program written here by hand with jset tests for one bug's
  rules, whose answers the kernel confirms at the rules' edges; the checker must find
  each equal to the profile;
- programs with a planted fault: each of those right programs with one test of nr or
  of an argument word replaced by a jump to one of its branches. The kernel runs each on the
  rules' edge values; where it answers otherwise than the rules (written out again
  here, `rules_mean`) at some point, the checker must not say "agrees", and every
  witness it gives must carry the kernel's answer and the rules'.

Each mutant is a monkeypatch of one function of ocishim.verify (regions or check) that
drops one thing the checker must see; the test asserts that the suite then fails.
"""

from __future__ import annotations

import copy
import functools
import struct
from types import SimpleNamespace
from typing import Callable

import pytest

from ocishim import libseccomp
from ocishim.actions import RET_ALLOW, RET_ERRNO, RET_KILL_THREAD
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.bpf.insn import ABS, JEQ, JGE, JMP, JSET, K, LD, OFF_ARCH, OFF_NR, RET, W, Insn
from ocishim.compile import compile_profile, filter_arches
from ocishim.profile.parse import parse_seccomp
from ocishim.verify import check, regions
from ocishim.verify.check import InternalError, check_program
from ocishim.verify.meaning import Meaning

from kernel.harness import Call, ia32_available, kernel_results, require_kernel
from verify.libseccomp_bugs import BUGS, PERSONALITY, PINNED, Bug

X86_64 = BY_NAME["x86_64"]
ALL = {**PINNED, **BUGS}
EACCES_RET = RET_ERRNO | 13

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(libseccomp.version() >= (2, 6, 0),
                                 reason="the suite's bugs are those of libseccomp 2.5.4")]


def _profile(seccomp: dict):
    return parse_seccomp(copy.deepcopy(seccomp), "linux.seccomp")


@functools.cache
def _compiled(name: str, variant: int = -1):
    """libseccomp's program for a bug's rule set (variant i: without rule i)."""
    seccomp = ALL[name].seccomp
    if variant >= 0:
        rules = seccomp["syscalls"]
        seccomp = dict(seccomp, syscalls=rules[:variant] + rules[variant + 1:])
    profile = _profile(seccomp)
    return profile, compile_profile(profile, X86_64)


def _call(arch: str, nr: int, args) -> Call:
    if arch == "x86":
        if reason := ia32_available():
            pytest.fail(f"an i386 call is needed: {reason}")
        return Call(nr, tuple(args), "i386")
    return Call(nr, tuple(args), "x86_64")


# --------------------------------------------------------------------------------------
# A program written here by hand for the rules of "masked-eq-beside-ne-and-eq-x32":
# personality gets EACCES when (a0 != 0 AND a2 == 0) OR a0 & 1 == 0, on x86_64 (64-bit
# arguments) and x32 (low words); everything else ALLOW; another arch KILL (libseccomp's
# bad-arch default). The mask test is a jset, which libseccomp never writes.
# --------------------------------------------------------------------------------------

HAND_BUG = "masked-eq-beside-ne-and-eq-x32"


def _assemble(items) -> tuple[Insn, ...]:
    """Instructions and labels (str); a jump is (op, k, true_label, false_label)."""
    where, pc = {}, 0
    for it in items:
        if isinstance(it, str):
            where[it] = pc
        else:
            pc += 1
    out = []
    for it in items:
        if isinstance(it, str):
            continue
        if not isinstance(it, Insn):
            op, k, t, f = it
            it = Insn(JMP | op | K, where[t] - len(out) - 1, where[f] - len(out) - 1, k)
        out.append(it)
    return tuple(out)


def _ld(off: int) -> Insn:
    return Insn(LD | W | ABS, 0, 0, off)


def _ret(v: int) -> Insn:
    return Insn(RET | K, 0, 0, v)


HAND_PROGRAM = _assemble([
    _ld(OFF_ARCH), (JEQ, X86_64.audit, "arch_ok", "bad"),
    "arch_ok", _ld(OFF_NR), (JGE, 0x40000000, "x32", "x86_64"),
    # x86_64: a0 & 1 == 0 is bit 0 of a0's low word clear (the high word's mask is 0)
    "x86_64", (JEQ, PERSONALITY["x86_64"], "p64", "allow"),
    "p64", _ld(16), (JSET, 1, "odd64", "eacces"),
    # a0 is odd, so a0 != 0: EACCES when a2 == 0 (both words)
    "odd64", _ld(32), (JEQ, 0, "a2_hi", "allow"),
    "a2_hi", _ld(36), (JEQ, 0, "eacces", "allow"),
    "x32", (JEQ, PERSONALITY["x32"], "p32", "allow"),
    "p32", _ld(16), (JSET, 1, "odd32", "eacces"),
    "odd32", _ld(32), (JEQ, 0, "eacces", "allow"),
    "allow", _ret(RET_ALLOW), "eacces", _ret(EACCES_RET), "bad", _ret(RET_KILL_THREAD),
])

# The rules' edges: each condition true and false, low and high words.
HAND_POINTS = [(arch, (a0, 0, a2)) for arch in ("x86_64", "x32")
               for a0 in (0, 1, 2, 3, 2**32, 2**32 + 1) for a2 in (0, 1, 2**32)]


@functools.cache
def _hand_program_confirmed() -> bool:
    """The kernel answers the hand program as the rules mean at every edge point."""
    require_kernel()
    means = ALL[HAND_BUG].means
    got = kernel_results(HAND_PROGRAM, [_call(a, PERSONALITY[a], args) for a, args in HAND_POINTS])
    assert got == [means(a, args) for a, args in HAND_POINTS]
    return True


# --------------------------------------------------------------------------------------
# Programs with a planted fault, and what the kernel answers them at the rules' edges.
# --------------------------------------------------------------------------------------

U32, U64 = 0xFFFFFFFF, 2**64 - 1
OPS = {"SCMP_CMP_EQ": lambda a, v, w: a == v, "SCMP_CMP_NE": lambda a, v, w: a != v,
       "SCMP_CMP_LT": lambda a, v, w: a < v, "SCMP_CMP_LE": lambda a, v, w: a <= v,
       "SCMP_CMP_GT": lambda a, v, w: a > v, "SCMP_CMP_GE": lambda a, v, w: a >= v,
       "SCMP_CMP_MASKED_EQ": lambda a, v, w: a & v == w & v}


def rules_mean(seccomp: dict, arch: str | None, nr: int, args) -> int | None:
    """What rules on personality with ERRNO actions and an ALLOW default mean (rules OR'd,
    conditions ANDed, 32-bit arches on low words); None where two errnos both hold.
    Another arch gets libseccomp's bad-arch default, KILL."""
    assert seccomp["defaultAction"] == "SCMP_ACT_ALLOW"
    if arch is None:
        return RET_KILL_THREAD
    if nr != PERSONALITY[arch]:
        return RET_ALLOW
    width = U32 if arch in ("x86", "x32") else U64
    hits = {RET_ERRNO | r["errnoRet"] for r in seccomp["syscalls"]
            if all(OPS[c["op"]](args[c["index"]] & width, c["value"] & width, c.get("valueTwo", 0) & width)
                   for c in r["args"])}
    return None if len(hits) > 1 else (hits.pop() if hits else RET_ALLOW)


def _edges(v: int) -> set[int]:
    hi, lo = v >> 32, v & U32
    return {x & U64 for x in (0, 1, v - 1, v, v + 1, U32, 2**32, 2**32 + 1, U64,
                              hi << 32 | (lo + 1) & U32, hi << 32 | (lo - 1) & U32, lo,
                              ((hi + 1) & U32) << 32 | lo)}


def edge_points(seccomp: dict, arch: str) -> list[tuple[int, ...]]:
    """Argument vectors at every condition's edges, one index at a time and two at once."""
    per: dict[int, set[int]] = {}
    for r in seccomp["syscalls"]:
        for c in r["args"]:
            per.setdefault(c["index"], {0}).update(_edges(c["value"]) | _edges(c.get("valueTwo", 0)))
    width = U32 if arch == "x86" else U64  # an i386 call carries 32-bit arguments
    points = {(0,) * 6}
    for i, values in per.items():
        for v in values:
            points.add(tuple(v & width if j == i else 0 for j in range(6)))
    items = sorted(per.items())
    for (i, vi), (j, vj) in zip(items, items[1:]):
        for a in vi:
            for b in vj:
                points.add(tuple(a & width if k == i else b & width if k == j else 0 for k in range(6)))
    return sorted(points)


def _data_tests(program: tuple[Insn, ...]) -> list[int]:
    """The conditional jumps where the accumulator holds nr or an argument word on every
    path (seccomp programs only jump forward, so one pass in order sees every path)."""
    reaching: list[set] = [set() for _ in program]
    reaching[0].add(None)
    out = []
    for pc, insn in enumerate(program):
        held = reaching[pc]
        if insn.code == LD | W | ABS:
            after = {insn.k}
        elif insn.code & 0x07 == LD:
            after = {None}
        else:
            after = held
        if insn.code & 0x07 == JMP and insn.code & 0xF0 != 0:
            if held and all(w is not None and (w == OFF_NR or w >= 16) for w in held):
                out.append(pc)
            targets = (pc + 1 + insn.jt, pc + 1 + insn.jf)
        elif insn.code & 0x07 == JMP:
            targets = (pc + 1 + insn.k,)
        elif insn.code & 0x07 == RET:
            targets = ()
        else:
            targets = (pc + 1,)
        for t in targets:
            reaching[t] |= after
    return out


def _forced(program: tuple[Insn, ...], pc: int, taken: bool) -> tuple[Insn, ...]:
    """program with the test at pc replaced by a jump to its true (taken) or false branch."""
    insn = program[pc]
    return program[:pc] + (Insn(JMP | 0x00, 0, 0, insn.jt if taken else insn.jf),) + program[pc + 1:]


@functools.cache
def faulty_programs() -> tuple:
    """(what, seccomp, program) for each planted fault that the kernel shows at some edge point."""
    require_kernel()
    bases = [(f"{n} without rule {i}", _without(BUGS[n].seccomp, i), _compiled(n, i)[1].program)
             for n in BUGS for i in range(len(BUGS[n].seccomp["syscalls"]))]
    bases.append(("hand program", ALL[HAND_BUG].seccomp, HAND_PROGRAM))
    out = []
    for what, seccomp, program in bases:
        arches = ["x86_64"] + [a[len("SCMP_ARCH_"):].lower() for a in seccomp["architectures"][1:]]
        points = [(a, PERSONALITY[a], args) for a in arches for args in edge_points(seccomp, a)]
        points += [(a, PERSONALITY[a] + d, (0,) * 6) for a in arches for d in (-1, 1)]
        for pc in _data_tests(program):
            for taken in (True, False):
                faulty = _forced(program, pc, taken)
                got = kernel_results(faulty, [_call(a, nr, args) for a, nr, args in points])
                shown = [(a, nr, args) for (a, nr, args), g in zip(points, got)
                         if rules_mean(seccomp, a, nr, args) not in (None, g)]
                if shown:
                    out.append((f"{what}, test at {pc} always {'taken' if taken else 'not taken'}",
                                seccomp, faulty))
    return tuple(out)


def _without(seccomp: dict, i: int) -> dict:
    rules = seccomp["syscalls"]
    return dict(seccomp, syscalls=rules[:i] + rules[i + 1:])


# --------------------------------------------------------------------------------------
# The suite.
# --------------------------------------------------------------------------------------

def bugs_are_reported(names=tuple(ALL)) -> None:
    """Every bug is reported; every witness shows the rules' answer and the kernel's."""
    for name in names:
        bug: Bug = ALL[name]
        profile, compiled = _compiled(name)
        report = check_program(compiled.program, Meaning(profile, compiled.arches))
        assert report.differences, f"{name}: the checker finds libseccomp's program equal to the profile"
        for d in report.differences:
            assert d.want == bug.means(d.witness.arch, d.witness.args) != d.got, f"{name}: {d.text()}"
        kernel = kernel_results(compiled.program, [_call(d.witness.arch, d.witness.nr, d.witness.args)
                                                   for d in report.differences])
        assert kernel == [d.got for d in report.differences], name


def right_programs_agree() -> None:
    """Programs that are right are found equal to their profiles."""
    for name in BUGS:
        for i in range(len(BUGS[name].seccomp["syscalls"])):
            profile, compiled = _compiled(name, i)
            report = check_program(compiled.program, Meaning(profile, compiled.arches))
            assert report.agrees and not report.differences, \
                f"{name} without rule {i}: {[d.text() for d in report.differences]}"
    assert _hand_program_confirmed()
    profile, compiled = _compiled(HAND_BUG)
    report = check_program(HAND_PROGRAM, Meaning(profile, compiled.arches))
    assert report.agrees and not report.differences, [d.text() for d in report.differences]


def planted_faults_are_reported() -> None:
    """No planted fault the kernel shows is found equal to the profile; every witness is genuine."""
    faulty = faulty_programs()
    assert len(faulty) >= 20, len(faulty)
    for what, seccomp, program in faulty:
        profile = _profile(seccomp)
        report = check_program(program, Meaning(profile, filter_arches(profile, X86_64)))
        assert not report.agrees and report.differences, f"{what}: found equal to the profile"
        kernel = kernel_results(program, [_call(d.witness.arch, d.witness.nr, d.witness.args)
                                          for d in report.differences])
        for d, k in zip(report.differences, kernel):
            assert d.got == k and d.want == rules_mean(seccomp, d.witness.arch, d.witness.nr, d.witness.args), \
                f"{what}: {d.text()}, kernel {k:#x}"


def suite() -> None:
    bugs_are_reported()
    right_programs_agree()
    planted_faults_are_reported()


def test_the_suite_passes_with_the_real_checker():
    require_kernel()
    suite()


# --------------------------------------------------------------------------------------
# Mutants.
# --------------------------------------------------------------------------------------

def _walk_skips(predicate: Callable[[regions.Atom], bool], outcome: bool):
    """A walk that never splits on the atoms predicate picks: their test is always `outcome`."""
    def mutate(monkeypatch):
        real = regions._jump_atom

        def mutant(pc, insn, acc):
            atom = real(pc, insn, acc)
            return outcome if isinstance(atom, regions.Atom) and predicate(atom) else atom
        monkeypatch.setattr(regions, "_jump_atom", mutant)
    return mutate


def _skip_word(offset: int, outcome: bool):
    return _walk_skips(lambda atom: atom.word == offset, outcome)


def _meaning_skips_word(offset: int):
    """The meaning's pieces are not cut at tests on one word."""
    def mutate(monkeypatch):
        real = check.condition_atoms
        monkeypatch.setattr(check, "condition_atoms", lambda arch, c: [a for a in real(arch, c) if a.word != offset])
    return mutate


def _skip_arch(name: str):
    """One arch of the filter is not compared at all."""
    def mutate(monkeypatch):
        real = check.by_arch

        def mutant(meaning, region):
            for part, arch in real(meaning, region):
                if arch is None or arch.name != name:
                    yield part, arch
        monkeypatch.setattr(check, "by_arch", mutant)
    return mutate


def _x32_as_x86_64(monkeypatch):
    """x86_64 and x32 are not told apart by bit 30 of nr: both are taken as x86_64."""
    real = check.by_arch

    def mutant(meaning, region):
        for part, arch in real(meaning, region):
            yield part, (BY_NAME["x86_64"] if arch is not None and arch.name == "x32" else arch)
    monkeypatch.setattr(check, "by_arch", mutant)


def _split_gt_moved(delta: int):
    def mutate(monkeypatch):
        real = regions.split_gt
        monkeypatch.setattr(regions, "split_gt", lambda ws, k: real(ws, max(0, min(k + delta, 0xFFFFFFFF))))
    return mutate


def _meaning_drops(op: str):
    """The meaning's pieces are not cut at one kind of test (range or equality)."""
    def mutate(monkeypatch):
        real = check.condition_atoms
        monkeypatch.setattr(check, "condition_atoms", lambda arch, c: [a for a in real(arch, c) if a.op != op])
    return mutate


def _complement_loses_a_cube(monkeypatch):
    """v & mask != k loses the part where only the highest differing bit differs."""
    real = regions.split_masked_eq

    def mutant(ws, mask, k):
        yes, no = real(ws, mask, k)
        return yes, no[:-1] if len(no) > 1 else no
    monkeypatch.setattr(regions, "split_masked_eq", mutant)


def _numbers_not_split(monkeypatch):
    """The numbers with rules are not cut out of a leaf: the rest takes the first one's meaning."""
    real = check.by_numbers

    def mutant(region, numbers):
        found, rest = real(region, numbers)
        return found[:1], None if found else rest
    monkeypatch.setattr(check, "by_numbers", mutant)


ARG_WORDS = {f"a{i}.{half}": 16 + 8 * i + (4 if half == "hi" else 0) for i in range(3) for half in ("lo", "hi")}

MUTANTS: dict[str, Callable] = {
    # an argument word (x86_64 little-endian offsets; the 32-bit arches use the low words)
    **{f"walk skips {w} (taken)": _skip_word(off, True) for w, off in ARG_WORDS.items()},
    **{f"walk skips {w} (not taken)": _skip_word(off, False) for w, off in ARG_WORDS.items()},
    **{f"meaning skips {w}": _meaning_skips_word(off) for w, off in ARG_WORDS.items()},
    # a jset
    "walk ignores jset (never set)": _walk_skips(lambda a: a.op == "set", False),
    "walk ignores jset (always set)": _walk_skips(lambda a: a.op == "set", True),
    # an arch
    "skips x86": _skip_arch("x86"),
    "skips x32": _skip_arch("x32"),
    "skips x86_64": _skip_arch("x86_64"),
    "x32 taken as x86_64": _x32_as_x86_64,
    # a region boundary
    "split_gt one above": _split_gt_moved(+1),
    "split_gt one below": _split_gt_moved(-1),
    "meaning not cut at ranges": _meaning_drops("gt"),
    "meaning not cut at equalities": _meaning_drops("eq"),
    "masked complement loses a cube": _complement_loses_a_cube,
    "numbers with rules not cut out": _numbers_not_split,
}


def _blind_emulator(monkeypatch):
    """The checker's own safety net taken away: the emulator that confirms each witness
    answers as the (mutated) walk does, so only the kernel and the rules can catch it."""
    class Blind:
        arg_offsets = staticmethod(emu.arg_offsets)

        @staticmethod
        def run_data(program, data, byteorder):
            words = struct.unpack("<16I" if byteorder == "little" else ">16I", data)
            leaf = next(regions.walk(program, tuple((regions.Cube(w, w),) for w in words)))
            return SimpleNamespace(ret=leaf.answer)
    monkeypatch.setattr(check, "emu", Blind)


@pytest.mark.parametrize("blind", [False, True], ids=["", "emulator blinded"])
@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_mutant_fails_the_suite(monkeypatch, mutant, blind):
    require_kernel()
    faulty_programs()  # on the real checker's side: the kernel, not the mutant
    _hand_program_confirmed()
    MUTANTS[mutant](monkeypatch)
    if blind:
        _blind_emulator(monkeypatch)
    # InternalError is an AssertionError: the walk and the emulator disagree on a witness
    with pytest.raises(AssertionError) as info:
        suite()
    if blind:
        assert not isinstance(info.value, InternalError)


def test_the_blind_emulator_alone_passes_the_suite(monkeypatch):
    """Taking the emulator's confirmation away does not break the real checker: a mutant
    that fails the suite with it blinded is caught by the kernel and the rules."""
    require_kernel()
    _blind_emulator(monkeypatch)
    suite()
