"""What a profile means, for one (arch, nr, args): the specification the checker holds programs to.

Written from semantics.md and the facts measured on libseccomp 2.5.4 (rule 12, pinned in
tests/patch/test_rules.py::test_libseccomp_combines_rules_on_one_syscall), not from
libseccomp's code nor from ocishim.patch:

- arch: seccomp_data.arch must be the audit value of an arch in the filter (x86_64 and
  x32 share one and are told apart by bit 30 of nr); any other gets the bad-arch action.
- names: a rule applies to nr when one of its names has that number on the arch in
  ocishim's own table (aliases included), whether or not the host libseccomp knows it.
- rules whose action is the default action are dropped (libseccomp refuses them).
- an unconditional rule overrides every conditional one on the nr, whatever the order;
  of several unconditional rules the first wins.
- a rule repeating an argument index is one rule per condition (OR); otherwise its
  conditions are ANDed.
- a condition set that extends an earlier one (a superset) is dropped, whatever its
  action; the same set with another action, or a shorter set with another action after
  a longer one, is refused (EEXIST): no filter at all.
- a condition compares the 64-bit argument on 64-bit arches and the low word only on
  32-bit ones; MASKED_EQ is (arg & mask) == (datum & mask).
- when condition sets with different actions hold at once, the measured fact is that a
  single condition on a higher argument index wins over one on a lower index. Any other
  overlap is not settled: the meaning is Unsettled there, and the checker says so.
- socket and IPC calls on arches with socketcall(2)/ipc(2) (x86, s390, s390x, ppc64,
  ppc64le from libseccomp 2.5.0; ppc, mips, mipsel from 2.5.2; m68k, sh from 2.6.0):
  each condition set of a rule on such a name is also a rule on the multiplexer, with
  its conditions on argument 0 replaced by `arg0 == call` (SYS_SOCKET = 1 ... SYS_SENDMMSG
  = 20; SEMOP = 1 ... SHMCTL = 24), added in profile order with the multiplexer's own
  rules. Measured with libseccomp 2.5.4's PFC export (`socket(a1 == 5)` is also
  `socketcall(a0 == 1 && a1 == 5)`; `socket(a0 == 2)` is also `socketcall(a0 == 1)`)
  and ../shared/data/libseccomp/multiplexed.csv.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

from ..record import Record
from .. import syscalls
from ..actions import RET_KILL_THREAD, action_value
from ..arch import BY_AUDIT, BY_OCI, X32_SYSCALL_BIT, Arch, order
from ..profile.model import ArgCond, Profile, Rule

U32 = 0xFFFFFFFF
U64 = 2**64 - 1

# libseccomp's bad-arch action when nobody sets one (runc and crun do not): SCMP_ACT_KILL.
BAD_ARCH = RET_KILL_THREAD

# The call numbers libseccomp checks in argument 0 of socketcall(2) and ipc(2)
# (linux/net.h SYS_*, linux/ipc.h), the same on every arch that has them.
SOCKETCALL = {name: i for i, name in enumerate(
    "socket bind connect listen accept getsockname getpeername socketpair send recv sendto "
    "recvfrom shutdown setsockopt getsockopt sendmsg recvmsg accept4 recvmmsg sendmmsg".split(), 1)}
IPC = {"semop": 1, "semget": 2, "semctl": 3, "semtimedop": 4, "msgsnd": 11, "msgrcv": 12,
       "msgget": 13, "msgctl": 14, "shmat": 21, "shmdt": 22, "shmget": 23, "shmctl": 24}
MULTIPLEXED = frozenset(SOCKETCALL) | frozenset(IPC)
MULTIPLEXERS = ("socketcall", "ipc")
# The libseccomp release from which each arch routes all 32 names through its multiplexers.
MULTIPLEXING_SINCE = {"x86": (2, 5, 0), "s390": (2, 5, 0), "s390x": (2, 5, 0), "ppc64": (2, 5, 0),
                      "ppc64le": (2, 5, 0), "ppc": (2, 5, 2), "mips": (2, 5, 2), "mipsel": (2, 5, 2),
                      "m68k": (2, 6, 0), "sh": (2, 6, 0), "sheb": (2, 6, 0)}

_set = object.__setattr__  # Records' __init__: fields set once, then immutable


def _host_version() -> tuple[int, int, int]:
    from .. import libseccomp

    return libseccomp.version()


class Unsettled(Exception):
    """The written meaning does not say what the profile means here (see the module doc)."""


class Refused(Exception):
    """libseccomp refuses this profile (EEXIST); there is no program to check."""


class CondSet(Record):
    """Conditions ANDed together, and the action when they all hold."""

    __slots__ = ("conds", "action", "path")

    def __init__(self, conds: tuple[ArgCond, ...], action: int, path: str) -> None:
        _set(self, "conds", conds)
        _set(self, "action", action)
        _set(self, "path", path)


class OnNr(Record):
    """Everything the profile says about one (arch, nr)."""

    # always: the unconditional rule's action
    # sets: conditional rules, when there is no unconditional one
    __slots__ = ("always", "sets")

    def __init__(self, always: int | None, sets: tuple[CondSet, ...]) -> None:
        _set(self, "always", always)
        _set(self, "sets", sets)


def _norm(c: ArgCond, bits: int) -> ArgCond:
    width = U64 if bits == 64 else U32
    two = c.value_two & width if c.op == "SCMP_CMP_MASKED_EQ" else 0
    return ArgCond(c.index, c.value & width, two, c.op)


def _subsets(conds: frozenset) -> list[frozenset]:
    """Every non-empty subset of a condition set (at most six conditions: 63 subsets)."""
    items = list(conds)
    return [frozenset(c) for size in range(1, len(items) + 1) for c in combinations(items, size)]


def _condition_sets(args: tuple[ArgCond, ...]) -> tuple[tuple[ArgCond, ...], ...]:
    if len({c.index for c in args}) != len(args):
        return tuple((c,) for c in args)
    return (args,) if args else ()


def holds(c: ArgCond, arg: int, bits: int) -> bool:
    """One condition on one argument, as libseccomp means it on an arch of `bits` bits."""
    width = U64 if bits == 64 else U32
    a, v, w = arg & width, c.value & width, c.value_two & width
    if c.op == "SCMP_CMP_EQ":
        return a == v
    if c.op == "SCMP_CMP_NE":
        return a != v
    if c.op == "SCMP_CMP_LT":
        return a < v
    if c.op == "SCMP_CMP_LE":
        return a <= v
    if c.op == "SCMP_CMP_GT":
        return a > v
    if c.op == "SCMP_CMP_GE":
        return a >= v
    if c.op == "SCMP_CMP_MASKED_EQ":
        return a & v == w & v
    raise ValueError(f"unknown operator {c.op!r}")


class Meaning:
    """The answer of a profile for every (arch audit, nr, args), per semantics.md."""

    def __init__(self, profile: Profile, arches: Sequence[Arch], bad_arch: int = BAD_ARCH,
                 libseccomp: tuple[int, int, int] | None = None) -> None:
        self.profile = profile
        self.libseccomp = libseccomp or _host_version()
        self.arches = order(arches)
        self.default = action_value(profile.default_action, profile.default_errno_ret)
        self.bad_arch = bad_arch
        self._on: dict[str, dict[int, OnNr]] = {a.name: self._rules_of(a) for a in self.arches}
        self._ruled: dict[str, tuple[int, ...]] = {}
        self._arch_of: dict[tuple[int, bool, bool], Arch | None] = {}

    @classmethod
    def for_filter(cls, profile: Profile, native: Arch, bad_arch: int = BAD_ARCH) -> "Meaning":
        """The arches a runtime puts in the filter: the native one plus those the profile lists."""
        return cls(profile, [native] + [BY_OCI[n] for n in profile.architectures], bad_arch)

    def arch_of(self, audit: int, nr: int) -> Arch | None:
        """The filter's arch for this seccomp_data.arch and nr, or None (bad arch)."""
        # x86_64 and x32 share an audit value. The kernel runs x32 calls for nr with bit 30
        # set; numbers from 2^31 are no syscall at all (the kernel answers ENOSYS before
        # seccomp matters). libseccomp and ocishim's stub both split at nr >= 2^30, so
        # the meaning does too: x86_64 below, x32 from there. One exception, measured on
        # libseccomp 2.5.4: without x32 in the filter, nr -1 (0xffffffff, what a tracer
        # leaves when it skips a call) is an x86_64 number, not a bad arch.
        # The answer depends on nr only through these two tests: one lookup per call.
        key = (audit, nr >= X32_SYSCALL_BIT, nr == U32)
        try:
            return self._arch_of[key]
        except KeyError:
            pass
        found = None
        shared = len(BY_AUDIT.get(audit, ())) > 1
        x32_in = any(a.name == "x32" for a in self.arches)
        for a in BY_AUDIT.get(audit, ()):
            if a not in self.arches:
                continue
            if shared and (a.name == "x32") != (nr >= X32_SYSCALL_BIT):
                if not (a.name == "x86_64" and nr == U32 and not x32_in):
                    continue
            found = a
            break
        self._arch_of[key] = found
        return found

    def ruled(self, arch: Arch) -> tuple[int, ...]:
        """The numbers of arch the profile has rules for, sorted."""
        ruled = self._ruled.get(arch.name)
        if ruled is None:
            ruled = self._ruled[arch.name] = tuple(sorted(self._on[arch.name]))
        return ruled

    def names_on(self, arch: Arch, nr: int) -> frozenset[str]:
        """The names in the profile's rules whose rules land on nr of arch: by the table
        (every alias of nr) or through the multiplexer nr is on arch."""
        muxes = self._multiplexers(arch)
        return frozenset(n for rule in self.profile.syscalls for n in rule.names
                         if syscalls.resolve(arch.name, n) == nr or muxes.get(n, (None,))[0] == nr)

    def on(self, arch: Arch, nr: int) -> OnNr | None:
        return self._on[arch.name].get(nr)

    def answer(self, audit: int, nr: int, args: Sequence[int]) -> int:
        """The profile's answer; raises Unsettled where the written meaning is silent."""
        arch = self.arch_of(audit, nr)
        if arch is None:
            return self.bad_arch
        on = self.on(arch, nr)
        if on is None:
            return self.default
        if on.always is not None:
            return on.always
        full = tuple(args) + (0,) * (6 - len(args))
        matching = [s for s in on.sets if all(holds(c, full[c.index], arch.bits) for c in s.conds)]
        actions = {s.action for s in matching}
        if not actions:
            return self.default
        if len(actions) == 1:
            return actions.pop()
        indexes = [s.conds[0].index for s in matching if len(s.conds) == 1]
        if len(indexes) == len(matching) and len(set(indexes)) == len(indexes):
            return max(matching, key=lambda s: s.conds[0].index).action
        raise Unsettled("conditional rules with different actions overlap: "
                        + ", ".join(s.path for s in matching))

    def _rules_of(self, arch: Arch) -> dict[int, OnNr]:
        by_nr: dict[int, list[Rule]] = {}
        muxes = self._multiplexers(arch)
        for rule in self.profile.syscalls:
            if action_value(rule.action, rule.errno_ret) == self.default:
                continue
            nrs = {syscalls.resolve(arch.name, n) for n in rule.names} - {None}
            for nr in nrs:
                by_nr.setdefault(nr, []).append(rule)
            for name in rule.names:
                if name in muxes:
                    mux_nr, call = muxes[name]
                    by_nr.setdefault(mux_nr, []).extend(_routed(rule, name, call))
        return {nr: self._combine(arch, rules) for nr, rules in by_nr.items()}

    def _multiplexers(self, arch: Arch) -> dict[str, tuple[int, int]]:
        """name -> (multiplexer nr, call) for the names libseccomp routes through one on arch."""
        since = MULTIPLEXING_SINCE.get(arch.name)
        if since is None or self.libseccomp < since:
            return {}
        out = {}
        for mux, calls in (("socketcall", SOCKETCALL), ("ipc", IPC)):
            nr = syscalls.resolve(arch.name, mux)
            if nr is not None:
                out.update({name: (nr, call) for name, call in calls.items()})
        return out

    def _combine(self, arch: Arch, rules: list[Rule]) -> OnNr:
        """The rules on one syscall number, as libseccomp merges them (rule 12): the first
        unconditional rule, else the condition sets in order, an extension (or repeat) of
        an earlier set dropped, and a refusal where two sets would need libseccomp's
        merge order to settle (the same conditions, or a shorter set after a longer one,
        with other actions).

        Indexed by every subset of each kept set (a set has at most six conditions, one
        per argument), so that a syscall with thousands of rules costs linear time.
        """
        for rule in rules:
            if not rule.args:
                return OnNr(action_value(rule.action, rule.errno_ret), ())
        sets: list[CondSet] = []
        normed: list[frozenset] = []  # each kept set's conditions, as compared
        first: dict[frozenset, int] = {}  # a kept set's conditions -> its index
        first_above: dict[frozenset, dict[int, int]] = {}  # subset -> action -> first index holding it
        for rule in rules:
            action = action_value(rule.action, rule.errno_ret)
            for group in _condition_sets(rule.args):
                new = frozenset(_norm(c, arch.bits) for c in group)
                subsets = _subsets(new)
                # The first earlier set that new extends or repeats, and the first earlier
                # superset of new with another action: whichever comes first decides.
                below = min((first[s] for s in subsets if s in first), default=None)
                above = min((i for a, i in first_above.get(new, {}).items() if a != action),
                            default=None)
                if above is not None and (below is None or above < below):
                    raise Refused(f"{rule.path}: a shorter rule with another action after "
                                  f"{sets[above].path}")
                if below is not None:
                    if normed[below] == new and sets[below].action != action:
                        raise Refused(f"{rule.path}: the same conditions as {sets[below].path} "
                                      "with another action")
                    continue  # an extension (or repeat) of an earlier set is dropped
                index = len(sets)
                sets.append(CondSet(tuple(group), action, rule.path))
                normed.append(new)
                first.setdefault(new, index)
                for s in subsets:
                    first_above.setdefault(s, {}).setdefault(action, index)
        return OnNr(None, tuple(sets))


def _routed(rule: Rule, name: str, call: int) -> list[Rule]:
    """The rules libseccomp adds on the multiplexer for `name` in rule: one per condition
    set, with the conditions on argument 0 replaced by `arg0 == call`."""
    sets = _condition_sets(rule.args) or ((),)
    return [rule.replace(names=(name,), path=f"{rule.path} ({name} through its multiplexer)",
                    args=(ArgCond(0, call, 0, "SCMP_CMP_EQ"),) + tuple(c for c in group if c.index != 0))
            for group in sets]
