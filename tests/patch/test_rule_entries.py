"""Calls whose rules read their arguments go from the stub straight to those rules in P (issue 11).

The kernel's action cache cannot answer such a call (its answer depends on the
arguments), so the filter runs on every one of them: under Docker's and Podman's
default profiles the patched program must run no more instructions for them than
libseccomp's program alone, in every mode. The oracle is the emulator's run of
libseccomp's own program (compiled.program), which knows nothing of the stub.
"""

from __future__ import annotations

import functools

import pytest

from ocishim.arch import X32_SYSCALL_BIT
from ocishim.bpf import emu
from ocishim.bpf.insn import ABS, LD, OFF_ARGS, W
from ocishim.compile import Compiled, compile_profile
from ocishim.patch.enosys import parse_mode
from ocishim.patch.stub import build
from ocishim.profile import load
from ocishim.profile.model import ArgCond, Profile, Rule
from tests import shared_data

PROFILES = shared_data.PROFILES
KERNEL = (6, 18)
MODES = ("off", "auto", "max", "unnamed", "kernel:5.4")
# Argument values that take different ways through Docker's rules (personality's
# values, clone's namespace flags, socket's AF_VSOCK).
ARGS = [(0,), (0xFFFFFFFF,), (8,), (0x20008,), (40,), (0x7E020000,), (1 << 32,)]


@functools.cache
def _compiled(name: str) -> Compiled:
    return compile_profile(load(PROFILES / name, kernel=KERNEL).profile)


def _argument_filtered(compiled: Compiled) -> list[tuple[object, int]]:
    """(arch, nr) whose answer in libseccomp's program depends on the arguments."""
    out = []
    for arch in compiled.arches:
        base = X32_SYSCALL_BIT if arch.name == "x32" else 0
        for nr in range(base, base + 1101):
            if any(emu.run(compiled.program, arch, nr, args).read_args for args in ARGS[:2]):
                out.append((arch, nr))
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["docker-default.json", "containers-default.json"])
def test_argument_filtered_calls_run_no_more_than_libseccomp(name: str, mode: str):
    compiled = _compiled(name)
    calls = _argument_filtered(compiled)
    assert len(calls) >= 3, "these profiles filter personality, clone and socket on their arguments"
    patched = build(compiled, parse_mode(mode))
    slower = []
    for arch, nr in calls:
        for args in ARGS:
            alone = emu.run(compiled.program, arch, nr, args)
            got = emu.run(patched.program, arch, nr, args)
            assert got.ret == alone.ret, (arch.name, hex(nr), args)
            if len(got.trace) > len(alone.trace):
                slower.append(f"{arch.name} {nr:#x} {args}: {len(got.trace)} > {len(alone.trace)}")
    assert not slower, "the stub makes argument-filtered calls slower:\n" + "\n".join(slower)


@pytest.mark.parametrize("mode", MODES)
def test_the_stub_jumps_to_the_rules_first_argument_load(mode: str):
    """From the jump into P on, the patched program runs exactly the end of libseccomp's own
    run of the call, which starts with the rule's first argument load: P's tree of tests on
    nr is skipped, nothing of P's rule code is."""
    compiled = _compiled("docker-default.json")
    patched = build(compiled, parse_mode(mode))
    for arch, nr in _argument_filtered(compiled):
        for args in ARGS:
            alone = emu.run(compiled.program, arch, nr, args).trace
            got = emu.run(patched.program, arch, nr, args).trace
            in_p = [pc - patched.stub_length for pc in got if pc >= patched.stub_length]
            assert in_p == list(alone[len(alone) - len(in_p):]), (arch.name, hex(nr), args)
            first = compiled.program[in_p[0]]
            assert first.code == LD | W | ABS and first.k >= OFF_ARGS, (arch.name, hex(nr), first)


def test_no_stub_for_argument_rules_alone():
    """Rules 1 and 2: argument-filtered calls never make a stub on their own, where no
    mode has work to do (`off`, or a default that lets calls through)."""
    for default, action, mode in (("SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "off"),
                                  ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "unnamed"),
                                  ("SCMP_ACT_LOG", "SCMP_ACT_ERRNO", "auto")):
        rule = Rule(("personality",), action, None, (ArgCond(0, 8, 0, "SCMP_CMP_EQ"),))
        compiled = compile_profile(Profile(default, None, (), syscalls=(rule,)))
        assert any(emu.run(compiled.program, arch, 135, (8,)).read_args for arch in compiled.arches
                   if arch.name == "x86_64")
        patched = build(compiled, parse_mode(mode))
        assert patched.stub_length == 0 and patched.program == compiled.program, (default, mode)
