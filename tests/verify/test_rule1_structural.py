"""Rule1Checker's structural path (issue 9) must be able to fail.

When a patched program is `stub + P` with P libseccomp's program byte for byte, the
checker walks the stub alone and accepts a jump into P without walking P again only
where it proves the jump lands where P itself would be for that call: at pc 0, or at a
pc that P, for that arch, reaches on every path having tested nothing but the arch,
with nr in A. These tests hand-build stubs in front of a real libseccomp program that
break that in each way a stub generator could:

  (i)   a jump to a wrong pc: inside another arch's section, or past one of P's tests on nr;
  (ii)  a jump to P's right nr entry with an argument word in A instead of nr;
  (iii) a jump to the nr entry of the other arch;
  (iv)  ERRNO(ENOSYS) outside E(A) (and, the other way, P's answer inside it).

Each must come out of check_rule1 as a difference whose witness the emulator confirms:
the patched program answers `got` there, P itself (rule 1's expectation outside E(A)
on numbers ocishim does not compile) answers `want`. The departure each stub makes is
also written out here (arch, nr, the patched answer, P's answer), from the profile:
P allows getpid and read on both arches and personality(8), everything else EPERM,
calls of an arch the filter lacks are killed.

The mutant at the end makes the checker trust every entry (`_prefix_reaches` always
True): the wrong entries are then missed, so this file goes red on such a checker.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

import pytest

from ocishim.actions import ENOSYS, RET_ALLOW, RET_ERRNO, RET_KILL_THREAD
from ocishim.arch import BY_NAME, X32_SYSCALL_BIT
from ocishim.bpf import emu
from ocishim.bpf.asm import Cond, Goto, Item, Label, assemble
from ocishim.bpf.insn import (ABS, JEQ, JGE, JGT, JMP, JSET, K, LD, OFF_ARCH, OFF_NR, W, Insn, bpf_class,
                              bpf_op, ld_abs, ret)
from ocishim.compile import compile_profile
from ocishim.profile.parse import parse_seccomp
from ocishim.verify import check, regions
from ocishim.verify.check import Report, check_rule1
from ocishim.verify.meaning import Meaning

X86_64, X86 = BY_NAME["x86_64"], BY_NAME["x86"]
EPERM_RET = RET_ERRNO | 1
ENOSYS_RET = RET_ERRNO | ENOSYS
# The profile, and what its numbers are (the project's table, written out: x86_64
# read 0, getpid 39, personality 135; i386 read 3, getpid 20, personality 136).
SECCOMP = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "syscalls": [
        {"names": ["getpid", "read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    ],
}
READ, GETPID = {"x86_64": 0, "x86": 3}, {"x86_64": 39, "x86": 20}
PERSONALITY = {"x86_64": 135, "x86": 136}
# E(A) handed to the checker: numbers no rule names, away from both arches' rules.
ENOSYS_RANGES = {"x86_64": ((400, 499),), "x86": ((450, 499),)}
ARG0_LO = 16  # args[0], low word, on a little-endian arch


@pytest.fixture(scope="module")
def libseccomp_program():
    profile = parse_seccomp(dict(SECCOMP), "linux.seccomp")
    compiled = compile_profile(profile, X86_64)
    assert [a.name for a in compiled.arches] == ["x86_64", "x86"]
    return compiled.program, Meaning(profile, compiled.arches, bad_arch=compiled.bad_arch_action)


def nr_entry(program: Sequence[Insn], arch) -> int:
    """The pc right after P loads nr for a call of arch, found by running P (the emulator),
    not by the stub generator: everything before it is `ld [4]`, jumps and nothing else."""
    trace = emu.run(program, arch, 0).trace
    for i, pc in enumerate(trace):
        insn = program[pc]
        if insn.code == LD | W | ABS and insn.k == OFF_NR:
            assert all(program[p].code == LD | W | ABS and program[p].k == OFF_ARCH
                       or bpf_class(program[p].code) == JMP for p in trace[:i]), trace
            return pc + 1
    raise AssertionError(f"P never loads nr for {arch.name}: {trace}")


def past_first_test(program: Sequence[Insn], pc: int) -> int:
    """Where P goes from its test at pc when the test fails: P's code past that test."""
    insn = program[pc]
    assert bpf_class(insn.code) == JMP and bpf_op(insn.code) in (JEQ, JGT, JGE, JSET), insn
    return pc + 1 + insn.jf


