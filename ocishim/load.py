"""Load a program into this process with seccomp(2), then execve: `ocishim exec`.

Everything that can fail or allocate is done before the filter is loaded: the
command is resolved, argv and envp are built as C arrays, the flags are checked
against the running kernel. After seccomp(2) returns, the only call left is execve.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Sequence

from . import libseccomp, syscalls
from .actions import FILTER_FLAGS
from .bpf.insn import Insn, encode
from .errors import SystemFailure, UsageError

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
FLAG_NEW_LISTENER = FILTER_FLAGS["SECCOMP_FILTER_FLAG_NEW_LISTENER"]
FLAG_TSYNC = FILTER_FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _sys_seccomp() -> int:
    nr = syscalls.resolve(libseccomp.native().name, "seccomp")
    if nr is None:
        raise SystemFailure("seccomp", "this architecture has no seccomp(2)")
    return nr


def _seccomp(op: int, flags: int, arg) -> int:
    return _libc.syscall(ctypes.c_long(_sys_seccomp()), ctypes.c_uint(op), ctypes.c_uint(flags), arg)


def unsupported_flags(flags: int) -> int:
    """The subset of flags the running kernel does not know (0 when all are supported).

    seccomp(SET_MODE_FILTER, flag, NULL) fails with EFAULT when the kernel knows the
    flag (it got as far as reading the program) and EINVAL when it does not; nothing
    is installed either way.
    """
    missing = 0
    for bit in range(32):
        flag = 1 << bit
        if not flags & flag:
            continue
        rc = _seccomp(SECCOMP_SET_MODE_FILTER, flag, None)
        err = ctypes.get_errno()
        if rc == 0 or err != errno.EFAULT:
            missing |= flag
    return missing


def flags_combination_ok(flags: int) -> bool:
    """Whether the kernel takes these flags together (TSYNC with NEW_LISTENER needs TSYNC_ESRCH)."""
    rc = _seccomp(SECCOMP_SET_MODE_FILTER, flags, None)
    return rc != 0 and ctypes.get_errno() == errno.EFAULT


def flag_names(flags: int) -> list[str]:
    return [name for name, bit in FILTER_FLAGS.items() if flags & bit]


def resolve_command(cmd: str, env: dict[str, str]) -> str:
    """Find cmd the way execvp would, in the current root."""
    if "/" in cmd:
        return cmd
    for d in env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        path = os.path.join(d or ".", cmd)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise UsageError("CMD", f"{cmd!r} not found in PATH")


@dataclass(frozen=True)
class Listener:
    """Where a NEW_LISTENER fd goes: the profile's listenerPath, as runc sends it."""

    path: str
    metadata: str = ""


def _send_listener(fd: int, listener: Listener) -> None:
    # The OCI seccomp agent protocol: the container process state as JSON with the
    # listener fd attached (SCM_RIGHTS), on a unix stream socket.
    state = {"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": os.getpid(),
             "metadata": listener.metadata,
             "state": {"ociVersion": "1.0.2", "id": f"ocishim-exec-{os.getpid()}",
                       "status": "creating", "pid": os.getpid(), "bundle": os.getcwd()}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(listener.path)
        s.sendmsg([json.dumps(state).encode()],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    os.close(fd)


def exec_filtered(program: Sequence[Insn], flags: int, argv: Sequence[str],
                  rootfs: str | None = None, env: dict[str, str] | None = None,
                  listener: Listener | None = None) -> None:
    """Set no_new_privs, load program with flags, then execve argv. Returns only by raising."""
    env = dict(os.environ if env is None else env)
    missing = unsupported_flags(flags)
    if missing:
        raise SystemFailure("linux.seccomp.flags", "the running kernel does not support "
                            + ", ".join(flag_names(missing)))
    if flags and not flags_combination_ok(flags):
        raise UsageError("linux.seccomp.flags", "the kernel refuses this combination: "
                         + ", ".join(flag_names(flags)))
    if flags & FLAG_NEW_LISTENER and listener is None:
        raise UsageError("linux.seccomp.listenerPath",
                         "SECCOMP_FILTER_FLAG_NEW_LISTENER needs a listenerPath to send the fd to")
    if rootfs is not None:
        try:
            os.chroot(rootfs)
            os.chdir("/")
        except OSError as exc:
            raise SystemFailure(rootfs, f"cannot chroot: {exc.strerror}") from None
    path = resolve_command(argv[0], env)

    raw = encode(program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(len(program), ctypes.cast(buf, ctypes.c_void_p))
    c_path = path.encode()
    c_argv = (ctypes.c_char_p * (len(argv) + 1))(*[a.encode() for a in argv], None)
    env_items = [f"{k}={v}".encode() for k, v in env.items()]
    c_envp = (ctypes.c_char_p * (len(env_items) + 1))(*env_items, None)
    execve = _libc.execve
    execve.argtypes = (ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p))

    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemFailure("prctl", f"PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
    rc = _seccomp(SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if rc < 0:
        raise SystemFailure("seccomp", f"loading the filter failed: {os.strerror(ctypes.get_errno())}")
    if flags & FLAG_NEW_LISTENER:
        assert listener is not None
        _send_listener(rc, listener)  # the listener's syscalls are the agent's business
    execve(c_path, c_argv, c_envp)
    # Only reached when execve failed; the filter may make even this report fail.
    raise SystemFailure(path, f"execve failed: {os.strerror(ctypes.get_errno())}")
