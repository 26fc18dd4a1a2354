"""Symbolic evaluation of a seccomp program over the whole of struct seccomp_data.

The emulator answers one call; this answers all of them at once. seccomp_data is 16
32-bit words (nr, arch, two of instruction_pointer, twelve of args). A region is a
product: for each word, a set of values. A word's set is a union of disjoint cubes,
each cube `lo <= v <= hi and v & mask == bits`: intervals for jgt/jge, known bits for
jset and for `and #m; jeq #k` (libseccomp's MASKED_EQ). Both halves of every test
libseccomp emits are again unions of cubes, so the walk is exact:

    ld [k]              A := word k/4           (k a multiple of 4, below 64)
    ld #k               A := k
    and #m              A := A & m              (a word or a masked word)
    jeq/jgt/jge/jset #k split the region by the test on A, both halves walk on
    ja, ret #k          as the kernel does

Each path that reaches a `ret` is one leaf: (region, answer). The leaves partition the
region the walk started from. Anything else (X, scratch memory, other arithmetic, a
range test on a masked word) raises Undecidable naming the instruction: the checker
never says "ok" about a program it cannot follow exactly.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from ..bpf.insn import (ABS, ALU, AND, IMM, JA, JEQ, JGE, JGT, JMP, JSET, K, LD, RET,
                        SIZEOF_SECCOMP_DATA, W, Insn, bpf_op, bpf_src)
from ..errors import OcishimError
from ..record import Record

U32 = 0xFFFFFFFF
WORDS = SIZEOF_SECCOMP_DATA // 4
# A program of 4096 instructions can have more paths than atoms in the universe; real
# filters have a few thousand. Past this many, say "cannot decide" instead of hanging.
MAX_PATHS = 500_000

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


class Budget:
    """Work left for one check (paths walked, pieces cut): a profile that a hostile author
    shaped to make the check explode stops it here, in bounded time, as Undecidable."""

    current: "Budget | None" = None

    def __init__(self, units: int) -> None:
        self.left = units
        self.units = units

    def __enter__(self) -> "Budget":
        self.outer, Budget.current = Budget.current, self
        return self

    def __exit__(self, *exc) -> None:
        Budget.current = self.outer

    @staticmethod
    def spend(n: int, where: str) -> None:
        budget = Budget.current
        if budget is None:
            return
        budget.left -= n
        if budget.left < 0:
            raise Undecidable(where, f"cannot decide within the checker's budget of {budget.units} "
                                     "regions (the rules cut the argument space too finely)")


class Undecidable(OcishimError):
    """The checker cannot follow this program exactly; `where` names the instruction."""

    exit_code = 2


class Cube(Record):
    """The values v with lo <= v <= hi and v & mask == bits (bits inside mask)."""

    __slots__ = ("lo", "hi", "mask", "bits")

    def __init__(self, lo: int, hi: int, mask: int = 0, bits: int = 0) -> None:
        _set(self, "lo", lo)
        _set(self, "hi", hi)
        _set(self, "mask", mask)
        _set(self, "bits", bits)

    def smallest(self) -> int | None:
        """The smallest member, or None when the cube is empty."""
        if not self.mask:  # a plain interval, the common case
            return self.lo if self.lo <= self.hi else None
        v = smallest_with_bits(self.lo, self.mask, self.bits)
        return v if v is not None and v <= self.hi else None


def smallest_with_bits(lo: int, mask: int, bits: int) -> int | None:
    """The smallest v >= lo (32 bits) with v & mask == bits, or None.

    Take lo's free bits and the fixed bits. Where that first departs from lo (bit i,
    from the top) decides: above lo, clear the free bits below i; below lo, carry into
    the lowest free bit above i that lo has clear.
    """
    free = ~mask & U32
    c = (lo & free) | bits
    diff = c ^ lo
    if diff == 0:
        return c
    i = diff.bit_length() - 1
    if c > lo:
        return c & ~(free & ((1 << i) - 1))
    for j in range(i + 1, 32):
        if free >> j & 1 and not lo >> j & 1:
            above = lo & free & ~((1 << (j + 1)) - 1)
            return above | (1 << j) | bits
    return None


WordSet = tuple[Cube, ...]
FULL: WordSet = (Cube(0, U32),)


def _nonempty(cubes) -> WordSet:
    return tuple(c for c in cubes if c.smallest() is not None)


def split_gt(ws: WordSet, k: int) -> tuple[WordSet, WordSet]:
    """(v > k, v <= k)."""
    taken = _nonempty(Cube(max(c.lo, k + 1), c.hi, c.mask, c.bits) for c in ws if c.hi > k)
    other = _nonempty(Cube(c.lo, min(c.hi, k), c.mask, c.bits) for c in ws if c.lo <= k)
    return taken, other


def split_masked_eq(ws: WordSet, mask: int, k: int) -> tuple[WordSet, WordSet]:
    """(v & mask == k, v & mask != k); the second as disjoint cubes, one per first differing bit."""
    if k & ~mask:
        return (), ws
    if mask == U32 and len(ws) == 1 and ws[0].lo == ws[0].hi:
        return (ws, ()) if ws[0].lo == k else ((), ws)  # a point: the common case after a jeq
    if mask == U32:
        # A point: its complement in the one cube holding it (cubes are disjoint) is the
        # cube below it and the cube above it; the other cubes stay as they are.
        for i, c in enumerate(ws):
            if c.lo <= k <= c.hi and k & c.mask == c.bits:
                around = _nonempty(x for x in (Cube(c.lo, k - 1, c.mask, c.bits), Cube(k + 1, c.hi, c.mask, c.bits))
                                   if x.lo <= x.hi)
                return (Cube(k, k, U32, k),), ws[:i] + around + ws[i + 1:]
        return (), ws
    taken: list[Cube] = []
    other: list[Cube] = []
    for c in ws:
        if (c.bits ^ k) & mask & c.mask:
            other.append(c)  # a known bit already differs
            continue
        taken.append(Cube(c.lo, c.hi, c.mask | mask, c.bits | (k & mask)))
        done = c.mask
        for b in range(32):
            bit = 1 << b
            if not mask & bit or c.mask & bit:
                continue
            other.append(Cube(c.lo, c.hi, done | bit, (c.bits | (k & done & ~c.mask)) | (~k & bit)))
            done |= bit
    return _nonempty(taken), _nonempty(other)


def contains(ws: WordSet, v: int) -> bool:
    return any(c.lo <= v <= c.hi and v & c.mask == c.bits for c in ws)


def smallest(ws: WordSet) -> int | None:
    values = [v for v in (c.smallest() for c in ws) if v is not None]
    return min(values) if values else None


class Atom(Record):
    """A test on one word: `gt` is v > k; `eq` is v & mask == k; `set` is v & k != 0."""

    # word: byte offset in seccomp_data, a multiple of 4
    __slots__ = ("word", "op", "k", "mask")

    def __init__(self, word: int, op: str, k: int, mask: int = U32) -> None:
        _set(self, "word", word)
        _set(self, "op", op)
        _set(self, "k", k)
        _set(self, "mask", mask)


Region = tuple[WordSet, ...]  # one WordSet per word of seccomp_data


def full_region() -> Region:
    return (FULL,) * WORDS


def restrict(region: Region, word: int, ws: WordSet) -> Region:
    i = word // 4
    return region[:i] + (ws,) + region[i + 1:]


def split(region: Region, atom: Atom) -> tuple[Region | None, Region | None]:
    """The parts of region where atom holds and where it does not (None when empty)."""
    ws = region[atom.word // 4]
    if atom.op == "gt":
        yes, no = split_gt(ws, atom.k)
    elif atom.op == "eq":
        yes, no = split_masked_eq(ws, atom.mask, atom.k)
    elif atom.op == "set":
        no, yes = split_masked_eq(ws, atom.k, 0)
    else:
        raise ValueError(f"unknown atom {atom.op!r}")
    return (restrict(region, atom.word, yes) if yes else None,
            restrict(region, atom.word, no) if no else None)


def witness(region: Region) -> tuple[int, ...]:
    """One point of the region: the smallest value of every word."""
    out = []
    for ws in region:
        v = smallest(ws)
        if v is None:
            raise ValueError("empty region")
        out.append(v)
    return tuple(out)


class Leaf(Record):
    __slots__ = ("region", "answer")

    def __init__(self, region: Region, answer: int) -> None:
        _set(self, "region", region)
        _set(self, "answer", answer)


class Exit(Record):
    """A path that reaches pc (a stop of the walk) with A holding acc."""

    __slots__ = ("region", "pc", "acc")

    def __init__(self, region: Region, pc: int, acc: "Acc") -> None:
        _set(self, "region", region)
        _set(self, "pc", pc)
        _set(self, "acc", acc)


# What A holds: ("const", k) or ("word", offset, mask) for `word & mask`.
Acc = tuple


def _undecidable(pc: int, insn: Insn, why: str) -> Undecidable:
    return Undecidable(f"instruction {pc}",
                       f"cannot decide: instruction {pc} (code 0x{insn.code:04x}, jt {insn.jt}, "
                       f"jf {insn.jf}, k 0x{insn.k:x}): {why}")


def _jump_atom(pc: int, insn: Insn, acc: Acc) -> Atom | bool:
    """The test of a conditional jump as an Atom, or its outcome when A is a constant."""
    op, k = bpf_op(insn.code), insn.k
    if bpf_src(insn.code) != K:
        raise _undecidable(pc, insn, "a test against X")
    if acc[0] == "const":
        a = acc[1]
        return {JEQ: a == k, JGT: a > k, JGE: a >= k, JSET: bool(a & k)}[op]
    _, word, mask = acc
    if op == JEQ:
        return Atom(word, "eq", k, mask)
    if op == JSET:
        return Atom(word, "set", k & mask)
    if mask != U32:
        raise _undecidable(pc, insn, "a range test on a masked word")
    if op == JGT:
        return Atom(word, "gt", k)
    if k == 0:
        return True  # v >= 0
    return Atom(word, "gt", k - 1)


NR_IN_A: Acc = ("word", 0, U32)


def walk(program: Sequence[Insn], region: Region | None = None, start: int = 0,
         acc: Acc = ("const", 0), stop: int | None = None,
         stop_at: frozenset[int] = frozenset()) -> Iterator[Leaf | Exit]:
    """Every (region, answer) the program gives, starting at pc start from region (default:
    everything) with A = acc. A path reaching pc >= stop, or a pc in stop_at, ends as an
    Exit there instead (the pc is relative to stop when stop is given)."""
    n = len(program)
    stack: list[tuple[int, Region, Acc]] = [(start, region or full_region(), acc)]
    paths = 0
    while stack:
        pc, reg, acc = stack.pop()
        while True:
            if stop is not None and pc >= stop:
                yield Exit(reg, pc - stop, acc)
                break
            if pc in stop_at:
                yield Exit(reg, pc, acc)
                break
            if not 0 <= pc < n:
                raise Undecidable(f"instruction {pc}", f"cannot decide: control leaves the program at {pc}")
            insn = program[pc]
            code = insn.code
            cls = code & 0x07  # bpf_class, inline: this loop runs for every instruction
            if cls == RET:
                if code != RET | K:
                    if code & 0x18 == 0x10 and acc[0] == "const":
                        yield Leaf(reg, acc[1])
                        break
                    raise _undecidable(pc, insn, "a return of a value that is not a constant")
                yield Leaf(reg, insn.k)
                break
            if cls == LD:
                if code & 0xE0 == ABS and code & 0x18 == W:  # bpf_mode, bpf_size
                    if insn.k % 4 or insn.k >= SIZEOF_SECCOMP_DATA:
                        raise _undecidable(pc, insn, "a load outside seccomp_data's words")
                    acc = ("word", insn.k, U32)
                elif code & 0xE0 == IMM:
                    acc = ("const", insn.k)
                else:
                    raise _undecidable(pc, insn, "a load mode other than ld [k] and ld #k")
                pc += 1
                continue
            if cls == ALU:
                if bpf_op(code) != AND or bpf_src(code) != K:
                    raise _undecidable(pc, insn, "arithmetic other than and #k")
                acc = ("const", acc[1] & insn.k) if acc[0] == "const" else (acc[0], acc[1], acc[2] & insn.k)
                pc += 1
                continue
            if cls != JMP:
                raise _undecidable(pc, insn, "not an instruction of libseccomp's programs")
            op = code & 0xF0  # bpf_op
            if op == JA:
                pc += 1 + insn.k
                continue
            if op not in (JEQ, JGT, JGE, JSET):
                raise _undecidable(pc, insn, "an unknown jump")
            test = _jump_atom(pc, insn, acc)
            t, f = pc + 1 + insn.jt, pc + 1 + insn.jf
            if isinstance(test, bool):
                pc = t if test else f
                continue
            yes, no = split(reg, test)
            paths += 1
            Budget.spend(1, f"instruction {pc}")
            if paths > MAX_PATHS:
                raise Undecidable(f"instruction {pc}", f"cannot decide: more than {MAX_PATHS} paths")
            if yes is not None and no is not None:
                stack.append((f, no, acc))
            if yes is not None:
                reg, pc = yes, t
            elif no is not None:
                reg, pc = no, f
            else:
                break