@dataclass(frozen=True)
class Section:
    """What the stub does for one arch: ENOSYS for nr in [lo, hi], else into P at `entry`
    (with `load` loaded into A first, when given)."""

    enosys: tuple[int, int]
    entry: int
    load: int | None = None


def stub(x86_64: Section, x86: Section) -> tuple[Insn, ...]:
    """ld [4]; one section per arch (ld [0]; jge hi+1 -> P; jge lo -> ENOSYS; -> P); any
    other arch -> P at 0. P comes right after; its pcs are named as `beyond` labels."""
    items: list[Item] = [ld_abs(OFF_ARCH),
                         Cond(JMP | JEQ | K, X86_64.audit, "s64", "next"), Label("next"),
                         Cond(JMP | JEQ | K, X86.audit, "s32", "P0")]
    beyond = {"P0": 0}
    for name, sec in (("s64", x86_64), ("s32", x86)):
        lo, hi = sec.enosys
        into = f"P{sec.entry}"
        beyond[into] = sec.entry
        items += [Label(name), ld_abs(OFF_NR),
                  Cond(JMP | JGE | K, hi + 1, f"{name}.pass", f"{name}.low"), Label(f"{name}.low"),
                  Cond(JMP | JGE | K, lo, "enosys", f"{name}.pass"), Label(f"{name}.pass")]
        if sec.load is not None:
            items.append(ld_abs(sec.load))
        items.append(Goto(into))
    items += [Label("enosys"), ret(ENOSYS_RET)]
    return assemble(items, beyond)


def seccomp_data(audit: int, nr: int, args: Sequence[int], ip: int = 0) -> bytes:
    """struct seccomp_data, little-endian (x86_64 and i386), packed here for any audit value."""
    return struct.pack("<iIQ6Q", nr - (1 << 32) if nr & 0x80000000 else nr, audit, ip, *args)


def rule1_answer(unpatched: Sequence[Insn], arch: str | None, nr: int, data: bytes) -> int:
    """Rule 1 of semantics.md here: ENOSYS inside E(A), P's own answer everywhere else."""
    if any(lo <= nr <= hi for lo, hi in ENOSYS_RANGES.get(arch or "", ())):
        return ENOSYS_RET
    return emu.run_data(unpatched, data, "little").ret


def confirmed(report: Report, program: Sequence[Insn], unpatched: Sequence[Insn]) -> set[tuple]:
    """Every difference, checked on the emulator: the patched program answers d.got at the
    witness, and d.want is rule 1's answer there: ENOSYS inside E(A), elsewhere P's own
    (no number here is compiled by ocishim). Returns {(arch, nr, got, want)}."""
    assert report.differences, "check_rule1 found nothing"
    out = set()
    for d in report.differences:
        w = d.witness
        data = seccomp_data(w.audit, w.nr, w.args, w.ip)
        assert d.got != d.want, d.text()
        assert emu.run_data(program, data, "little").ret == d.got, d.text()
        assert d.want == rule1_answer(unpatched, w.arch, w.nr, data), d.text()
        out.add((w.arch, w.nr, d.got, d.want))
    return out


def run_checker(p, meaning, x86_64: Section, x86: Section) -> tuple[Report, tuple[Insn, ...], int]:
    s = stub(x86_64, x86)
    program = s + tuple(p)
    report = check_rule1(program, p, meaning, ENOSYS_RANGES, {})
    # the structural path ran: the checker walked the stub's paths alone, not stub + P
    assert report.leaves == len(list(regions.walk(program, stop=len(s))))
    assert report.leaves < len(list(regions.walk(program)))
    return report, program, len(s)


def right(p) -> tuple[Section, Section]:
    return (Section((400, 499), nr_entry(p, X86_64)), Section((450, 499), nr_entry(p, X86)))


