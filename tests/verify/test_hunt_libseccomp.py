"""scripts/hunt_libseccomp.py: what it draws, and that it shrinks a rule set to a smallest one."""

from __future__ import annotations

import errno
import random
import sys
from pathlib import Path

import pytest

from ocishim import libseccomp
from ocishim.actions import RET_ERRNO
from ocishim.compile import filter_arches
from ocishim.profile.model import ArgCond, Profile, Rule

from kernel.harness import Call, kernel_results, require_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import hunt_libseccomp as hunt  # noqa: E402


def test_draws_cover_every_operator_high_words_actions_and_arches():
    rnd = random.Random(0)
    profiles = [hunt.draw(rnd, "personality") for _ in range(300)]
    conds = [c for p in profiles for r in p.syscalls for c in r.args]
    assert {c.op for c in conds} == set(hunt.OPS)
    assert any(c.value >> 32 and c.value & 0xFFFFFFFF for c in conds)  # both words set
    assert any(len(r.args) == 2 for p in profiles for r in p.syscalls)
    assert any(len({(r.action, r.errno_ret) for r in p.syscalls}) > 1 for p in profiles)
    arches = {a for p in profiles for a in p.architectures}
    assert {"SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"} <= arches
    for p in profiles:
        assert all(r.names == ("personality",) for r in p.syscalls)
        for c in (c for r in p.syscalls for c in r.args if c.op == "SCMP_CMP_MASKED_EQ"):
            assert c.value_two & ~c.value == 0  # the datum inside the mask


@pytest.mark.skipif(libseccomp.version() >= (2, 6, 0), reason="the bug is libseccomp 2.5.4's")
def test_shrinks_a_bloated_rule_set_to_the_smallest_that_still_differs():
    """The first pinned bug (a2 < 10 OR a2 > 0x1_0000000a), padded with a rule, a condition
    and an arch it does not need, shrinks back to one rule of two conditions on x86_64,
    and the kernel confirms the shrunk set's witness."""
    require_kernel()
    eacces = ("SCMP_ACT_ERRNO", errno.EACCES)
    bloated = Profile("SCMP_ACT_ERRNO", None, ("SCMP_ARCH_AARCH64",), syscalls=(
        Rule(("personality",), *eacces, (ArgCond(2, 10, 0, "SCMP_CMP_LT"), ArgCond(2, 2**32 + 10, 0, "SCMP_CMP_GT"),
                                         ArgCond(4, 7, 0, "SCMP_CMP_NE")), "syscalls[0]"),
        Rule(("personality",), "SCMP_ACT_ERRNO", errno.EINVAL, (ArgCond(5, 3, 0, "SCMP_CMP_EQ"),), "syscalls[1]"),
    ))
    assert hunt.differences(bloated)
    small, found = hunt.shrink(bloated)
    assert small.architectures == () and len(small.syscalls) == 1
    assert {c.index for c in small.syscalls[0].args} == {2} and len(small.syscalls[0].args) == 2
    assert hunt.size(small) <= hunt.size(bloated)
    w = found[0].witness
    assert w.arch == "x86_64" and filter_arches(small, hunt.NATIVE)
    program = hunt.compile_module.compile_profile(small, hunt.NATIVE).program
    assert kernel_results(program, [Call(w.nr, w.args)]) == [found[0].got]
    assert found[0].got != found[0].want and found[0].want & 0xFFFF0000 == RET_ERRNO
