"""Check every filter before it is used, and repair libseccomp where it is weaker (issue 9).

Each build runs two checks (verify.check), over every arch, nr and argument value:
- libseccomp's program against the profile's meaning;
- the patched program against rule 1: ENOSYS inside E(A), the meaning on the numbers
  ocishim compiles itself, libseccomp's answers everywhere else.

Where libseccomp's program differs from the profile on (arch, nr) and is not stricter
everywhere it differs, ocishim compiles that number's rules itself (patch.repair), and
the patched program is checked again. Where it is only stricter, it is kept (never
loosen) and a note says so. Where the written meaning is silent (rules of different
actions that overlap in ways semantics.md does not settle), or the check would pass its
budget, libseccomp's answer stands and a note says so. A repair that does not check, or
a stub that departs from rule 1, refuses the profile: no filter rather than a wrong one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from .. import libseccomp, syscalls
from ..actions import describe, strictness
from ..compile import Compiled, CompileJob
from ..errors import CompileError
from ..profile.model import Profile
from ..verify.check import Difference, Report, check_program, check_rule1
from ..verify.meaning import Meaning, OnNr, Refused
from ..verify.regions import Budget, Undecidable
from .enosys import Mode, Version

if TYPE_CHECKING:
    from .stub import Patched


# Regions the build's check may walk, cut or test: Docker's default profile takes about 1,900
# on three arches; a profile shaped to explode the check stops after about half a second.
BUDGET = 50_000


def _version() -> str:
    return ".".join(map(str, libseccomp.version()))


def lacked(compiled: Compiled) -> dict[tuple[str, int], str]:
    """(arch, nr) whose rules libseccomp dropped (it lacks the name) and ocishim compiles
    itself, with why: the known differences of libseccomp's program from the profile."""
    return {(p.arch, p.nr): f"libseccomp {_version()} lacks {p.name}; ocishim compiles its rules"
            for p in compiled.pending if not p.alias}


def own_numbers(compiled: Compiled, extra: Sequence[tuple[str, int]] = ()) -> dict[str, list[int]]:
    """arch -> the numbers whose code in the patched program is ocishim's (rule blocks for
    lacked names, and the extra ones it repaired): there rule 1 expects the meaning."""
    own: dict[str, list[int]] = {}
    for arch, nr in [(p.arch, p.nr) for p in compiled.pending] + list(extra):
        own.setdefault(arch, []).append(nr)
    return own


def _where(d: Difference) -> str:
    name = syscalls.name(d.witness.arch, d.witness.nr) if d.witness.arch else None
    return f"{d.witness.arch} {name or 'nr'}({d.witness.nr})"


def _refuse(profile: Profile, report: Report, why: str) -> CompileError:
    first = report.differences[0].text() if report.differences else report.undecided[0].text()
    return CompileError(profile.field_path("syscalls"), f"{why}: {first}")


def _check_libseccomp(profile: Profile, compiled: Compiled, meaning: Meaning | None = None) -> Report:
    if meaning is None:
        meaning = Meaning(profile, compiled.arches, bad_arch=compiled.bad_arch_action)
    return check_program(compiled.program, meaning, "libseccomp vs profile", known=lacked(compiled))


def checking_child(profile: Profile) -> Callable[[Compiled], Any]:
    """What the compile's child does once it has sent the program (compile.CompileJob): the
    check of libseccomp's program against the profile, on its own budget, while the parent
    builds and checks the patched program. Returns (report, regions spent)."""
    def then(compiled: Compiled) -> tuple[Report, int]:
        with Budget(BUDGET) as budget:
            report = _check_libseccomp(profile, compiled)
        return report, BUDGET - budget.left
    return then


def _both_checks(profile: Profile, compiled: Compiled, patched: Patched, meaning: Meaning,
                 job: CompileJob | None) -> tuple[Report, Report]:
    """libseccomp's program against the profile and the patched program against rule 1,
    within one budget of BUDGET regions for both; Undecidable past it.

    With a job whose child checked libseccomp's program meanwhile (checking_child), only
    rule 1 is checked here. Its report is the same as this process would make, and the two
    spent no more than BUDGET together; otherwise (the child failed, or the budget) both
    checks run here, in order, as they always did: the result never depends on the child.
    """
    own = own_numbers(compiled)
    if job is not None and job.runs_then:
        try:
            with Budget(BUDGET) as budget:
                first = check_rule1(patched.program, compiled.program, meaning, patched.enosys, own)
            spent = BUDGET - budget.left
        except Exception:
            first = None  # checked again below, after libseccomp's program, as always
        found = job.then_result() if first is not None else None
        if found is not None and found[1] + spent <= BUDGET:
            return found[0], first
    with Budget(BUDGET):
        lib = _check_libseccomp(profile, compiled, meaning)
        first = check_rule1(patched.program, compiled.program, meaning, patched.enosys, own)
    return lib, first


