"""What every syscall gets from a filter: one entry per (arch, syscall) of the table."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence

from . import syscalls
from .actions import action_value, describe
from .arch import NR_MAX, Arch, nr_domain
from .bpf import emu
from .bpf.insn import Insn
from .errors import UsageError
from .profile.model import ArgCond, Profile, Rule

DEPENDS = "depends on args"

_OP_TEXT = {"SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=", "SCMP_CMP_EQ": "==",
            "SCMP_CMP_GE": ">=", "SCMP_CMP_GT": ">"}


@dataclass(frozen=True)
class Entry:
    arch: str
    name: str | None  # None: a number the user asked for that arch's table does not have
    nr: int
    before: str
    after: str
    rules: tuple[str, ...] = ()  # the profile's argument rules, when an answer depends on args
    # (runtime, answer) of plain runc and crun on a host with another libseccomp
    # (--host-libseccomp, hostlib.py)
    plain: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict:
        out = {"arch": self.arch, "name": self.name, "nr": self.nr,
               "before": self.before, "after": self.after}
        if self.rules:
            out["rules"] = list(self.rules)
        for runtime, value in self.plain:
            out[runtime] = value
        return out


def condition_text(c: ArgCond) -> str:
    if c.op == "SCMP_CMP_MASKED_EQ":
        return f"args[{c.index}] & {c.value:#x} == {c.value_two:#x}"
    return f"args[{c.index}] {_OP_TEXT[c.op]} {c.value:#x}"


def rule_text(rule: Rule) -> str:
    """A rule in one line: `ALLOW if args[0] < 0x26 (syscalls[12])`."""
    action = describe(action_value(rule.action, rule.errno_ret))
    conds = " && ".join(condition_text(c) for c in rule.args)
    where = f" ({rule.path})" if rule.path else ""
    return f"{action} if {conds}{where}" if conds else f"{action}{where}"


def answer(program: Sequence[Insn], arch: Arch, nr: int) -> tuple[str, bool]:
    """The action for (arch, nr) with all-zero arguments, and whether arguments matter."""
    result = emu.run(program, arch, nr)
    if result.read_args:
        return DEPENDS, True
    return describe(result.ret), False


@dataclass(frozen=True)
class Selection:
    """The syscalls the user asked about: names in the table, and numbers."""

    names: frozenset[str] = frozenset()
    numbers: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.names or self.numbers)


def closest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates spelled most like word (difflib's ratio), best first."""
    return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=0.6)


def parse_nr(text: str, what: str = "SYSCALL") -> int | None:
    """A syscall number written in any base (0x..), or None when text is not a number.

    seccomp_data.nr is 32 bits and filters compare it unsigned; anything outside
    0..0xffffffff could never reach a filter, so it is an input error, not a question.
    """
    try:
        nr = int(text, 0)
    except ValueError:
        return None
    if not 0 <= nr <= NR_MAX:
        raise UsageError(what, f"syscall number {text} is out of range (0 to {NR_MAX:#x})")
    return nr


def unknown_name_text(name: str, arches: Sequence[str]) -> str:
    """Why name is refused on arches, with the closest names of their tables."""
    table = {n for a in arches for n in syscalls.names(a)}
    near = closest(name, table)
    elsewhere = [a for a in syscalls.arches() if a not in arches and syscalls.resolve(a, name) is not None]
    text = f"unknown syscall {name!r} on {', '.join(arches)}"
    if elsewhere:
        text += f" (the table has it on {', '.join(elsewhere)})"
    if near:
        text += f"; closest: {', '.join(near)}"
    return text


def select(words: Iterable[str], arches: Sequence[Arch]) -> Selection:
    """Check SYSCALL arguments against the table of the given arches.

    A name no selected arch has is a UsageError listing the closest names: a misspelled
    name must not give an empty answer that reads as "nothing to see".
    """
    words = list(words)
    tabled = [a.name for a in arches if a.name in syscalls.arches()]
    names: set[str] = set()
    numbers: set[int] = set()
    bad: list[str] = []
    for word in words:
        nr = parse_nr(word)
        if nr is not None:
            if not any(nr_domain(a.name)[0] <= nr <= nr_domain(a.name)[1] for a in arches):
                raise UsageError("SYSCALL", f"{word} is not a syscall number of "
                                            f"{', '.join(a.name for a in arches)}")
            numbers.add(nr)
        elif tabled and not any(syscalls.resolve(a, word) is not None for a in tabled):
            bad.append(unknown_name_text(word, tabled))
        else:
            names.add(word)
    if bad:
        raise UsageError("SYSCALL", "; ".join(bad))
    return Selection(frozenset(names), frozenset(numbers))


