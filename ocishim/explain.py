"""What every syscall gets from a filter: one entry per (arch, syscall) of the table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from . import syscalls
from .actions import action_value, describe
from .arch import Arch
from .bpf import emu
from .bpf.insn import Insn
from .profile.model import ArgCond, Profile, Rule

DEPENDS = "depends on args"

_OP_TEXT = {"SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=", "SCMP_CMP_EQ": "==",
            "SCMP_CMP_GE": ">=", "SCMP_CMP_GT": ">"}


@dataclass(frozen=True)
class Entry:
    arch: str
    name: str
    nr: int
    before: str
    after: str
    rules: tuple[str, ...] = ()  # the profile's argument rules, when an answer depends on args

    def as_json(self) -> dict:
        out = {"arch": self.arch, "name": self.name, "nr": self.nr,
               "before": self.before, "after": self.after}
        if self.rules:
            out["rules"] = list(self.rules)
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


def explain(profile: Profile, arches: Sequence[Arch], before: Sequence[Insn],
            after: Sequence[Insn] | None = None, only: Iterable[str] = ()) -> list[Entry]:
    """One Entry per (arch, syscall name) in the table, arches in the given order, by nr."""
    wanted = set(only)
    rules_by_name: dict[str, list[Rule]] = {}
    for rule in profile.syscalls:
        if rule.args:
            for name in rule.names:
                rules_by_name.setdefault(name, []).append(rule)
    entries = []
    for arch in arches:
        if arch.name not in syscalls.arches():
            continue
        table = sorted(syscalls.names(arch.name).items(), key=lambda kv: (kv[1], kv[0]))
        for name, nr in table:
            if wanted and name not in wanted and str(nr) not in wanted:
                continue
            b, b_args = answer(before, arch, nr)
            a, a_args = answer(after, arch, nr) if after is not None else (b, b_args)
            rules = tuple(rule_text(r) for r in rules_by_name.get(name, ())) if b_args or a_args else ()
            entries.append(Entry(arch.name, name, nr, b, a, rules))
    return entries
