"""The law of semantics.md, checked on generated profiles (issue: "The law (hypothesis)").

For every arch A of the filter, every nr and sampled argument values:

    patched(A, nr, args) == ERRNO(ENOSYS)          when nr is in E(A)
    patched(A, nr, args) == baseline(A, nr, args)  otherwise

where baseline is the `off` program: libseccomp's program plus ocishim's rules for the
names the host libseccomp lacks. E(A) is computed here, from the text of semantics.md
and the project's syscall table (as data), never with ocishim.patch.enosys.

Also: rule 7 (a rule for a name libseccomp lacks answers as the rule says), rule 3
(arches not in the filter, and x32 numbers when x32 is not in it, are untouched),
rule 5 (same input, same bytes), and runc's original rule next to `max`
(issue: "runc compatibility").
"""

from __future__ import annotations

import errno
import functools
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, event, given, note, reject, settings
from hypothesis import strategies as st

from ocishim import libseccomp, syscalls
from tests.multiplexed import multiplexers
from ocishim.actions import RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_LOG, RET_TRACE, action_value
from ocishim.arch import ARM_PRIVATE_BASE, BY_NAME, X32_SYSCALL_BIT, Arch
from ocishim.bpf import emu
from ocishim.bpf.insn import K, RET, encode
from ocishim.compile import Compiled, compile_profile
from ocishim.errors import CompileError
from ocishim.patch.enosys import Mode
from ocishim.patch.stub import Patched, build
from ocishim.profile.model import ArgCond, Profile, Rule

def compile_or_reject(profile, native):
    """compile_profile, dropping examples ocishim rightly refuses: a big-endian program
    libseccomp 2.5.4 garbles on this little-endian host (a separate test), or two rules
    with different actions for one call, which libseccomp refuses (EEXIST)."""
    try:
        return compile_profile(profile, native)
    except CompileError as exc:
        if "corrupt program" not in str(exc) and "libseccomp refuses" not in str(exc):
            raise
        reject()


ENOSYS_RET = RET_ERRNO | errno.ENOSYS
U64 = 2**64 - 1
U32 = 2**32 - 1
X32_COMPAT_LO, X32_COMPAT_HI = X32_SYSCALL_BIT + 512, X32_SYSCALL_BIT + 547
OPS = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT",
       "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ")
Version = tuple[int, int]


# --------------------------------------------------------------------------------------
# The oracle: semantics.md written again, independently of ocishim/patch.
# --------------------------------------------------------------------------------------

def named_numbers(profile: Profile, arch: str) -> frozenset[int]:
    """named(A): the numbers on arch of every name any rule lists, by the project's table,
    and the socketcall/ipc numbers libseccomp puts those rules on (the shared facts of
    multiplexed.csv): the stub only ever replaces the default action."""
    out = set()
    default = action_value(profile.default_action, profile.default_errno_ret)
    for rule in profile.syscalls:
        for name in rule.names:
            nr = syscalls.resolve(arch, name)
            if nr is not None:
                out.add(nr)
        if action_value(rule.action, rule.errno_ret) != default:
            out |= multiplexers(arch, rule.names)
    return frozenset(out)


def default_denies(default: int) -> bool:
    """Rule 2: the stub applies unless the default is ALLOW, LOG, TRACE or ERRNO(ENOSYS)."""
    if default == ENOSYS_RET:
        return False
    if default & 0xFFFF0000 == RET_KILL_PROCESS:
        return True
    return default & 0x7FFF0000 not in (RET_ALLOW, RET_LOG, RET_TRACE)


@dataclass(frozen=True)
class EnosysSet:
    """E(A) for one arch, as a membership test."""

    arch: str
    named: frozenset[int]
    mode: Mode
    default: int
    emulate: Version | None

    @functools.cached_property
    def baseline(self) -> Version | None:
        if self.mode.kind == "kernel":
            return self.mode.kernel
        # auto: the newest since() among named(A). A profile that names nothing on A
        # has no age; then only the clause "unknown(A, nr)" can hold.
        versions = [syscalls.since(self.arch, nr) for nr in self.named]
        return max(versions) if versions else None

    @functools.cached_property
    def maximum(self) -> int | None:
        # max(named(A)) without the ARM private range and, for x32, the x32 compat range.
        kept = [nr for nr in self.named
                if not (self.arch == "arm" and nr >= ARM_PRIVATE_BASE)
                and not (self.arch == "x32" and X32_COMPAT_LO <= nr <= X32_COMPAT_HI)]
        return max(kept) if kept else None

    def __contains__(self, nr: int) -> bool:
        since = syscalls.since(self.arch, nr)
        unknown = since is None
        # --emulate-kernel: the syscall surface of kernel X.Y, whatever the profile says.
        if self.emulate is not None and (unknown or since > self.emulate):
            return True
        # The mode's own set; rule 2 takes it away for defaults that do not deny.
        if self.mode.kind == "off" or not default_denies(self.default):
            return False
        if nr in self.named:
            return False
        if self.arch in ("s390", "s390x") and nr == 0:
            return True  # rule 3: unknown multiplexed calls arrive as nr 0
        if self.mode.kind == "unnamed":
            return True
        if self.mode.kind == "max":
            return self.maximum is not None and nr > self.maximum
        return unknown or (self.baseline is not None and since > self.baseline)