def test_the_right_stub_agrees(libseccomp_program):
    """The baseline: the same stub with the right entries keeps rule 1, and answers as P
    at every departure written out below (so those are the broken stubs' own)."""
    p, meaning = libseccomp_program
    report, program, _ = run_checker(p, meaning, *right(p))
    assert report.agrees and not report.differences and not report.undecided
    probes = [d for _, departures in _faults(p).values() for d in departures if d.nr not in range(380, 500)]
    assert len(probes) >= 8
    for d in probes:
        data = seccomp_data(d.audit, d.nr, (d.arg0,) + (0,) * 5)
        assert emu.run_data(program, data, "little").ret == emu.run_data(p, data, "little").ret == d.want
    assert emu.run(program, X86_64, 450).ret == ENOSYS_RET
    assert emu.run(program, X86, 450).ret == ENOSYS_RET


@dataclass(frozen=True)
class Departure:
    """A broken stub answers `got` to (arch, nr, args[0] = arg0), where rule 1 wants `want`."""

    arch: str | None  # None: x86_64's audit value with an x32 number (no arch of the filter)
    nr: int
    arg0: int
    got: int
    want: int

    @property
    def audit(self) -> int:
        return X86.audit if self.arch == "x86" else X86_64.audit

    @property
    def key(self) -> tuple:
        return (self.arch, self.nr, self.got, self.want)


def past_test_on(program: Sequence[Insn], arch, nr: int) -> int:
    """Where P goes when its `jeq #nr` for a call of arch fails: P's code after that test."""
    for pc in emu.run(program, arch, nr).trace:
        insn = program[pc]
        if insn.code == JMP | JEQ | K and insn.k == nr:
            return pc + 1 + insn.jf
    raise AssertionError(f"P never tests nr {nr} for {arch.name}")


def _faults(p) -> dict[str, tuple[tuple[Section, Section], set[Departure]]]:
    """Each broken stub, with departures it must make."""
    good64, good32 = right(p)
    e64, e32 = good64.entry, good32.entry
    return {
        # (i) x86_64 calls run x86's section past its first test: x86's numbers decide,
        # x86_64 getpid is refused, x86_64 nr 3 (close) is allowed as i386's read.
        "i: into the other arch's section": (
            (Section((400, 499), past_first_test(p, e32)), good32),
            {Departure("x86_64", GETPID["x86_64"], 0, EPERM_RET, RET_ALLOW),
             Departure("x86_64", READ["x86"], 0, RET_ALLOW, EPERM_RET)}),
        # (i) past P's first test on nr for x86_64, the one that sends x32 numbers (bit
        # 30; the filter has no x32) to the bad-arch action: they get x86_64's default.
        "i: past a test on nr": (
            (Section((400, 499), past_first_test(p, e64)), good32),
            {Departure(None, X32_SYSCALL_BIT, 0, EPERM_RET, RET_KILL_THREAD)}),
        # (i) past P's test for x86_64 personality: personality(8) is refused.
        "i: past personality's test": (
            (Section((400, 499), past_test_on(p, X86_64, PERSONALITY["x86_64"])), good32),
            {Departure("x86_64", PERSONALITY["x86_64"], 8, EPERM_RET, RET_ALLOW)}),
        # (ii) i386 calls reach x86's nr entry with args[0] in A: args[0] = 20 is getpid.
        "ii: an argument in A": (
            (good64, Section((450, 499), e32, ARG0_LO)),
            {Departure("x86", 0, GETPID["x86"], RET_ALLOW, EPERM_RET)}),
        # (ii) on x86_64, args[0] meets P's x32 test: read with args[0] >= 2^30 is killed.
        "ii: an argument in A meets the x32 test": (
            (Section((400, 499), e64, ARG0_LO), good32),
            {Departure("x86_64", READ["x86_64"], X32_SYSCALL_BIT, RET_KILL_THREAD, RET_ALLOW)}),
        # (iii) i386 calls enter x86_64's nr entry: nr 39 is allowed, i386 getpid refused.
        "iii: the other arch's entry": (
            (good64, Section((450, 499), e64)),
            {Departure("x86", GETPID["x86_64"], 0, RET_ALLOW, EPERM_RET),
             Departure("x86", GETPID["x86"], 0, EPERM_RET, RET_ALLOW)}),
        # (iv) ENOSYS from 380 on x86_64, where E(x86_64) starts at 400.
        "iv: ENOSYS below E(A)": (
            (Section((380, 499), e64), good32),
            {Departure("x86_64", 380, 0, ENOSYS_RET, EPERM_RET)}),
        # and the other way: x86_64 400..419 go on into P, though E(x86_64) starts at 400.
        "iv: P inside E(A)": (
            (Section((420, 499), e64), good32),
            {Departure("x86_64", 400, 0, EPERM_RET, ENOSYS_RET)}),
        # (iv) ENOSYS on i386 read, a number with a rule.
        "iv: ENOSYS on a ruled number": (
            (good64, Section((READ["x86"], 499), e32)),
            {Departure("x86", READ["x86"], 0, ENOSYS_RET, RET_ALLOW)}),
    }


