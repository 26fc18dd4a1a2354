"""bpf/reach: every answer a program can give, per nr range, checked against the emulator.

Oracle: the emulator (itself checked against the kernel in tests/kernel) run on each
range's ends and on argument values around every constant the profile's rules use.
Every answer the emulator finds must be in the range's set (reach never misses one),
and where the emulator finds a single answer for an unconditional syscall, reach must
not claim more.
"""

from __future__ import annotations

import pytest

from ocishim.arch import BY_NAME, nr_domain
from ocishim.bpf import emu, reach
from ocishim.bpf.asm import Cond, Label, assemble
from ocishim.bpf.insn import JEQ, JGE, JMP, K, ld_abs, ret
from ocishim.compile import compile_profile
from ocishim.profile import load
from tests import shared_data

PROFILES = sorted((shared_data.PROFILES).glob("*.json"))
U64 = 2**64 - 1


def _arg_values(profile) -> list[int]:
    values = {0, 1, U64, 2**32, 2**32 - 1}
    for rule in profile.syscalls:
        for c in rule.args:
            for v in (c.value, c.value_two, c.value & c.value_two):
                values |= {(v - 1) & U64, v & U64, (v + 1) & U64}
    return sorted(values)


@pytest.mark.parametrize("path", PROFILES, ids=[p.name for p in PROFILES])
def test_reach_covers_the_emulator(path):
    profile = load(str(path)).profile
    compiled = compile_profile(profile)
    values = _arg_values(profile)
    checked = 0
    for arch in compiled.arches:
        lo, hi = nr_domain(arch.name)
        spans = reach.spans(compiled.program, arch, lo, hi)
        assert spans[0].lo == lo and spans[-1].hi == hi
        assert all(a.hi + 1 == b.lo for a, b in zip(spans, spans[1:])), "not a partition"
        for span in spans:
            for nr in {span.lo, span.hi, (span.lo + span.hi) // 2}:
                seen = {emu.run(compiled.program, arch, nr, [v] * 6).ret for v in values}
                seen |= {emu.run(compiled.program, arch, nr, [v, 0, 0, 0, 0, 0]).ret for v in values}
                assert seen <= span.answers, (arch.name, nr, seen, span.answers)
                if len(seen) == 1 and not emu.run(compiled.program, arch, nr).read_args:
                    assert span.answers == seen, (arch.name, nr)
                checked += 1
    assert checked > 40


def test_reach_on_a_hand_written_program():
    """jeq/jge on nr split the range; a jump on an argument keeps both answers."""
    x86_64 = BY_NAME["x86_64"]
    program = assemble([
        ld_abs(0),
        Cond(JMP | JGE | K, 100, "high", "low"),
        Label("low"), Cond(JMP | JEQ | K, 7, "args", "deny"),
        Label("args"), ld_abs(16), Cond(JMP | JEQ | K, 1, "allow", "deny"),
        Label("high"), ret(0x00050026),
        Label("allow"), ret(0x7FFF0000),
        Label("deny"), ret(0x00050001),
    ])
    got = [(s.lo, s.hi, set(s.answers)) for s in reach.spans(program, x86_64, 0, 1000)]
    assert got == [(0, 6, {0x00050001}), (7, 7, {0x7FFF0000, 0x00050001}),
                   (8, 99, {0x00050001}), (100, 1000, {0x00050026})]
