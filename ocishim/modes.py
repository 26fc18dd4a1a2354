"""--enosys modes and kernel versions: what the settings, the annotations and the CLI name.

Read on every container start, before anything is compiled (and on a compiled-filter
cache hit, instead of it), so this module imports nothing but ocishim.errors and
ocishim.record: no re, no dataclasses, no syscall table. ocishim.patch and
ocishim.syscalls re-export it.
"""

from __future__ import annotations

from .errors import UsageError
from .record import Record

Version = tuple[int, int]  # (major, minor)

MODES = ("unnamed", "auto", "max", "off", "kernel:X.Y")
# KERNEL_VERSION() packs major and minor into 8 bits each: anything larger is no Linux.
KERNEL_PART_MAX = 255
_DIGITS = frozenset("0123456789")


class Mode(Record):
    """An --enosys mode: auto, unnamed, max, off, or kernel with a baseline version."""

    __slots__ = ("kind", "kernel")
    _defaults = {"kernel": None}
    kind: str
    kernel: Version | None

    def __str__(self) -> str:
        return f"kernel:{format_version(self.kernel)}" if self.kernel else self.kind


def parse_version(text: str) -> Version:
    """Parse "MAJOR.MINOR", such as "5.10", into (5, 10); a ValueError for anything else."""
    major, dot, minor = text.strip().partition(".")
    if not (dot and major and minor and _DIGITS.issuperset(major) and _DIGITS.issuperset(minor)):
        raise ValueError(f"bad kernel version {text!r}: expected MAJOR.MINOR, such as 5.10")
    numbers = int(major), int(minor)
    if not 1 <= numbers[0] <= KERNEL_PART_MAX or numbers[1] > KERNEL_PART_MAX:
        raise ValueError(f"{text!r} is not a Linux version: MAJOR is 1 to {KERNEL_PART_MAX} "
                         f"and MINOR 0 to {KERNEL_PART_MAX}, such as 5.10")
    return numbers


def format_version(version: Version) -> str:
    """Format (5, 10) as "5.10"."""
    major, minor = version
    return f"{major}.{minor}"


def parse_mode(text: str) -> Mode:
    """Parse an --enosys value; a bad one is a UsageError naming the flag."""
    if text in ("auto", "unnamed", "max", "off"):
        return Mode(text)
    if text.startswith("kernel:") and "\n" not in text:  # one line: "kernel:5.4\n" is no mode
        try:
            return Mode("kernel", parse_version(text[len("kernel:"):]))
        except ValueError as exc:
            raise UsageError("--enosys", str(exc)) from None
    raise UsageError("--enosys", f"unknown mode {text!r} (one of {', '.join(MODES)})")


def parse_kernel(text: str, flag: str = "--emulate-kernel") -> Version:
    """Parse a kernel version given for flag; a bad one is a UsageError naming it."""
    try:
        return parse_version(text)
    except ValueError as exc:
        raise UsageError(flag, str(exc)) from None
