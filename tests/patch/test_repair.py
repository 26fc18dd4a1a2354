"""ocishim's own rule compiler (patch/repair.py), used where libseccomp's code is wrong.

Every generated rule set on one syscall is forced through a repair block and run by the
emulator on boundary argument vectors; the answer must be the meaning's (semantics.md
rule 12, as written in verify/meaning.py: the specification the checker holds every
program to), wherever that meaning is settled. The meaning is computed by
Meaning.answer, an evaluator of the rules, never from the block's code.
"""

from __future__ import annotations

import itertools
import random

import pytest

from ocishim import syscalls
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.compile import compile_profile
from ocishim.patch import build, parse_mode
from ocishim.profile.model import ArgCond, Profile, Rule
from ocishim.verify.meaning import Meaning, Refused, Unsettled

OPS = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE",
       "SCMP_CMP_MASKED_EQ")
VALUES = (0, 1, 5, 0xFFFFFFFF, 0x100000000, 0x100000005, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
ACTIONS = (("SCMP_ACT_ERRNO", 13), ("SCMP_ACT_ERRNO", 22), ("SCMP_ACT_ALLOW", None), ("SCMP_ACT_TRAP", None))
NAME = "personality"


def _rules(rng: random.Random) -> tuple[Rule, ...]:
    rules = []
    for i in range(rng.randint(1, 3)):
        action, errno_ret = rng.choice(ACTIONS)
        indexes = rng.sample(range(3), rng.randint(1, 2))
        conds = tuple(ArgCond(ix, rng.choice(VALUES), rng.choice(VALUES), rng.choice(OPS)) for ix in indexes)
        rules.append(Rule((NAME,), action, errno_ret, conds, f"syscalls[{i}]"))
    return tuple(rules)


def _points(rules) -> list[tuple[int, ...]]:
    """Argument vectors at and around every value the rules name, on their arguments."""
    around = sorted({(v + d) & (2**64 - 1) for r in rules for c in r.args for v in (c.value, c.value_two)
                     for d in (-1, 0, 1)} | {0, 2**32, 2**64 - 1})
    return [(a, b, c) + (0, 0, 0) for a, b, c in itertools.product(around, repeat=3)][::7]


@pytest.mark.parametrize("arch_name", ["x86_64", "x86"])
def test_repair_blocks_answer_the_meaning(arch_name):
    arch = BY_NAME[arch_name]
    nr = syscalls.resolve(arch_name, NAME)
    rng = random.Random(f"repair-{arch_name}")
    compared = settled = 0
    for _ in range(60):
        rules = _rules(rng)
        profile = Profile("SCMP_ACT_ERRNO", 1, (), syscalls=rules)
        try:
            meaning = Meaning(profile, [arch])
        except Refused:  # libseccomp would refuse it (EEXIST): no filter, nothing to repair
            continue
        on = meaning.on(arch, nr)
        assert on is not None
        # a filter with no rules, and the block in the stub for personality
        compiled = compile_profile(Profile("SCMP_ACT_ERRNO", 1, ()), arch)
        program = build(compiled, parse_mode("off"), repairs={(arch_name, nr): on}).program
        compared += 1
        for args in _points(rules):
            try:
                want = meaning.answer(arch.audit, nr, args)
            except Unsettled:
                continue
            settled += 1
            got = emu.run(program, arch, nr, args).ret
            assert got == want, (rules, [hex(a) for a in args], hex(got), hex(want))
    assert compared >= 40 and settled >= 10_000, (compared, settled)
