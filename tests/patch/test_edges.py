"""The edges (issue: "The edges"): long jumps, and the 4096-instruction limit.

Semantics rule 6: at most 4096 instructions in all; a profile that cannot fit fails
with a clear error, and conditional jumps over 255 use `ja`.
"""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.multiplexed import multiplexers

from ocishim import syscalls
from ocishim.actions import RET_ALLOW, RET_ERRNO
from ocishim.arch import BY_NAME, X32_SYSCALL_BIT
from ocishim.bpf import emu
from ocishim.bpf.asm import MAX_SHORT, Cond, Goto, Label, assemble
from ocishim.bpf.insn import BPF_MAXINSNS, JA, JEQ, JGE, JMP, K, RET, bpf_class, bpf_op, ld_abs, ret
from ocishim.compile import compile_profile
from ocishim.errors import BpfError, CompileError
from ocishim.patch.enosys import Mode
from ocishim.patch.stub import build
from ocishim.profile.model import ArgCond, Profile, Rule

from .test_law import EnosysSet, named_numbers

REPO = Path(__file__).resolve().parents[2]
ENOSYS_RET = RET_ERRNO | errno.ENOSYS
EPERM_RET = RET_ERRNO | errno.EPERM
JEQ_K, JGE_K = JMP | JEQ | K, JMP | JGE | K


def check_jumps(program) -> None:
    """Every jump lands inside the program, forward; every path can end in a ret."""
    n = len(program)
    for pc, insn in enumerate(program):
        if bpf_class(insn.code) != JMP:
            continue
        targets = [pc + 1 + insn.k] if bpf_op(insn.code) == JA else [pc + 1 + insn.jt, pc + 1 + insn.jf]
        for t in targets:
            assert pc < t < n, f"insn {pc} jumps to {t} (program has {n})"
    assert bpf_class(program[-1].code) == RET


# --------------------------------------------------------------------------------------
# The assembler on its own.
# --------------------------------------------------------------------------------------

X86_64 = BY_NAME["x86_64"]


def _fill(n: int):
    return [ld_abs(0)] * n  # harmless, and never a ret: falling into it would show


@pytest.mark.parametrize("gap,long", [(253, False), (254, False), (255, True), (256, True), (1000, True)])
def test_boundary_of_a_short_jump(gap, long):
    # Cond at 1, "near" at 2 (offset 0), "far" at 3 + gap: offset gap + 1.
    items = [ld_abs(0), Cond(JEQ_K, 7, "far", "near"), Label("near"), ret(1), *_fill(gap),
             Label("far"), ret(2)]
    prog = assemble(items)
    assert any(i.code == JMP | JA for i in prog) is long
    assert (gap + 1 > MAX_SHORT) is long
    check_jumps(prog)
    assert emu.run(prog, X86_64, 7).ret == 2
    assert emu.run(prog, X86_64, 8).ret == 1


def test_both_sides_far():
    items = [ld_abs(0), Cond(JGE_K, 100, "hi", "lo"), ret(9), *_fill(300), Label("lo"), ret(1),
             *_fill(300), Label("hi"), ret(2)]
    prog = assemble(items)
    assert sum(i.code == JMP | JA for i in prog) == 2
    check_jumps(prog)
    assert emu.run(prog, X86_64, 100).ret == 2
    assert emu.run(prog, X86_64, 99).ret == 1


def test_relaxation_cascades():
    """A jump that fits only until another jump between it and its target grows must grow too."""
    # A at 1 targets "x" at exactly the last short distance; B at 2 targets "far" beyond reach.
    # Once B takes a `ja`, "x" is one further away and A must take one too.
    gap = MAX_SHORT - 2
    items = [ld_abs(0),
             Cond(JEQ_K, 1, "x", "b"),               # A
             Label("b"), Cond(JEQ_K, 2, "far", "c"),  # B
             Label("c"), ret(3), *_fill(gap),
             Label("x"), ret(4), *_fill(300),
             Label("far"), ret(5)]
    prog = assemble(items)
    check_jumps(prog)
    assert sum(i.code == JMP | JA for i in prog) == 2
    assert emu.run(prog, X86_64, 1).ret == 4
    assert emu.run(prog, X86_64, 2).ret == 5
    assert emu.run(prog, X86_64, 3).ret == 3


def test_many_far_jumps_in_a_chain():
    """A ladder of tests, each sending its match past all the others' bodies."""
    n = 40
    items = [ld_abs(0)]
    for i in range(n):
        items += [Cond(JEQ_K, i, f"t{i}", f"n{i}"), Label(f"n{i}")]
    items += [ret(0xFFFF)]
    for i in range(n):
        items += _fill(20) + [Label(f"t{i}"), ret(1000 + i)]
    prog = assemble(items)
    check_jumps(prog)
    assert any(i.code == JMP | JA for i in prog)
    for i in range(n):
        assert emu.run(prog, X86_64, i).ret == 1000 + i
    assert emu.run(prog, X86_64, n).ret == 0xFFFF


