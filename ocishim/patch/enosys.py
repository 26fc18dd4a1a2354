"""The ENOSYS set E(A) of semantics.md, per arch and mode, as ranges of syscall numbers."""

from __future__ import annotations

import bisect
from typing import Iterable

from .. import syscalls
from ..actions import (ENOSYS, RET_ACTION_FULL, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_LOG,
                       RET_TRACE)
from ..arch import ARM_PRIVATE_BASE, X32_SYSCALL_BIT, nr_domain
from ..modes import MODES, Mode, Version, parse_kernel, parse_mode  # noqa: F401 (re-exported)

# x32's own numbers (x32 compat range 512-547); runc's maximum must not count them.
X32_COMPAT = range(X32_SYSCALL_BIT + 512, X32_SYSCALL_BIT + 548)


domain = nr_domain


def stub_applies(default_action: int, emulate: Version | None) -> bool:
    """Rule 2: no stub when the default lets calls through or already answers ENOSYS."""
    if emulate is not None:
        return True
    if default_action == RET_ERRNO | ENOSYS:
        return False
    if default_action & RET_ACTION_FULL == RET_KILL_PROCESS:
        return True
    return default_action & 0x7FFF0000 not in (RET_ALLOW, RET_LOG, RET_TRACE)


def _max_named(arch: str, named: Iterable[int]) -> int | None:
    candidates = [nr for nr in named
                  if not (arch == "arm" and nr >= ARM_PRIVATE_BASE)
                  and not (arch == "x32" and nr in X32_COMPAT)]
    return max(candidates) if candidates else None


def in_enosys(arch: str, nr: int, named: frozenset[int], mode: Mode,
              emulate: Version | None, baseline: Version | None, maximum: int | None,
              mode_applies: bool = True) -> bool:
    """Whether nr is in E(A) (one number; `enosys_ranges` is the fast form).

    `mode_applies` is False when rule 2 takes the mode's own set away (a default that
    lets calls through): then only --emulate-kernel adds numbers.
    """
    since = syscalls.since(arch, nr)
    if emulate is not None and (since is None or since > emulate):
        return True
    if nr in named or mode.kind == "off" or not mode_applies:
        return False
    if arch in ("s390", "s390x") and nr == 0:
        return True  # unknown multiplexed syscalls arrive as nr 0
    if mode.kind == "unnamed":
        return True
    if mode.kind == "max":
        return maximum is not None and nr > maximum
    return since is None or baseline is None or since > baseline  # auto, kernel:X.Y


def baseline_of(arch: str, named: frozenset[int], mode: Mode) -> Version | None:
    """The kernel version a profile is taken to know: its newest named syscall, or the mode's."""
    if mode.kind == "kernel":
        return mode.kernel
    if mode.kind != "auto":
        return None
    versions = [v for v in (syscalls.since(arch, nr) for nr in named) if v is not None]
    if versions:
        return max(versions)
    # A profile that names nothing on this arch tells no age: only unknown numbers.
    return max(syscalls.since(arch, nr) for nr in syscalls.numbers(arch))


def enosys_ranges(arch: str, named: frozenset[int], mode: Mode, default_action: int,
                  emulate: Version | None = None) -> tuple[tuple[int, int], ...]:
    """E(A) for arch as sorted, disjoint, inclusive ranges inside domain(arch)."""
    if (mode.kind == "off" and emulate is None) or not stub_applies(default_action, emulate):
        return ()
    lo, hi = domain(arch)
    baseline = baseline_of(arch, named, mode)
    maximum = _max_named(arch, named) if mode.kind == "max" else None
    # Between two consecutive interesting numbers, every nr gets the same answer,
    # so each gap is decided by one representative.
    points = set(syscalls.numbers(arch)) | set(named) | {lo, hi}
    if maximum is not None and maximum < hi:
        points.add(maximum + 1)
    if arch in ("s390", "s390x"):
        points |= {0, 1}
    points = sorted(p for p in points if lo <= p <= hi)
    ranges: list[list[int]] = []

    def add(a: int, b: int) -> None:
        if ranges and ranges[-1][1] == a - 1:
            ranges[-1][1] = b
        else:
            ranges.append([a, b])

    args = (named, mode, emulate, baseline, maximum, stub_applies(default_action, None))
    for i, p in enumerate(points):
        if in_enosys(arch, p, *args):
            add(p, p)
        nxt = points[i + 1] if i + 1 < len(points) else hi + 1
        if p + 1 <= nxt - 1 and in_enosys(arch, p + 1, *args):
            add(p + 1, nxt - 1)
    return tuple((a, b) for a, b in ranges)


def contains(ranges: tuple[tuple[int, int], ...], nr: int) -> bool:
    """nr in one of ranges, which are sorted and disjoint (as enosys_ranges makes them)."""
    i = bisect.bisect_right(ranges, (nr, 0xFFFFFFFF)) - 1
    return i >= 0 and ranges[i][0] <= nr <= ranges[i][1]
