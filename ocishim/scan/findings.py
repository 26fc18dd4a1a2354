"""For each syscall an image's libc or Go runtime needs ENOSYS for: the answer before
(the plain runtime) and after ocishim, and whether the function breaks.

Before: the plain runtime with the host's libseccomp (or the one given with
--host-libseccomp): crun loads libseccomp's program for the profile, without the rules
for names its libseccomp cannot resolve; runc the same behind its stub (ENOSYS above
the highest number named, hostlib.py).
After: crun takes ocishim's program through its annotation, exactly; runc gets the
profile plus ocishim's ERRNO(ENOSYS) rule (integrations/config.py), which its own
libseccomp compiles and its own stub precedes.

A function breaks when the answer is an error other than ENOSYS (or a kill or trap):
ENOSYS is what every caller expects from a kernel without the syscall. An answer that
depends on the arguments is reported as such and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .. import hostlib, libseccomp, syscalls
from ..actions import ENOSYS, RET_ERRNO, describe
from ..arch import BY_NAME, Arch
from ..explain import DEPENDS, answer
from ..patch import Mode, Version, patch_profile
from ..profile.model import Profile
from .facts import Row

FINE = ("ALLOW", "LOG", "NOTIFY", "ERRNO(ENOSYS)")


def breaks(text: str) -> bool:
    """Whether a caller that falls back only on ENOSYS fails with this answer."""
    return not (text in FINE or text.startswith("TRACE") or text == DEPENDS)


@dataclass(frozen=True)
class Finding:
    arch: str
    syscall: str
    function: str
    runtime: str  # glibc 2.41, musl 1.2.3, go1.24.1
    before: str
    after: str
    if_eperm: str

    @property
    def breaks_before(self) -> bool:
        return breaks(self.before)

    @property
    def breaks_after(self) -> bool:
        return breaks(self.after)

    def as_json(self) -> dict:
        return {"arch": self.arch, "syscall": self.syscall, "function": self.function,
                "runtime": self.runtime, "before": self.before, "after": self.after,
                "breaks_before": self.breaks_before, "breaks_after": self.breaks_after,
                "if_eperm": self.if_eperm}


class Answers:
    """Before and after for one profile, mode, runtime and host libseccomp."""

    def __init__(self, profile: Profile, mode: Mode, emulate: Version | None, runtime: str,
                 host_version: str | None) -> None:
        from ..integrations.config import portable_names
        from ..patch.enosys import stub_applies

        self.runtime = runtime
        self.patched = patch_profile(profile, mode, emulate)
        self.off = patch_profile(profile, "off")
        self.default = self.patched.compiled.default_action
        self.resolve = hostlib.resolver(host_version)
        self.native = libseccomp.native()
        self.names = frozenset(n for rule in profile.syscalls for n in rule.names)
        rule, _ = portable_names(self.patched, set(self.names))
        self.rule = frozenset(rule) if stub_applies(self.default, emulate) else frozenset()

    def before(self, arch: Arch, nr: int, name: str) -> str:
        exact, _ = answer(self.off.program, arch, nr)
        return hostlib.plain_answer(self.runtime, self.names, exact, self.default, self.resolve,
                                    arch, self.native, nr, name)

    def after(self, arch: Arch, nr: int, name: str) -> str:
        if self.runtime == "crun":
            return answer(self.patched.program, arch, nr)[0]
        # runc: the profile plus ocishim's rule, compiled by runc's libseccomp.
        exact, _ = answer(self.off.program, arch, nr)
        if name in self.rule:
            exact = describe(RET_ERRNO | ENOSYS)
        return hostlib.plain_answer("runc", self.names | self.rule, exact, self.default, self.resolve,
                                    arch, self.native, nr, name)


def find(rows_by_arch: Sequence[tuple[str, str, Row]], answers: Answers) -> list[Finding]:
    """One finding per (arch, syscall, function) of the rows the image's code reaches.

    rows_by_arch: (arch, who, row), who naming the libc or runtime and its version.
    """
    out: dict[tuple[str, str, str], Finding] = {}
    filter_arches = {a.name for a in answers.patched.compiled.arches}
    for arch_name, who, row in rows_by_arch:
        if arch_name not in filter_arches or arch_name not in syscalls.arches():
            continue
        nr = syscalls.resolve(arch_name, row.syscall)
        if nr is None:
            continue  # the arch has no such syscall: the libc takes another path there
        arch = BY_NAME[arch_name]
        key = (arch_name, row.syscall, row.function)
        if key not in out:
            out[key] = Finding(arch_name, row.syscall, row.function, who, answers.before(arch, nr, row.syscall),
                               answers.after(arch, nr, row.syscall), row.if_eperm)
    return sorted(out.values(), key=lambda f: (f.arch, syscalls.resolve(f.arch, f.syscall) or 0, f.function))


def missing_arches(machines: Sequence[str], answers: Answers) -> list[Finding]:
    """Machines with binaries in the image that the filter does not carry: every call
    of those binaries gets the filter's bad-arch action (an i386 binary in an x86_64
    image needs the x86 sub-architecture)."""
    have = {a.name for a in answers.patched.compiled.arches}
    bad = describe(answers.patched.compiled.bad_arch_action)
    return [Finding(m, "*", f"every syscall of the {m} binaries (the filter has no {m})", "",
                    bad, bad, "the binaries are killed or fail at their first syscall")
            for m in machines if m not in have]
