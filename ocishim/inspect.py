"""Read back the seccomp filters a running process has: `ocishim inspect`.

The kernel hands out a loaded filter only to a ptrace tracer that holds CAP_SYS_ADMIN
and runs without a filter of its own (PTRACE_SECCOMP_GET_FILTER), and only while the
tracee is in a ptrace-stop. So we attach with PTRACE_SEIZE, which unlike
PTRACE_ATTACH sends no SIGSTOP the process could see, stop it with PTRACE_INTERRUPT,
copy every filter and detach. The target never gets a signal, never sees a changed
state after we leave, and can still be traced (or trace itself) afterwards.

Hazards, each bounded: a process that already has a tracer refuses a second one
(checked first, for a clear message); a process that cannot reach a stop (a stuck
task in D state, one that exits under us) is waited for at most STOP_TIMEOUT, then
left; a signal that arrives while we hold the process is given back on detach.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from typing import Sequence

from .bpf.insn import INSN_SIZE, Insn, decode
from .errors import SystemFailure, UsageError

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_EVENT_STOP = 128
# How long a seized process may take to reach the stop PTRACE_INTERRUPT asks for.
STOP_TIMEOUT = 5.0
# waitpid flag: wait for any kind of child, threads included (linux/wait.h).
WALL = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def _ptrace(request: int, pid: int, addr: int = 0, data: int | ctypes.Array | None = 0) -> int:
    """ptrace(2); an OSError with the kernel's errno on failure."""
    if isinstance(data, ctypes.Array):
        data = ctypes.addressof(data)
    ctypes.set_errno(0)
    result = _libc.ptrace(request, pid, addr, data)
    if result == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, os.strerror(err))
    return result


def _status_field(pid: int, field: str) -> str | None:
    """One field of /proc/PID/status, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == field:
                    return value.strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SystemFailure(f"pid {pid}", f"cannot read /proc/{pid}/status: {exc.strerror}") from None
    return None


def _check_can_trace(pid: int) -> None:
    """Refuse early, with the reason, what the kernel would refuse less clearly."""
    if pid <= 0:
        raise UsageError("PID", f"not a process id: {pid}")
    if pid == os.getpid():
        raise UsageError("PID", "cannot inspect ocishim itself")
    tracer = _status_field(pid, "TracerPid")
    if tracer is None:
        raise UsageError("PID", f"no process {pid}")
    if tracer != "0":
        raise SystemFailure(f"pid {pid}", f"already traced by pid {tracer} (a debugger, strace, "
                                          "or the process itself): a second tracer is refused "
                                          "by the kernel")
    own = _status_field(os.getpid(), "Seccomp")
    if own not in (None, "0"):
        raise SystemFailure("inspect", "ocishim runs under a seccomp filter itself; the kernel "
                                       "hands out filters only to an unconfined tracer")


def _wait_for_stop(pid: int) -> int:
    """Wait until the seized pid is in a ptrace-stop; the signal to give back on detach."""
    deadline = time.monotonic() + STOP_TIMEOUT
    delay = 0.0005
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG | WALL)
        except ChildProcessError:
            raise SystemFailure(f"pid {pid}", "the process went away while being inspected") from None
        if got == pid:
            if os.WIFSTOPPED(status):
                sig = os.WSTOPSIG(status)
                event = status >> 16
                # An event stop (ours, or a group-stop) gives nothing back; a signal-delivery
                # stop holds a signal on its way in, which detach must deliver.
                return 0 if event == PTRACE_EVENT_STOP else sig
            raise SystemFailure(f"pid {pid}", "the process exited while being inspected")
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _read_one(pid: int, index: int) -> tuple[Insn, ...] | None:
    """Filter number index (0 = the first loaded), or None past the last one."""
    try:
        count = _ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, None)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # past the last filter
            return None
        if exc.errno == errno.EINVAL and index == 0 and _status_field(pid, "Seccomp") in ("0", "1"):
            return None  # seccomp off, or strict mode: no filters to read
        if exc.errno == errno.EMEDIUMTYPE:
            raise SystemFailure(f"pid {pid}", "the kernel kept no copy of the filter "
                                              "(built without CONFIG_CHECKPOINT_RESTORE?)") from None
        if exc.errno == errno.EACCES:
            raise SystemFailure(f"pid {pid}", "the kernel refused to hand out the filter "
                                              "(needs CAP_SYS_ADMIN and no seccomp filter on ocishim)") from None
        raise SystemFailure(f"pid {pid}", f"PTRACE_SECCOMP_GET_FILTER: {exc.strerror}") from None
    buf = ctypes.create_string_buffer(count * INSN_SIZE)
    got = _ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, buf)
    if got != count:  # filters never change once loaded; a different count is not ours to guess
        raise SystemFailure(f"pid {pid}", f"filter {index} changed length while being read")
    return decode(buf.raw, "host")


def _read_all(pid: int) -> list[tuple[Insn, ...]]:
    filters = []
    while (program := _read_one(pid, len(filters))) is not None:
        filters.append(program)
    return filters


def read_filters(pid: int) -> list[tuple[Insn, ...]]:
    """Every seccomp filter thread pid has, first loaded first; [] when it has none.

    The process is seized, interrupted, read and detached; it keeps running as before.
    """
    _check_can_trace(pid)
    try:
        _ptrace(PTRACE_SEIZE, pid, 0, 0)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise UsageError("PID", f"no process {pid}") from None
        if exc.errno == errno.EPERM:
            tracer = _status_field(pid, "TracerPid")
            why = f"already traced by pid {tracer}" if tracer not in (None, "0") else \
                "not permitted (needs CAP_SYS_PTRACE; yama ptrace_scope or an LSM may forbid it)"
            raise SystemFailure(f"pid {pid}", f"cannot trace: {why}") from None
        raise SystemFailure(f"pid {pid}", f"PTRACE_SEIZE: {exc.strerror}") from None
    give_back = 0
    try:
        _ptrace(PTRACE_INTERRUPT, pid, 0, 0)
        try:
            give_back = _wait_for_stop(pid)
        except TimeoutError:
            raise SystemFailure(f"pid {pid}", f"did not stop within {STOP_TIMEOUT:g} s "
                                              "(uninterruptible sleep?); left as it was") from None
        return _read_all(pid)
    finally:
        _detach(pid, give_back)


def _detach(pid: int, signal_number: int) -> None:
    """Let go of pid. Detaching from a task that never reached the stop fails (ESRCH):
    the kernel then unlinks it when this process exits, and clears the pending
    interrupt with the link, so the task never stops for us."""
    try:
        _ptrace(PTRACE_DETACH, pid, 0, signal_number)
    except ProcessLookupError:
        pass


def filters_of(pids: Sequence[int]) -> dict[int, list[tuple[Insn, ...]]]:
    """read_filters for each pid, in order."""
    return {pid: read_filters(pid) for pid in pids}
