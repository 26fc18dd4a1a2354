"""Rule blocks written by ocishim itself, for syscalls whose libseccomp code is wrong.

libseccomp 2.5.4 merges some unions of argument rules on one syscall into a program that
answers differently from the rules (issue 9; tests/verify/test_libseccomp_bugs.py). Where
the checker finds libseccomp's program weaker than the profile on (arch, nr), the stub
sends that number here instead: the profile's meaning (verify.meaning) for it, compiled
as a first-match list of its condition sets, then the default action.

First match gives the meaning wherever the meaning is settled: sets that can hold
together either share an action, or are single conditions on distinct arguments, where
the higher argument wins, so those come first, highest index first. The block is checked
like everything else (patch.check); where the meaning is unsettled it is refused there.

A condition on a 64-bit argument compares the high word, then the low word:

    EQ v     hi == vh and lo == vl          NE v   not EQ v
    GT v     hi > vh or (hi == vh and lo > vl)
    GE v     hi > vh or (hi == vh and lo >= vl)
    LT v     not GE v                       LE v   not GT v
    MASKED_EQ m, d    (hi & mh) == (dh & mh) and (lo & ml) == (dl & ml)

On 32-bit arches only the low word exists.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..arch import Arch
from ..bpf.asm import Cond, Item, Label
from ..bpf.emu import arg_offsets
from ..bpf.insn import ALU, AND, JEQ, JGE, JGT, JMP, K, ld_abs, ret, stmt
from ..profile.model import ArgCond
from ..verify.meaning import CondSet, OnNr

U32 = 0xFFFFFFFF


def ordered(sets: Sequence[CondSet]) -> list[CondSet]:
    """The sets in first-match order: single conditions by argument, highest first, then the rest."""
    singles = [s for s in sets if len(s.conds) == 1]
    others = [s for s in sets if len(s.conds) != 1]
    return sorted(singles, key=lambda s: -s.conds[0].index) + others


def repair_block(arch: Arch, on: OnNr, default: int, label: str) -> list[Item]:
    """The code for one (arch, nr): its label first, a `ret` on every path."""
    fresh = _labels(label)
    items: list[Item] = [Label(label)]
    if on.always is not None:
        return items + [ret(on.always)]
    for s in ordered(on.sets):
        miss = fresh()
        for c in s.conds:
            hit = fresh()
            items += condition(arch, c, hit, miss, fresh)
            items.append(Label(hit))
        items += [ret(s.action), Label(miss)]
    return items + [ret(default)]


def condition(arch: Arch, c: ArgCond, yes: str, no: str, fresh: Callable[[], str]) -> list[Item]:
    """Code that goes to `yes` when c holds for the call's argument, else to `no`."""
    lo_off, hi_off = arg_offsets(arch, c.index)
    words = [(hi_off, 32), (lo_off, 0)] if arch.bits == 64 else [(lo_off, 0)]
    op = c.op
    if op in ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE"):
        positive = {"SCMP_CMP_NE": "SCMP_CMP_EQ", "SCMP_CMP_LT": "SCMP_CMP_GE",
                    "SCMP_CMP_LE": "SCMP_CMP_GT"}[op]
        return condition(arch, ArgCond(c.index, c.value, c.value_two, positive), no, yes, fresh)
    items: list[Item] = []
    for i, (off, shift) in enumerate(words):
        last = i == len(words) - 1
        then = yes if last else fresh()
        v = c.value >> shift & U32
        if op == "SCMP_CMP_EQ":
            items += [ld_abs(off), Cond(JMP | JEQ | K, v, then, no)]
        elif op == "SCMP_CMP_MASKED_EQ":
            items += [ld_abs(off), stmt(ALU | AND | K, v), Cond(JMP | JEQ | K, c.value_two >> shift & v, then, no)]
        elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
            if last:
                code = JGT if op == "SCMP_CMP_GT" else JGE
                items += [ld_abs(off), Cond(JMP | code | K, v, yes, no)]
            else:
                equal = fresh()
                items += [ld_abs(off), Cond(JMP | JGT | K, v, yes, equal), Label(equal),
                          Cond(JMP | JEQ | K, v, then, no)]
        else:
            raise ValueError(f"unknown operator {op!r}")
        if not last:
            items.append(Label(then))
    return items


def _labels(prefix: str) -> Callable[[], str]:
    count = iter(range(1 << 30))
    return lambda: f"{prefix}.r{next(count)}"

