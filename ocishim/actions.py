"""Seccomp return actions, comparison operators and filter flags: one table each."""

from __future__ import annotations

import errno as _errno

from .record import Record


# SECCOMP_RET_* values (linux/seccomp.h). The low 16 bits carry data.
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF

MAX_ERRNO = 4095
EPERM = _errno.EPERM
ENOSYS = _errno.ENOSYS


class ActionSpec(Record):
    __slots__ = ("oci", "base", "takes_errno")
    oci: str
    base: int
    takes_errno: bool


ACTIONS: dict[str, ActionSpec] = {
    spec.oci: spec
    for spec in (
        ActionSpec("SCMP_ACT_KILL", RET_KILL_THREAD, False),
        ActionSpec("SCMP_ACT_KILL_PROCESS", RET_KILL_PROCESS, False),
        ActionSpec("SCMP_ACT_KILL_THREAD", RET_KILL_THREAD, False),
        ActionSpec("SCMP_ACT_TRAP", RET_TRAP, False),
        ActionSpec("SCMP_ACT_ERRNO", RET_ERRNO, True),
        ActionSpec("SCMP_ACT_TRACE", RET_TRACE, True),
        ActionSpec("SCMP_ACT_ALLOW", RET_ALLOW, False),
        ActionSpec("SCMP_ACT_LOG", RET_LOG, False),
        ActionSpec("SCMP_ACT_NOTIFY", RET_USER_NOTIF, False),
    )
}


def action_value(oci: str, errno_ret: int | None) -> int:
    """The SECCOMP_RET_* value of an OCI action; errno defaults to EPERM as the spec says."""
    spec = ACTIONS[oci]
    if not spec.takes_errno:
        return spec.base
    return spec.base | (EPERM if errno_ret is None else errno_ret)


# Precedence of the kernel when several filters answer (highest first); also names.
_RET_NAMES = (
    (RET_KILL_PROCESS, "KILL_PROCESS"),
    (RET_KILL_THREAD, "KILL_THREAD"),
    (RET_TRAP, "TRAP"),
    (RET_ERRNO, "ERRNO"),
    (RET_USER_NOTIF, "NOTIFY"),
    (RET_TRACE, "TRACE"),
    (RET_LOG, "LOG"),
    (RET_ALLOW, "ALLOW"),
)
_NAME_OF = dict(_RET_NAMES)


def strictness(ret: int) -> int:
    """Rank of an answer by the kernel's precedence: higher is stricter; any two ERRNOs tie.

    Unknown actions rank as KILL_PROCESS, which is what the kernel makes of them.
    """
    if ret & RET_ACTION_FULL == RET_KILL_PROCESS:
        return len(_RET_NAMES)
    base = ret & 0x7FFF0000
    for rank, (value, _) in enumerate(reversed(_RET_NAMES)):
        if value == base:
            return rank
    return len(_RET_NAMES)


def errno_name(value: int) -> str:
    return _errno.errorcode.get(value, str(value))


def describe(ret: int) -> str:
    """Name a SECCOMP_RET_* value the way explain and emu print it: ERRNO(EPERM), TRACE(5), ALLOW."""
    full = ret & RET_ACTION_FULL
    data = ret & RET_DATA
    if full == RET_KILL_PROCESS:
        return "KILL_PROCESS"
    base = ret & 0x7FFF0000
    name = _NAME_OF.get(base)
    if name is None:
        # The kernel treats unknown actions as KILL_PROCESS.
        return f"KILL_PROCESS(unknown 0x{ret:08x})"
    if base == RET_ERRNO:
        return f"ERRNO({errno_name(min(data, MAX_ERRNO))})"
    if base == RET_TRACE:
        return f"TRACE({data})"
    return name


# SCMP_CMP_* operators: libseccomp enum values.
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# SECCOMP_FILTER_FLAG_* (linux/seccomp.h); the OCI spelling is the kernel's.
FILTER_FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1 << 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
    "SECCOMP_FILTER_FLAG_NEW_LISTENER": 1 << 3,
    "SECCOMP_FILTER_FLAG_TSYNC_ESRCH": 1 << 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 1 << 5,
}


def flags_value(names) -> int:
    value = 0
    for name in names:
        value |= FILTER_FLAGS[name]
    return value
