"""Make a filter safe to ask the kernel about: every answer becomes an errno.

To learn what the kernel's seccomp answers for a syscall without running the syscall,
a copy of the filter is loaded whose only actions are SECCOMP_RET_ERRNO: the kernel
then returns before the syscall does anything. Each distinct return value that is not
ERRNO (ALLOW, KILL, TRAP, TRACE(n)...) is replaced by ERRNO(marker), with markers taken
from errno numbers no kernel uses (MARKER_FIRST..MAX_ERRNO), so the errno the process
observes tells which original return the filter chose.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..actions import MAX_ERRNO, RET_ACTION_FULL, RET_DATA, RET_ERRNO
from ..errors import BpfError
from .insn import RET, Insn, K, bpf_class, ret

# Linux errnos end near 135 (kernel-internal ones at 512-530); 4000 and up is unused and,
# being at most MAX_ERRNO, survives the kernel's clamp.
MARKER_FIRST = 4000
MARKERS = range(MARKER_FIRST, MAX_ERRNO + 1)


class CannotNeutralize(BpfError, ValueError):
    """The program has a return that cannot be rewritten statically; `where` is `insn N`."""


def is_errno(value: int) -> bool:
    """True when the kernel treats the return value as SECCOMP_RET_ERRNO."""
    return value & RET_ACTION_FULL == RET_ERRNO


def kernel_view(value: int) -> int:
    """The return value as the kernel applies it: ERRNO data above MAX_ERRNO becomes MAX_ERRNO.

    This is what kernel_answer reports for a filter returning `value`; compare emulator
    results through it.
    """
    if is_errno(value):
        return RET_ERRNO | min(value & RET_DATA, MAX_ERRNO)
    return value


def neutralize(program: Sequence[Insn]) -> tuple[tuple[Insn, ...], dict[int, int]]:
    """A copy of program whose returns are all ERRNO, and the map marker errno -> original return.

    Markers are given in order of first appearance, skipping any errno the program
    itself returns (after the kernel's clamp), so an observed errno is never ambiguous.
    """
    used: set[int] = set()
    for pc, insn in enumerate(program):
        if bpf_class(insn.code) != RET:
            continue
        if insn.code != RET | K:
            # RET A (or the invalid RET X): the value is only known at run time.
            raise CannotNeutralize(f"insn {pc}", "a return of the accumulator cannot be "
                                   "rewritten to a marker errno")
        if is_errno(insn.k):
            used.add(min(insn.k & RET_DATA, MAX_ERRNO))
    free_list = [m for m in MARKERS if m not in used]
    free = iter(free_list)

    marker_of: dict[int, int] = {}
    out: list[Insn] = []
    for pc, insn in enumerate(program):
        if bpf_class(insn.code) == RET and not is_errno(insn.k):
            marker = marker_of.get(insn.k)
            if marker is None:
                marker = next(free, None)
                if marker is None:
                    raise CannotNeutralize(
                        f"insn {pc}", f"more than {len(free_list)} distinct non-ERRNO "
                        "return values: no marker errno left")
                marker_of[insn.k] = marker
            insn = ret(RET_ERRNO | marker)
        out.append(insn)
    return tuple(out), {m: v for v, m in marker_of.items()}


def kernel_answer(errno_or_ret: int, markers: Mapping[int, int]) -> int:
    """The seccomp return value behind what a syscall through a neutralized filter observed.

    `errno_or_ret` is the errno (ERRNO(0) makes the syscall return 0, hence 0 too).
    A marker maps back to the original return; any other errno e to RET_ERRNO | e.
    """
    if not 0 <= errno_or_ret <= MAX_ERRNO:
        # Anything else means the syscall ran: the filter was not neutralized.
        raise ValueError(f"{errno_or_ret} is not an errno a seccomp filter can return")
    if errno_or_ret in markers:
        return markers[errno_or_ret]
    return RET_ERRNO | errno_or_ret