def test_goto_and_labels_beyond():
    prog = assemble([ld_abs(0), Cond(JEQ_K, 1, "P", "q"), Label("q"), Goto("P2")], beyond={"P": 0, "P2": 400})
    tail = tuple([ret(7)] + [ret(8)] * 399 + [ret(9)])
    check_jumps(prog + tail)
    assert emu.run(prog + tail, X86_64, 1).ret == 7
    assert emu.run(prog + tail, X86_64, 2).ret == 9


def test_bad_jumps_are_errors():
    with pytest.raises(BpfError):
        assemble([Label("top"), ld_abs(0), Cond(JEQ_K, 1, "top", "end"), Label("end"), ret(0)])
    with pytest.raises(BpfError):
        assemble([Goto("nowhere")])
    with pytest.raises(BpfError):
        assemble([Label("a"), Label("a"), ret(0)])


# --------------------------------------------------------------------------------------
# Long jumps in real stubs.
# --------------------------------------------------------------------------------------

def _every_other(arch: str) -> tuple[str, ...]:
    numbers = syscalls.numbers(arch)
    return tuple(syscalls.name(arch, nr) for nr in numbers[::2])


@pytest.mark.parametrize("native,extras", [("x86_64", ()), ("x86_64", ("x86", "x32")), ("aarch64", ("arm",)),
                                           ("s390x", ("s390",))])
def test_stub_with_long_jumps_answers_right(native, extras):
    """unnamed mode on a profile naming every other syscall: hundreds of ranges, a stub over 255."""
    names = sorted({n for a in (native,) + extras for n in _every_other(a)})
    profile = Profile("SCMP_ACT_ERRNO", None, tuple(BY_NAME[a].oci for a in extras),
                      syscalls=(Rule(tuple(names), "SCMP_ACT_ALLOW"),))
    try:
        compiled = compile_profile(profile, BY_NAME[native])
    except CompileError as exc:
        if "corrupt program" not in str(exc):
            raise
        pytest.skip("libseccomp 2.5.4 garbles this big-endian program when built on a "
                    "little-endian host; ocishim refuses it (tests/patch/test_law.py)")
    patched = build(compiled, Mode("unnamed"))
    off = build(compiled, Mode("off"))
    stub = patched.program[:patched.stub_length]
    assert patched.stub_length > MAX_SHORT
    assert any(i.code == JMP | JA for i in stub), "a stub this long needs ja"
    check_jumps(patched.program)
    assert len(patched.program) <= BPF_MAXINSNS
    for arch in compiled.arches:
        named = ({syscalls.resolve(arch.name, n) for n in names} - {None}) | multiplexers(arch.name, names)
        base = X32_SYSCALL_BIT if arch.name == "x32" else 0
        for nr in list(range(base, base + 1101)) + ([0xF0000 + i for i in range(0x11)] if arch.name == "arm" else []):
            got = emu.run(patched.program, arch, nr).ret
            if nr in named:
                assert got == emu.run(off.program, arch, nr).ret, (arch.name, nr)
            else:
                assert got == ENOSYS_RET, (arch.name, nr)


def test_auto_mode_on_x86_reaches_far():
    """i386 has many holes in its table: every mode's tree is long there, each answer checked."""
    names = _every_other("x86")
    profile = Profile("SCMP_ACT_ERRNO", None, ("SCMP_ARCH_X86",), syscalls=(Rule(names, "SCMP_ACT_ALLOW"),))
    compiled = compile_profile(profile, X86_64)
    x86 = BY_NAME["x86"]
    off = build(compiled, Mode("off"))
    for mode in (Mode("auto"), Mode("unnamed"), Mode("kernel", (4, 0)), Mode("max")):
        patched = build(compiled, mode)
        check_jumps(patched.program)
        enosys = EnosysSet("x86", named_numbers(profile, "x86"), mode, compiled.default_action, None)
        for nr in range(0, 1101):
            want = ENOSYS_RET if nr in enosys else emu.run(off.program, x86, nr).ret
            assert emu.run(patched.program, x86, nr).ret == want, (str(mode), nr)


# --------------------------------------------------------------------------------------
# The 4096 limit.
# --------------------------------------------------------------------------------------

LACKED = ("mseal", "statmount", "listmount", "lsm_get_self_attr", "setxattrat")