def owner(arches: Sequence[Arch], audit: int, nr: int) -> Arch | None:
    """The arch of the filter that (audit, nr) belongs to; None when no arch of it does.

    x86_64 and x32 share AUDIT_ARCH_X86_64: from 0x40000000 up the number is x32's
    (libseccomp's own split), and belongs to nobody when x32 is not in the filter.
    """
    names = {a.name for a in arches}
    for a in arches:
        if a.audit != audit:
            continue
        if a.name in ("x86_64", "x32"):
            want = "x32" if nr >= X32_SYSCALL_BIT else "x86_64"
            return BY_NAME[want] if want in names else None
        return a
    return None


def condition_holds(arch: Arch, cond: ArgCond, arg: int) -> bool:
    """One argument condition, as libseccomp means it: 64-bit compare, or low words on 32-bit arches."""
    mask = U64 if arch.bits == 64 else U32
    a, v, w = arg & mask, cond.value & mask, cond.value_two & mask
    return {
        "SCMP_CMP_EQ": a == v, "SCMP_CMP_NE": a != v, "SCMP_CMP_LT": a < v,
        "SCMP_CMP_LE": a <= v, "SCMP_CMP_GT": a > v, "SCMP_CMP_GE": a >= v,
        # libseccomp masks the datum too: (arg & mask) == (datum & mask).
        "SCMP_CMP_MASKED_EQ": a & v == w & v,
    }[cond.op]


def rule_matches(arch: Arch, conds: Sequence[ArgCond], args: Sequence[int]) -> bool:
    """All conditions hold; conditions that repeat an index are OR'd (runc's convention)."""
    if not conds:
        return True
    if len({c.index for c in conds}) != len(conds):
        return any(condition_holds(arch, c, args[c.index]) for c in conds)
    return all(condition_holds(arch, c, args[c.index]) for c in conds)


def lacked_by_libseccomp(arch: Arch, name: str) -> bool:
    return libseccomp.resolve_name(arch, name) == libseccomp.NR_SCMP_ERROR


def own_rule_answer(profile: Profile, arch: Arch, nr: int, default: int,
                    args: Sequence[int]) -> int | None:
    """Rule 7: what a rule compiled by the project must answer; None when not decidable here.

    Decided only when every name for (arch, nr) is one the host libseccomp lacks, and the
    rules for it carry one action besides the default (so rule order cannot matter).
    """
    rules = [r for r in profile.syscalls
             if any(syscalls.resolve(arch.name, n) == nr for n in r.names)]
    names = {n for r in rules for n in r.names if syscalls.resolve(arch.name, n) == nr}
    if not names or not all(lacked_by_libseccomp(arch, n) for n in names):
        return None
    acting = [r for r in rules if action_value(r.action, r.errno_ret) != default]
    actions = {action_value(r.action, r.errno_ret) for r in acting}
    if len(actions) != 1:
        return default if not actions else None
    (action,) = actions
    return action if any(rule_matches(arch, r.args, args) for r in acting) else default


# --------------------------------------------------------------------------------------
# Argument sampling: only for numbers whose rules look at arguments.
# --------------------------------------------------------------------------------------

def edges(v: int) -> set[int]:
    v &= U64
    return {x & U64 for x in (0, 1, v - 1, v, v + 1, U32, 2**32, 2**32 + 1, 2**63, U64,
                              v ^ (1 << 32), v & U32, v | (U32 << 32))}


def satisfying(cond: ArgCond) -> int:
    v = cond.value & U64
    return {"SCMP_CMP_EQ": v, "SCMP_CMP_GE": v, "SCMP_CMP_LE": v,
            "SCMP_CMP_NE": v ^ 1, "SCMP_CMP_GT": (v + 1) & U64, "SCMP_CMP_LT": (v - 1) & U64,
            "SCMP_CMP_MASKED_EQ": cond.value_two & v}[cond.op]


