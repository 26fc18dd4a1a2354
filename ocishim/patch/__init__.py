"""Patch a profile's program: the ENOSYS stub of semantics.md in front of libseccomp's output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .enosys import Mode, Version, parse_kernel, parse_mode

if TYPE_CHECKING:
    from ..arch import Arch
    from ..compile import Compiled
    from ..profile.model import Profile
    from .stub import Patched, build

__all__ = ["Mode", "Patched", "Version", "build", "parse_kernel", "parse_mode", "patch_profile"]


def __getattr__(name: str) -> Any:
    """Patched and build on first use: the stub imports the compiler and libseccomp, which
    the settings (they only need Mode) and a compiled-filter cache hit must not pay for."""
    if name in ("Patched", "build"):
        from . import stub

        return getattr(stub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def patch_profile(profile: Profile, mode: Mode | str = "unnamed", emulate: Version | None = None,
                  native: Arch | None = None, unknown_fail: bool | str = False,
                  check: bool = True) -> Patched:
    """Compile profile with libseccomp, prepend the stub for mode, and prove the result.

    unknown_fail: refuse names neither libseccomp nor the table knows; a string names who
    asked for that (a setting, an annotation), for the message.
    check: prove libseccomp's program and the patched one against the profile and repair
    libseccomp where it is weaker (patch.check); off only for tools that check themselves.
    """
    from ..compile import CompileJob
    from ..errors import CompileError

    if isinstance(mode, str):
        mode = parse_mode(mode)
    if check:
        # The checker is imported before the fork, so that the compile's child can check
        # libseccomp's program while this process builds the patched one and checks that.
        from .check import check_and_repair, checking_child

        job = CompileJob(profile, native, checking_child(profile))
    else:
        job = CompileJob(profile, native)
    try:
        from .stub import build  # while libseccomp compiles

        meaning = _meaning_ahead(profile, native) if check else None
        compiled: Compiled = job.compiled()
        if unknown_fail and compiled.unknown:
            paths = {name: rule.path for rule in profile.syscalls for name in rule.names}
            first = compiled.unknown[0]
            who = unknown_fail if isinstance(unknown_fail, str) else "--unknown-syscall=fail"
            raise CompileError(paths.get(first, "syscalls"),
                               f"unknown syscall {first!r} ({who}); "
                               f"all unknown: {', '.join(compiled.unknown)}")
        if not check:
            return build(compiled, mode, emulate)
        return check_and_repair(profile, compiled, mode, emulate, job, meaning)
    finally:
        job.close()


def _meaning_ahead(profile: Profile, native: Arch | None) -> Any:
    """The profile's meaning for the filter's arches, made while libseccomp compiles; None
    when it cannot be made (check_and_repair then makes it, and says why, in its order)."""
    from .. import libseccomp
    from ..compile import filter_arches
    from ..verify.meaning import Meaning

    try:
        return Meaning(profile, filter_arches(profile, native or libseccomp.native()))
    except Exception:
        return None
