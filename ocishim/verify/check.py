"""Compare a program with what it should answer, over every arch, nr and argument value.

The program is walked symbolically (regions.walk): its leaves partition all of
seccomp_data, each with one answer. Each leaf is then cut by every test the expectation
depends on (arch, E(A) ranges, the numbers with rules, each condition's word tests), so
that the expectation is constant on every piece: one witness per piece decides it. Every
reported difference carries that witness, and the emulator confirms the program's answer
on it before it is reported.

Two expectations:
- Expected.meaning: the profile's meaning (meaning.Meaning), with ENOSYS inside E(A)
  when E(A) is given (for a program from elsewhere, or to check a patched one directly);
- Expected.rule1: rule 1 of semantics.md for a patched program: ENOSYS inside E(A); the
  meaning on numbers ocishim compiles itself (names the host libseccomp lacks); the
  unpatched program's own answers everywhere else.
"""

from __future__ import annotations

import bisect
import struct
from typing import Iterator, Mapping, Sequence

from ..record import Record
from .. import syscalls
from ..actions import ENOSYS, RET_ERRNO, describe
from ..arch import BY_AUDIT, X32_SYSCALL_BIT, Arch
from ..bpf import emu
from ..bpf.insn import ABS, LD, OFF_ARCH, OFF_NR, W, Insn
from ..profile.model import ArgCond
from . import regions
from .meaning import Meaning, Unsettled, holds
from .regions import Atom, Region, restrict, split

U32 = 0xFFFFFFFF
ENOSYS_RET = RET_ERRNO | ENOSYS
Ranges = tuple[tuple[int, int], ...]

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


class InternalError(AssertionError):
    """The symbolic walk and the emulator disagree on a witness: a bug in the checker."""


class Witness(Record):
    # arch: None: an arch the filter does not carry
    __slots__ = ("arch", "audit", "nr", "args", "ip")

    def __init__(self, arch: str | None, audit: int, nr: int, args: tuple[int, ...], ip: int = 0) -> None:
        _set(self, "arch", arch)
        _set(self, "audit", audit)
        _set(self, "nr", nr)
        _set(self, "args", args)
        _set(self, "ip", ip)

    def text(self) -> str:
        name = syscalls.name(self.arch, self.nr) if self.arch in syscalls.arches() else None
        call = f"{name or 'nr'}({self.nr:#x})" if self.nr >= 0x10000 else f"{name or 'nr'}({self.nr})"
        args = ", ".join(f"{a:#x}" for a in self.args)
        where = self.arch or f"arch {self.audit:#010x}"
        return f"{where} {call} args=({args})"

    def as_json(self) -> dict:
        return {"arch": self.arch, "audit": self.audit, "nr": self.nr, "args": list(self.args)}


class Difference(Record):
    """The program answers `got` where `want` is expected, e.g. at `witness`."""

    # check: which comparison, e.g. "libseccomp vs profile"
    # known: why this difference is expected (and handled elsewhere)
    __slots__ = ("check", "witness", "got", "want", "known")
    _defaults = {"known": None}
    check: str
    witness: Witness
    got: int
    want: int
    known: str | None

    def text(self) -> str:
        note = f"  [known: {self.known}]" if self.known else ""
        return f"{self.check}: {self.witness.text()}: program {describe(self.got)}, expected {describe(self.want)}{note}"

    def as_json(self) -> dict:
        return {"check": self.check, "witness": self.witness.as_json(), "got": describe(self.got),
                "expected": describe(self.want), "got_value": self.got, "expected_value": self.want,
                "known": self.known}


class Undecided(Record):
    """A piece of the space where the meaning is unsettled (meaning.Unsettled)."""

    __slots__ = ("check", "witness", "reason")
    check: str
    witness: Witness
    reason: str

    def text(self) -> str:
        return f"{self.check}: cannot decide at {self.witness.text()}: {self.reason}"

    def as_json(self) -> dict:
        return {"check": self.check, "witness": self.witness.as_json(), "reason": self.reason}


class Report(Record):
    # leaves: program paths walked
    # pieces: pieces compared
    __slots__ = ("check", "differences", "undecided", "leaves", "pieces")
    check: str
    differences: tuple[Difference, ...]
    undecided: tuple[Undecided, ...]
    leaves: int
    pieces: int

    @property
    def agrees(self) -> bool:
        return not self.undecided and all(d.known for d in self.differences)