def explain(profile: Profile, arches: Sequence[Arch], before: Sequence[Insn],
            after: Sequence[Insn] | None = None, only: Selection = Selection()) -> list[Entry]:
    """One Entry per (arch, syscall name) in the table, arches in the given order, by nr.

    With `only`, just those names and numbers; a number the table lacks for an arch
    still gets an entry (name None), since that is exactly what the stub is about.
    """
    rules_by_name: dict[str, list[Rule]] = {}
    for rule in profile.syscalls:
        if rule.args:
            for name in rule.names:
                rules_by_name.setdefault(name, []).append(rule)
    entries = []
    for arch in arches:
        if arch.name not in syscalls.arches():
            continue
        table: list[tuple[str | None, int]] = sorted(syscalls.names(arch.name).items(),
                                                     key=lambda kv: (kv[1], kv[0]))
        if only:
            low, high = nr_domain(arch.name)
            listed = {nr for _, nr in table}
            table = [(n, nr) for n, nr in table if n in only.names or nr in only.numbers]
            table += [(None, nr) for nr in sorted(only.numbers)
                      if nr not in listed and low <= nr <= high]
            table.sort(key=lambda kv: (kv[1], kv[0] or ""))
        for name, nr in table:
            b, b_args = answer(before, arch, nr)
            a, a_args = answer(after, arch, nr) if after is not None else (b, b_args)
            rules = tuple(rule_text(r) for r in rules_by_name.get(name or "", ())) \
                if b_args or a_args else ()
            entries.append(Entry(arch.name, name, nr, b, a, rules))
    return entries


@dataclass(frozen=True)
class RuntimeNotes:
    """What each kind of runtime gets from ocishim's rewrite of a config (runtimes.md)."""

    crun_instructions: int  # crun: the exact patched program, through its BPF annotation
    json_names: tuple[str, ...]  # runc and other JSON readers: the appended ERRNO(ENOSYS) rule
    json_names_unknown_here: tuple[str, ...]  # of those, names the libseccomp here cannot resolve
    runc_max: dict[str, int]  # arch -> the highest number runc's own stub keeps (by this libseccomp)
    runc_enosys_over_rules: tuple[tuple[str, str, int], ...]  # (arch, name, nr) a rule answers, runc's stub turns into ENOSYS
    neither: tuple[tuple[str, int], ...]  # (arch, nr) of E(A) only crun's program answers ENOSYS


def runtime_notes(profile: Profile, patched) -> RuntimeNotes:
    """What crun, runc (and other JSON readers) and neither make of the patched profile.

    runc prepends its own stub: ENOSYS above the highest number its libseccomp names in
    the rewritten profile. Its libseccomp may not be the one loaded here (static builds
    carry their own): the figures assume the same one.
    """
    from . import libseccomp
    from .integrations.config import portable_names

    names, uncovered = portable_names(patched, set(profile.names()))
    rule_names = {n for rule in profile.syscalls for n in rule.names}
    runc_max: dict[str, int] = {}
    over: list[tuple[str, str, int]] = []
    for arch in patched.compiled.arches:
        if arch not in libseccomp.supported_arches() or arch.name not in syscalls.arches():
            continue
        known = [libseccomp.resolve_name(arch, n) for n in rule_names | set(names)]
        top = max((nr for nr in known if nr >= 0), default=None)
        if top is None:
            continue
        runc_max[arch.name] = top
        for rule in profile.syscalls:
            for name in rule.names:
                nr = syscalls.resolve(arch.name, name)
                if nr is not None and nr > top and not libseccomp.knows(arch, name):
                    over.append((arch.name, name, nr))
    # Names in the rule that this libseccomp cannot resolve are skipped by a runtime
    # using it: those count as uncovered too, below runc's maximum.
    skipped = [(arch.name, syscalls.resolve(arch.name, n)) for arch in patched.compiled.arches
               if arch in libseccomp.supported_arches() and arch.name in syscalls.arches()
               for n in names if not libseccomp.knows(arch, n)]
    gaps = sorted({(a, nr) for a, nr in list(uncovered) + skipped if nr is not None},
                  key=lambda p: ([a.name for a in patched.compiled.arches].index(p[0]), p[1]))
    neither = tuple((a, nr) for a, nr in gaps if a not in runc_max or nr <= runc_max[a])
    here = libseccomp.supported_arches()
    unknown_here = tuple(n for n in names if not any(libseccomp.knows(a, n) for a in patched.compiled.arches
                                                     if a in here))
    return RuntimeNotes(len(patched.program), names, unknown_here, runc_max,
                        tuple(dict.fromkeys(over)), neither)
