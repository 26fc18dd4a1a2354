"""The emulator against hand-written programs whose answers are known from the kernel's rules."""

import pytest

from ocishim.actions import RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.bpf.insn import (ADD, ALU, AND, DIV, IMM, JA, JEQ, JGE, JGT, JMP, JSET, K, LD, LDX,
                              MEM, MISC, RET, ST, TAX, W, ABS, X, Insn, ja, ld_abs, ret, stmt)
from ocishim.errors import BpfError

X86_64, S390X, X86 = BY_NAME["x86_64"], BY_NAME["s390x"], BY_NAME["x86"]


def test_seccomp_data_little_endian_layout():
    data = emu.seccomp_data(X86_64, 59, [0x1122334455667788], ip=0xAABBCCDD00112233)
    assert len(data) == 64
    assert data[0:4] == (59).to_bytes(4, "little")
    assert data[4:8] == (0xC000003E).to_bytes(4, "little")
    assert data[8:16] == (0xAABBCCDD00112233).to_bytes(8, "little")
    assert data[16:20] == (0x55667788).to_bytes(4, "little")  # low half first
    assert data[20:24] == (0x11223344).to_bytes(4, "little")


def test_seccomp_data_big_endian_layout():
    data = emu.seccomp_data(S390X, 1, [0x1122334455667788])
    assert data[4:8] == (0x80000016).to_bytes(4, "big")
    assert data[16:20] == (0x11223344).to_bytes(4, "big")  # high half first
    assert data[20:24] == (0x55667788).to_bytes(4, "big")


@pytest.mark.parametrize("arch,lo,hi", [(X86_64, 16, 20), (S390X, 20, 16)])
def test_arg_halves_per_endianness(arch, lo, hi):
    assert emu.arg_offsets(arch, 0) == (lo, hi)
    # return the word at [lo] as an errno: it must be the low half of args[0]
    prog = (ld_abs(lo), stmt(ALU | AND | K, 0xFFF), stmt(ALU | 0x40 | K, RET_ERRNO), stmt(RET | 0x10))
    assert emu.run(prog, arch, 0, [0x00000ABC_00000123]).ret == RET_ERRNO | 0x123
    prog = (ld_abs(hi), stmt(ALU | AND | K, 0xFFF), stmt(ALU | 0x40 | K, RET_ERRNO), stmt(RET | 0x10))
    assert emu.run(prog, arch, 0, [0x00000ABC_00000123]).ret == RET_ERRNO | 0xABC


def test_negative_nr_is_an_int():
    prog = (ld_abs(0), Insn(JMP | JEQ | K, 0, 1, 0xFFFFFFFF), ret(RET_KILL_PROCESS), ret(RET_ALLOW))
    assert emu.run(prog, X86_64, -1).ret == RET_KILL_PROCESS


def test_jumps_and_trace():
    prog = (
        ld_abs(4),                                   # 0
        Insn(JMP | JEQ | K, 0, 4, X86.audit),         # 1 -> 2 / 6
        ld_abs(0),                                   # 2
        Insn(JMP | JGE | K, 1, 0, 400),              # 3 -> 5 / 4
        ret(RET_ALLOW),                              # 4
        Insn(JMP | JSET | K, 1, 0, 1),               # 5 -> 7 / 6  (odd numbers)
        ja(1),                                       # 6 -> 8
        ret(RET_ERRNO | 38),                         # 7
        ret(RET_ERRNO | 1),                          # 8
    )
    assert emu.run(prog, X86, 3).ret == RET_ALLOW
    assert emu.run(prog, X86, 401).ret == RET_ERRNO | 38
    r = emu.run(prog, X86, 402)
    assert r.ret == RET_ERRNO | 1 and r.trace == (0, 1, 2, 3, 5, 6, 8)
    assert emu.run(prog, X86_64, 3).ret == RET_ERRNO | 1
    assert not r.read_args


def test_scratch_memory_x_register_and_division_by_zero():
    prog = (
        stmt(LD | IMM, 7), stmt(ST, 3), stmt(LDX | W | MEM, 3), stmt(MISC | 0x80),  # A = X = 7
        stmt(ALU | ADD | X), stmt(RET | 0x10),                                        # A = 14
    )
    assert emu.run(prog, X86_64, 0).ret == 14
    prog = (stmt(LDX | IMM, 0), stmt(LD | IMM, 5), stmt(ALU | DIV | X), ret(RET_ALLOW))
    assert emu.run(prog, X86_64, 0).ret == 0  # classic BPF: division by X == 0 returns 0
    prog = (stmt(LD | IMM, 5), stmt(MISC | TAX), stmt(ALU | ADD | X), stmt(RET | 0x10))
    assert emu.run(prog, X86_64, 0).ret == 10


@pytest.mark.parametrize("prog,what", [
    ((ld_abs(64), ret(0)), "outside seccomp_data"),
    ((ld_abs(2), ret(0)), "outside seccomp_data"),
    ((ld_abs(0),), "off the end"),
    ((ja(5), ret(0)), "off the end"),
    ((Insn(LD | W | 0x40, 0, 0, 0), ret(0)), "not allowed"),
])
def test_invalid_programs_are_errors(prog, what):
    with pytest.raises(BpfError, match=what):
        emu.run(prog, X86_64, 0)


def test_read_args_tracks_argument_loads():
    prog = (ld_abs(0), Insn(JMP | JEQ | K, 0, 2, 41), ld_abs(16), ret(RET_ERRNO | 1), ret(RET_ALLOW))
    assert emu.run(prog, X86_64, 41).read_args
    assert not emu.run(prog, X86_64, 40).read_args
