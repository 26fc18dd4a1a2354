"""What the host libseccomp knows, through pyseccomp: version, arches, syscall names."""

from __future__ import annotations

import ctypes
import errno
import functools

import pyseccomp

from .arch import ARCHES, Arch

_lib = pyseccomp._libseccomp  # pyseccomp leaves these two without prototypes


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
_lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
_lib.seccomp_version.argtypes = ()
_lib.seccomp_version.restype = ctypes.POINTER(_Version)

NR_SCMP_ERROR = -1
# The oldest libseccomp ocishim builds filters with: 2.5.0 brought the binary-tree
# optimisation, user notification and the socket/IPC handling the patcher relies on.
MINIMUM = (2, 5, 0)


@functools.cache
def version() -> tuple[int, int, int]:
    v = _lib.seccomp_version().contents
    return (v.major, v.minor, v.micro)


def require() -> None:
    """Fail with a clear message when the loaded libseccomp is older than MINIMUM."""
    from .errors import SystemFailure

    found = version()
    if found < MINIMUM:
        raise SystemFailure("libseccomp", f"found version {'.'.join(map(str, found))} "
                                          f"({pyseccomp._libseccomp_path}); ocishim needs "
                                          f"{'.'.join(map(str, MINIMUM))} or newer")


def resolve_name(arch: Arch, name: str) -> int:
    """libseccomp's number for name on arch: >= 0 real, -1 unknown, < -1 a pseudo number."""
    return _lib.seccomp_syscall_resolve_name_arch(arch.token, name.encode())


def knows(arch: Arch, name: str) -> bool:
    """True when the host libseccomp resolves name on arch to anything but 'unknown'."""
    return resolve_name(arch, name) != NR_SCMP_ERROR


@functools.cache
def supported_arches() -> tuple[Arch, ...]:
    """The arches this libseccomp can put in a filter (it has a table for them)."""
    out = []
    for a in ARCHES:
        # An arch libseccomp lacks resolves nothing, not even read.
        if _lib.seccomp_syscall_resolve_name_arch(a.token, b"read") != NR_SCMP_ERROR or \
                _lib.seccomp_syscall_resolve_name_arch(a.token, b"exit") != NR_SCMP_ERROR:
            out.append(a)
    return tuple(out)


def native() -> Arch:
    from .arch import BY_TOKEN

    return BY_TOKEN[pyseccomp.system_arch()]


def oserror_text(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))
