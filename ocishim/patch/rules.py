"""Rules for names the host libseccomp does not know, compiled by the project.

The comparisons follow libseccomp's own code generation, so a rule compiled here
answers like the same rule compiled by libseccomp (tests/patch prove it on names
libseccomp knows):
- on a 64-bit arch an argument is compared as (hi, lo), most significant word first;
  LT and LE are the negations of GE and GT;
- on a 32-bit arch (x86, arm, x32, mips o32/n32, ppc, s390) only the low word is
  compared, against the low 32 bits of the rule's value;
- MASKED_EQ compares (arg & value) with (valueTwo & value): the datum is masked too.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from ..arch import Arch
from ..bpf.asm import Cond, Item, Label
from ..bpf.emu import arg_offsets
from ..bpf.insn import ALU, AND, JEQ, JGE, JGT, JMP, K, ld_abs, ret, stmt
from ..profile.model import ArgCond

_JEQ, _JGT, _JGE = JMP | JEQ | K, JMP | JGT | K, JMP | JGE | K
_MASK32 = 0xFFFFFFFF


def _word_compare(op: str, value: int, ok: str, fail: str) -> list[Item]:
    """Compare the word in A with value; the caller has loaded A."""
    table = {
        "SCMP_CMP_EQ": (_JEQ, ok, fail),
        "SCMP_CMP_NE": (_JEQ, fail, ok),
        "SCMP_CMP_GT": (_JGT, ok, fail),
        "SCMP_CMP_GE": (_JGE, ok, fail),
        "SCMP_CMP_LT": (_JGE, fail, ok),
        "SCMP_CMP_LE": (_JGT, fail, ok),
    }
    code, jt, jf = table[op]
    return [Cond(code, value, jt, jf)]


def condition(arch: Arch, cond: ArgCond, ok: str, fail: str, fresh) -> list[Item]:
    """Code that goes to `ok` when the argument satisfies cond, else to `fail`."""
    lo_off, hi_off = arg_offsets(arch, cond.index)
    v_lo, v_hi = cond.value & _MASK32, cond.value >> 32
    # libseccomp masks the datum too: MASKED_EQ is (arg & mask) == (valueTwo & mask).
    want = cond.value_two & cond.value
    w_lo, w_hi = want & _MASK32, (want >> 32) & _MASK32
    masked = cond.op == "SCMP_CMP_MASKED_EQ"
    if arch.bits == 32:
        if masked:
            return [ld_abs(lo_off), stmt(ALU | AND | K, v_lo), Cond(_JEQ, w_lo, ok, fail)]
        return [ld_abs(lo_off)] + _word_compare(cond.op, v_lo, ok, fail)
    low = fresh()
    items: list[Item] = [ld_abs(hi_off)]
    if masked:
        items += [stmt(ALU | AND | K, v_hi), Cond(_JEQ, w_hi, low, fail), Label(low),
                  ld_abs(lo_off), stmt(ALU | AND | K, v_lo), Cond(_JEQ, w_lo, ok, fail)]
    elif cond.op in ("SCMP_CMP_EQ", "SCMP_CMP_NE"):
        differ = fail if cond.op == "SCMP_CMP_EQ" else ok
        items += [Cond(_JEQ, v_hi, low, differ), Label(low), ld_abs(lo_off)]
        items += _word_compare(cond.op, v_lo, ok, fail)
    else:
        # hi above -> GT/GE hold, LT/LE fail; hi equal -> decide on lo; hi below -> the reverse.
        greater_holds = cond.op in ("SCMP_CMP_GT", "SCMP_CMP_GE")
        above, below = (ok, fail) if greater_holds else (fail, ok)
        equal = fresh()
        items += [Cond(_JGT, v_hi, above, equal), Label(equal), Cond(_JEQ, v_hi, low, below),
                  Label(low), ld_abs(lo_off)]
        items += _word_compare(cond.op, v_lo, ok, fail)
    return items


def rule_chain(arch: Arch, condition_sets: Sequence[Sequence[ArgCond]], action: int,
               fresh) -> list[Item]:
    """Code for one profile rule: any condition set that fully holds returns action, else falls through."""
    items: list[Item] = []
    for conds in condition_sets:
        if not conds:
            return items + [ret(action)]
        miss = fresh()
        for c in conds:
            ok = fresh()
            items += condition(arch, c, ok, miss, fresh)
            items.append(Label(ok))
        items += [ret(action), Label(miss)]
    return items


def label_factory(prefix: str):
    counter = itertools.count()
    return lambda: f"{prefix}.{next(counter)}"
