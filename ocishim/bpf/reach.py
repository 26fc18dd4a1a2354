"""Every answer a seccomp program can give, per range of syscall numbers, over all arguments.

The emulator answers one call. The patcher and the trust checks need more: for each
nr of an arch, the set of returns the program can reach for *some* arguments (named(A)
of semantics.md is every nr where that set is not just the default action).

One walk of the program does it. The walk carries an interval of nr values and the
contents of A, X and M[] as one of:
- a constant (the arch after `ld [4]`, an immediate, arithmetic on constants);
- NR: exactly the syscall number, as `ld [0]` loads it;
- unknown (arguments, the instruction pointer, arithmetic on NR).
A jump that compares NR with a constant splits the interval in two and both halves
walk on; a jump on a constant goes one way; a jump on an unknown value goes both ways.
Programs cannot loop, so the walk ends. It over-approximates only where a program does
arithmetic on nr or tests nr bits (libseccomp does neither): answers there include
every branch, which counts more numbers as named, the safe direction for the stub.
"""

from __future__ import annotations

from typing import Sequence

from ..record import Record
from ..arch import Arch
from ..errors import BpfError
from .emu import alu, compare
from .insn import (ABS, ALU, BPF_MEMWORDS, IMM, JA, JEQ, JGE, JGT, JMP, LD,
                   LDX, LEN, MEM, MISC, NEG, OFF_ARCH, OFF_NR, RET,
                   SIZEOF_SECCOMP_DATA, ST, STX, TAX, W, A as SRC_A, Insn,
                   bpf_mode, bpf_op, bpf_src, X)

_MASK = 0xFFFFFFFF
NR = "nr"  # the value is the syscall number itself
# A return whose value is not known (`ret a` with A unknown): any action at all.
ANY = -1

Value = int | str | None  # constant, NR, or unknown

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


class Span(Record):
    """nr in [lo, hi] (inclusive) gets one of `answers` (SECCOMP_RET_* values, or ANY)."""

    __slots__ = ("lo", "hi", "answers")

    def __init__(self, lo: int, hi: int, answers: frozenset[int]) -> None:
        _set(self, "lo", lo)
        _set(self, "hi", hi)
        _set(self, "answers", answers)


def _walk(program: Sequence[Insn], audit: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(lo, hi, answer) for every return the program reaches, with the nr interval that reaches it.

    Jumps only go forward, so visiting pcs in order sees every way into a pc before
    the pc itself: each distinct state is stepped once, however many paths share it.
    """
    n = len(program)
    pending: dict[int, set[tuple]] = {0: {(lo, hi, None, None, (None,) * BPF_MEMWORDS)}}
    reached: list[tuple[int, int, int]] = []
    for start in range(n):
        for lo, hi, a, x, mem in pending.pop(start, ()):
            pc = start
            while True:
                insn = program[pc]
                code, k = insn.code, insn.k
                cls = code & 0x07  # bpf_class, inline: this loop runs for every instruction
                pc += 1
                if cls == RET:
                    value = (a if isinstance(a, int) else ANY) if code & 0x18 == SRC_A else k
                    reached.append((lo, hi, value))
                    break
                if cls == JMP:
                    op = code & 0xF0  # bpf_op
                    if op == JA:
                        targets = [(pc + k, lo, hi)]
                    else:
                        b = x if code & 0x08 == X else k  # bpf_src
                        t, f = pc + insn.jt, pc + insn.jf
                        if isinstance(a, int) and isinstance(b, int):
                            taken = compare(op, a, b, pc - 1)
                            targets = [(t if taken else f, lo, hi)]
                        elif a == NR and isinstance(b, int) and op in (JEQ, JGT, JGE):
                            targets = _fork_on_nr(op, b, t, f, lo, hi)
                        else:
                            # Unknown operands (arguments, bits of nr): either way may be taken.
                            targets = [(t, lo, hi), (f, lo, hi)]
                    for target, t_lo, t_hi in targets:
                        if not target < n:
                            raise BpfError(f"insn {pc - 1}", "a jump leaves the program")
                        pending.setdefault(target, set()).add((t_lo, t_hi, a, x, mem))
                    break
                if pc >= n:
                    raise BpfError(f"insn {pc - 1}", "control runs off the end of the program")
                if cls == LD:
                    mode = code & 0xE0  # bpf_mode
                    if mode == IMM:
                        a = k
                    elif mode == LEN:
                        a = SIZEOF_SECCOMP_DATA
                    elif mode == MEM:
                        a = mem[k] if k < BPF_MEMWORDS else None
                    elif mode == ABS and code & 0x18 == W:
                        a = NR if k == OFF_NR else audit if k == OFF_ARCH else None
                    else:
                        a = None
                elif cls == LDX:
                    mode = bpf_mode(code)
                    x = k if mode == IMM else SIZEOF_SECCOMP_DATA if mode == LEN else \
                        (mem[k] if mode == MEM and k < BPF_MEMWORDS else None)
                elif cls == ST:
                    mem = mem[:k] + (a,) + mem[k + 1:] if k < BPF_MEMWORDS else mem
                elif cls == STX:
                    mem = mem[:k] + (x,) + mem[k + 1:] if k < BPF_MEMWORDS else mem
                elif cls == MISC:
                    if bpf_op(code) == TAX:
                        x = a
                    else:
                        a = x
                elif cls == ALU:
                    b = x if bpf_src(code) == X else k
                    op = bpf_op(code)
                    if op == NEG:
                        a = alu(op, a, 0, pc - 1) if isinstance(a, int) else None
                    else:
                        a = alu(op, a, b, pc - 1) if isinstance(a, int) and isinstance(b, int) else None
                else:
                    raise BpfError(f"insn {pc - 1}", f"unknown instruction class {cls}")
    return reached


def _fork_on_nr(op: int, k: int, t: int, f: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """Split [lo, hi] by `nr OP k` into the parts that go to t and to f."""
    if op == JEQ:
        parts = [(t, max(lo, k), min(hi, k)), (f, lo, min(hi, k - 1)), (f, max(lo, k + 1), hi)]
    elif op == JGT:
        parts = [(t, max(lo, k + 1), hi), (f, lo, min(hi, k))]
    else:
        parts = [(t, max(lo, k), hi), (f, lo, min(hi, k - 1))]
    return [p for p in parts if p[1] <= p[2]]


def spans(program: Sequence[Insn], arch: Arch, lo: int = 0, hi: int = _MASK) -> tuple[Span, ...]:
    """Partition [lo, hi] of arch's nr values by the set of answers the program can give."""
    events: dict[int, list[tuple[int, int]]] = {}
    for r_lo, r_hi, value in _walk(program, arch.audit, lo, hi):
        events.setdefault(r_lo, []).append((value, 1))
        events.setdefault(r_hi + 1, []).append((value, -1))
    active: dict[int, int] = {}
    out: list[Span] = []
    cuts = sorted(events)
    for i, cut in enumerate(cuts):
        if cut > hi:
            break
        for value, delta in events[cut]:
            active[value] = active.get(value, 0) + delta
        end = cuts[i + 1] - 1 if i + 1 < len(cuts) else hi
        answers = frozenset(v for v, count in active.items() if count)
        if out and out[-1].answers == answers:
            out[-1] = Span(out[-1].lo, end, answers)
        else:
            out.append(Span(cut, end, answers))
    return tuple(out)


def answers(program: Sequence[Insn], arch: Arch, nr: int) -> frozenset[int]:
    """Every answer the program can give to nr on arch, for some arguments."""
    (span,) = spans(program, arch, nr, nr)
    return span.answers
