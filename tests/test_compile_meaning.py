"""Emulator vs meaning: the program compile_profile exports answers what the rules mean.

For random profiles (hypothesis), every answer of ocishim.bpf.emu on the exported
program must equal an oracle written from the runtime-spec (config-linux.md,
`linux.seccomp`) and linux/seccomp.h, not from ocishim/compile.py:

- a rule applies to (arch, nr) when one of its names resolves to nr on arch in the
  project's syscall table; where libseccomp carries a name to another arch as another
  name (one pseudo number for two names, see lands_on), it applies where libseccomp
  puts it, as it does for runc and crun, and such names are not drawn;
- it matches when all its `args` conditions hold, each comparing the 64-bit argument
  `index` with `value` by `op`, unsigned (MASKED_EQ: the masked argument equals the
  masked valueTwo, see COMPARE); runc's exception: a rule that repeats an index
  matches when any one of its conditions holds;
- a matching rule's action is the answer, otherwise defaultAction; ERRNO and TRACE
  carry errnoRet / defaultErrnoRet, EPERM when absent;
- on 32-bit arches, see BITS32.

The oracle shares no table with the code under test: it spells out the SECCOMP_RET_*
values and the comparisons itself.

libseccomp resolves overlapping rules of different actions in its own, unspecified,
order, so the generated profiles are unambiguous: each syscall has either exactly one
unconditional rule, or only conditional rules that all share one action. They also
keep out two rule shapes libseccomp 2.5.4 compiles wrongly (merge_hazard).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Sequence

from hypothesis import reject, HealthCheck, example, given, settings
from hypothesis import strategies as st

from ocishim import libseccomp, syscalls
from ocishim.actions import describe
from ocishim.arch import BY_NAME
from ocishim.bpf.emu import run
from ocishim.bpf.insn import Insn
from ocishim.errors import CompileError
from ocishim.compile import compile_profile
from ocishim.profile.model import ArgCond, Profile, Rule

def compile_or_reject(profile, native):
    """compile_profile, dropping the example when libseccomp 2.5.4 garbles a big-endian
    program built on this little-endian host (ocishim refuses it: a separate test)."""
    try:
        return compile_profile(profile, native)
    except CompileError as exc:
        if "corrupt program" not in str(exc):
            raise
        reject()


U32 = 2**32 - 1
U64 = 2**64 - 1
EPERM = 1
ENOSYS = 38

# SECCOMP_RET_* (linux/seccomp.h). The low 16 bits carry errnoRet for ERRNO and TRACE.
RET = {
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
TAKES_ERRNO = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
# libseccomp's default SCMP_FLTATR_ACT_BADARCH is SCMP_ACT_KILL (seccomp_attr_set(3)),
# which neither runc nor crun changes: a call from an arch the filter lacks.
RET_KILL_THREAD = 0x00000000

COMPARE = {
    "SCMP_CMP_NE": lambda arg, v, v2: arg != v,
    "SCMP_CMP_LT": lambda arg, v, v2: arg < v,
    "SCMP_CMP_LE": lambda arg, v, v2: arg <= v,
    "SCMP_CMP_EQ": lambda arg, v, v2: arg == v,
    "SCMP_CMP_GE": lambda arg, v, v2: arg >= v,
    "SCMP_CMP_GT": lambda arg, v, v2: arg > v,
    # seccomp_rule_add(3), which the runtime-spec defers to for operators: "Matches
    # when the masked argument value is equal to the masked datum value". valueTwo
    # bits outside the mask are ignored, so mask 1, valueTwo 2 matches any even
    # argument, not none (measured: libseccomp emits `and #1; jeq #0`).
    "SCMP_CMP_MASKED_EQ": lambda arg, v, v2: (arg & v) == (v2 & v),
}

# 32-bit arches. The kernel hands a 32-bit task its arguments zero-extended, so only
# values below 2**32 are generated there. A condition value of 2**32 or more has no
# 64-bit meaning a 32-bit argument could meet (EQ never, NE always...), but libseccomp
# 2.5.4 does not read it that way: measured on this host, it compiles only the low
# word for every operator and truncates value and valueTwo to 32 bits:
#   x86  EQ 0x100000001             -> ld args[0].lo; jeq #0x1
#   x86  GT 0x100000001             -> jgt #0x1        (LT -> jge #0x1, inverted)
#   x86  MASKED_EQ 0x1000000ff, 0x100000001 -> and #0xff; jeq #0x1
#   arm  GE 0xffffffff00000005      -> jge #0x5        (NE 0x100000001 -> jeq #0x1, inverted)
# runc and crun hand the values to libseccomp unchanged, so that truncation is what
# such a profile means on every runtime this project shims, and ocishim's contract is
# to keep the runtime's program (semantics.md rule 1). The oracle therefore compares
# the 32-bit argument with value & 0xffffffff (valueTwo & 0xffffffff).
# x32 is in this set too: libseccomp treats it as a 32-bit ABI and reads only
# args[i].lo (measured: x32 EQ 0x100000001 -> jeq #0x1 on args[0].lo), although the
# kernel passes x32 full 64-bit registers; 64-bit x32 arguments are thus out of this
# test (a libseccomp property, not one ocishim's compiler chooses).
BITS32 = frozenset({"x86", "x32", "arm", "ppc", "s390", "mips", "mipsel",
                    "mips64n32", "mipsel64n32", "parisc"})

# Arches libseccomp combines in one filter, by family; the first is a natural native.
LE_FAMILIES = (("x86_64", "x86", "x32"), ("aarch64", "arm"), ("riscv64",), ("ppc64le",))
# Big-endian: libseccomp 2.5.4 on this x86_64 host builds s390x (+s390), ppc64 (+ppc)
# and mips (+mips64, mips64n32) filters, exported in big-endian order, once the host
# arch is removed before the first of them is added (measured; adding one while
# x86_64 is still in the filter fails with EDOM: one byte order per filter, which
# compile_profile works around since 4c2f511). So the emulator's big-endian path is
# checked too, with natives other than the host.
BE_FAMILIES = (("s390x", "s390"), ("ppc64", "ppc"), ("mips", "mips64", "mips64n32"))


# ---------------------------------------------------------------------------------
# The oracle


def action_ret(action: str, errno_ret: int | None) -> int:
    """The SECCOMP_RET_* value of an OCI action; errnoRet defaults to EPERM."""
    if action in TAKES_ERRNO:
        return RET[action] | (EPERM if errno_ret is None else errno_ret)
    return RET[action]


def condition_holds(cond: ArgCond, arch: str, args: Sequence[int]) -> bool:
    arg = args[cond.index]
    value, value_two = cond.value, cond.value_two
    if arch in BITS32:
        value, value_two = value & U32, value_two & U32
    return COMPARE[cond.op](arg, value, value_two)


def rule_matches(rule: Rule, arch: str, args: Sequence[int]) -> bool:
    if not rule.args:
        return True
    indexes = [c.index for c in rule.args]
    if len(indexes) != len(set(indexes)):
        return any(condition_holds(c, arch, args) for c in rule.args)  # runc's exception
    return all(condition_holds(c, arch, args) for c in rule.args)


@functools.cache
def lands_on(arch: str, name: str) -> int | None:
    """The number on arch where a runtime's rule on name ends up, or None (nowhere).

    runc and crun (and compile_profile, as they do) add a rule by the number the host's
    libseccomp gives the name, and libseccomp carries it to each arch of the filter by
    the host's name for that number (arch_syscall_translate). That name is the name
    itself, except where two names share one pseudo number: libseccomp 2.5.4 gives
    sys_debug_setcontext and switch_endian both -10191 (seccomp/libseccomp#125), so on
    an x86_64 host a rule on sys_debug_setcontext lands on switch_endian on ppc, ppc64
    and ppc64le (363, where the table and libseccomp itself put sys_debug_setcontext at
    256). Measured with the emulator on the exported program: ppc64 and ppc64le filters
    built on x86_64 allow 363 and refuse 256. Of all the names in the table, it is the
    only one libseccomp 2.5.4 carries as another. (ocishim's checked build repairs the
    weaker answer: tests/patch/test_pseudo_number_collision.py.)
    """
    host = libseccomp.native()
    number = libseccomp.resolve_name(host, name)
    if number == -1:
        return None  # the host's libseccomp does not know the name: no rule is added
    carried = libseccomp.binding.resolve_syscall(libseccomp.c_int(host.token), number)
    nr = libseccomp.resolve_name(BY_NAME[arch], carried.decode() if isinstance(carried, bytes) else carried)
    return nr if nr >= 0 else None


def rules_for(profile: Profile, arch: str, nr: int) -> list[Rule]:
    """The rules on (arch, nr): those with a name whose rule lands there (see lands_on)."""
    return [r for r in profile.syscalls if any(lands_on(arch, name) == nr for name in r.names)]


def meaning(profile: Profile, arch: str, nr: int, args: Sequence[int]) -> int:
    """The SECCOMP_RET value the profile means for syscall nr with args on arch."""
    answers = {action_ret(r.action, r.errno_ret)
               for r in rules_for(profile, arch, nr) if rule_matches(r, arch, args)}
    assert len(answers) <= 1, f"the generator made an ambiguous profile: {profile}"
    if answers:
        return answers.pop()
    return action_ret(profile.default_action, profile.default_errno_ret)


# ---------------------------------------------------------------------------------
# Profiles


@functools.cache
def name_pool(arches: frozenset[str]) -> tuple[str, ...]:
    """Names the host libseccomp and the project table agree on, for every arch given.

    On each arch a name is either absent from both (libseccomp puts no rule there, the
    table has no row) or a rule on it lands on the table's number (lands_on): so
    sys_debug_setcontext is left out of the ppc families, where it lands on switch_endian.
    Names with a libseccomp pseudo number where the kernel has the call (socketcall
    and ipc multiplexing, libseccomp gaps) are left out: libseccomp adds multiplexer
    rules there, or ocishim's patcher does, and neither is what this test is about.
    A number is taken by one name only, so two names cannot alias one syscall.
    """
    candidates: set[str] = set()
    for a in arches:
        candidates.update(syscalls.names(a))
    pool, taken = [], {a: set() for a in arches}
    for name in sorted(candidates):
        nrs = {}
        for a in arches:
            table = syscalls.resolve(a, name)
            lib = lands_on(a, name)
            if lib is not None and lib == table:
                nrs[a] = table
            elif not (lib is None and table is None):
                break
        else:
            if nrs and not any(nr in taken[a] for a, nr in nrs.items()):
                pool.append(name)
                for a, nr in nrs.items():
                    taken[a].add(nr)
    return tuple(pool)


EDGE_VALUES = (0, 1, 2, 0x7F, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, U32, 2**32,
               2**32 + 1, 0x1FFFFFFFF, 0xFFFFFFFF00000000, 0xFFFFFFFF00000001,
               2**63 - 1, 2**63, U64 - 1, U64)
values = st.one_of(st.sampled_from(EDGE_VALUES), st.integers(0, 0xFF),
                   st.integers(0, U32), st.integers(0, U64))
# errnoRet: libseccomp 2.5.4 refuses SCMP_ACT_ERRNO(4095) (sys_chk_seccomp_action wants
# data < MAX_ERRNO; measured: EINVAL as rule and as default, so compile_profile fails
# closed with a CompileError), so ERRNO data stops at 4094; TRACE takes the whole
# range the profile parser accepts.
errnos = st.one_of(st.sampled_from((None, EPERM, ENOSYS, 0, 13)), st.integers(0, 4094))
trace_data = st.one_of(st.sampled_from((None, 0, 4095)), st.integers(0, 4095))

conditions = st.builds(ArgCond, index=st.integers(0, 5), value=values, value_two=values,
                       op=st.sampled_from(sorted(COMPARE)))

Action = tuple[str, "int | None"]


@st.composite
def actions(draw, choices: Sequence[str]) -> Action:
    action = draw(st.sampled_from(choices))
    if action == "SCMP_ACT_ERRNO":
        return action, draw(errnos)
    return action, (draw(trace_data) if action == "SCMP_ACT_TRACE" else None)


default_actions = actions(("SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
                           "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"))
rule_actions = actions(("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_TRAP",
                        "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"))


def chunks(draw, items: list[str], most: int) -> list[tuple[str, ...]]:
    out = []
    while items:
        k = draw(st.integers(1, min(most, len(items))))
        out.append(tuple(items[:k]))
        items = items[k:]
    return out


def libseccomp_rules(args: tuple[ArgCond, ...]) -> list[tuple[ArgCond, ...]]:
    """The condition sets a runtime hands libseccomp for one rule (runc splits repeats)."""
    indexes = [c.index for c in args]
    return [(c,) for c in args] if len(indexes) != len(set(indexes)) else [args]


RANGE_OPS = frozenset({"SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE"})


def merge_hazard(rules: list, name: str) -> tuple[str, int, ArgCond] | None:
    """What to simplify so libseccomp 2.5.4 compiles name's rules right, or None.

    Measured (emulator, and the kernel running libseccomp's own filter): when the
    rules of one syscall compare one argument in two libseccomp rules, 2.5.4 may emit
    a program in which a jump lands on a comparison while the accumulator holds
    another word (another argument, or the other half of this one). Two shapes:
    - a rule with two or more conditions among them, any operators, 32- and 64-bit
      arches; e.g. x86_64, both ERRNO(EACCES):
          getpid if a2 <= 5 && a1 < 30;   getpid if a1 < 219
          getpid(0, 29, 2**64-1, ...) is allowed, though a1 < 219 holds;
    - single conditions, both ranges (LT/LE/GT/GE, one of them LT or LE), 64-bit:
          getpid if a3 <= 0x100000001;    getpid if a3 < 212518
          getpid(0, 0, 0, 212518) is allowed (loaded: allowed too).
    runc and crun hand libseccomp the same rules, and ocishim's compiler does as they
    do, so this is libseccomp's, not something the oracle should bend to.
    """
    sets = [(i, conds) for i, (names, _, args) in enumerate(rules) if name in names and args
            for conds in libseccomp_rules(args)]
    users: dict[int, set[int]] = {}
    for n, (_, conds) in enumerate(sets):
        for c in conds:
            users.setdefault(c.index, set()).add(n)
    shared = {index for index, ns in users.items() if len(ns) > 1}
    if not shared:
        return None
    for i, conds in sets:
        if len(conds) > 1:
            return ("cut", i, conds[1])
    for index in sorted(shared):
        ranged = [(i, c) for i, conds in sets for c in conds
                  if c.index == index and c.op in RANGE_OPS]
        if len(ranged) > 1:
            return ("eq", *ranged[-1])
    return None


def avoid_libseccomp_merge_bug(rules: list) -> list:
    """Simplify rules until no syscall has a shape merge_hazard() names.

    A multi-condition rule is cut to its first condition; of two ranges on one shared
    argument, one becomes EQ. Everything else is still generated: one multi-condition
    rule per syscall, rules on disjoint arguments, single conditions sharing an
    argument (EQ, NE, MASKED_EQ, and one range among them), runc's split rules.
    """
    rules = list(rules)
    while True:
        for name in sorted({n for names, _, _ in rules for n in names}):
            hazard = merge_hazard(rules, name)
            if hazard is None:
                continue
            what, i, cond = hazard
            names, action, args = rules[i]
            if what == "cut":
                args = args[:1]
            else:
                k = args.index(cond)
                eq = ArgCond(cond.index, cond.value, cond.value_two, "SCMP_CMP_EQ")
                args = args[:k] + (eq,) + args[k + 1:]
            rules[i] = (names, action, args)
            break
        else:
            return rules


@st.composite
def profiles(draw, pool: Sequence[str], oci_arches: tuple[str, ...]) -> Profile:
    default, default_errno = draw(default_actions)
    names = draw(st.lists(st.sampled_from(pool), unique=True, max_size=8))
    unconditional: dict[Action, list[str]] = {}
    conditional: dict[Action, list[str]] = {}
    for name in names:
        action = draw(rule_actions)
        group = unconditional if draw(st.booleans()) else conditional
        group.setdefault(action, []).append(name)
    rules: list[tuple[tuple[str, ...], Action, tuple[ArgCond, ...]]] = []
    for action, group_names in unconditional.items():
        rules += [(chunk, action, ()) for chunk in chunks(draw, group_names, 3)]
    for action, group_names in conditional.items():
        # Every name in at least one rule, plus a few more rules over the same names.
        groups = chunks(draw, group_names, 3)
        groups += draw(st.lists(st.lists(st.sampled_from(group_names), min_size=1,
                                         max_size=3, unique=True).map(tuple), max_size=2))
        rules += [(g, action, tuple(draw(st.lists(conditions, min_size=1, max_size=3))))
                  for g in groups]
    rules = draw(st.permutations(avoid_libseccomp_merge_bug(rules)))
    return Profile(
        default_action=default,
        default_errno_ret=default_errno,
        architectures=oci_arches,
        syscalls=tuple(Rule(n, a, e, c, f"syscalls[{i}]")
                       for i, (n, (a, e), c) in enumerate(rules)),
    )


@dataclass(frozen=True)
class Case:
    native: str
    arches: tuple[str, ...]  # every arch in the filter
    absent: tuple[str, ...]  # arches the filter does not carry, to check bad-arch
    profile: Profile
    seed: int  # for the probes' random arguments


@st.composite
def cases(draw, families) -> Case:
    # The first family (x86_64's, for little-endian) is drawn twice as often.
    family = draw(st.sampled_from(families + families[:1]))
    native = draw(st.sampled_from(family))
    # The list may repeat the native arch, as real configs do.
    listed = tuple(draw(st.lists(st.sampled_from(family), unique=True)))
    arches = tuple(a for a in family if a == native or a in listed)
    absent = tuple(a for a in family if a not in arches)
    absent += (draw(st.sampled_from([a for fam in families if fam != family for a in fam])),)
    pool = name_pool(frozenset(arches))
    profile = draw(profiles(pool, tuple(BY_NAME[a].oci for a in listed)))
    return Case(native, arches, absent, profile, draw(st.integers(0, 2**32 - 1)))


# ---------------------------------------------------------------------------------
# Probes: which (nr, args) to ask on each arch


def satisfying(cond: ArgCond, arch: str, rnd: random.Random) -> int | None:
    """An argument value that meets cond on arch, or None when none can (LT 0, GT max)."""
    width = U32 if arch in BITS32 else U64
    v, v2 = cond.value & width, cond.value_two & width
    return {
        "SCMP_CMP_EQ": v,
        "SCMP_CMP_NE": (v + 1) & width,
        "SCMP_CMP_LT": v - 1 if v else None,
        "SCMP_CMP_LE": v,
        "SCMP_CMP_GE": v,
        "SCMP_CMP_GT": v + 1 if v < width else None,
        "SCMP_CMP_MASKED_EQ": ((v2 & v) | (rnd.getrandbits(64) & ~v)) & width,
    }[cond.op]


def arg_vectors(rules: Sequence[Rule], arch: str, rnd: random.Random) -> list[list[int]]:
    """Arguments that meet each rule, and variations of one argument around each value."""
    width = U32 if arch in BITS32 else U64
    near: dict[int, set[int]] = {}
    for rule in rules:
        for c in rule.args:
            for v in (c.value, c.value_two):
                near.setdefault(c.index, set()).update((v - 1, v, v + 1))
    common = (0, 1, U32, 2**32, U64)
    vectors = [[0] * 6, [rnd.getrandbits(64) & width for _ in range(6)]]
    for rule in rules:
        base = [rnd.getrandbits(64) & width for _ in range(6)]
        for c in rule.args:
            value = satisfying(c, arch, rnd)
            if value is not None:
                base[c.index] = value
        vectors.append(base)
        for index in sorted({c.index for c in rule.args}):
            for x in sorted(near[index]) + list(common) + [rnd.getrandbits(64)]:
                vector = list(base)
                vector[index] = x & width
                vectors.append(vector)
    return vectors


def unnamed_numbers(named: set[int], arch: str, rnd: random.Random) -> list[int]:
    """A few numbers of arch that no rule names: from the table, and beyond it."""
    rest = [nr for nr in syscalls.numbers(arch) if nr not in named]
    beyond = syscalls.max_nr(arch) + 1 + rnd.randrange(64)
    return rnd.sample(rest, min(3, len(rest))) + [beyond]


def check(program: Sequence[Insn], case: Case) -> None:
    """Emulate every probe on every arch and compare with the oracle."""
    rnd, profile = random.Random(case.seed), case.profile
    wrong = []
    for arch in case.arches:
        named: dict[int, list[Rule]] = {}
        for name in profile.names():
            for nr in {syscalls.resolve(arch, name), lands_on(arch, name)} - {None}:
                named[nr] = rules_for(profile, arch, nr)
        probes = [(nr, args) for nr, rules in named.items()
                  for args in arg_vectors(rules, arch, rnd)]
        probes += [(nr, args) for nr in unnamed_numbers(set(named), arch, rnd)
                   for args in arg_vectors((), arch, rnd)]
        for nr, args in probes:
            got = run(program, BY_NAME[arch], nr, args).ret
            want = meaning(profile, arch, nr, args)
            if got != want:
                wrong.append(f"{arch} nr={nr:#x} ({syscalls.name(arch, nr)}) "
                             f"args={[hex(a) for a in args]}: "
                             f"emulator {describe(got)} ({got:#x}), rules mean "
                             f"{describe(want)} ({want:#x})")
    for arch in case.absent:
        nrs = [nr for nr in (syscalls.resolve(arch, n) for n in profile.names()) if nr is not None]
        for nr in nrs[:2] + unnamed_numbers(set(nrs), arch, rnd)[:1]:
            got = run(program, BY_NAME[arch], nr).ret
            if got != RET_KILL_THREAD:
                wrong.append(f"{arch} (not in the filter) nr={nr:#x}: emulator "
                             f"{describe(got)} ({got:#x}), libseccomp's bad-arch KILL_THREAD")
    assert not wrong, f"{len(wrong)} answers differ, e.g.:\n" + "\n".join(wrong[:8])


# ---------------------------------------------------------------------------------
# The tests

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


def compile_and_check(case: Case) -> None:
    compiled = compile_or_reject(case.profile, BY_NAME[case.native])
    assert [a.name for a in compiled.arches] == list(case.arches)
    check(compiled.program, case)


def _debug_setcontext(native: str, arches: tuple[str, ...], absent: str) -> Case:
    """sys_debug_setcontext allowed, all else EPERM: libseccomp 2.5.4 built on x86_64
    allows switch_endian (363) instead (lands_on); the pool never draws it any more."""
    rule = Rule(("sys_debug_setcontext",), "SCMP_ACT_ALLOW", None, (), "syscalls[0]")
    listed = tuple(BY_NAME[a].oci for a in arches)
    return Case(native, arches, (absent,), Profile("SCMP_ACT_ERRNO", None, listed, syscalls=(rule,)), 0)


@example(case=_debug_setcontext("ppc64le", ("ppc64le",), "x86_64"))
@settings(max_examples=300, deadline=None, suppress_health_check=SLOW)
@given(case=cases(LE_FAMILIES))
def test_emulator_answers_what_the_rules_mean(case: Case) -> None:
    compile_and_check(case)


# Found with a random seed (hypothesis --hypothesis-seed does nothing under the suite's
# derandomized profile; a @seed on the test or derandomize=False does).
@example(case=_debug_setcontext("ppc64", ("ppc64", "ppc"), "s390x"))
@settings(max_examples=150, deadline=None, suppress_health_check=SLOW)
@given(case=cases(BE_FAMILIES))
def test_emulator_answers_what_the_rules_mean_big_endian(case: Case) -> None:
    compile_and_check(case)
