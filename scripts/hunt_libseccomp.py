#!/usr/bin/env python3
"""Hunt libseccomp merge/compile bugs: small random rule sets on one syscall, checked (issue 9).

Each rule set names one syscall (personality by default) with up to three rules of up to
two conditions each: every operator, 64-bit values with high words set, several
actions, filters for x86_64 with x86, x32 and aarch64 added. libseccomp compiles it (the
host's, in a killable child: some rule sets make 2.5.4 loop), and the checker compares
the program with the profile's meaning (ocishim.verify). A rule set where they differ is
shrunk to the smallest one that still differs, and printed once per shape.

    .venv/bin/python scripts/hunt_libseccomp.py [--count N] [--seed S] [--json] [--pfc] [--kernel]

A difference is a lead, not a verdict: the meaning (verify/meaning.py) can be wrong too.
--pfc reads libseccomp's own PFC export of the rules (tests/verify/libseccomp_pfc.py)
at each witness: where it agrees with the meaning and not with the program, libseccomp's
BPF generator departs from its own rule tree; where it agrees with the program, the rule
tree or the meaning is wrong. --kernel runs libseccomp's program, neutralised, on each
witness (tests/kernel/harness.py; x86_64, x86 and x32 only). Pinned bugs live in
tests/verify/libseccomp_bugs.py.
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocishim import compile as compile_module  # noqa: E402
from ocishim.arch import BY_NAME  # noqa: E402
from ocishim.errors import OcishimError  # noqa: E402
from ocishim.profile.model import ArgCond, Profile, Rule  # noqa: E402
from ocishim.verify.check import Difference, check_program  # noqa: E402
from ocishim.verify.meaning import Meaning, Refused  # noqa: E402
from ocishim.verify.regions import Undecidable  # noqa: E402

U32 = 0xFFFFFFFF
U64 = 2**64 - 1
OPS = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT",
       "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ")
# Values around the 32-bit seam and with both words set: where merging goes wrong.
VALUES = (0, 1, 5, 10, 0xFF, 0x7FFFFFFF, 0x80000000, U32, 2**32, 2**32 + 5, 2**32 + 10,
          0x5_00000005, 0x1_FFFFFFFF, 2**63, U64)
MASKS = (0xF, 0xFF00, U32, 2**32 + 0xF, 0xF_0000000F, U64)
ACTIONS = (("SCMP_ACT_ALLOW", None), ("SCMP_ACT_ERRNO", errno.EACCES),
           ("SCMP_ACT_ERRNO", errno.EINVAL), ("SCMP_ACT_TRAP", None))
DEFAULTS = (("SCMP_ACT_ERRNO", None), ("SCMP_ACT_ALLOW", None))
ARCH_SETS = ((), ("SCMP_ARCH_X86",), ("SCMP_ARCH_X32",), ("SCMP_ARCH_AARCH64",),
             ("SCMP_ARCH_X86", "SCMP_ARCH_X32"))
NATIVE = BY_NAME["x86_64"]


@dataclass(frozen=True)
class Finding:
    profile: Profile
    differences: tuple[Difference, ...]

    def shape(self) -> str:
        """The rule set with values left out: one report per shape."""
        rules = [(r.action, r.errno_ret, tuple((c.index, c.op) for c in r.args)) for r in self.profile.syscalls]
        return repr((self.profile.default_action, self.profile.architectures, rules))


def draw_cond(rnd: random.Random) -> ArgCond:
    op = rnd.choice(OPS)
    index = rnd.randrange(3)
    if op == "SCMP_CMP_MASKED_EQ":
        mask = rnd.choice(MASKS)
        return ArgCond(index, mask, rnd.choice(VALUES) & mask, op)
    return ArgCond(index, rnd.choice(VALUES), 0, op)


def draw(rnd: random.Random, name: str) -> Profile:
    """A random rule set on one syscall."""
    default = rnd.choice(DEFAULTS)
    rules = []
    for i in range(rnd.randint(1, 3)):
        action = rnd.choice([a for a in ACTIONS if a != default])
        conds = tuple(draw_cond(rnd) for _ in range(rnd.randint(1, 2)))
        rules.append(Rule((name,), action[0], action[1], conds, f"syscalls[{i}]"))
    return Profile(default[0], default[1], rnd.choice(ARCH_SETS), syscalls=tuple(rules))


def differences(profile: Profile) -> tuple[Difference, ...] | None:
    """libseccomp's program against the meaning; None when there is nothing to compare
    (libseccomp refuses the rules, the meaning is refused, or the program is undecidable)."""
    try:
        meaning = Meaning(profile, compile_module.filter_arches(profile, NATIVE))
    except Refused:
        return None
    try:
        compiled = compile_module.compile_profile(profile, NATIVE)
    except OcishimError:
        return None  # a refusal (EEXIST) or the time limit: libseccomp's loop, another issue
    try:
        report = check_program(compiled.program, meaning, "libseccomp vs profile")
    except Undecidable:
        return None
    return tuple(d for d in report.differences if not d.known)


def _renumber(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    return tuple(r.replace(path=f"syscalls[{i}]") for i, r in enumerate(rules))


def smaller(profile: Profile) -> Iterator[Profile]:
    """Every profile one step simpler than profile: fewer arches, rules, conditions, smaller values."""
    for i in range(len(profile.architectures)):
        yield profile.replace(architectures=profile.architectures[:i] + profile.architectures[i + 1:])
    rules = list(profile.syscalls)
    for i in range(len(rules)):
        if len(rules) > 1:
            yield profile.replace(syscalls=_renumber(rules[:i] + rules[i + 1:]))
    for i, r in enumerate(rules):
        for j in range(len(r.args)):
            if len(r.args) > 1:
                args = r.args[:j] + r.args[j + 1:]
                yield profile.replace(syscalls=_renumber(rules[:i] + [r.replace(args=args)] + rules[i + 1:]))
        for j, c in enumerate(r.args):
            for simpler in _simpler_conds(c):
                args = r.args[:j] + (simpler,) + r.args[j + 1:]
                yield profile.replace(syscalls=_renumber(rules[:i] + [r.replace(args=args)] + rules[i + 1:]))
        if r.action != "SCMP_ACT_ALLOW" and profile.default_action != "SCMP_ACT_ALLOW":
            yield profile.replace(syscalls=_renumber(rules[:i] + [r.replace(action="SCMP_ACT_ALLOW",
                                                                          errno_ret=None)] + rules[i + 1:]))


def _simpler_conds(c: ArgCond) -> Iterator[ArgCond]:
    if c.index > 0:
        yield c.replace(index=c.index - 1)
    for v in sorted({0, 1, c.value & U32, c.value >> 32, c.value // 2}):
        if v < c.value:
            yield c.replace(value=v, value_two=c.value_two & v)
    if c.value_two:
        for v in sorted({0, c.value_two & U32, c.value_two >> 32}):
            if v < c.value_two:
                yield c.replace(value_two=v)
    if c.op != "SCMP_CMP_EQ" and c.op != "SCMP_CMP_MASKED_EQ":
        yield c.replace(op="SCMP_CMP_EQ")


def size(profile: Profile) -> tuple:
    return (len(profile.syscalls), sum(len(r.args) for r in profile.syscalls), len(profile.architectures),
            sum(c.value + c.value_two for r in profile.syscalls for c in r.args))


def shrink(profile: Profile) -> tuple[Profile, tuple[Difference, ...]]:
    """The smallest profile (greedy, by size()) that still differs."""
    found = differences(profile)
    assert found
    progress = True
    while progress:
        progress = False
        for candidate in sorted(smaller(profile), key=size):
            if size(candidate) >= size(profile):
                continue
            d = differences(candidate)
            if d:
                profile, found, progress = candidate, d, True
                break
    return profile, found


def describe(profile: Profile) -> str:
    lines = [f"default {profile.default_action}, arches x86_64 + {list(profile.architectures)}"]
    for r in profile.syscalls:
        conds = " && ".join(_cond_text(c) for c in r.args)
        action = r.action + (f"({errno.errorcode[r.errno_ret]})" if r.errno_ret else "")
        lines.append(f"  {r.path}: {r.names[0]} {action} if {conds}")
    return "\n".join(lines)


def _cond_text(c: ArgCond) -> str:
    sym = {"SCMP_CMP_EQ": "==", "SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=",
           "SCMP_CMP_GT": ">", "SCMP_CMP_GE": ">="}
    if c.op == "SCMP_CMP_MASKED_EQ":
        return f"a{c.index} & {c.value:#x} == {c.value_two:#x}"
    return f"a{c.index} {sym[c.op]} {c.value:#x}"


def _tests_module(name: str):
    """A helper of the test suite (tests/ is not a package)."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return __import__(name, fromlist=["_"])


