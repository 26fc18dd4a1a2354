"""The rule blocks ocishim compiles for names the host libseccomp lacks (semantics rules 7 and 12).

Rule 12: such rules mean exactly what libseccomp makes of the same rules on a name it
knows. Black box, through ocishim.patch.patch_profile in `off` mode (no ENOSYS stub):

- libseccomp: the rules on KNOWN, a name the host libseccomp knows on every arch tried;
- ocishim: the same rules on LACKED, a name the table has and the host libseccomp lacks,
  which ocishim compiles into a rule block.

The two programs must answer alike on their own syscall for every argument vector tried
(edge values around each condition) on 64-bit little-endian (x86_64), 32-bit (x86, arm,
x32) and 64-bit big-endian (s390x) filters. Where a rule is one AND of conditions,
libseccomp's answer is also checked against the meaning of the rule written out here
(condition_holds): a second, independent oracle. Where several condition sets are OR'd,
libseccomp 2.5.4 at times departs from that meaning (the test_libseccomp_departs_* tests
pin two cases); ocishim then answers as libseccomp does, not as the meaning says.
tests/patch/test_rule_parity.py does the same on thousands of generated rule sets.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Sequence

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from ocishim import libseccomp, syscalls
from ocishim.actions import RET_ALLOW, RET_KILL_PROCESS, RET_TRAP, action_value
from ocishim.arch import BY_NAME, Arch
from ocishim.bpf import emu
from ocishim.errors import CompileError
from ocishim.patch import patch_profile
from ocishim.profile.model import ArgCond, Profile, Rule

U64 = 2**64 - 1
U32 = 2**32 - 1
OPS = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT",
       "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ")
ARCHES = ("x86_64", "x86", "arm", "x32", "s390x")
# The rules are written on NAME and put on KNOWN or LACKED by _both.
NAME = "personality"
KNOWN = "personality"
LACKED = "mseal"  # Linux 6.10; libseccomp 2.5.4 lacks it on every arch
EPERM_RET = action_value("SCMP_ACT_ERRNO", None)


def _on(rules: Sequence[Rule], name: str) -> tuple[Rule, ...]:
    return tuple(r.replace(names=(name,), path=f"syscalls[{i}]") for i, r in enumerate(rules))


@dataclasses.dataclass(frozen=True)
class Pair:
    """libseccomp's program for the rules on KNOWN, ocishim's for the same rules on LACKED."""

    arch: Arch
    lib: tuple
    own: tuple
    nr_known: int
    nr_lacked: int

    def answers(self, args: Sequence[int]) -> tuple[int, int]:
        return (emu.run(self.lib, self.arch, self.nr_known, args).ret,
                emu.run(self.own, self.arch, self.nr_lacked, args).ret)


def _both(arch: Arch, rules: Sequence[Rule], default: tuple[str, int | None] = ("SCMP_ACT_ERRNO", None),
          check: bool = False) -> Pair:
    """libseccomp's program on KNOWN and ocishim's block on LACKED; check=False: as compiled,
    before patch.check repairs libseccomp's bugs (rule 12 is about the compile)."""
    assert libseccomp.resolve_name(arch, KNOWN) == syscalls.resolve(arch.name, KNOWN)
    assert not libseccomp.knows(arch, LACKED) and syscalls.resolve(arch.name, LACKED) is not None
    programs = [patch_profile(Profile(default[0], default[1], syscalls=_on(rules, name)), "off", native=arch,
                              check=check).program
                for name in (KNOWN, LACKED)]
    return Pair(arch, programs[0], programs[1], syscalls.resolve(arch.name, KNOWN),
                syscalls.resolve(arch.name, LACKED))


def edge_values(v: int) -> list[int]:
    """Values around v and around the 32-bit boundaries, including hi-equal/lo-different ones."""
    v &= U64
    hi, lo = v >> 32, v & U32
    out = {0, 1, (v - 1) & U64, v, (v + 1) & U64, U32, 2**32, 2**32 + 1, 2**63, U64,
           (hi << 32) | ((lo + 1) & U32), (hi << 32) | ((lo - 1) & U32),  # hi equal, lo differs
           (((hi + 1) & U32) << 32) | lo, (((hi - 1) & U32) << 32) | lo,  # lo equal, hi differs
           (hi << 32), (hi << 32) | U32, lo}
    return sorted(out)