def arg_vectors(rules: Iterable[Rule], rng: random.Random) -> list[tuple[int, ...]]:
    """A handful of argument vectors around every condition of these rules."""
    out = {(0,) * 6}
    for rule in rules:
        if not rule.args:
            continue
        vec = [0] * 6
        for c in rule.args:
            vec[c.index] = satisfying(c)
        out.add(tuple(vec))
        for c in rule.args:
            values = sorted(edges(c.value) | (edges(c.value_two) if c.op == "SCMP_CMP_MASKED_EQ" else set()))
            for v in rng.sample(values, min(4, len(values))):
                w = list(vec)
                w[c.index] = v
                out.add(tuple(w))
    return sorted(out)


# --------------------------------------------------------------------------------------
# The check.
# --------------------------------------------------------------------------------------

# Numbers every arch is probed with, besides 0..1100.
BIG = (0x7FFFFFFF, 0x80000000, 0xBFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF)
X32_NRS = tuple(X32_SYSCALL_BIT | n for n in range(0, 1101)) + tuple(range(X32_COMPAT_LO, X32_COMPAT_HI + 1))
ARM_PRIVATE = tuple(range(ARM_PRIVATE_BASE, ARM_PRIVATE_BASE + 0x11))
PROBE_ARCHES = ("x86_64", "x86", "aarch64", "arm", "ppc64le", "ppc64", "s390x", "s390", "riscv64")


def probe_numbers(arches: Sequence[Arch], audit: int) -> list[int]:
    """The numbers tried for one audit value of the filter."""
    nrs = list(range(0, 1101)) + list(BIG)
    names = {a.name for a in arches if a.audit == audit}
    if "x86_64" in names:
        # The x32 half: all of it when x32 is there, a sample when it must stay untouched.
        nrs += X32_NRS if "x32" in names else X32_NRS[::7] + (X32_COMPAT_LO, X32_COMPAT_HI)
    if "arm" in names:
        nrs += ARM_PRIVATE
    return sorted(set(nrs))


@dataclass
class Failure:
    arch: str
    nr: int
    args: tuple[int, ...]
    expected: int
    got: int
    why: str

    def __str__(self) -> str:
        return (f"{self.arch} nr={self.nr:#x} args={self.args}: expected {self.expected:#x}, "
                f"got {self.got:#x} ({self.why})")


def check_law(profile: Profile, compiled: Compiled, mode: Mode, emulate: Version | None,
              seed: int = 0) -> tuple[Patched, Patched]:
    """Build the patched and the `off` programs and check every probe against the oracle."""
    patched = build(compiled, mode, emulate)
    off = build(compiled, Mode("off"))
    if emulate is None and not compiled.pending:
        assert off.program == compiled.program, "off mode must leave libseccomp's program alone"
        assert off.stub_length == 0
    assert len(patched.program) <= 4096
    rng = random.Random(seed)
    arches = compiled.arches
    default = compiled.default_action
    # semantics.md v2: named(A) also holds every nr libseccomp's own program answers with
    # anything but the default (asked of the emulator, which the kernel tests vouch for):
    # libseccomp translates some names to numbers the table gives other names.
    answered = {a.name: set() for a in arches}
    for audit in dict.fromkeys(a.audit for a in arches):
        for nr in probe_numbers(arches, audit):
            arch = owner(arches, audit, nr)
            if arch is not None and emu.run(compiled.program, arch, nr).ret != default:
                answered[arch.name].add(nr)
    sets = {a.name: EnosysSet(a.name, named_numbers(profile, a.name) | answered[a.name], mode,
                              default, emulate)
            for a in arches}
    same = patched.program == off.program
    failures: list[Failure] = []

    def run(program, arch: Arch, nr: int, args=()) -> int:
        return emu.run(program, arch, nr, args).ret

    # (arch, nr) whose names the host libseccomp lacks entirely: the project compiles their rules.
    own = {(a.name, nr) for a in arches for nr in sets[a.name].named
           if all(lacked_by_libseccomp(a, n) for n in names_of(profile, a.name, nr))}
    if garbled(profile, compiled):
        # libseccomp's own answers are wrong here (see test_libseccomp_garbles_big_endian_programs):
        # judge rule 7 only where the project's code answers, not libseccomp's.
        event("libseccomp program garbled")
        own &= {(p.arch, p.nr) for p in compiled.pending}
    conditional = {}
    for a in arches:
        for rule in profile.syscalls:
            if not rule.args:
                continue
            for name in rule.names:
                nr = syscalls.resolve(a.name, name)
                if nr is not None:
                    conditional.setdefault((a.name, nr), []).append(rule)

    for audit in dict.fromkeys(a.audit for a in arches):
        for nr in probe_numbers(arches, audit):
            arch = owner(arches, audit, nr)
            # The data the kernel hands over carries the audit value; any arch with it will do.
            data_arch = arch or next(a for a in arches if a.audit == audit)
            in_e = arch is not None and nr in sets[arch.name]
            rules = conditional.get((arch.name, nr), []) if arch else []
            vectors = arg_vectors(rules, rng) if rules else [()]
            for args in vectors:
                got = run(patched.program, data_arch, nr, args)
                if in_e:
                    if got != ENOSYS_RET:
                        failures.append(Failure(data_arch.name, nr, tuple(args), ENOSYS_RET, got, "in E(A)"))
                    continue
                before = got if same else run(off.program, data_arch, nr, args)
                if got != before:
                    why = "not in E(A)" if arch else "belongs to no arch of the filter"
                    failures.append(Failure(data_arch.name, nr, tuple(args), before, got, why))
                if arch is not None and (arch.name, nr) in own:
                    want = own_rule_answer(profile, arch, nr, default, tuple(args) + (0,) * 6)
                    if want is not None and before != want:
                        failures.append(Failure(arch.name, nr, tuple(args), want, before,
                                                "rule 7: the project's own rule for a name libseccomp lacks"))
            if len(failures) > 20:
                break

    # Rule 3: an arch the filter does not carry goes to libseccomp's bad-arch action untouched.
    absent = [BY_NAME[n] for n in PROBE_ARCHES
              if BY_NAME[n].audit not in {a.audit for a in arches}
              and BY_NAME[n].little_endian == arches[0].little_endian]
    for a in absent:
        for nr in (0, 1, 3, 59, 435, 439, 0xF0002, X32_SYSCALL_BIT | 439, 0xFFFFFFFF):
            got, before = run(patched.program, a, nr), run(off.program, a, nr)
            if got != before:
                failures.append(Failure(a.name, nr, (), before, got, "arch not in the filter"))

    if failures:
        lines = "\n  ".join(map(str, failures[:20]))
        pytest.fail(f"{len(failures)} disagreement(s), mode={mode}, emulate={emulate}, "
                    f"arches={[a.name for a in arches]}, default={default:#x}:\n  {lines}")
    return patched, off