FAULTS = ("i: into the other arch's section", "i: past a test on nr", "i: past personality's test",
          "ii: an argument in A", "ii: an argument in A meets the x32 test",
          "iii: the other arch's entry", "iv: ENOSYS below E(A)", "iv: P inside E(A)",
          "iv: ENOSYS on a ruled number")


def test_every_fault_is_listed(libseccomp_program):
    assert set(_faults(libseccomp_program[0])) == set(FAULTS)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_stub_is_a_difference(libseccomp_program, fault):
    p, meaning = libseccomp_program
    (s64, s32), departures = _faults(p)[fault]
    report, program, _ = run_checker(p, meaning, s64, s32)
    assert not report.agrees
    found = confirmed(report, program, p)
    # the departures written out above are real (the emulator, without the checker) ...
    for d in departures:
        data = seccomp_data(d.audit, d.nr, (d.arg0,) + (0,) * 5)
        assert (emu.run_data(program, data, "little").ret, rule1_answer(p, d.arch, d.nr, data)) == (d.got, d.want)
    # ... and the checker names each of them, at that arch and number
    assert {d.key for d in departures} <= found, (fault, sorted(found))


def test_the_witness_args_are_where_the_fault_is(libseccomp_program):
    """(ii): the witness of the allowed i386 call carries args[0] = getpid's or read's
    number, and the killed x86_64 call args[0] >= 2^30: the walk follows the argument."""
    p, meaning = libseccomp_program
    faults = _faults(p)
    report, _, _ = run_checker(p, meaning, *faults["ii: an argument in A"][0])
    allowed = [d for d in report.differences if d.witness.arch == "x86" and d.got == RET_ALLOW]
    assert allowed and all(d.witness.args[0] & 0xFFFFFFFF in (GETPID["x86"], READ["x86"]) for d in allowed)
    report, _, _ = run_checker(p, meaning, *faults["ii: an argument in A meets the x32 test"][0])
    killed = [d for d in report.differences if d.got == RET_KILL_THREAD]
    assert killed and all(d.witness.args[0] & 0xFFFFFFFF >= X32_SYSCALL_BIT for d in killed)


# What a checker that trusts every jump into P with nr in A misses: the wrong entries
# inside the arch. (These stubs send x86_64's x32 numbers to the same wrong pc; those
# belong to no arch of the filter, where only pc 0 counts as proven, so they are found
# even so, and "past a test on nr" departs only there.)
MISSED_BY_TRUSTING = ("i: into the other arch's section", "i: past personality's test",
                      "iii: the other arch's entry")


@pytest.mark.parametrize("fault", FAULTS)
def test_a_checker_trusting_every_entry_misses_wrong_entries(libseccomp_program, fault, monkeypatch):
    """The mutant: `_prefix_reaches` always True. The departures written out for (i) and
    (iii) inside the arch are then not reported, so test_a_broken_stub_is_a_difference
    goes red; (ii) (an argument in A, never proven) and (iv) (the stub's own answer) are
    found all the same: the tests above depend on exactly the proof the mutant drops."""
    p, meaning = libseccomp_program
    (s64, s32), departures = _faults(p)[fault]
    monkeypatch.setattr(check, "_prefix_reaches", lambda program, audit, pc, region: True)
    report, _, _ = run_checker(p, meaning, s64, s32)
    found = {(d.witness.arch, d.witness.nr, d.got, d.want) for d in report.differences}
    if fault in MISSED_BY_TRUSTING:
        assert not {d.key for d in departures} & found, sorted(found)
        assert all(d.witness.arch is None for d in report.differences), [d.text() for d in report.differences]
    else:
        assert {d.key for d in departures} <= found, (fault, sorted(found))