def vectors(conds: Sequence[ArgCond]) -> list[tuple[int, ...]]:
    """Argument vectors: each condition's edges on its own, and all at once."""
    base = [0] * 6
    out = {tuple(base)}
    per_index: dict[int, set[int]] = {}
    for c in conds:
        values = set(edge_values(c.value))
        if c.op == "SCMP_CMP_MASKED_EQ":
            values |= set(edge_values(c.value_two)) | {c.value_two & c.value, c.value & U64}
        per_index.setdefault(c.index, set()).update(values)
    for index, values in per_index.items():
        for v in values:
            w = list(base)
            w[index] = v
            out.add(tuple(w))
    # Cross products over two indexes, so AND of conditions is exercised on both sides.
    items = sorted(per_index.items())
    for (i, vi), (j, vj) in zip(items, items[1:]):
        for a in sorted(vi):
            for b in sorted(vj)[::3]:
                w = list(base)
                w[i], w[j] = a, b
                out.add(tuple(w))
    return sorted(out)


def condition_holds(arch: Arch, cond: ArgCond, arg: int) -> bool:
    """libseccomp's meaning: 64-bit compare, or low words only on a 32-bit arch;
    MASKED_EQ is (arg & mask) == (datum & mask)."""
    mask = U64 if arch.bits == 64 else U32
    a, v, w = arg & mask, cond.value & mask, cond.value_two & mask
    return {
        "SCMP_CMP_EQ": a == v, "SCMP_CMP_NE": a != v, "SCMP_CMP_LT": a < v,
        "SCMP_CMP_LE": a <= v, "SCMP_CMP_GT": a > v, "SCMP_CMP_GE": a >= v,
        "SCMP_CMP_MASKED_EQ": a & v == w & v,
    }[cond.op]


def condition_sets(conds: Sequence[ArgCond]) -> list[tuple[ArgCond, ...]]:
    """A rule's AND-groups; conditions repeating an index are OR'd instead (runc's convention)."""
    if len({c.index for c in conds}) != len(conds):
        return [(c,) for c in conds]
    return [tuple(conds)]


def meaning(arch: Arch, rules: Sequence[Rule], default: int, args: Sequence[int]) -> int:
    """What rules with one action mean: the action when any condition set holds, else the default."""
    (action,) = {action_value(r.action, r.errno_ret) for r in rules}
    for r in rules:
        for group in condition_sets(r.args):
            if all(condition_holds(arch, c, args[c.index]) for c in group):
                return action
    return default


def assert_same(arch: Arch, rules: Sequence[Rule], conds: Sequence[ArgCond],
                default=("SCMP_ACT_ERRNO", None)) -> int:
    """ocishim's rule block answers what libseccomp's program answers (rule 12), always.

    Where the rules are one AND of conditions, libseccomp's answer must also be what the
    rule means; where condition sets are OR'd, libseccomp 2.5.4 departs at times (the
    test_libseccomp_departs_* tests) and only the two programs are compared.
    """
    pair = _both(arch, rules, default)
    default_value = action_value(*default)
    one_and = sum(len(condition_sets(r.args)) for r in rules) == 1
    differences = []
    checked = 0
    for args in vectors(conds):
        by_lib, got = pair.answers(args)
        checked += 1
        where = f"args={tuple(hex(a) for a in args)}"
        if got != by_lib:
            differences.append(f"{where}: ocishim {got:#x}, libseccomp {by_lib:#x}")
        if one_and and by_lib != (want := meaning(arch, rules, default_value, args)):
            differences.append(f"{where}: libseccomp {by_lib:#x}, the rule means {want:#x}")
    # Another number, next to the rule's, keeps the default on both sides.
    for prog, nr in ((pair.lib, pair.nr_known), (pair.own, pair.nr_lacked)):
        other = emu.run(prog, arch, nr + 1, (0,) * 6).ret
        if other != default_value:
            differences.append(f"nr {nr + 1}: {other:#x}, not the default {default_value:#x}")
    assert not differences, f"{arch.name}, rules={rules}:\n  " + "\n  ".join(differences[:10])
    return checked


# --------------------------------------------------------------------------------------
# Hand-picked cases.
# --------------------------------------------------------------------------------------

