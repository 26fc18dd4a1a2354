"""regions: the cube arithmetic against brute force, and the walk against the emulator.

The oracles are independent of the code under test: enumeration of every candidate
value, and ocishim.bpf.emu running the program on concrete seccomp_data.
"""

from __future__ import annotations

import struct

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ocishim.actions import RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_TRAP
from ocishim.bpf import emu
from ocishim.bpf.insn import ABS, ALU, AND, IMM, JA, JEQ, JGE, JGT, JMP, JSET, K, LD, RET, W, Insn
from ocishim.verify import regions
from ocishim.verify.regions import Atom, Cube, Undecidable

U32 = 0xFFFFFFFF


@st.composite
def few_free_bits(draw):
    """(lo, mask, bits) where mask leaves at most 10 bits free, so the members can be listed."""
    free_bits = draw(st.lists(st.integers(0, 31), max_size=10, unique=True))
    free = sum(1 << b for b in free_bits)
    mask = ~free & U32
    bits = draw(st.integers(0, U32)) & mask
    lo = draw(st.integers(0, U32) | st.sampled_from([0, bits, bits + 1, bits - 1 & U32, U32]))
    return lo, mask, bits, free_bits


def _members(mask: int, bits: int, free_bits: list[int]) -> list[int]:
    out = []
    for n in range(1 << len(free_bits)):
        v = bits
        for i, b in enumerate(free_bits):
            if n >> i & 1:
                v |= 1 << b
        assert v & mask == bits
        out.append(v)
    return sorted(out)


@settings(max_examples=400)
@given(few_free_bits())
def test_smallest_with_bits_is_the_smallest_member(case):
    lo, mask, bits, free_bits = case
    candidates = [v for v in _members(mask, bits, free_bits) if v >= lo]
    assert regions.smallest_with_bits(lo, mask, bits) == (candidates[0] if candidates else None)


cubes = st.builds(lambda lo, span, mask, bits: Cube(lo, min(U32, lo + span), mask, bits & mask),
                  st.integers(0, U32), st.integers(0, U32), st.integers(0, U32) | st.just(0),
                  st.integers(0, U32))
atoms = st.one_of(
    st.builds(lambda k: Atom(16, "gt", k), st.integers(0, U32)),
    st.builds(lambda k, m: Atom(16, "eq", k & m, m), st.integers(0, U32), st.integers(0, U32) | st.just(U32)),
    st.builds(lambda k: Atom(16, "set", k), st.integers(0, U32)),
)


def _holds(atom: Atom, v: int) -> bool:
    return {"gt": v > atom.k, "eq": v & atom.mask == atom.k, "set": bool(v & atom.k)}[atom.op]


@settings(max_examples=400)
@given(cubes, atoms, st.lists(st.integers(0, U32), max_size=20))
def test_split_partitions_a_cube_by_the_test(cube, atom, extra):
    """Every point of the cube lands in exactly the half whose test result it has."""
    assume(cube.smallest() is not None)
    region = regions.restrict(regions.full_region(), 16, (cube,))
    yes, no = regions.split(region, atom)
    points = set(extra) | {cube.lo, cube.hi, atom.k, atom.k + 1 & U32, atom.k - 1 & U32}
    for side in (yes, no):
        if side is not None:
            points.add(regions.witness(side)[4])
    for v in points:
        inside = cube.lo <= v <= cube.hi and v & cube.mask == cube.bits
        in_yes = yes is not None and regions.contains(yes[4], v)
        in_no = no is not None and regions.contains(no[4], v)
        assert (in_yes, in_no) == ((inside and _holds(atom, v)), (inside and not _holds(atom, v))), hex(v)


# --------------------------------------------------------------------------------------
# Random programs in libseccomp's instruction set: the leaves partition the space and
# each leaf's answer is what the emulator says for any point of it.
# --------------------------------------------------------------------------------------

ANSWERS = (RET_ALLOW, RET_ERRNO | 1, RET_ERRNO | 38, RET_TRAP, RET_KILL_PROCESS)
KS = (0, 1, 5, 10, 0x80, 0xFF, 0x1000, 0x7FFFFFFF, 0x80000000, U32)


