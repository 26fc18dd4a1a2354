"""What the host libseccomp knows, through its Python binding: version, arches, syscall names.

Two bindings share one API: PyPI's pyseccomp (ctypes, what the venv installs) and
libseccomp's own Cython module `seccomp` (Debian's python3-seccomp, what the Debian
package depends on). `binding` is whichever is importable, pyseccomp first.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import sys
import types

from .startup import whole_site

# The soname every libseccomp 2.x has; ld.so resolves it as for any library (LD_LIBRARY_PATH
# included). filtercache.LIBSECCOMP_SONAME is the same name, for the cache-hit path.
SONAME = "libseccomp.so.2"


def _import_pyseccomp() -> types.ModuleType:
    """pyseccomp, imported without ctypes.util.

    pyseccomp asks ctypes.util.find_library for "c" and "seccomp" when it is imported:
    importing ctypes.util brings subprocess, shutil and tempfile, and each find_library
    runs `ldconfig -p`, together 15-30 ms of every cold build. Both answers are known
    without that: the soname for libseccomp, and the process's own symbols (dlopen(NULL),
    where libc's free is) for libc. Any other name goes to the real find_library. The
    stand-in is removed again once pyseccomp is loaded, which only uses it while loading.
    """
    def find_library(name: str) -> str | None:
        if name == "seccomp":
            return SONAME
        if name == "c":
            return None  # ctypes.CDLL(None): this process, libc included
        from importlib import import_module

        del sys.modules["ctypes.util"]
        try:
            return import_module("ctypes.util").find_library(name)
        finally:
            sys.modules["ctypes.util"] = stand_in

    saved_module = sys.modules.get("ctypes.util")
    saved_attr = ctypes.__dict__.get("util")
    stand_in = types.ModuleType("ctypes.util")
    stand_in.find_library = find_library  # type: ignore[attr-defined]
    sys.modules["ctypes.util"] = stand_in
    ctypes.util = stand_in  # type: ignore[attr-defined]
    try:
        import pyseccomp
    finally:
        for table, key, saved in ((sys.modules, "ctypes.util", saved_module), (ctypes.__dict__, "util", saved_attr)):
            if saved is None:
                table.pop(key, None)
            else:
                table[key] = saved
    return pyseccomp


# Started with -IS (ocishim/startup.py), `ocishim run` leaves site's set-up to here: the
# binding may be installed where a .pth file points.
whole_site()
try:
    binding = _import_pyseccomp()
except ImportError:
    import seccomp as binding  # type: ignore[no-redef]

from .arch import ARCHES, Arch

# pyseccomp's ctypes handle, or the same library by soname: the Cython module is linked
# against libseccomp.so.2, so dlopen returns the copy already loaded.
_LIB_PATH: str = getattr(binding, "_libseccomp_path", SONAME)
_lib = getattr(binding, "_libseccomp", None) or ctypes.CDLL(_LIB_PATH)


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


# Neither binding declares these two.
_lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
_lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
_lib.seccomp_version.argtypes = ()
_lib.seccomp_version.restype = ctypes.POINTER(_Version)

NR_SCMP_ERROR = -1
# Debian's module declares actions and arch tokens as C int, pyseccomp as unsigned.
_SIGNED = binding.Arch.X86_64 < 0
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
                                          f"({_LIB_PATH}); ocishim needs "
                                          f"{'.'.join(map(str, MINIMUM))} or newer")


def c_int(value: int) -> int:
    """A 32-bit action or arch token (unsigned, as ocishim keeps them) as the binding takes it."""
    return value - (1 << 32) if _SIGNED and value >= 1 << 31 else value


def resolve_name(arch: Arch, name: str) -> int:
    """libseccomp's number for name on arch: >= 0 real, -1 unknown, < -1 a pseudo number."""
    return _resolve(arch.token, name)


@functools.lru_cache(maxsize=None)
def _resolve(token: int, name: str) -> int:
    # The loaded library's table never changes: one ctypes call per (arch, name) is enough
    # (a build asks about the same names for every rule and every pending number).
    return _lib.seccomp_syscall_resolve_name_arch(token, name.encode())


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

    return BY_TOKEN[binding.system_arch()]


def oserror_text(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))
