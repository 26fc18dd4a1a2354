"""The listing names what a person needs: fields, arches, syscalls, actions, jump targets."""

import re
import subprocess
import sys

from ocishim.arch import BY_NAME
from ocishim.bpf.disasm import disassemble, field_name
from ocishim.bpf.insn import Insn, encode, ld_abs, ret, JMP, JEQ, K
from ocishim.compile import compile_profile
from ocishim.profile.model import ArgCond, Profile, Rule

PROFILE = Profile(
    "SCMP_ACT_ERRNO", None, ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"),
    syscalls=(
        Rule(("read", "openat"), "SCMP_ACT_ALLOW", path="syscalls[0]"),
        Rule(("clone3",), "SCMP_ACT_ERRNO", 38, path="syscalls[1]"),
        Rule(("personality",), "SCMP_ACT_ALLOW", args=(ArgCond(0, 8, 0, "SCMP_CMP_EQ"),), path="syscalls[2]"),
    ),
)


def test_field_names_follow_endianness():
    assert field_name(0, True) == "nr" and field_name(4, True) == "arch"
    assert field_name(16, True) == "args[0].lo" and field_name(20, True) == "args[0].hi"
    assert field_name(16, False) == "args[0].hi" and field_name(60, False) == "args[5].lo"
    assert field_name(8, True) == "ip.lo" and field_name(12, False) == "ip.lo"


def test_listing_of_a_libseccomp_program():
    prog = compile_profile(PROFILE, BY_NAME["x86_64"]).program
    text = disassemble(prog)
    lines = text.splitlines()[1:]
    assert len(lines) == len(prog)
    for pc, line in enumerate(lines):
        assert line.startswith(f" {pc:04d}  ")
        for target in re.findall(r"\b(\d{4})\b", line.split(";")[0][25:]):
            assert int(target) < len(prog), line
    assert "ld   [4]" in text and "A = arch" in text and "A = nr" in text
    assert "AUDIT_ARCH_X86_64" in text and "AUDIT_ARCH_I386" in text
    for name in ("read", "openat", "clone3", "personality"):
        assert re.search(rf"; {name}$", text, re.M), name
    assert "A = args[0].lo" in text
    assert "; ALLOW" in text and "; ERRNO(EPERM)" in text and "; ERRNO(ENOSYS)" in text


def test_unreachable_and_out_of_range_are_marked():
    prog = (ld_abs(0), Insn(JMP | JEQ | K, 0, 9, 1), ret(0x7FFF0000), ret(0))
    text = disassemble(prog)
    assert "0011(out of range)" in text
    assert "unreachable" in text.splitlines()[4]


def test_cli_disasm_of_an_exported_filter(tmp_path):
    prog = compile_profile(PROFILE, BY_NAME["x86_64"]).program
    f = tmp_path / "filter.bpf"
    f.write_bytes(encode(prog))
    out = subprocess.run([sys.executable, "-m", "ocishim", "disasm", str(f)],
                         capture_output=True, text=True, check=True).stdout
    assert out == disassemble(prog)