def oversized_by_own_rules(n: int = 4500) -> Profile:
    """Thousands of argument rules for names libseccomp 2.5.4 lacks: ocishim compiles them all."""
    rules = tuple(Rule((LACKED[i % len(LACKED)],), "SCMP_ACT_ALLOW", None,
                       (ArgCond(i % 6, 1000 + i, 0, "SCMP_CMP_EQ"),)) for i in range(n))
    return Profile("SCMP_ACT_ERRNO", syscalls=rules)


def oversized_by_libseccomp(n: int = 4200, default: str = "SCMP_ACT_ERRNO") -> Profile:
    """Thousands of argument rules for a name libseccomp knows: its own program is too long."""
    action = "SCMP_ACT_ALLOW" if default != "SCMP_ACT_ALLOW" else "SCMP_ACT_ERRNO"
    rules = tuple(Rule(("personality",), action, None, (ArgCond(0, i, 0, "SCMP_CMP_EQ"),)) for i in range(n))
    return Profile(default, syscalls=rules)


def _needs(message: str) -> int:
    m = re.search(r"needs (\d+) instructions", message)
    assert m, f"the error does not say how many instructions it needed: {message}"
    assert "4096" in message
    return int(m.group(1))


@pytest.mark.parametrize("mode", ["off", "auto", "unnamed"])
def test_oversized_own_rules_fail_clearly(mode):
    compiled = compile_profile(oversized_by_own_rules(), X86_64)
    with pytest.raises(CompileError) as info:
        build(compiled, Mode(mode))
    assert _needs(str(info.value)) > BPF_MAXINSNS


@pytest.fixture(scope="module")
def libseccomp_oversized():
    return {d: compile_profile(oversized_by_libseccomp(default=d), X86_64)
            for d in ("SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW")}


@pytest.mark.parametrize("default,mode", [("SCMP_ACT_ERRNO", "auto"), ("SCMP_ACT_ERRNO", "off"),
                                          ("SCMP_ACT_ALLOW", "auto")])
def test_oversized_libseccomp_program_fails_clearly(libseccomp_oversized, default, mode):
    """Rule 6 holds whether or not there is a stub: libseccomp's program alone can be too long."""
    compiled = libseccomp_oversized[default]
    assert len(compiled.program) > BPF_MAXINSNS
    with pytest.raises(CompileError) as info:
        build(compiled, Mode(mode))
    assert _needs(str(info.value)) >= len(compiled.program)


def test_just_under_the_limit_builds():
    """A profile whose patched program fits is built, and is no longer than 4096."""
    n = 1200
    while True:
        compiled = compile_profile(oversized_by_own_rules(n), X86_64)
        try:
            patched = build(compiled, Mode("auto"))
            break
        except CompileError as exc:
            needed = _needs(str(exc))
            n = n * (BPF_MAXINSNS - 40) // needed
    assert len(patched.program) <= BPF_MAXINSNS
    check_jumps(patched.program)
    assert any(i.code == JMP | JA for i in patched.program[:patched.stub_length])
    # The first and last rules still answer, and a value no rule names gets the default.
    for i in (0, n - 1):
        nr = syscalls.resolve("x86_64", LACKED[i % len(LACKED)])
        args = [0] * 6
        args[i % 6] = 1000 + i
        assert emu.run(patched.program, X86_64, nr, args).ret == RET_ALLOW
        args[i % 6] = 1000 + i + 1
        assert emu.run(patched.program, X86_64, nr, args).ret == EPERM_RET


def _cli(tmp_path: Path, profile: Profile, *flags: str) -> subprocess.CompletedProcess:
    obj = {
        "defaultAction": profile.default_action,
        "syscalls": [{"names": list(r.names), "action": r.action,
                      "args": [{"index": c.index, "value": c.value, "valueTwo": c.value_two, "op": c.op}
                               for c in r.args]} for r in profile.syscalls],
    }
    path = tmp_path / "seccomp.json"
    path.write_text(json.dumps(obj))
    return subprocess.run([sys.executable, "-m", "ocishim", "patch", str(path), *flags,
                           "-o", str(tmp_path / "out.bpf")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flags", [(), ("--enosys", "off"), ("--enosys", "unnamed")])
def test_cli_oversized_exits_2_with_the_count(tmp_path, flags):
    proc = _cli(tmp_path, oversized_by_own_rules(), *flags)
    assert proc.returncode == 2, proc.stderr
    assert _needs(proc.stderr) > BPF_MAXINSNS
    assert not (tmp_path / "out.bpf").exists()


def test_cli_oversized_libseccomp_program_exits_2(tmp_path):
    proc = _cli(tmp_path, oversized_by_libseccomp(), "--enosys", "off")
    assert proc.returncode == 2, proc.stderr
    assert _needs(proc.stderr) > BPF_MAXINSNS
    assert not (tmp_path / "out.bpf").exists()
