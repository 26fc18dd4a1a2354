"""A listing of a seccomp BPF program that a person can read.

Each line shows the address, the raw instruction, the mnemonic with absolute jump
targets, and a comment naming what is known: the field a load reads (nr, arch,
args[i].lo/hi), the arch an audit value stands for, the syscall a number stands for
(when the arch on that path is known), and the action a return gives.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

from .. import syscalls
from ..actions import describe
from ..arch import ARCHES, BY_AUDIT, Arch, arch_of_nr
from .insn import (
    ABS, ALU, IMM, JA, JEQ, JGE, JGT, JMP, JSET, LD, LDX, LEN, MEM, MISC, OFF_ARCH, OFF_ARGS,
    OFF_IP, OFF_NR, RET, ST, STX, TAX, W, Insn, bpf_class, bpf_mode, bpf_op, bpf_size,
    bpf_src, X,
)

_ALU_NAMES = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and",
              0x60: "lsh", 0x70: "rsh", 0x80: "neg", 0x90: "mod", 0xA0: "xor"}
_JMP_NAMES = {JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset"}
_AUDIT_NAMES = {a.audit: a.audit_name for a in ARCHES}


def field_name(offset: int, little_endian: bool) -> str | None:
    """Name of the seccomp_data word at offset: nr, arch, ip.lo, args[2].hi, ..."""
    if offset == OFF_NR:
        return "nr"
    if offset == OFF_ARCH:
        return "arch"
    lo_first = ("lo", "hi") if little_endian else ("hi", "lo")
    if offset in (OFF_IP, OFF_IP + 4):
        return "ip." + lo_first[(offset - OFF_IP) // 4]
    if OFF_ARGS <= offset < OFF_ARGS + 48 and offset % 4 == 0:
        i, half = divmod(offset - OFF_ARGS, 8)
        return f"args[{i}].{lo_first[half // 4]}"
    return None


def infer_little_endian(program: Sequence[Insn]) -> bool:
    """The byte order of the arches a program compares against (host order if none)."""
    for insn in program:
        if insn.is_cond_jump and insn.k in BY_AUDIT:
            return BY_AUDIT[insn.k][0].little_endian
    return sys.byteorder == "little"


@dataclass
class _State:
    source: str | None  # what A holds: "nr", "arch", or another field name
    audit: int | None  # the arch value known on this path, if one


def _states(program: Sequence[Insn]) -> list[_State | None]:
    """What A holds and which arch is known at each instruction (forward data flow)."""
    states: list[_State | None] = [None] * len(program)
    if program:
        states[0] = _State(None, None)

    def merge(pc: int, st: _State) -> None:
        if not 0 <= pc < len(program):
            return
        old = states[pc]
        if old is None:
            states[pc] = _State(st.source, st.audit)
        else:
            if old.source != st.source:
                old.source = None
            if old.audit != st.audit:
                old.audit = None

    for pc, insn in enumerate(program):
        st = states[pc]
        if st is None:
            continue  # unreachable
        cls = bpf_class(insn.code)
        if cls == RET:
            continue
        if cls == LD and bpf_mode(insn.code) == ABS:
            merge(pc + 1, _State({OFF_NR: "nr", OFF_ARCH: "arch"}.get(insn.k, "other"), st.audit))
        elif cls == JMP and bpf_op(insn.code) == JA:
            merge(pc + 1 + insn.k, st)
        elif cls == JMP:
            taken = _State(st.source, st.audit)
            if st.source == "arch" and bpf_op(insn.code) == JEQ and bpf_src(insn.code) == 0:
                taken.audit = insn.k
            merge(pc + 1 + insn.jt, taken)
            merge(pc + 1 + insn.jf, st)
        elif cls in (LD, LDX, ALU, MISC, ST, STX):
            changes_a = cls in (LD, ALU) or (cls == MISC and (insn.code & 0xF8) != TAX)
            merge(pc + 1, _State(None if changes_a else st.source, st.audit))
    return states


def _syscall_note(audit: int | None, nr: int) -> str | None:
    if audit is None:
        return None
    arch: Arch | None = arch_of_nr(audit, nr)
    if arch is None or arch.name not in syscalls.arches():
        return None
    name = syscalls.name(arch.name, nr)
    if name is None:
        return None
    return f"x32 {name}" if arch.name == "x32" else name


def _target(pc: int, n: int) -> str:
    return f"{pc:04d}" if pc < n else f"{pc:04d}(out of range)"


def line(program: Sequence[Insn], pc: int, little_endian: bool,
         state: _State | None = None) -> tuple[str, str]:
    """Mnemonic and comment for one instruction."""
    insn = program[pc]
    code, k, n = insn.code, insn.k, len(program)
    cls = bpf_class(code)
    comment = ""
    if cls in (LD, LDX):
        reg = "ld" if cls == LD else "ldx"
        mode = bpf_mode(code)
        if mode == ABS and bpf_size(code) == W and cls == LD:
            text = f"ld   [{k}]"
            name = field_name(k, little_endian)
            comment = f"A = {name}" if name else "outside seccomp_data"
        elif mode == IMM:
            text = f"{reg:<4} #{k:#x}"
        elif mode == LEN:
            text = f"{reg:<4} #len"
        elif mode == MEM:
            text = f"{reg:<4} M[{k}]"
        else:
            text = f".word 0x{code:04x}"
            comment = "not a seccomp instruction"
    elif cls in (ST, STX):
        text = f"{'st' if cls == ST else 'stx':<4} M[{k}]"
    elif cls == ALU:
        op = _ALU_NAMES.get(bpf_op(code), f"alu{bpf_op(code):#x}")
        text = op if op == "neg" else f"{op:<4} {'x' if bpf_src(code) == X else f'#{k:#x}'}"
    elif cls == JMP:
        op = bpf_op(code)
        if op == JA:
            text = f"ja   {_target(pc + 1 + k, n)}"
        else:
            operand = "x" if bpf_src(code) == X else f"#{k:#x}"
            name = _JMP_NAMES.get(op, f"j{op:#x}")
            text = f"{name:<4} {operand:<12} {_target(pc + 1 + insn.jt, n)} {_target(pc + 1 + insn.jf, n)}"
            if bpf_src(code) == 0 and state is not None:
                if state.source == "arch" and k in _AUDIT_NAMES:
                    comment = _AUDIT_NAMES[k]
                elif state.source == "nr" and op == JEQ:
                    note = _syscall_note(state.audit, k)
                    comment = note or ""
    elif cls == RET:
        rval = code & 0x18
        if rval == 0:
            text = f"ret  #{k:#x}"
            comment = describe(k)
        else:
            text = "ret  A" if rval == 0x10 else f".word 0x{code:04x}"
    else:  # MISC
        text = "tax" if (code & 0xF8) == TAX else "txa"
    return text, comment


def disassemble(program: Sequence[Insn], little_endian: bool | None = None) -> str:
    """The whole listing, one line per instruction."""
    if little_endian is None:
        little_endian = infer_little_endian(program)
    states = _states(program)
    out = [" addr  code jt jf k           instruction                     comment"]
    for pc, insn in enumerate(program):
        text, comment = line(program, pc, little_endian, states[pc])
        raw = f"{insn.code:04x} {insn.jt:02x} {insn.jf:02x} {insn.k:08x}"
        row = f" {pc:04d}  {raw}  {text:<31}"
        if states[pc] is None:
            comment = (comment + "; " if comment else "") + "unreachable"
        out.append(f"{row} ; {comment}".rstrip(" ;") if comment else row.rstrip())
    return "\n".join(out) + "\n"
