"""The kernel's user-notification interface (seccomp_unotify(2)), without anything else.

Buffers are sized from seccomp(SECCOMP_GET_NOTIF_SIZES), as the man page asks, and
RECV's buffer is zeroed before each call (newer kernels refuse a dirty one). The
agent only ever sends an error: never SECCOMP_USER_NOTIF_FLAG_CONTINUE, never a value.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from .. import libseccomp, syscalls

SECCOMP_GET_NOTIF_SIZES = 3


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("!") << 8) | nr


_WRITE, _READ = 1, 2
NOTIF = struct.Struct("=QII64s")  # id, pid, flags, seccomp_data
RESP = struct.Struct("=QqiI")  # id, val, error, flags
IOCTL_RECV = _ioc(_READ | _WRITE, 0, NOTIF.size)
IOCTL_SEND = _ioc(_READ | _WRITE, 1, RESP.size)
IOCTL_ID_VALID = _ioc(_WRITE, 2, 8)  # _IOW since 5.17; the kernel still takes the old _IOR
IOCTL_SET_FLAGS = _ioc(_WRITE, 4, 8)  # Linux 6.6
FD_SYNC_WAKE_UP = 1  # SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP

LISTENER_LINK = "anon_inode:seccomp notify"


@dataclass(frozen=True)
class Sizes:
    notif: int
    resp: int
    data: int


def notif_sizes() -> Sizes:
    """The kernel's sizes of seccomp_notif, seccomp_notif_resp and seccomp_data."""
    libc = ctypes.CDLL(None, use_errno=True)
    nr = syscalls.resolve(libseccomp.native().name, "seccomp")
    buf = (ctypes.c_uint16 * 3)()
    if nr is None or libc.syscall(ctypes.c_long(nr), ctypes.c_uint(SECCOMP_GET_NOTIF_SIZES),
                                  ctypes.c_uint(0), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SECCOMP_GET_NOTIF_SIZES): {os.strerror(err)}")
    return Sizes(buf[0], buf[1], buf[2])


def is_listener(fd: int) -> bool:
    """Whether fd is a seccomp listener (what the runtime should have sent)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == LISTENER_LINK
    except OSError:
        return False


@dataclass(frozen=True)
class Notification:
    id: int
    pid: int
    data: bytes  # struct seccomp_data, 64 bytes in host order

    @property
    def nr(self) -> int:
        return struct.unpack_from("=i", self.data, 0)[0]

    @property
    def arch(self) -> int:
        return struct.unpack_from("=I", self.data, 4)[0]

    @property
    def args(self) -> tuple[int, ...]:
        return struct.unpack_from("=6Q", self.data, 16)


class Channel:
    """RECV and SEND on listener fds with preallocated buffers (the agent's hot path)."""

    def __init__(self, sizes: Sizes) -> None:
        size = max(sizes.notif, NOTIF.size)
        self._zero = bytes(size)
        self._recv = bytearray(size)
        self._send = bytearray(max(sizes.resp, RESP.size))

    def recv(self, fd: int) -> Notification | None:
        """One pending notification, or None when it went away (the caller was killed)."""
        self._recv[:] = self._zero
        try:
            fcntl.ioctl(fd, IOCTL_RECV, self._recv, True)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
                return None
            raise
        nid, pid, _flags, data = NOTIF.unpack_from(self._recv)
        return Notification(nid, pid, data)

    def send_error(self, fd: int, nid: int, err: int) -> bool:
        """Answer notification nid with -err (1 <= err <= 4095); False if it is gone."""
        if not 0 < err <= 4095:
            raise ValueError(f"the agent only answers errors: {err}")
        RESP.pack_into(self._send, 0, nid, 0, -err, 0)
        try:
            fcntl.ioctl(fd, IOCTL_SEND, self._send, False)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINPROGRESS):
                return False
            raise
        return True


def id_valid(fd: int, nid: int) -> bool:
    """Whether notification nid is still pending: what was read from /proc is the caller's."""
    try:
        fcntl.ioctl(fd, IOCTL_ID_VALID, struct.pack("=Q", nid))
    except OSError:
        return False
    return True


def sync_wake_up(fd: int) -> bool:
    """Ask the kernel to wake the caller on the agent's CPU when answered (Linux 6.6+).

    Each notified call is a round trip between two tasks; a synchronous wake-up spares
    the scheduler's migration and halves the latency on a busy machine. False (and no
    harm) where the kernel does not have it.
    """
    try:
        fcntl.ioctl(fd, IOCTL_SET_FLAGS, FD_SYNC_WAKE_UP)  # the flags by value, not a pointer
    except OSError:
        return False
    return True