# --------------------------------------------------------------------------------------
# Cutting a region by what the expectation depends on.
# --------------------------------------------------------------------------------------

def by_arch(meaning: Meaning, region: Region) -> Iterator[tuple[Region, Arch | None]]:
    """The parts of region for each arch of the filter, and the rest (None: bad arch)."""
    arch_word = region[OFF_ARCH // 4]
    if len(arch_word) == 1 and arch_word[0].lo == arch_word[0].hi:
        # one arch value, the common case: no cutting, unless nr spans x32's split
        audit = arch_word[0].lo
        nrs = region[OFF_NR // 4]
        lo, hi = min(c.lo for c in nrs), max(c.hi for c in nrs)
        if len(BY_AUDIT.get(audit, ())) == 1 or hi < X32_SYSCALL_BIT or X32_SYSCALL_BIT <= lo and hi < U32:
            yield region, meaning.arch_of(audit, lo)
            return
    rest: Region | None = region
    for audit in sorted({a.audit for a in meaning.arches}):
        if rest is None:
            return
        inside, rest = split(rest, Atom(OFF_ARCH, "eq", audit))
        if inside is None:
            continue
        parts = [(inside, 0)]
        if len(BY_AUDIT[audit]) > 1:
            # x86_64 and x32: nr below 2^30, from 2^30, and -1 (see Meaning.arch_of)
            high, low = split(inside, Atom(OFF_NR, "gt", X32_SYSCALL_BIT - 1))
            minus_one, high = split(high, Atom(OFF_NR, "eq", U32)) if high is not None else (None, None)
            parts = [(p, nr) for p, nr in ((low, 0), (high, X32_SYSCALL_BIT), (minus_one, U32))
                     if p is not None]
        for part, nr in parts:
            yield part, meaning.arch_of(audit, nr)
    if rest is not None:
        yield rest, None


def _nr_bounds(region: Region) -> list[tuple[int, int]]:
    return [(c.lo, c.hi) for c in region[OFF_NR // 4]]


def by_ranges(region: Region, ranges: Ranges) -> tuple[list[Region], list[Region]]:
    """(parts of region with nr inside one of the sorted, disjoint ranges, parts outside them)."""
    starts = [r[0] for r in ranges]
    wanted: set[int] = set()
    for lo_b, hi_b in _nr_bounds(region):
        i = max(0, bisect.bisect_right(starts, lo_b) - 1)
        while i < len(ranges) and ranges[i][0] <= hi_b:
            if ranges[i][1] >= lo_b:
                wanted.add(i)
            i += 1
    inside: list[Region] = []
    outside: list[Region] = []
    rest: Region | None = region
    for i in sorted(wanted):
        lo, hi = ranges[i]
        if rest is None:
            break
        upper: Region | None = rest
        if lo > 0:
            upper, below = split(rest, Atom(OFF_NR, "gt", lo - 1))
            if below is not None:
                outside.append(below)
        if upper is None:
            rest = None
            break
        rest, within = split(upper, Atom(OFF_NR, "gt", hi))
        if within is not None:
            inside.append(within)
    if rest is not None:
        outside.append(rest)
    return inside, outside


def by_numbers(region: Region, numbers: Sequence[int]) -> tuple[list[tuple[Region, int]], Region | None]:
    """The parts of region for each of the sorted numbers it contains, and the rest."""
    found: list[tuple[Region, int]] = []
    rest: Region | None = region
    for lo, hi in _nr_bounds(region):
        for nr in numbers[bisect.bisect_left(numbers, lo):bisect.bisect_right(numbers, hi)]:
            if rest is None:
                return found, None
            if not regions.contains(rest[OFF_NR // 4], nr):
                continue
            one, rest = split(rest, Atom(OFF_NR, "eq", nr))
            if one is not None:
                found.append((one, nr))
    return found, rest


def condition_atoms(arch: Arch, c: ArgCond) -> list[Atom]:
    """The word tests that decide condition c (32-bit arches: the low word only)."""
    lo_off, hi_off = emu.arg_offsets(arch, c.index)
    words = [(lo_off, 0)] + ([(hi_off, 32)] if arch.bits == 64 else [])
    out: list[Atom] = []
    for off, shift in words:
        v = c.value >> shift & U32
        if c.op == "SCMP_CMP_MASKED_EQ":
            out.append(Atom(off, "eq", c.value_two >> shift & v, v))
        elif c.op in ("SCMP_CMP_EQ", "SCMP_CMP_NE"):
            out.append(Atom(off, "eq", v))
        else:
            out += [Atom(off, "eq", v), Atom(off, "gt", v)]
    return out


def refine(arch: Arch, region: Region, sets: Sequence) -> Iterator[Region]:
    """Region cut until, on each piece, every condition set is decided: one of its
    conditions false everywhere, or all of them true everywhere. Then the meaning is
    constant on the piece. A condition counts as decided where every word test of it
    (condition_atoms) is; only the sets still open are cut further, so a set that a
    program's path has already failed costs nothing more."""
    conds = [[(c, condition_atoms(arch, c)) for c in s.conds] for s in sets]
    stack = [region]
    while stack:
        piece = stack.pop()
        atom = _open_atom(arch, piece, conds)
        if atom is None:
            yield piece
            continue
        regions.Budget.spend(1, "the argument conditions")
        stack += [q for q in split(piece, atom) if q is not None]


def _undecided(region: Region, atom: Atom) -> bool:
    regions.Budget.spend(1, "the argument conditions")
    return None not in split(region, atom)


def _open_atom(arch: Arch, region: Region, conds) -> Atom | None:
    """A word test still undecided on region, of a condition set that may still hold."""
    args = None
    for conditions in conds:
        pending = None
        for c, atoms in conditions:
            open_ = next((a for a in atoms if _undecided(region, a)), None)
            if open_ is not None:
                pending = pending or open_
                continue
            if args is None:
                w, _ = witness_of(region, arch, arch)
                args = w.args
            if not holds(c, args[c.index], arch.bits):
                pending = None
                break  # this set fails on all of region
        if pending is not None:
            return pending
    return None


def meaning_pieces(meaning: Meaning, arch: Arch, region: Region) -> Iterator[tuple[Region, int | None]]:
    """Region (inside arch) cut so that the meaning is constant on each piece, with that
    answer when it does not depend on the arguments (None: ask the meaning at a witness)."""
    found, rest = by_numbers(region, meaning.ruled(arch))
    if rest is not None:
        yield rest, meaning.default
    for part, nr in found:
        on = meaning.on(arch, nr)
        if on.always is not None:
            yield part, on.always
            continue
        for piece in refine(arch, part, on.sets):
            yield piece, None


# --------------------------------------------------------------------------------------
# Witnesses.
# --------------------------------------------------------------------------------------

def _layout(arches: Sequence[Arch]) -> Arch:
    return arches[0]


def witness_of(region: Region, arch: Arch | None, layout: Arch) -> tuple[Witness, bytes]:
    """The smallest point of region, as a Witness and as seccomp_data bytes."""
    words = regions.witness(region)
    fmt = "<16I" if layout.little_endian else ">16I"
    data = struct.pack(fmt, *words)
    args = []
    shape = arch or layout
    for i in range(6):
        lo, hi = emu.arg_offsets(shape, i)
        args.append(words[hi // 4] << 32 | words[lo // 4])
    ip_lo, ip_hi = (8, 12) if layout.little_endian else (12, 8)
    ip = words[ip_hi // 4] << 32 | words[ip_lo // 4]
    return Witness(arch.name if arch else None, words[OFF_ARCH // 4], words[OFF_NR // 4], tuple(args), ip), data


class Checker:
    """Walks one program and compares each piece with an expectation; collects a Report."""

    def __init__(self, check: str, program: Sequence[Insn], meaning: Meaning,
                 enosys: Mapping[str, Ranges] | None = None) -> None:
        self.check = check
        self.program = tuple(program)
        self.meaning = meaning
        self.enosys = enosys or {}
        self.layout = _layout(meaning.arches)
        self.byteorder = "little" if self.layout.little_endian else "big"
        self.differences: dict[tuple, Difference] = {}
        self.undecided: dict[tuple, Undecided] = {}
        self.pieces = 0

    def known(self, arch: Arch | None, nr: int) -> str | None:
        """Why a difference at (arch, nr) is expected; None when it is not."""
        return None

    def expected(self, arch: Arch | None, region: Region) -> Iterator[tuple[Region, int | str]]:
        """Pieces of region with the answer expected there (a string: unsettled, why)."""
        if arch is None:
            yield region, self.meaning.bad_arch
            return
        inside, outside = by_ranges(region, self.enosys.get(arch.name, ()))
        for part in inside:
            yield part, ENOSYS_RET
        for part in outside:
            yield from self.meaning_answers(arch, part)

    def meaning_answers(self, arch: Arch, region: Region) -> Iterator[tuple[Region, int | str]]:
        for piece, answer in meaning_pieces(self.meaning, arch, region):
            if answer is not None:
                yield piece, answer
                continue
            w, _ = witness_of(piece, arch, self.layout)
            try:
                yield piece, self.meaning.answer(w.audit, w.nr, w.args)
            except Unsettled as exc:
                yield piece, str(exc)

    def _one_call(self, region: Region) -> int | None:
        """The expected answer when region is one arch and one nr with an answer that does
        not depend on the arguments (most leaves of a libseccomp program); else None."""
        arch_word, nr_word = region[OFF_ARCH // 4], region[OFF_NR // 4]
        if len(arch_word) != 1 or len(nr_word) != 1:
            return None
        a, n = arch_word[0], nr_word[0]
        if a.lo != a.hi or n.lo != n.hi:
            return None
        arch = self.meaning.arch_of(a.lo, n.lo)
        if arch is None or any(lo <= n.lo <= hi for lo, hi in self.enosys.get(arch.name, ())):
            return None
        on = self.meaning.on(arch, n.lo)
        return self.meaning.default if on is None else on.always

    def run(self) -> Report:
        leaves = 0
        fast = type(self) is Checker  # subclasses decide what is expected their own way
        for leaf in regions.walk(self.program):
            leaves += 1
            want = self._one_call(leaf.region) if fast else None
            if want is not None:
                self.pieces += 1
                if want != leaf.answer:
                    arch = self.meaning.arch_of(leaf.region[OFF_ARCH // 4][0].lo, leaf.region[OFF_NR // 4][0].lo)
                    self._compare(leaf.answer, leaf.region, arch, want)
                continue
            for part, arch in by_arch(self.meaning, leaf.region):
                for piece, want in self.expected(arch, part):
                    self.pieces += 1
                    self._compare(leaf.answer, piece, arch, want)
        return Report(self.check, tuple(self.differences.values()), tuple(self.undecided.values()),
                      leaves, self.pieces)

    def _compare(self, got: int, piece: Region, arch: Arch | None, want: int | str) -> None:
        if want == got:
            return
        w, data = witness_of(piece, arch, self.layout)
        key = (w.arch, w.audit if w.arch is None else None, w.nr, got, want)
        if isinstance(want, str):
            self.undecided.setdefault(key, Undecided(self.check, w, want))
            return
        if key in self.differences:
            return
        by_emu = emu.run_data(self.program, data, self.byteorder).ret
        if by_emu != got:
            raise InternalError(f"{self.check}: the walk says {got:#x} at {w.text()}, the emulator {by_emu:#x}")
        self.differences[key] = Difference(self.check, w, got, want, self.known(arch, w.nr))


class Rule1Checker(Checker):
    """A patched program against rule 1: ENOSYS in E(A), the meaning on ocishim's own
    rule blocks (pending), the unpatched program's answers everywhere else."""

    def __init__(self, program: Sequence[Insn], unpatched: Sequence[Insn], meaning: Meaning,
                 enosys: Mapping[str, Ranges], own: Mapping[str, Sequence[int]]) -> None:
        super().__init__("patched vs rule 1", program, meaning, enosys)
        self.unpatched = tuple(unpatched)
        self.own = {k: tuple(sorted(set(v))) for k, v in own.items()}

    def expected(self, arch: Arch | None, region: Region) -> Iterator[tuple[Region, int | str]]:
        if arch is None:
            yield from self._unpatched(region)
            return
        inside, outside = by_ranges(region, self.enosys.get(arch.name, ()))
        for part in inside:
            yield part, ENOSYS_RET
        for part in outside:
            found, rest = by_numbers(part, self.own.get(arch.name, ()))
            for one, _ in found:
                yield from self.meaning_answers(arch, one)
            if rest is not None:
                yield from self._unpatched(rest)

    def _unpatched(self, region: Region) -> Iterator[tuple[Region, int]]:
        for leaf in regions.walk(self.unpatched, region):
            yield leaf.region, leaf.answer

    def run(self) -> Report:
        """Walk the stub alone when the program is stub + the unpatched program, unchanged.

        A path that leaves the stub for the unpatched program P at pc e is then decided
        without walking P again where rule 1 wants P's own answers: at e = 0, P runs from
        its start on the same data; at e > 0 with nr in A, P is proven to reach e, for this
        arch and the calls of the exit, on every path from its start, without telling those
        calls apart (prefix_reaches): the stub may jump past P's tests on nr, into a rule.
        Everything else (the part of the exit inside E(A) or ocishim's own numbers, or an
        exit that is not proven) walks P from e and is compared piece by piece.
        """
        stub = len(self.program) - len(self.unpatched)
        if stub <= 0 or self.program[stub:] != self.unpatched or not _loads_first(self.unpatched):
            return super().run()
        leaves = 0
        for leaf in regions.walk(self.program, stop=stub):
            leaves += 1
            for part, arch in by_arch(self.meaning, leaf.region):
                if isinstance(leaf, regions.Leaf):
                    for piece, want in self.expected(arch, part):
                        self.pieces += 1
                        self._compare(leaf.answer, piece, arch, want)
                    continue
                for piece, want, same in self._after_exit(arch, part, leaf):
                    self.pieces += 1
                    if same:
                        continue
                    for sub in regions.walk(self.unpatched, piece, start=leaf.pc, acc=leaf.acc):
                        for p2, w2 in (((sub.region, want),) if want is not None
                                       else self._unpatched(sub.region)):
                            self._compare(sub.answer, p2, arch, w2)
        return Report(self.check, tuple(self.differences.values()), tuple(self.undecided.values()),
                      leaves, self.pieces)

    def _after_exit(self, arch: Arch | None, region: Region,
                    exit: regions.Exit) -> Iterator[tuple[Region, int | str | None, bool]]:
        """(piece, expected answer or None for P's own, proven equal without walking)."""
        proven = exit.pc == 0
        if arch is None:
            yield region, None, exit.pc == 0
            return
        inside, outside = by_ranges(region, self.enosys.get(arch.name, ()))
        for part in inside:
            yield part, ENOSYS_RET, False
        for part in outside:
            found, rest = by_numbers(part, self.own.get(arch.name, ()))
            for one, _ in found:
                for piece, want in self.meaning_answers(arch, one):
                    yield piece, want, False
            if rest is not None:
                yield rest, None, proven or (exit.acc == regions.NR_IN_A and
                                             _prefix_reaches(self.unpatched, arch.audit, exit.pc, rest))


def _loads_first(program: Sequence[Insn]) -> bool:
    """P starts by loading a word: what A held before does not matter."""
    return bool(program) and program[0].code == LD | W | ABS


def _prefix_reaches(program: tuple[Insn, ...], audit: int, pc: int, region: Region) -> bool:
    """From its start, for every call of region with seccomp_data.arch == audit, every path of
    program reaches pc with nr in A without telling those calls apart (its tests on the arch
    and nr go one way for all of them): then running it from pc with nr in A gives the same
    answer as running it from the start, for every such call."""
    start = restrict(region, OFF_ARCH, ((regions.Cube(audit, audit),)))
    ends = list(regions.walk(program, start, stop_at=frozenset({pc})))
    return bool(ends) and all(isinstance(e, regions.Exit) and e.pc == pc and e.acc == regions.NR_IN_A
                              and e.region == start for e in ends)


def check_program(program: Sequence[Insn], meaning: Meaning, check: str = "program vs profile",
                  enosys: Mapping[str, Ranges] | None = None,
                  known: Mapping[tuple[str, int], str] | None = None) -> Report:
    """Every difference between program and the profile's meaning (ENOSYS inside enosys)."""
    checker = Checker(check, program, meaning, enosys)
    if known:
        checker.known = lambda arch, nr: known.get((arch.name, nr)) if arch else None  # type: ignore[method-assign]
    return checker.run()


def check_rule1(program: Sequence[Insn], unpatched: Sequence[Insn], meaning: Meaning,
                enosys: Mapping[str, Ranges], own: Mapping[str, Sequence[int]]) -> Report:
    """Every departure of a patched program from rule 1 of semantics.md."""
    return Rule1Checker(program, unpatched, meaning, enosys, own).run()