TABLE = [
    # (op, value, value_two)
    ("SCMP_CMP_EQ", 0, 0),
    ("SCMP_CMP_EQ", 5, 0),
    ("SCMP_CMP_EQ", U32, 0),
    ("SCMP_CMP_EQ", 2**32, 0),
    ("SCMP_CMP_EQ", 2**32 + 5, 0),
    ("SCMP_CMP_EQ", U64, 0),
    ("SCMP_CMP_NE", 5, 0),
    ("SCMP_CMP_NE", 2**32 + 5, 0),
    ("SCMP_CMP_NE", 2**63, 0),
    ("SCMP_CMP_LT", 0, 0),
    ("SCMP_CMP_LT", 5, 0),
    ("SCMP_CMP_LT", 2**32, 0),
    ("SCMP_CMP_LT", 2**32 + 5, 0),
    ("SCMP_CMP_LT", U64, 0),
    ("SCMP_CMP_LE", 5, 0),
    ("SCMP_CMP_LE", U32, 0),
    ("SCMP_CMP_LE", 0x1_0000_0005, 0),
    ("SCMP_CMP_GT", 0, 0),
    ("SCMP_CMP_GT", 5, 0),
    ("SCMP_CMP_GT", U32, 0),
    ("SCMP_CMP_GT", 0x7_FFFF_FFFF, 0),
    ("SCMP_CMP_GT", U64, 0),
    ("SCMP_CMP_GE", 0, 0),
    ("SCMP_CMP_GE", 5, 0),
    ("SCMP_CMP_GE", 2**32, 0),
    ("SCMP_CMP_GE", 2**63, 0),
    ("SCMP_CMP_MASKED_EQ", 0xFF, 0x12),
    ("SCMP_CMP_MASKED_EQ", 0xF, 0),
    ("SCMP_CMP_MASKED_EQ", U64, 2**32 + 1),
    ("SCMP_CMP_MASKED_EQ", 0xFFFF_0000_0000_0000, 0x1234_0000_0000_0000),
    ("SCMP_CMP_MASKED_EQ", 0x8000_0000_0000_0001, 0x8000_0000_0000_0000),
    # the datum has bits outside the mask: libseccomp compares (arg & mask) == (datum & mask)
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0x1FF),
    ("SCMP_CMP_MASKED_EQ", 0xFFFF_FFFF_0000_0000, U64),
]


@pytest.mark.parametrize("arch_name", ARCHES)
@pytest.mark.parametrize("op,value,value_two", TABLE)
@pytest.mark.parametrize("index", [0, 3])
def test_hand_picked(arch_name, op, value, value_two, index):
    arch = BY_NAME[arch_name]
    cond = ArgCond(index, value, value_two, op)
    assert_same(arch, [Rule((NAME,), "SCMP_ACT_ALLOW", None, (cond,))], [cond])


@pytest.mark.parametrize("arch_name", ARCHES)
def test_hand_picked_multi(arch_name):
    arch = BY_NAME[arch_name]
    two = (ArgCond(0, 2**32 + 7, 0, "SCMP_CMP_LE"), ArgCond(1, 0xF0, 0x30, "SCMP_CMP_MASKED_EQ"))
    three = two + (ArgCond(5, 3, 0, "SCMP_CMP_NE"),)
    same_index = (ArgCond(2, 10, 0, "SCMP_CMP_LT"), ArgCond(2, 2**32 + 10, 0, "SCMP_CMP_GT"))
    for conds in (two, three, same_index):
        assert_same(arch, [Rule((NAME,), "SCMP_ACT_ERRNO", errno.EACCES, conds)], conds)
    # Two rules, one syscall, one action: either may let the call through.
    rules = [Rule((NAME,), "SCMP_ACT_ALLOW", None, two), Rule((NAME,), "SCMP_ACT_ALLOW", None, same_index)]
    assert_same(arch, rules, two + same_index)


def test_libseccomp_departs_on_or_of_64bit_ranges():
    """libseccomp 2.5.4 merges the high-word tests of two 64-bit range conditions wrongly.

    arg2 < 10 OR arg2 > 0x1_0000000a does not hold for arg2 == 10, yet libseccomp's
    program returns the rule's action. Rule 12: ocishim's rule block answers the same.
    """
    arch = BY_NAME["x86_64"]
    conds = (ArgCond(2, 10, 0, "SCMP_CMP_LT"), ArgCond(2, 2**32 + 10, 0, "SCMP_CMP_GT"))
    pair = _both(arch, [Rule((NAME,), "SCMP_ACT_ERRNO", errno.EACCES, conds)])
    eacces = action_value("SCMP_ACT_ERRNO", errno.EACCES)
    for args, lib_says in (((0, 0, 9), eacces), ((0, 0, 2**32 + 11), eacces), ((0, 0, 2**32 + 10), EPERM_RET)):
        assert pair.answers(args) == (lib_says, lib_says), args
    if libseccomp.version() < (2, 6, 0):
        # the libseccomp bug: the rules mean ERRNO(EPERM) here
        assert pair.answers((0, 0, 10)) == (eacces, eacces)
    # patch.check (issue 9) repairs it, on both names: the rule written out again
    checked = _both(arch, [Rule((NAME,), "SCMP_ACT_ERRNO", errno.EACCES, conds)], check=True)
    for a2 in (0, 9, 10, 11, 2**32 - 1, 2**32, 2**32 + 10, 2**32 + 11, 2**64 - 1):
        want = eacces if a2 < 10 or a2 > 2**32 + 10 else EPERM_RET
        assert checked.answers((0, 0, a2)) == (want, want), hex(a2)


