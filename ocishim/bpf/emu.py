"""Run a classic BPF seccomp program on one syscall, with the kernel's semantics.

struct seccomp_data is laid out as the kernel does it, in the arch's byte order:
    0: int nr   4: u32 arch   8: u64 instruction_pointer   16: u64 args[6]
so on a little-endian arch `ld [16]` reads the low half of args[0], on a big-endian
arch the high half. Loads must be 4-byte aligned words inside those 64 bytes: the
kernel's seccomp_check_filter refuses anything else, and so does this emulator.
"""

from __future__ import annotations

import struct
from typing import Sequence

from ..record import Record
from ..arch import Arch
from ..errors import BpfError
from .insn import (
    ABS, ADD, ALU, AND, BPF_MEMWORDS, DIV, IMM, JA, JEQ, JGE, JGT, JMP, JSET, LD, LDX,
    LEN, LSH, MEM, MISC, MOD, MUL, NEG, OFF_ARGS, OR, RET, RSH, SIZEOF_SECCOMP_DATA, ST,
    STX, SUB, TAX, W, XOR, Insn, bpf_class, bpf_mode, bpf_op, bpf_size, bpf_src, X,
)

_MASK = 0xFFFFFFFF

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


def seccomp_data(arch: Arch, nr: int, args: Sequence[int] = (), ip: int = 0) -> bytes:
    """The 64 bytes the kernel hands a filter, in the arch's byte order."""
    full = list(args) + [0] * (6 - len(args))
    if len(full) != 6:
        raise ValueError("a syscall has at most 6 arguments")
    fmt = ("<" if arch.little_endian else ">") + "iIQ6Q"
    return struct.pack(fmt, _to_int32(nr), arch.audit, ip & (2**64 - 1),
                       *(a & (2**64 - 1) for a in full))


def _to_int32(nr: int) -> int:
    nr &= _MASK
    return nr - (1 << 32) if nr & 0x80000000 else nr


class Result(Record):
    """What the program returned, the instructions it executed, and the data offsets it read."""

    __slots__ = ("ret", "trace", "loads")

    def __init__(self, ret: int, trace: tuple[int, ...], loads: frozenset[int]) -> None:
        _set(self, "ret", ret)
        _set(self, "trace", trace)
        _set(self, "loads", loads)

    @property
    def read_args(self) -> bool:
        """True when the answer may depend on the arguments or the instruction pointer."""
        return any(off >= 8 for off in self.loads)


def run(program: Sequence[Insn], arch: Arch, nr: int, args: Sequence[int] = (),
        ip: int = 0) -> Result:
    """Emulate one syscall (arch, nr, args) through program."""
    data = seccomp_data(arch, nr, args, ip)
    return run_data(program, data, "little" if arch.little_endian else "big")


def run_data(program: Sequence[Insn], data: bytes, byteorder: str) -> Result:
    """Emulate the program on raw seccomp_data bytes."""
    word = struct.Struct("<I" if byteorder == "little" else ">I")
    a = x = 0
    mem = [0] * BPF_MEMWORDS
    pc = 0
    trace: list[int] = []
    loads: set[int] = set()
    n = len(program)
    while True:
        if not 0 <= pc < n:
            raise BpfError(f"insn {pc}", "control ran off the end of the program")
        insn = program[pc]
        trace.append(pc)
        code, k = insn.code, insn.k
        cls = bpf_class(code)
        pc += 1
        if cls == RET:
            rval = code & 0x18
            if rval == 0x08:
                raise BpfError(f"insn {pc - 1}", "ret x is not a seccomp instruction")
            value = k if rval == 0 else a
            return Result(value & _MASK, tuple(trace), frozenset(loads))
        if cls == LD:
            mode = bpf_mode(code)
            if mode == ABS and bpf_size(code) == W:
                if k % 4 or k + 4 > SIZEOF_SECCOMP_DATA:
                    raise BpfError(f"insn {pc - 1}", f"load of [{k}] outside seccomp_data")
                a = word.unpack_from(data, k)[0]
                loads.add(k)
            elif mode == IMM:
                a = k
            elif mode == LEN:
                a = SIZEOF_SECCOMP_DATA
            elif mode == MEM:
                a = mem[_memslot(k, pc)]
            else:
                raise BpfError(f"insn {pc - 1}", f"load 0x{code:04x} not allowed in seccomp")
        elif cls == LDX:
            mode = bpf_mode(code)
            if mode == IMM:
                x = k
            elif mode == LEN:
                x = SIZEOF_SECCOMP_DATA
            elif mode == MEM:
                x = mem[_memslot(k, pc)]
            else:
                raise BpfError(f"insn {pc - 1}", f"load 0x{code:04x} not allowed in seccomp")
        elif cls == ST:
            mem[_memslot(k, pc)] = a
        elif cls == STX:
            mem[_memslot(k, pc)] = x
        elif cls == ALU:
            a = alu(bpf_op(code), a, x if bpf_src(code) == X else k, pc - 1)
            if a is None:  # division by X == 0: classic BPF returns 0
                return Result(0, tuple(trace), frozenset(loads))
        elif cls == JMP:
            op = bpf_op(code)
            if op == JA:
                pc += k
            else:
                operand = x if bpf_src(code) == X else k
                taken = compare(op, a, operand, pc - 1)
                pc += insn.jt if taken else insn.jf
        elif cls == MISC:
            if (code & 0xF8) == TAX:
                x = a
            else:
                a = x
    # not reached


def _memslot(k: int, pc: int) -> int:
    if k >= BPF_MEMWORDS:
        raise BpfError(f"insn {pc - 1}", f"scratch memory slot {k} out of range")
    return k


def alu(op: int, a: int, v: int, pc: int) -> int | None:
    """BPF_ALU op on A and v; None where the kernel would refuse (division by zero)."""
    if op == ADD:
        return (a + v) & _MASK
    if op == SUB:
        return (a - v) & _MASK
    if op == MUL:
        return (a * v) & _MASK
    if op == DIV:
        return None if v == 0 else a // v
    if op == MOD:
        return None if v == 0 else a % v
    if op == OR:
        return a | v
    if op == AND:
        return a & v
    if op == XOR:
        return a ^ v
    if op == LSH:
        return (a << v) & _MASK if v < 32 else 0
    if op == RSH:
        return a >> v if v < 32 else 0
    if op == NEG:
        return (-a) & _MASK
    raise BpfError(f"insn {pc}", f"unknown ALU operation 0x{op:02x}")


def compare(op: int, a: int, v: int, pc: int) -> bool:
    """Whether a BPF_JMP op on A and v is taken."""
    if op == JEQ:
        return a == v
    if op == JGT:
        return a > v
    if op == JGE:
        return a >= v
    if op == JSET:
        return bool(a & v)
    raise BpfError(f"insn {pc}", f"unknown jump 0x{op:02x}")


def arg_offsets(arch: Arch, index: int) -> tuple[int, int]:
    """(low, high) byte offsets of args[index] in seccomp_data for this arch."""
    base = OFF_ARGS + 8 * index
    return (base, base + 4) if arch.little_endian else (base + 4, base)