def check_and_repair(profile: Profile, compiled: Compiled, mode: Mode,
                     emulate: Version | None = None, job: CompileJob | None = None,
                     meaning: Meaning | None = None) -> Patched:
    """Build the patched filter for compiled and prove it; repair libseccomp where it is weaker.

    job: the compile of compiled, whose child checks libseccomp's program meanwhile
    (checking_child); without it, both checks run here.
    meaning: the profile's Meaning made ahead (while libseccomp compiled); used only where
    it is the one made here, for the filter's arches and bad-arch action.
    The result carries the repaired numbers and the notes for the log."""
    from dataclasses import replace  # Patched is a dataclass; imported with the stub, after the fork

    from .stub import build

    patched = build(compiled, mode, emulate)  # libseccomp's refusals first, naming the rule
    if meaning is None or meaning.profile is not profile or meaning.arches != compiled.arches \
            or meaning.bad_arch != compiled.bad_arch_action:
        try:
            meaning = Meaning(profile, compiled.arches, bad_arch=compiled.bad_arch_action)
        except Refused as exc:
            raise CompileError(profile.field_path("syscalls"), str(exc)) from None
    try:
        lib, first = _both_checks(profile, compiled, patched, meaning, job)
    except Undecidable as exc:
        # As every runtime does today: libseccomp's program unseen, but said plainly.
        return replace(patched, notes=(f"unchecked: {exc.message}; libseccomp's program is used "
                                       "as it is",))
    # Where rules with different actions overlap in ways semantics.md does not settle,
    # libseccomp's program is the only definition there is (rule 12): keep it, say so.
    unchecked = sorted({(u.witness.arch, u.witness.nr): u for u in lib.undecided + first.undecided}.items(),
                       key=lambda kv: (str(kv[0][0]), kv[0][1]))

    pending = {(p.arch, p.nr) for p in compiled.pending}
    stricter: dict[tuple[str, int], Difference] = {}
    wrong: dict[tuple[str, int], Difference] = {}
    for d in first.differences:
        if d.witness.arch is None or (d.witness.arch, d.witness.nr) not in pending:
            # the stub itself departs from rule 1: a bug in ocishim, never a filter to load
            raise _refuse(profile, first, "internal error: the patched filter departs from rule 1")
    # libseccomp's program, and ocishim's blocks for names it lacks (libseccomp's code too)
    for d in [d for d in lib.differences if not d.known] + list(first.differences):
        if d.witness.arch is None:
            continue
        key = (d.witness.arch, d.witness.nr)
        if strictness(d.got) > strictness(d.want):
            stricter.setdefault(key, d)
        else:
            wrong.setdefault(key, d)
    kept = {k: d for k, d in stricter.items() if k not in wrong}
    notes = [f"kept: {_where(d)}: libseccomp {_version()} answers {describe(d.got)} where the "
             f"profile says {describe(d.want)} (stricter), e.g. at {d.witness.text()}"
             for d in sorted(kept.values(), key=lambda d: (d.witness.arch, d.witness.nr))]
    notes += [f"unchecked: {u.witness.text()}: {u.reason}; libseccomp's answer stands"
              for _, u in unchecked]
    if not wrong:
        return replace(patched, notes=tuple(notes))

    repairs: dict[tuple[str, int], OnNr] = {}
    arches = {a.name: a for a in compiled.arches}
    for (arch, nr) in sorted(wrong):
        on = meaning.on(arches[arch], nr)
        repairs[(arch, nr)] = on if on is not None else OnNr(meaning.default, ())
    repaired = build(compiled, mode, emulate, repairs)
    try:
        with Budget(BUDGET):
            again = check_rule1(repaired.program, compiled.program, meaning, repaired.enosys,
                                own_numbers(compiled, list(repairs)))
    except Undecidable as exc:
        raise CompileError(profile.field_path("syscalls"), f"{wrong[min(wrong)].text()}, and ocishim's "
                           f"own code for these rules cannot be checked: {exc.message}") from None
    unsure = [u for u in again.undecided if (u.witness.arch, u.witness.nr) in repairs]
    if again.differences or unsure:
        rules = ", ".join(sorted({s.path for on in repairs.values() for s in on.sets}))
        raise _refuse(profile, again, f"libseccomp {_version()} compiles the rules {rules} wrongly, "
                                      "and ocishim's own code for them does not check either")
    for key, d in sorted(wrong.items()):
        who = "ocishim's rule block" if key in pending else f"libseccomp {_version()}"
        notes.append(f"repaired: {_where(d)}: {who} answered {describe(d.got)} where the profile "
                     f"says {describe(d.want)}, e.g. at {d.witness.text()}")
    return replace(repaired, repaired=tuple(sorted(repairs)), notes=tuple(notes))