@st.composite
def programs(draw):
    n = draw(st.integers(4, 24))
    prog: list[Insn] = []
    for pc in range(n - 1):
        left = n - 1 - pc - 1  # instructions after this one, the last being a return
        kind = draw(st.sampled_from(("ld", "ld", "and", "jmp", "jmp", "jmp", "ret", "ja")))
        if kind == "ld":
            prog.append(Insn(LD | W | ABS, 0, 0, draw(st.sampled_from((0, 4, 16, 20, 24, 28, 60)))))
        elif kind == "and":
            prog.append(Insn(ALU | AND | K, 0, 0, draw(st.sampled_from(KS) | st.integers(0, U32))))
        elif kind == "jmp":
            op = draw(st.sampled_from((JEQ, JGT, JGE, JSET)))
            prog.append(Insn(JMP | op | K, draw(st.integers(0, left)), draw(st.integers(0, left)),
                             draw(st.sampled_from(KS) | st.integers(0, U32))))
        elif kind == "ja":
            prog.append(Insn(JMP | JA, 0, 0, draw(st.integers(0, left))))
        else:
            prog.append(Insn(RET | K, 0, 0, draw(st.sampled_from(ANSWERS))))
    prog.append(Insn(RET | K, 0, 0, draw(st.sampled_from(ANSWERS))))
    return tuple(prog)


def _data(words) -> bytes:
    return struct.pack("<16I", *words)


@settings(max_examples=300)
@given(programs(), st.lists(st.lists(st.integers(0, U32) | st.sampled_from(KS), min_size=16, max_size=16),
                            min_size=1, max_size=8))
def test_walk_matches_the_emulator(program, points):
    try:
        leaves = list(regions.walk(program))
    except Undecidable as exc:
        assert "masked word" in str(exc)  # and-then-range is the one thing it refuses here
        return
    for leaf in leaves:  # each leaf's own witness
        w = regions.witness(leaf.region)
        assert emu.run_data(program, _data(w), "little").ret == leaf.answer
    for words in points:  # arbitrary points: exactly one leaf holds each, with the emulator's answer
        holding = [leaf for leaf in leaves if all(regions.contains(ws, v) for ws, v in zip(leaf.region, words))]
        assert len(holding) == 1
        assert holding[0].answer == emu.run_data(program, _data(words), "little").ret


def test_refuses_what_it_cannot_follow():
    """Every instruction outside libseccomp's set is named, never walked past."""
    tail = [Insn(RET | K, 0, 0, RET_ALLOW)]
    refused = {
        "X": [Insn(LD | W | ABS, 0, 0, 16), Insn(JMP | JEQ | 0x08, 0, 0, 0)] + tail,
        "arithmetic": [Insn(LD | W | ABS, 0, 0, 16), Insn(ALU | 0x00 | K, 0, 0, 1)] + tail,  # add
        "masked word": [Insn(LD | W | ABS, 0, 0, 16), Insn(ALU | AND | K, 0, 0, 0xF0),
                        Insn(JMP | JGT | K, 0, 0, 3)] + tail,
        "load mode": [Insn(LD | 0x60, 0, 0, 0)] + tail,  # ld M[0]
        "outside seccomp_data": [Insn(LD | W | ABS, 0, 0, 64)] + tail,
    }
    for why, program in refused.items():
        try:
            list(regions.walk(program))
        except Undecidable as exc:
            assert "cannot decide: instruction" in str(exc) and why in str(exc), (why, str(exc))
        else:
            raise AssertionError(f"walked past {why}")


def test_constant_tests_and_ld_imm():
    program = [Insn(LD | IMM, 0, 0, 7), Insn(JMP | JGT | K, 0, 1, 5), Insn(RET | K, 0, 0, RET_TRAP),
               Insn(RET | K, 0, 0, RET_ALLOW)]
    (leaf,) = regions.walk(program)
    assert leaf.answer == RET_TRAP and leaf.region == regions.full_region()