def pfc_notes(finding: Finding) -> list[str]:
    """For each witness: whom libseccomp's PFC export agrees with."""
    pfc = _tests_module("verify.libseccomp_pfc")
    text = pfc.profile_pfc(finding.profile, NATIVE)
    out = []
    for d in finding.differences:
        w = d.witness
        says = pfc.answer(text, w.arch, w.nr, w.args)
        who = "the meaning" if says == d.want else "the program" if says == d.got else f"neither ({says:#x})"
        out.append(f"PFC agrees with {who}")
    return out


def kernel_notes(finding: Finding) -> list[str]:
    """For each witness: the kernel's answer under libseccomp's program (neutralised)."""
    harness = _tests_module("kernel.harness")
    program = compile_module.compile_profile(finding.profile, NATIVE).program
    calls, out = [], []
    for d in finding.differences:
        w = d.witness
        if w.arch not in ("x86_64", "x86", "x32"):
            out.append(f"not runnable here ({w.arch})")
            continue
        calls.append(harness.Call(w.nr, w.args, "i386" if w.arch == "x86" else "x86_64"))
        out.append("")
    answers = iter(harness.kernel_results(program, calls))
    return [note or ("kernel confirms" if (k := next(answers)) == d.got else f"kernel says {k:#x}!")
            for note, d in zip(out, finding.differences)]


