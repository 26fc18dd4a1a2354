"""Rule blocks for names the host libseccomp does not know: libseccomp's own code, moved.

Rule 12 of semantics.md: a rule ocishim compiles means exactly what libseccomp makes
of it on a name it knows. libseccomp does not take several rules on one syscall in
order: it merges them (an unconditional rule overrides conditional ones, conflicting
actions on the same condition are refused, ...). Rather than write that merge again,
ocishim lets libseccomp do it: the rules go onto a proxy syscall that libseccomp knows,
in a filter of their arch alone, and the block is that program specialised to the proxy:

    ld [4]; jeq #AUDIT ...; ld [0]; jeq #proxy ...     folded away: the stub already
                                                        knows the arch and the number
    ld [args] ...; jeq/jgt/jge/jset ...                 kept: libseccomp's argument code
    ret <rule action>                                   kept
    ret <default>                                       becomes a jump into P: no rule
                                                        matched, so libseccomp's program
                                                        decides, as it would on one number

Folding is exact because, with the arch and nr fixed, every jump on them goes one way.
Anything else that reads them (arithmetic, `ret a`, a jump that is reached both with
nr and with an argument in A) makes the block fail closed.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from ..arch import Arch
from ..bpf.asm import Cond, Goto, Item, Label
from ..bpf.insn import (ABS, ALU, JA, JEQ, JGE, JGT, JMP, JSET, K, LD, LDX, MISC, OFF_ARCH,
                        OFF_NR, RET, ST, STX, W, Insn, bpf_class, bpf_op, bpf_src, ret)
from ..actions import action_value
from ..compile import compile_proxy
from ..errors import CompileError
from ..profile.model import Rule

_KNOWN = "known"  # A holds the arch or nr, whose value the block knows
_DATA = "data"  # A holds anything else


def _fold(program: Sequence[Insn], arch: Arch, proxy: int, where: str) -> dict[int, int | None]:
    """For each reachable jump on the arch or nr, the pc it always goes to; other reachable pcs map to None."""
    decided: dict[int, int | None] = {}
    seen: dict[int, str] = {}
    stack: list[tuple[int, str, int | None]] = [(0, _DATA, None)]
    while stack:
        pc, state, value = stack.pop()
        while True:
            if not 0 <= pc < len(program):
                raise CompileError(where, "libseccomp's program for these rules runs off its end")
            insn = program[pc]
            if seen.get(pc, state) != state:
                raise CompileError(where, f"libseccomp's program for these rules mixes the syscall "
                                          f"number with arguments at instruction {pc}")
            first_visit = pc not in seen
            seen[pc] = state
            cls, code = bpf_class(insn.code), insn.code
            if cls == RET:
                if code != RET | K:
                    raise CompileError(where, f"instruction {pc}: a return that is not a constant")
                decided.setdefault(pc, None)
                break
            if cls == LD and code == LD | W | ABS and insn.k in (OFF_NR, OFF_ARCH):
                state, value = _KNOWN, proxy if insn.k == OFF_NR else arch.audit
                decided.setdefault(pc, None)
                pc += 1
                continue
            if cls == LD or cls == LDX or cls == ST or cls == STX or cls == MISC or cls == ALU:
                if state == _KNOWN and cls in (ST, MISC, ALU):
                    raise CompileError(where, f"instruction {pc}: computes with the syscall number")
                if cls in (LD, ALU, MISC):
                    state, value = _DATA, None
                decided.setdefault(pc, None)
                pc += 1
                continue
            if cls != JMP:
                raise CompileError(where, f"instruction {pc}: unexpected {code:#06x}")
            op = bpf_op(code)
            if op == JA:
                decided.setdefault(pc, None)
                pc += 1 + insn.k
                continue
            if bpf_src(code) != K:
                raise CompileError(where, f"instruction {pc}: a jump on X")
            t, f = pc + 1 + insn.jt, pc + 1 + insn.jf
            if state == _KNOWN:
                taken = {JEQ: value == insn.k, JGT: value > insn.k, JGE: value >= insn.k,
                         JSET: bool(value & insn.k)}[op]
                decided[pc] = t if taken else f
                pc = decided[pc]
                continue
            decided.setdefault(pc, None)
            if first_visit:
                stack.append((f, state, value))
            pc = t
    return decided


def rule_block(arch: Arch, rules: Sequence[Rule], default: int, label: str, into_p: str,
               where: str) -> list[Item]:
    """The code for rules on one (arch, nr) whose name libseccomp lacks; no match jumps to into_p."""
    first = action_value(rules[0].action, rules[0].errno_ret) if rules else default
    if rules and not any(r.args for r in rules) and first != default:
        # Unconditional rules only: the first one's action, whatever follows (libseccomp
        # keeps the first unconditional rule). No child process, no libseccomp compile;
        # patch.check proves the block against the profile's meaning all the same.
        return [Label(label), ret(first)]
    program, proxy = compile_proxy(arch, rules, default, where)
    decided = _fold(program, arch, proxy, where)

    def resolve(pc: int) -> int:
        """Skip what the stub already knows: arch and nr loads, jumps on them."""
        while True:
            insn = program[pc]
            if insn.code == LD | W | ABS and insn.k in (OFF_NR, OFF_ARCH):
                pc += 1
            elif insn.code == JMP | JA:
                pc += 1 + insn.k
            elif decided.get(pc) is not None:
                pc = decided[pc]
            else:
                return pc

    def target(pc: int) -> str:
        pc = resolve(pc)
        insn = program[pc]
        if insn.code == RET | K and insn.k == default:
            return into_p
        return f"{label}.{pc}"

    kept = sorted({resolve(pc) for pc in decided})
    items: list[Item] = [Label(label), Goto(target(0))]
    for pc in kept:
        insn = program[pc]
        if insn.code == RET | K and insn.k == default:
            continue
        items.append(Label(f"{label}.{pc}"))
        if bpf_class(insn.code) == JMP:
            items.append(Cond(insn.code, insn.k, target(pc + 1 + insn.jt), target(pc + 1 + insn.jf)))
        else:
            items.append(insn)
            if bpf_class(insn.code) != RET:
                items.append(Goto(target(pc + 1)))
    return _drop_fallthrough(items)


def _drop_fallthrough(items: list[Item]) -> list[Item]:
    """Remove each Goto whose target label comes right after it (a `ja 0`)."""
    out: list[Item] = []
    for i, item in enumerate(items):
        if isinstance(item, Goto):
            j = i + 1
            while j < len(items) and isinstance(items[j], Label) and items[j].name != item.target:
                j += 1
            if j < len(items) and isinstance(items[j], Label):
                continue
        out.append(item)
    return out


def label_factory(prefix: str):
    counter = itertools.count()
    return lambda: f"{prefix}.{next(counter)}"