def test_libseccomp_departs_on_or_with_ne_on_32bit():
    """On i386, (a0 != 1 AND a1 == 0) OR (a0 == 0) holds for (0, 1); libseccomp 2.5.4 says no,
    and so does ocishim's rule block (rule 12)."""
    arch = BY_NAME["x86"]
    first = Rule((NAME,), "SCMP_ACT_ALLOW", None,
                 (ArgCond(0, 1, 0, "SCMP_CMP_NE"), ArgCond(1, 0, 0, "SCMP_CMP_EQ")))
    second = Rule((NAME,), "SCMP_ACT_ALLOW", None, (ArgCond(0, 0, 0, "SCMP_CMP_EQ"),))
    pair = _both(arch, [first, second])
    assert pair.answers((2, 0)) == (RET_ALLOW, RET_ALLOW)
    assert pair.answers((1, 1)) == (EPERM_RET, EPERM_RET)
    if libseccomp.version() < (2, 6, 0):
        assert pair.answers((0, 1)) == (EPERM_RET, EPERM_RET)  # the libseccomp bug
    # stricter than the rules (EPERM where they allow): patch.check keeps it, never loosens
    checked = _both(arch, [first, second], check=True)
    assert checked.answers((0, 1)) == pair.answers((0, 1))
    assert checked.lib == pair.lib


# --------------------------------------------------------------------------------------
# How libseccomp combines several rules on one syscall (src/db.c of 2.5.4: db_rule_add,
# _db_tree_add), measured on KNOWN and required of ocishim on LACKED (rule 12).
# --------------------------------------------------------------------------------------

ALLOW, TRAP, KILL = ("SCMP_ACT_ALLOW", None), ("SCMP_ACT_TRAP", None), ("SCMP_ACT_KILL_PROCESS", None)


def _eq(index: int, value: int) -> ArgCond:
    return ArgCond(index, value, 0, "SCMP_CMP_EQ")


def _rules(*specs) -> list[Rule]:
    return [Rule((NAME,), action[0], action[1], conds) for action, conds in specs]


COMBINATIONS = [
    # (why, rules, {args: libseccomp's answer})
    ("an unconditional rule replaces the conditional ones before it",
     _rules((ALLOW, (_eq(0, 1),)), (KILL, ())), {(1,): RET_KILL_PROCESS, (0,): RET_KILL_PROCESS}),
    ("a conditional rule after an unconditional one is dropped",
     _rules((KILL, ()), (ALLOW, (_eq(0, 1),))), {(1,): RET_KILL_PROCESS, (0,): RET_KILL_PROCESS}),
    ("the first unconditional rule wins, a later one is dropped without an error",
     _rules((TRAP, ()), (KILL, ())), {(0,): RET_TRAP}),
    ("the first unconditional rule wins, whichever action is stricter",
     _rules((KILL, ()), (TRAP, ())), {(0,): RET_KILL_PROCESS}),
    ("rules on different arguments: the higher argument's rule is tested first, whatever the order",
     _rules((ALLOW, (_eq(1, 2),)), (TRAP, (_eq(0, 1),))), {(1, 2): RET_ALLOW, (0, 2): RET_ALLOW, (1, 0): RET_TRAP}),
    ("... and in the other profile order",
     _rules((TRAP, (_eq(0, 1),)), (ALLOW, (_eq(1, 2),))), {(1, 2): RET_ALLOW, (0, 2): RET_ALLOW, (1, 0): RET_TRAP}),
    ("a longer rule that extends an earlier shorter one with another action is dropped",
     _rules((ALLOW, (_eq(0, 1),)), (TRAP, (_eq(0, 1), _eq(1, 2)))),
     {(1, 2): RET_ALLOW, (1, 0): RET_ALLOW, (0, 2): EPERM_RET}),
    ("with one action, the shorter rule absorbs the longer",
     _rules((ALLOW, (_eq(0, 1),)), (ALLOW, (_eq(0, 1), _eq(1, 2)))),
     {(1, 2): RET_ALLOW, (1, 0): RET_ALLOW, (0, 2): EPERM_RET}),
    ("different values on one argument: each keeps its action",
     _rules((ALLOW, (_eq(0, 1),)), (TRAP, (_eq(0, 2),))), {(1,): RET_ALLOW, (2,): RET_TRAP, (3,): EPERM_RET}),
    ("a rule with the default's action is refused by libseccomp (EACCES) and skipped by ocishim",
     _rules((("SCMP_ACT_ERRNO", None), ()), (ALLOW, (_eq(0, 1),))), {(1,): RET_ALLOW, (0,): EPERM_RET}),
]


