"""The checks `ocishim verify` makes on one profile, callable from Python by the same name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..arch import Arch
from ..bpf.insn import Insn
from ..patch import Mode, Patched, Version, patch_profile
from ..patch.check import lacked, own_numbers
from ..profile.model import Profile
from .check import Report, check_program, check_rule1
from .meaning import Meaning


@dataclass(frozen=True)
class Verification:
    patched: Patched
    reports: tuple[Report, ...]

    @property
    def agrees(self) -> bool:
        return all(r.agrees for r in self.reports)


def verify(profile: Profile, mode: Mode | str = "unnamed", emulate: Version | None = None,
           native: Arch | None = None, program: Sequence[Insn] | None = None) -> Verification:
    """libseccomp's program against the profile, the patched program (with ocishim's
    repairs) against rule 1, and (with program) a program from elsewhere against the
    profile, ENOSYS inside E(A)."""
    patched = patch_profile(profile, mode, emulate, native=native)
    compiled = patched.compiled
    meaning = Meaning(profile, compiled.arches, bad_arch=compiled.bad_arch_action)
    reports = [
        check_program(compiled.program, meaning, "libseccomp vs profile", known=lacked(compiled)),
        check_rule1(patched.program, compiled.program, meaning, patched.enosys,
                    own_numbers(compiled, patched.repaired)),
    ]
    if program is not None:
        reports.append(check_program(program, meaning, "program vs profile", enosys=patched.enosys))
    return Verification(patched, tuple(reports))
