"""Is one patched program anywhere weaker than another?

Rule 10 of semantics.md: annotations (the container's) may change the mode only where
every answer is at least as strict as the administrator's settings alone give. Two
programs patched from one compiled profile differ only in E(A): inside it the stub
answers ERRNO(ENOSYS), outside it libseccomp's program (or a rule block) answers. So
the comparison weighs, where the two E(A) differ, ERRNO against every answer the other
program can give there, for any arguments (bpf/reach). Where neither stub answers and
the programs' answer sets differ (config.rewrite compares a profile with and without a
rule), the candidate's weakest answer must be at least as strict as the baseline's
strongest.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..actions import ENOSYS, RET_ERRNO, describe, strictness
from ..bpf import reach
from ..arch import nr_domain
from .enosys import contains

if TYPE_CHECKING:
    from .stub import Patched

_ENOSYS_RET = RET_ERRNO | ENOSYS


@dataclass(frozen=True)
class Weakening:
    """nr in [lo, hi] on arch may get `weaker` from the candidate where the baseline gives `stronger`."""

    arch: str
    lo: int
    hi: int
    weaker: int
    stronger: int

    def __str__(self) -> str:
        where = f"{self.lo}" if self.lo == self.hi else f"{self.lo}..{self.hi}"
        return (f"{self.arch} syscall {where} would answer {_name(self.weaker)} "
                f"instead of {_name(self.stronger)}")


def _name(ret: int) -> str:
    return "any action" if ret == reach.ANY else describe(ret)


def _rank(ret: int, worst_case_weak: bool) -> int:
    if ret == reach.ANY:
        return -1 if worst_case_weak else 1 << 8
    return strictness(ret)


def weakenings(candidate: Patched, baseline: Patched) -> list[Weakening]:
    """Where candidate may answer less strictly than baseline; empty when it never does.

    Per arch and nr range: where one program's stub answers ENOSYS and the other's does
    not, every answer the other can give is weighed against ERRNO; where neither stub
    does and their programs' answers differ (the profiles themselves differ), the
    candidate's weakest must be at least as strict as the baseline's strongest.
    """
    found: list[Weakening] = []
    enosys = strictness(_ENOSYS_RET)
    for arch in baseline.compiled.arches:
        lo, hi = nr_domain(arch.name)
        mine = reach.spans(candidate.program, arch, lo, hi)
        theirs = reach.spans(baseline.program, arch, lo, hi)
        e_mine = candidate.enosys.get(arch.name, ())
        e_theirs = baseline.enosys.get(arch.name, ())
        ranges = [(s.lo, s.hi) for s in mine + theirs] + list(e_mine) + list(e_theirs)
        cuts = sorted({lo} | {c for a, b in ranges for c in (a, b + 1) if lo <= c <= hi})
        for i, start in enumerate(cuts):
            end = cuts[i + 1] - 1 if i + 1 < len(cuts) else hi
            in_mine, in_theirs = contains(e_mine, start), contains(e_theirs, start)
            a_mine, a_theirs = _at(mine, start), _at(theirs, start)
            if in_mine and in_theirs:
                continue
            if in_mine:
                strongest = max(a_theirs, key=lambda r: _rank(r, False))
                if _rank(strongest, False) > enosys:
                    found.append(Weakening(arch.name, start, end, _ENOSYS_RET, strongest))
            elif in_theirs:
                weakest = min(a_mine, key=lambda r: _rank(r, True))
                if _rank(weakest, True) < enosys:
                    found.append(Weakening(arch.name, start, end, weakest, _ENOSYS_RET))
            elif a_mine != a_theirs:
                weakest = min(a_mine, key=lambda r: _rank(r, True))
                strongest = max(a_theirs, key=lambda r: _rank(r, False))
                if _rank(weakest, True) < _rank(strongest, False):
                    found.append(Weakening(arch.name, start, end, weakest, strongest))
    return found


def _at(spans: tuple[reach.Span, ...], nr: int) -> frozenset[int]:
    """The answers of the span holding nr (spans partition the domain, sorted)."""
    return spans[bisect.bisect_right(spans, nr, key=lambda s: s.lo) - 1].answers
