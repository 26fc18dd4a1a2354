"""A small assembler: instructions with symbolic jump targets, laid out with long jumps.

Classic BPF conditional jumps carry 8-bit offsets (at most 255 instructions forward);
`ja` carries 32 bits. A conditional jump whose target is too far is rewritten to
jump to a `ja` placed right after it:

    jeq #k  near  +0          jeq #k  +0    +1
    ja      far               ja      far_true
                              ja      far_false     (both sides far)

Offsets only grow when a jump becomes long, so relaxing until nothing changes ends.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

from ..record import Record
from ..errors import BpfError
from .insn import JA, JMP, Insn

MAX_SHORT = 255

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


class Label(Record):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        _set(self, "name", name)


class Cond(Record):
    """A conditional jump (code is JMP|JEQ/JGT/JGE/JSET|K) to labels jt and jf."""

    __slots__ = ("code", "k", "jt", "jf")

    def __init__(self, code: int, k: int, jt: str, jf: str) -> None:
        _set(self, "code", code)
        _set(self, "k", k)
        _set(self, "jt", jt)
        _set(self, "jf", jf)


class Goto(Record):
    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        _set(self, "target", target)


Item = Union[Insn, Label, Cond, Goto]


def _sizes(items: Sequence[Item], far: dict[int, tuple[bool, bool]]) -> list[int]:
    sizes = []
    for i, item in enumerate(items):
        if isinstance(item, Label):
            sizes.append(0)
        elif isinstance(item, Cond):
            ft, ff = far.get(i, (False, False))
            sizes.append(1 + ft + ff)
        else:
            sizes.append(1)
    return sizes


def assemble(items: Sequence[Item], beyond: Mapping[str, int] | None = None) -> tuple[Insn, ...]:
    """Resolve labels into offsets.

    `beyond` names addresses past the end of the assembled code, as offsets from its
    end: the program that will be appended (a stub jumps into it).
    """
    far: dict[int, tuple[bool, bool]] = {}
    while True:
        sizes = _sizes(items, far)
        addr, labels = [], {}
        pc = 0
        for item, size in zip(items, sizes):
            addr.append(pc)
            if isinstance(item, Label):
                if item.name in labels:
                    raise BpfError(item.name, "label defined twice")
                labels[item.name] = pc
            pc += size
        for name, offset in (beyond or {}).items():
            labels[name] = pc + offset
        changed = False
        for i, item in enumerate(items):
            if not isinstance(item, Cond):
                continue
            ft, ff = far.get(i, (False, False))
            # Offsets count from the instruction after the jump, trampolines or not.
            after = addr[i] + 1
            need_t = _target(labels, item.jt) - after > MAX_SHORT
            need_f = _target(labels, item.jf) - after > MAX_SHORT
            if (need_t and not ft) or (need_f and not ff):
                far[i] = (ft or need_t, ff or need_f)
                changed = True
        if not changed:
            break
    out: list[Insn] = []
    for i, item in enumerate(items):
        if isinstance(item, Label):
            continue
        if isinstance(item, Insn):
            out.append(item)
        elif isinstance(item, Goto):
            out.append(Insn(JMP | JA, 0, 0, _offset(labels, item.target, len(out) + 1)))
        else:
            ft, ff = far.get(i, (False, False))
            here = len(out)
            after = here + 1
            jt = 0 if ft else _offset(labels, item.jt, after)
            jf = (1 if ft else 0) if ff else _offset(labels, item.jf, after)
            if not ft and jt > MAX_SHORT or not ff and jf > MAX_SHORT:
                raise BpfError(f"insn {here}", "jump offset does not fit")  # relaxation bug
            out.append(Insn(item.code, jt, jf, item.k))
            if ft:
                out.append(Insn(JMP | JA, 0, 0, _offset(labels, item.jt, here + 2)))
            if ff:
                out.append(Insn(JMP | JA, 0, 0, _offset(labels, item.jf, here + 2 + ft)))
    return tuple(out)


def _target(labels: dict[str, int], name: str) -> int:
    try:
        return labels[name]
    except KeyError:
        raise BpfError(name, "jump to an undefined label") from None


def _offset(labels: dict[str, int], name: str, after: int) -> int:
    off = _target(labels, name) - after
    if off < 0:
        raise BpfError(name, "backward jump: BPF only jumps forward")
    return off