@pytest.mark.parametrize("arch_name", ("x86_64", "x86", "s390x"))
@pytest.mark.parametrize("why,rules,answers", COMBINATIONS, ids=[c[0] for c in COMBINATIONS])
def test_libseccomp_combines_rules_on_one_syscall(arch_name, why, rules, answers):
    pair = _both(BY_NAME[arch_name], rules)
    for args, lib_says in answers.items():
        full = args + (0,) * (6 - len(args))
        assert pair.answers(full) == (lib_says, lib_says), f"{why}: args={args}"


REFUSED = [
    ("one condition, two actions", _rules((ALLOW, (_eq(0, 1),)), (TRAP, (_eq(0, 1),)))),
    ("a shorter rule with another action after a longer one",
     _rules((TRAP, (_eq(0, 1), _eq(1, 2))), (ALLOW, (_eq(0, 1),)))),
]


@pytest.mark.parametrize("arch_name", ("x86_64", "x86", "s390x"))
@pytest.mark.parametrize("why,rules", REFUSED, ids=[c[0] for c in REFUSED])
def test_libseccomp_refuses_conflicting_rules(arch_name, why, rules):
    """libseccomp refuses the second rule with EEXIST; ocishim refuses it on a lacked name too,
    naming that rule (semantics rule 8: fail closed, name the field)."""
    arch = BY_NAME[arch_name]
    for name in (KNOWN, LACKED):
        with pytest.raises(CompileError) as info:
            patch_profile(Profile("SCMP_ACT_ERRNO", None, syscalls=_on(rules, name)), "off", native=arch)
        assert info.value.where.startswith("syscalls[1]"), (name, str(info.value))


# --------------------------------------------------------------------------------------
# Generated rules.
# --------------------------------------------------------------------------------------

VALUES = (0, 1, 2, 5, 0xFF, 0x7FFF_FFFF, 2**31, U32, 2**32, 2**32 + 1, 2**32 + 5, 0x7_FFFF_FFFF,
          2**63, 2**63 + 1, U64 - 1, U64, 0xDEAD_BEEF_0000_0000, 0x0000_0001_FFFF_FFFF)
values = st.sampled_from(VALUES) | st.integers(0, U64)
conditions = st.builds(ArgCond, index=st.integers(0, 5), value=values, value_two=values,
                       op=st.sampled_from(OPS))
ACTIONS = (("SCMP_ACT_ALLOW", None), ("SCMP_ACT_ERRNO", errno.EACCES), ("SCMP_ACT_KILL_PROCESS", None),
           ("SCMP_ACT_TRAP", None), ("SCMP_ACT_LOG", None), ("SCMP_ACT_TRACE", 9))


@st.composite
def cases(draw):
    arch_name = draw(st.sampled_from(ARCHES))
    conds = tuple(draw(st.lists(conditions, min_size=1, max_size=3)))
    action, errno_ret = draw(st.sampled_from(ACTIONS))
    return BY_NAME[arch_name], Rule((NAME,), action, errno_ret, conds)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_same_answers(case):
    """One rule: ocishim answers as libseccomp, and (one AND of conditions) as the rule means."""
    arch, rule = case
    note(f"arch={arch.name} rule={rule}")
    assert_same(arch, [rule], rule.args)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.lists(conditions, min_size=1, max_size=3))
def test_same_answers_two_rules_one_action(case, more):
    """Two conditional rules with the same action on one syscall: ocishim answers as libseccomp."""
    arch, rule = case
    second = rule.replace(args=tuple(more))
    note(f"arch={arch.name} rules={rule}, {second}")
    assert_same(arch, [rule, second], rule.args + tuple(more))