def garbled(profile: Profile, compiled: Compiled) -> bool:
    """libseccomp returned a value no rule and no default asked for (byte-swapped, seen on BE)."""
    wanted = {compiled.default_action, compiled.bad_arch_action}
    wanted |= {action_value(r.action, r.errno_ret) for r in profile.syscalls}
    return any(i.code == RET | K and i.k not in wanted for i in compiled.program)


def names_of(profile: Profile, arch: str, nr: int) -> set[str]:
    return {n for r in profile.syscalls for n in r.names if syscalls.resolve(arch, n) == nr}


# --------------------------------------------------------------------------------------
# Generated profiles.
# --------------------------------------------------------------------------------------

# Native arch -> the sets of extra arches a profile may list (libseccomp needs one byte order).
EXTRAS = {
    "x86_64": ((), ("x86",), ("x32",), ("x86", "x32"), ("x86", "x32", "arm")),
    "aarch64": ((), ("arm",), ("arm", "x86")),
    "ppc64le": ((),),
    "s390x": ((), ("s390",)),
    "riscv64": ((), ("arm",)),
}
# x86_64 twice as often: it carries the most structure (x86, x32 and their split).
FILTERS = tuple((native, extras) for native in ("x86_64",) + tuple(EXTRAS) for extras in EXTRAS[native])
DENYING_DEFAULTS = (
    ("SCMP_ACT_ERRNO", None),  # EPERM
    ("SCMP_ACT_ERRNO", errno.EACCES),
    ("SCMP_ACT_ERRNO", 1234),
    ("SCMP_ACT_KILL_PROCESS", None),
    ("SCMP_ACT_KILL", None),
    ("SCMP_ACT_TRAP", None),
)
OTHER_DEFAULTS = (
    ("SCMP_ACT_ERRNO", errno.ENOSYS),
    ("SCMP_ACT_ALLOW", None),
    ("SCMP_ACT_LOG", None),
    ("SCMP_ACT_TRACE", 7),
)
RULE_ACTIONS = (
    ("SCMP_ACT_ALLOW", None), ("SCMP_ACT_ALLOW", None), ("SCMP_ACT_ALLOW", None),
    ("SCMP_ACT_ERRNO", None), ("SCMP_ACT_ERRNO", errno.EACCES), ("SCMP_ACT_ERRNO", errno.ENOSYS),
    ("SCMP_ACT_KILL_PROCESS", None), ("SCMP_ACT_TRAP", None), ("SCMP_ACT_LOG", None),
    ("SCMP_ACT_TRACE", 3),
)
VALUES = (0, 1, 2, 3, 0x7F, 0x80, 0xFFFF, 2**31, U32, 2**32, 2**32 + 1, 2**63, U64,
          0x1_0000_0005, 0xDEAD_BEEF_0000_0001)


