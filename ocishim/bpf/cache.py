"""The kernel's seccomp action cache: which (arch, nr) a filter always allows.

When a filter is attached, the kernel (kernel/seccomp.c, seccomp_cache_prepare)
runs it once per syscall number of the native and compat arch with a tiny
evaluator that knows only constant data: `ld [nr]`, `ld [arch]`, `jeq/jge/jgt/jset #k`,
`and #k`, `ja`, `ret #k`. Any other instruction on the path (an argument load, a
register operand) means "not constant", and the syscall is then run through the
filter each time. A syscall whose path reaches `ret ALLOW` is cached and skips the
filter. This module replays that evaluator, so a patch can be checked to keep every
cached syscall cached.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..actions import RET_ALLOW
from ..arch import Arch
from .insn import ABS, ALU, AND, JA, JEQ, JGE, JGT, JMP, JSET, K, LD, OFF_ARCH, OFF_NR, RET, W, Insn

_LD_ABS = LD | W | ABS
_RET_K = RET | K
_JA = JMP | JA
_AND_K = ALU | AND | K
_CONST_JUMPS = {JMP | JEQ | K, JMP | JGE | K, JMP | JGT | K, JMP | JSET | K}


def is_const_allow(program: Sequence[Insn], audit: int, nr: int) -> bool:
    """True when the kernel would cache (audit, nr) as always ALLOW for this program."""
    a = 0
    pc = 0
    nr &= 0xFFFFFFFF
    while pc < len(program):
        insn = program[pc]
        code, k = insn.code, insn.k
        if code == _LD_ABS:
            if k == OFF_NR:
                a = nr
            elif k == OFF_ARCH:
                a = audit
            else:
                return False
        elif code == _RET_K:
            return k == RET_ALLOW
        elif code == _JA:
            pc += k
        elif code in _CONST_JUMPS:
            op = code & 0xF0
            if op == JEQ:
                taken = a == k
            elif op == JGE:
                taken = a >= k
            elif op == JGT:
                taken = a > k
            else:
                taken = bool(a & k)
            pc += insn.jt if taken else insn.jf
        elif code == _AND_K:
            a &= k
        else:
            return False
        pc += 1
    return False  # ran off the end: the kernel warns and does not cache


def always_allowed(program: Sequence[Insn], arch: Arch, nrs: Iterable[int]) -> frozenset[int]:
    """The numbers in nrs that the kernel caches as always ALLOW on arch."""
    return frozenset(nr for nr in nrs if is_const_allow(program, arch.audit, nr))
