"""decode/encode of raw sock_filter arrays, byte for byte."""

import struct

import pytest
from hypothesis import given, strategies as st

from ocishim.bpf.insn import Insn, decode, encode, jump_targets, ld_abs, ret, JMP, JEQ, K
from ocishim.errors import BpfError

insns = st.builds(Insn, st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFF),
                  st.integers(0, 0xFFFFFFFF))


@given(st.lists(insns, max_size=64), st.sampled_from(["little", "big", "host"]))
def test_decode_encode_roundtrip(program, order):
    raw = encode(program, order)
    assert len(raw) == 8 * len(program)
    assert decode(raw, order) == tuple(program)
    assert encode(decode(raw, order), order) == raw


def test_layout_is_struct_sock_filter():
    # struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }
    raw = encode([Insn(0x15, 1, 2, 0xC000003E)], "little")
    assert raw == bytes([0x15, 0x00, 0x01, 0x02, 0x3E, 0x00, 0x00, 0xC0])
    assert encode([Insn(0x15, 1, 2, 0xC000003E)], "big") == struct.pack(">HBBI", 0x15, 1, 2, 0xC000003E)


def test_truncated_input_is_an_error():
    with pytest.raises(BpfError, match="multiple of 8"):
        decode(b"\x00" * 12)


def test_fields_are_range_checked():
    with pytest.raises(BpfError):
        Insn(0x10000)
    with pytest.raises(BpfError):
        Insn(0x15, 256, 0, 0)


def test_jump_targets():
    prog = (ld_abs(0), Insn(JMP | JEQ | K, 1, 0, 39), ret(0), ret(1))
    assert jump_targets(prog, 0) == (1,)
    assert jump_targets(prog, 1) == (3, 2)
    assert jump_targets(prog, 2) == ()