def _versions() -> list[Version]:
    return sorted({syscalls.since(a, nr) for a in syscalls.arches() for nr in syscalls.numbers(a)})


VERSIONS = _versions()
modes = st.sampled_from(("auto", "unnamed", "max", "off", "kernel")).flatmap(
    lambda kind: st.sampled_from(VERSIONS).map(lambda v: Mode("kernel", v)) if kind == "kernel"
    else st.just(Mode(kind)))
emulates = st.one_of(st.none(), st.none(), st.sampled_from(VERSIONS))
conds = st.builds(ArgCond, index=st.integers(0, 5), value=st.sampled_from(VALUES) | st.integers(0, U64),
                  value_two=st.sampled_from(VALUES), op=st.sampled_from(OPS))


@functools.cache
def name_pools(arch_names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Names of the table on these arches: (known to the host libseccomp, lacked by it everywhere)."""
    pool = sorted({n for a in arch_names for n in syscalls.names(a)})
    lacked = [n for n in pool if all(lacked_by_libseccomp(BY_NAME[a], n) for a in arch_names
                                     if syscalls.resolve(a, n) is not None)]
    return [n for n in pool if n not in lacked], lacked


@st.composite
def profiles(draw, defaults) -> tuple[Profile, Arch]:
    native, extras = draw(st.sampled_from(FILTERS))
    arch_names = [native, *extras]
    known, lacked = name_pools(tuple(arch_names))
    name = st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known),
                     st.sampled_from(lacked), st.just("no_such_syscall_xyz"))
    rules = []
    # Sometimes a real-sized allow-list first, so baselines look like real profiles'.
    big = draw(st.sampled_from((0, 0, 40, 150, 300)))
    if big:
        seed = draw(st.integers(0, 2**32))
        rules.append(Rule(tuple(random.Random(seed).sample(known, min(big, len(known)))),
                          "SCMP_ACT_ALLOW"))
    # Mostly each name in one rule; sometimes a name in several (libseccomp may refuse those).
    overlap = draw(st.integers(0, 3)) == 0
    used = {n for r in rules for n in r.names}
    for _ in range(draw(st.integers(0, 6))):
        names = tuple(n for n in draw(st.lists(name, min_size=1, max_size=5, unique=True))
                      if overlap or n not in used)
        if not names:
            continue
        used.update(names)
        action, errno_ret = draw(st.sampled_from(RULE_ACTIONS))
        args = tuple(draw(st.lists(conds, max_size=3))) if draw(st.booleans()) else ()
        rules.append(Rule(names, action, errno_ret, args))
    default, default_errno = draw(st.sampled_from(defaults))
    profile = Profile(default, default_errno, tuple(BY_NAME[a].oci for a in extras),
                      syscalls=tuple(rules))
    return profile, BY_NAME[native]


def _run(profile: Profile, native: Arch, mode: Mode, emulate: Version | None, seed: int) -> None:
    note(f"profile={profile!r}")
    note(f"native={native.name} mode={mode} emulate={emulate}")
    try:
        compiled = compile_or_reject(profile, native)
    except CompileError as exc:
        # Rule 8: libseccomp refuses some combinations (two actions for one call): fail closed.
        # A big-endian program built on this little-endian host can come back garbled
        # from libseccomp 2.5.4; refusing it is the right answer (see the test below).
        assert "libseccomp refuses" in str(exc) and str(exc).startswith(".names[") or \
            "syscalls[" in str(exc) or "corrupt program" in str(exc), str(exc)
        event(f"refused: {exc.message}")
        reject()
    note(f"pending={[(p.arch, p.name) for p in compiled.pending]}")
    event(f"arches={'+'.join(a.name for a in compiled.arches)}")
    event(f"mode={mode.kind}{'+emulate' if emulate else ''}")
    event("project-compiled rules" if compiled.pending else "no project-compiled rules")
    check_law(profile, compiled, mode, emulate, seed)


LAW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(LAW, max_examples=600)
@given(profiles(DENYING_DEFAULTS), modes, emulates, st.integers(0, 2**16))
def test_law_denying_default(case, mode, emulate, seed):
    """ERRNO (not ENOSYS), KILL and TRAP defaults: the stub applies in every mode but off."""
    _run(*case, mode, emulate, seed)


@settings(LAW, max_examples=150)
@given(profiles(OTHER_DEFAULTS), modes, st.none(), st.integers(0, 2**16))
def test_law_permissive_default(case, mode, emulate, seed):
    """ALLOW, LOG, TRACE and ERRNO(ENOSYS) defaults: no stub at all (rule 2)."""
    _run(*case, mode, emulate, seed)


@settings(LAW, max_examples=150)
@given(profiles(OTHER_DEFAULTS), modes, st.sampled_from(VERSIONS), st.integers(0, 2**16))
def test_law_permissive_default_emulating(case, mode, emulate, seed):
    """--emulate-kernel with a default that does not deny: only the kernel surface changes."""
    _run(*case, mode, emulate, seed)


# --------------------------------------------------------------------------------------
# Hand-picked cases: each one a sentence of semantics.md.
# --------------------------------------------------------------------------------------

def _profile(names: Sequence[str], arches: Sequence[str] = (), default: str = "SCMP_ACT_ERRNO",
             errno_ret: int | None = None, extra_rules: Sequence[Rule] = ()) -> Profile:
    return Profile(default, errno_ret, tuple(BY_NAME[a].oci for a in arches),
                   syscalls=(Rule(tuple(names), "SCMP_ACT_ALLOW"),) + tuple(extra_rules))


def _answer(patched: Patched, arch: str, name_or_nr, args=()) -> int:
    nr = name_or_nr if isinstance(name_or_nr, int) else syscalls.resolve(arch, name_or_nr)
    return emu.run(patched.program, BY_NAME[arch], nr, args).ret


EPERM_RET = RET_ERRNO | errno.EPERM
OLD = ("read", "write", "openat", "close", "exit_group", "clone", "futex", "getpid")


@pytest.mark.parametrize("mode,name,expected", [
    # auto: baseline = since(faccessat2) = 5.8, so clone3 (5.3) keeps EPERM, fchmodat2 (6.6) is new.
    ("auto", "clone3", EPERM_RET),
    ("auto", "fchmodat2", ENOSYS_RET),
    ("auto", "close_range", ENOSYS_RET),  # 5.9: newer than faccessat2, below it in number
    ("max", "close_range", EPERM_RET),
    ("unnamed", "clone3", ENOSYS_RET),
    ("max", "clone3", EPERM_RET),
    ("max", "fchmodat2", ENOSYS_RET),
    ("kernel:5.2", "clone3", ENOSYS_RET),
    ("kernel:5.3", "clone3", EPERM_RET),
    ("off", "fchmodat2", EPERM_RET),
])
def test_examples_x86_64(mode, name, expected):
    from ocishim.patch.enosys import parse_mode

    profile = _profile(OLD + ("faccessat2",))
    patched = build(compile_profile(profile, BY_NAME["x86_64"]), parse_mode(mode))
    assert _answer(patched, "x86_64", name) == expected
    assert _answer(patched, "x86_64", "read") == RET_ALLOW


def test_explicit_deny_keeps_its_errno_and_conditions():
    deny = Rule(("clone3",), "SCMP_ACT_ERRNO", errno.EPERM)
    cond = Rule(("personality",), "SCMP_ACT_ALLOW", None, (ArgCond(0, 8, 0, "SCMP_CMP_EQ"),))
    profile = _profile(OLD + ("fchmodat2",), extra_rules=(deny, cond))
    for mode in ("auto", "unnamed", "max"):
        patched = build(compile_profile(profile, BY_NAME["x86_64"]), Mode(mode))
        assert _answer(patched, "x86_64", "clone3") == EPERM_RET
        assert _answer(patched, "x86_64", "personality", (8,)) == RET_ALLOW
        assert _answer(patched, "x86_64", "personality", (9,)) == EPERM_RET


def test_lacked_name_is_compiled_by_the_project():
    """Rule 7: mseal is unknown to the host libseccomp 2.5.4; its rule still holds."""
    if not lacked_by_libseccomp(BY_NAME["x86_64"], "mseal"):
        pytest.skip("the host libseccomp knows mseal")
    rule = Rule(("mseal",), "SCMP_ACT_ALLOW", None, (ArgCond(2, 0, 0, "SCMP_CMP_EQ"),))
    profile = _profile(OLD, extra_rules=(rule,))
    compiled = compile_profile(profile, BY_NAME["x86_64"])
    for mode in ("off", "auto", "unnamed", "max"):
        patched = build(compiled, Mode(mode))
        assert _answer(patched, "x86_64", "mseal", (0, 0, 0)) == RET_ALLOW
        assert _answer(patched, "x86_64", "mseal", (0, 0, 1)) == EPERM_RET


def test_emulating_under_a_permissive_default_changes_only_the_kernel_surface():
    """Rule 2 with --emulate-kernel: an ALLOW default keeps ALLOW for every syscall up to X.Y."""
    profile = _profile(("clone3",), default="SCMP_ACT_ALLOW")
    compiled = compile_profile(profile, BY_NAME["x86_64"])
    for mode in ("auto", "unnamed", "max"):
        patched = build(compiled, Mode(mode), (5, 0))
        assert _answer(patched, "x86_64", "getpid") == RET_ALLOW      # 3.0, not named
        assert _answer(patched, "x86_64", "clone3") == ENOSYS_RET     # 5.3 > 5.0, named
        assert _answer(patched, "x86_64", "fchmodat2") == ENOSYS_RET  # 6.6 > 5.0


def test_s390x_nr_0_is_enosys():
    profile = _profile(OLD)
    for mode in ("auto", "unnamed", "max", "kernel:3.0"):
        patched = build(compile_profile(profile, BY_NAME["s390x"]), Mode(mode) if ":" not in mode
                        else Mode("kernel", (3, 0)))
        assert _answer(patched, "s390x", 0) == ENOSYS_RET


def test_x32_numbers_without_x32_are_untouched():
    profile = _profile(OLD)
    compiled = compile_profile(profile, BY_NAME["x86_64"])
    patched = build(compiled, Mode("unnamed"))
    for nr in (X32_SYSCALL_BIT, X32_SYSCALL_BIT | 435, X32_COMPAT_LO, 0x7FFFFFFF, 0xFFFFFFFF):
        assert _answer(patched, "x86_64", nr) == emu.run(compiled.program, BY_NAME["x86_64"], nr).ret


def test_a_garbled_libseccomp_program_fails_closed():
    """libseccomp 2.5.4 byte-swaps some `ret` values of a long big-endian program built
    on a little-endian host. Such a program must be refused, never used."""
    names = sorted(syscalls.names("s390x"))[:300]
    profile = _profile(names)
    expected = {RET_ALLOW, EPERM_RET}
    try:
        compiled = compile_profile(profile, BY_NAME["s390x"])
    except CompileError as exc:
        assert "corrupt program" in str(exc)
        return
    garbled = [(pc, hex(i.k)) for pc, i in enumerate(compiled.program)
               if i.code == RET | K and i.k not in expected | {compiled.bad_arch_action}]
    assert not garbled, f"a garbled program got through: {garbled[:5]}"


# --------------------------------------------------------------------------------------
# Rule 5: deterministic.
# --------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles(DENYING_DEFAULTS + OTHER_DEFAULTS), modes, emulates)
def test_same_input_same_bytes(case, mode, emulate):
    profile, native = case
    first = build(compile_or_reject(profile, native), mode, emulate)
    second = build(compile_or_reject(profile, native), mode, emulate)
    order = "little" if native.little_endian else "big"
    assert encode(first.program, order) == encode(second.program, order)
    assert first.stub_length == second.stub_length


# --------------------------------------------------------------------------------------
# runc compatibility: runc's original rule, and where `max` departs from it.
# --------------------------------------------------------------------------------------

def runc_maximum(profile: Profile, arch: Arch) -> int | None:
    """runc's largest number for arch: over the names the host libseccomp resolves to a real number.

    No exclusions: ARM private calls and x32 compat calls count like any other.
    A pseudo number (< 0) or an unknown name does not count; no number at all means no section.
    """
    numbers = [libseccomp.resolve_name(arch, name) for rule in profile.syscalls for name in rule.names]
    largest = max([n for n in numbers if n > 0], default=0)
    return largest or None


def runc_enosys(profile: Profile, arches: Sequence[Arch], default: int,
                audit: int, nr: int) -> bool:
    """runc's stub: for the arch of (audit, nr), ENOSYS when nr > its maximum (unsigned 32-bit).

    On AUDIT_ARCH_X86_64 runc tells x32 from x86_64 by bit 30 alone (jset), each with its
    own maximum; an arch without a maximum gets no test. s390/s390x: nr 0 is ENOSYS.
    """
    if not default_denies(default):
        return False
    candidates = [a for a in arches if a.audit == audit]
    if not candidates:
        return False
    if {a.name for a in candidates} & {"x86_64", "x32"}:
        want = "x32" if nr & X32_SYSCALL_BIT else "x86_64"
        candidates = [a for a in candidates if a.name == want]
        if not candidates:
            return False
    arch = candidates[0]
    maximum = runc_maximum(profile, arch)
    if maximum is None:
        return False
    if arch.name in ("s390", "s390x") and nr == 0:
        return True
    return nr > maximum


RUNC_CASES = [
    # (profile names, extra arches, arch, nr, runc gives ENOSYS, `max` gives ENOSYS)
    # 32-bit ARM: naming cacheflush makes runc's maximum 0xf0002; nothing below it is ENOSYS.
    (OLD + ("clone3", "cacheflush"), ("arm",), "arm", syscalls.resolve("arm", "faccessat2"), False, True),
    (OLD + ("clone3", "cacheflush"), ("arm",), "arm", syscalls.resolve("arm", "fchmodat2"), False, True),
    (OLD + ("clone3", "cacheflush"), ("arm",), "arm", ARM_PRIVATE_BASE + 1, False, True),  # breakpoint
    (OLD + ("clone3", "cacheflush"), ("arm",), "arm", ARM_PRIVATE_BASE + 3, True, True),   # usr26
    (OLD + ("clone3", "cacheflush"), ("arm",), "arm", syscalls.resolve("arm", "cacheflush"), False, False),
    # x32: execve is 520 (0x40000208) in the compat range; runc's x32 maximum is at least that.
    (OLD + ("clone3", "execve"), ("x32",), "x32", syscalls.resolve("x32", "faccessat2"), False, True),
    (OLD + ("clone3", "execve"), ("x32",), "x32", 0x400001B8, False, True),
    (OLD + ("clone3", "execve"), ("x32",), "x32", 0x400001D7, False, True),
    (OLD + ("clone3", "execve"), ("x32",), "x32", X32_COMPAT_HI, True, True),
    # Where the two agree: x86_64 itself, with the same profile.
    (OLD + ("clone3", "execve"), ("x32",), "x86_64", syscalls.resolve("x86_64", "faccessat2"), True, True),
    (OLD + ("clone3", "execve"), ("x32",), "x86_64", syscalls.resolve("x86_64", "close_range"), True, True),
    # A name libseccomp 2.5.4 lacks: runc does not count it (and libseccomp drops its rule);
    # `max` counts it and keeps its rule.
    (OLD + ("clone3", "mseal"), (), "x86_64", syscalls.resolve("x86_64", "mseal"), True, False),
    (OLD + ("clone3", "mseal"), (), "x86_64", syscalls.resolve("x86_64", "fchmodat2"), True, False),
]


@pytest.mark.parametrize("names,extras,arch_name,nr,runc_says,max_says", RUNC_CASES)
def test_runc_rule_versus_max(names, extras, arch_name, nr, runc_says, max_says):
    profile = _profile(names, extras)
    native = BY_NAME["x86_64"] if arch_name in ("x86_64", "x32") or "x86" in extras else BY_NAME["aarch64"]
    compiled = compile_or_reject(profile, native)
    arch = BY_NAME[arch_name]
    if any(lacked_by_libseccomp(arch, n) for n in names) and "mseal" not in names:
        pytest.skip("the host libseccomp lacks a name this case relies on")
    if "mseal" in names and not lacked_by_libseccomp(arch, "mseal"):
        pytest.skip("the host libseccomp knows mseal")
    assert runc_enosys(profile, compiled.arches, compiled.default_action, arch.audit, nr) is runc_says
    oracle = EnosysSet(arch_name, named_numbers(profile, arch_name), Mode("max"),
                       compiled.default_action, None)
    assert (nr in oracle) is max_says
    # And the program ocishim builds in max mode answers as `max` says.
    patched = build(compiled, Mode("max"))
    got = emu.run(patched.program, arch, nr).ret
    before = emu.run(compiled.program, arch, nr).ret if not compiled.pending else \
        emu.run(build(compiled, Mode("off")).program, arch, nr).ret
    assert got == (ENOSYS_RET if max_says else before)
    # runc's filter would answer ENOSYS, or libseccomp's answer (a lacked name's rule dropped).
    runc_answer = ENOSYS_RET if runc_says else emu.run(compiled.program, arch, nr).ret
    if runc_says != max_says:
        assert runc_answer != got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles(DENYING_DEFAULTS))
def test_runc_and_max_agree_without_private_compat_or_lacked_names(case):
    """With no ARM private call, no x32 compat call and no lacked name named, `max` is runc's rule."""
    profile, native = case
    compiled = compile_or_reject(profile, native)
    for arch in compiled.arches:
        named = named_numbers(profile, arch.name)
        if any(nr >= ARM_PRIVATE_BASE for nr in named if arch.name == "arm") or \
                any(X32_COMPAT_LO <= nr <= X32_COMPAT_HI for nr in named if arch.name == "x32") or \
                any(libseccomp.resolve_name(arch, n) != syscalls.resolve(arch.name, n)
                    for r in profile.syscalls for n in r.names
                    if syscalls.resolve(arch.name, n) is not None):
            continue
        oracle = EnosysSet(arch.name, named, Mode("max"), compiled.default_action, None)
        lo = X32_SYSCALL_BIT if arch.name == "x32" else 0
        for nr in range(lo + 1, lo + 1101):
            if arch.name in ("s390", "s390x") and nr == 0:
                continue
            assert runc_enosys(profile, compiled.arches, compiled.default_action, arch.audit, nr) \
                == (nr in oracle), (arch.name, nr)
