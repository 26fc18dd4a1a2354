"""The one instruction model: classic BPF struct sock_filter {u16 code; u8 jt, jf; u32 k}."""

from __future__ import annotations

import struct
import sys
from typing import Iterable, Sequence

from ..record import Record
from ..errors import BpfError

# Instruction classes and fields (linux/filter.h, linux/bpf_common.h).
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0,
)
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X = 0x00, 0x08
A = 0x10  # BPF_RET | BPF_A
TAX, TXA = 0x00, 0x80

BPF_MAXINSNS = 4096
BPF_MEMWORDS = 16
SIZEOF_SECCOMP_DATA = 64

# Offsets into struct seccomp_data.
OFF_NR = 0
OFF_ARCH = 4
OFF_IP = 8
OFF_ARGS = 16

_STRUCT = {"little": struct.Struct("<HBBI"), "big": struct.Struct(">HBBI")}
INSN_SIZE = 8

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


def bpf_class(code: int) -> int:
    return code & 0x07


def bpf_size(code: int) -> int:
    return code & 0x18


def bpf_mode(code: int) -> int:
    return code & 0xE0


def bpf_op(code: int) -> int:
    return code & 0xF0


def bpf_src(code: int) -> int:
    return code & 0x08


class Insn(Record):
    __slots__ = ("code", "jt", "jf", "k")

    def __init__(self, code: int, jt: int = 0, jf: int = 0, k: int = 0) -> None:
        _set(self, "code", code)
        _set(self, "jt", jt)
        _set(self, "jf", jf)
        _set(self, "k", k)
        if not (0 <= code <= 0xFFFF and 0 <= jt <= 0xFF and 0 <= jf <= 0xFF
                and 0 <= k <= 0xFFFFFFFF):
            raise BpfError("", f"instruction field out of range: {self!r}")

    def __post_init__(self) -> None:
        if not (0 <= self.code <= 0xFFFF and 0 <= self.jt <= 0xFF and 0 <= self.jf <= 0xFF
                and 0 <= self.k <= 0xFFFFFFFF):
            raise BpfError("", f"instruction field out of range: {self!r}")

    @property
    def is_jump(self) -> bool:
        return bpf_class(self.code) == JMP

    @property
    def is_cond_jump(self) -> bool:
        return bpf_class(self.code) == JMP and bpf_op(self.code) != JA


# Constructors for the instructions the project emits, named as in the kernel's macros.
def stmt(code: int, k: int = 0) -> Insn:
    return Insn(code, 0, 0, k)


def jump(code: int, k: int, jt: int, jf: int) -> Insn:
    return Insn(code, jt, jf, k)


def ld_abs(offset: int) -> Insn:
    return stmt(LD | W | ABS, offset)


def ret(value: int) -> Insn:
    return stmt(RET | K, value)


def ja(offset: int) -> Insn:
    return stmt(JMP | JA, offset)


def _order(byteorder: str) -> str:
    if byteorder == "host":
        return sys.byteorder
    if byteorder not in _STRUCT:
        raise ValueError(f"byte order must be little, big or host, not {byteorder!r}")
    return byteorder


def decode(data: bytes, byteorder: str = "host") -> tuple[Insn, ...]:
    """Decode a raw sock_filter array (what seccomp(2) takes) into instructions."""
    if len(data) % INSN_SIZE:
        raise BpfError("", f"length {len(data)} is not a multiple of {INSN_SIZE} bytes")
    s = _STRUCT[_order(byteorder)]
    return tuple(Insn(*fields) for fields in s.iter_unpack(data))


def encode(program: Iterable[Insn], byteorder: str = "host") -> bytes:
    """Encode instructions as a raw sock_filter array."""
    s = _STRUCT[_order(byteorder)]
    return b"".join(s.pack(i.code, i.jt, i.jf, i.k) for i in program)


def jump_targets(program: Sequence[Insn], pc: int) -> tuple[int, ...]:
    """Where control can go after instruction pc (empty for a return)."""
    insn = program[pc]
    cls = bpf_class(insn.code)
    if cls == RET:
        return ()
    if cls != JMP:
        return (pc + 1,)
    if bpf_op(insn.code) == JA:
        return (pc + 1 + insn.k,)
    return (pc + 1 + insn.jt, pc + 1 + insn.jf)