def hunt(count: int, seed: int, name: str = "personality") -> list[Finding]:
    rnd = random.Random(seed)
    shapes: dict[str, Finding] = {}
    for _ in range(count):
        profile = draw(rnd, name)
        if not differences(profile):
            continue
        small, found = shrink(profile)
        finding = Finding(small, found)
        shapes.setdefault(finding.shape(), finding)
    return list(shapes.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pfc", action="store_true", help="compare each witness with libseccomp's PFC export")
    parser.add_argument("--kernel", action="store_true", help="run each witness on the kernel")
    args = parser.parse_args(argv)
    compile_module.COMPILE_TIMEOUT = 3.0
    findings = hunt(args.count, args.seed)
    records = []
    for f in findings:
        notes = [[] for _ in f.differences]
        for wanted, fn in ((args.pfc, pfc_notes), (args.kernel, kernel_notes)):
            if wanted:
                for n, note in zip(notes, fn(f)):
                    n.append(note)
        records.append((f, notes))
    if args.json:
        print(json.dumps([{"profile": describe(f.profile),
                           "differences": [dict(d.as_json(), notes=n) for d, n in zip(f.differences, notes)]}
                          for f, notes in records], indent=1))
    else:
        for f, notes in records:
            print(describe(f.profile))
            for d, n in list(zip(f.differences, notes))[:4]:
                print("    " + d.text() + "".join(f"  [{x}]" for x in n))
            print()
    print(f"{len(findings)} shapes from {args.count} rule sets", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
