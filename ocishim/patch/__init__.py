"""Patch a profile's program: the ENOSYS stub of semantics.md in front of libseccomp's output."""

from __future__ import annotations

from ..arch import Arch
from ..compile import Compiled, compile_profile
from ..errors import CompileError
from ..profile.model import Profile
from .enosys import Mode, Version, parse_kernel, parse_mode
from .stub import Patched, build

__all__ = ["Mode", "Patched", "Version", "build", "parse_kernel", "parse_mode", "patch_profile"]


def patch_profile(profile: Profile, mode: Mode | str = "unnamed", emulate: Version | None = None,
                  native: Arch | None = None, unknown_fail: bool | str = False) -> Patched:
    """Compile profile with libseccomp and prepend the stub for mode.

    unknown_fail: refuse names neither libseccomp nor the table knows; a string names who
    asked for that (a setting, an annotation), for the message.
    """
    if isinstance(mode, str):
        mode = parse_mode(mode)
    compiled: Compiled = compile_profile(profile, native)
    if unknown_fail and compiled.unknown:
        paths = {name: rule.path for rule in profile.syscalls for name in rule.names}
        first = compiled.unknown[0]
        who = unknown_fail if isinstance(unknown_fail, str) else "--unknown-syscall=fail"
        raise CompileError(paths.get(first, "syscalls"),
                           f"unknown syscall {first!r} ({who}); "
                           f"all unknown: {', '.join(compiled.unknown)}")
    return build(compiled, mode, emulate)
