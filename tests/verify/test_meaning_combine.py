"""verify.meaning's merge of one syscall's rules, against the rule written out plainly.

The contract (semantics.md rule 12, as libseccomp merges rules): in order, the first
unconditional rule decides; otherwise each condition set is kept unless an earlier kept
set is a subset of it (then it is dropped, and refused if the two are equal with other
actions), and a set is refused if an earlier kept set strictly contains it, with another
action, before such a subset. The oracle walks every earlier set for every new one; the
code under test indexes them, and must say the same, refusals included, and in linear
time.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from ocishim.actions import action_value
from ocishim.arch import BY_NAME
from ocishim.profile.model import ArgCond, Profile, Rule
from ocishim.verify.meaning import Meaning, Refused

X86_64 = BY_NAME["x86_64"]
ACTIONS = ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_KILL_PROCESS"]


def oracle(rules: list[Rule]) -> tuple:
    for rule in rules:
        if not rule.args:
            return ("always", action_value(rule.action, rule.errno_ret))
    kept: list[tuple[frozenset, int, str, tuple]] = []
    for rule in rules:
        action = action_value(rule.action, rule.errno_ret)
        groups = ((rule.args,) if len({c.index for c in rule.args}) == len(rule.args)
                  else tuple((c,) for c in rule.args))
        for group in groups:
            new = frozenset(group)
            keep = True
            for old, old_action, path, _ in kept:
                if old <= new:
                    if old == new and old_action != action:
                        return ("refused", f"{rule.path}: the same conditions as {path} with another action")
                    keep = False
                    break
                if new < old and old_action != action:
                    return ("refused", f"{rule.path}: a shorter rule with another action after {path}")
            if keep:
                kept.append((new, action, rule.path, group))
    return ("sets", tuple((group, action, path) for _, action, path, group in kept))


def ours(rules: list[Rule]) -> tuple:
    meaning = Meaning(Profile("SCMP_ACT_ERRNO", architectures=("SCMP_ARCH_X86_64",)), (X86_64,))
    try:
        on = meaning._combine(X86_64, list(rules))
    except Refused as exc:
        return ("refused", str(exc))
    if on.always is not None:
        return ("always", on.always)
    return ("sets", tuple((s.conds, s.action, s.path) for s in on.sets))


# Few distinct conditions, so that sets often contain one another.
conds = st.builds(lambda i, v: ArgCond(i, v, 0, "SCMP_CMP_EQ"), st.integers(0, 2), st.integers(0, 1))


@st.composite
def rule_lists(draw):
    out = []
    for i in range(draw(st.integers(1, 12))):
        args = tuple(draw(st.lists(conds, max_size=3)))
        out.append(Rule(("personality",), draw(st.sampled_from(ACTIONS)), None, args, path=f"syscalls[{i}]"))
    return out


@settings(max_examples=5000, deadline=None)
@given(rule_lists())
def test_merge_is_the_rule(rules):
    assert ours(rules) == oracle(rules)


def _rule(i: int, action: str, *conds: tuple[int, int]) -> Rule:
    return Rule(("personality",), action, None, tuple(ArgCond(a, v, 0, "SCMP_CMP_EQ") for a, v in conds),
                path=f"syscalls[{i}]")


def test_a_longer_set_before_an_equal_one_decides():
    """{a0=1,a1=1} then {a0=1} with one action, then {a0=1} with another: the longer set
    comes first, so the refusal names it (a shorter rule after a longer one)."""
    rules = [_rule(0, "SCMP_ACT_ALLOW", (0, 1), (1, 1)), _rule(1, "SCMP_ACT_ALLOW", (0, 1)),
             _rule(2, "SCMP_ACT_LOG", (0, 1))]
    assert ours(rules) == oracle(rules) == ("refused", "syscalls[2]: a shorter rule with another "
                                                       "action after syscalls[0]")


def test_thousands_of_rules_cost_linear_time():
    """4,200 rules on one syscall (a profile libseccomp refuses as too long) took the
    pairwise merge 17 s; the indexed one must take well under a second."""
    rules = [Rule(("personality",), "SCMP_ACT_ALLOW", None, (ArgCond(0, i, 0, "SCMP_CMP_EQ"),),
                  path=f"syscalls[{i}]") for i in range(4200)]
    assert ours(rules[:300]) == oracle(rules[:300])
    started = time.perf_counter()
    result = ours(rules)
    assert time.perf_counter() - started < 1.0
    assert result[0] == "sets" and len(result[1]) == 4200
