"""Load a program into this process with seccomp(2), then execve: `ocishim exec`.

Everything that can fail, block or allocate is done before the filter is loaded: the
command is resolved, argv and envp are built as C arrays, the flags are checked
against the running kernel, the agent's socket is connected. After seccomp(2)
returns, the process makes only the calls of `post_load_calls` (integration/
test_exec_notify.py checks that list against strace). A filter that answers
USER_NOTIF to one of them would make this process wait for an answer to its own
call, forever while it still holds the only listener fd, so such a profile is refused
before anything is loaded; a watchdog timer covers what the check cannot foresee.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import os
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Sequence

from . import libseccomp, syscalls
from .actions import FILTER_FLAGS, RET_ACTION_FULL, RET_ALLOW, RET_LOG, RET_USER_NOTIF, describe
from .arch import Arch
from .bpf import reach
from .bpf.insn import Insn, encode
from .errors import ProfileError, SystemFailure, UsageError
from .profile.model import Profile

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
FLAG_NEW_LISTENER = FILTER_FLAGS["SECCOMP_FILTER_FLAG_NEW_LISTENER"]
FLAG_TSYNC = FILTER_FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]
# How long connecting to, and sending to, the agent may block; also the watchdog that
# ends the process if it is still short of execve that long after loading the filter.
HANDOFF_TIMEOUT = 5

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
    """Where a NEW_LISTENER fd goes: the profile's listenerPath, as runc sends it.

    `where` is the JSON path of listenerPath, for messages.
    """

    path: str
    metadata: str = ""
    where: str = "listenerPath"


# --- what this process does after the filter is loaded -----------------------------

@dataclass(frozen=True)
class PostLoadCall:
    """A syscall this module makes after seccomp(2) has returned, and why."""

    syscall: str
    why: str


# In the order they happen (x86_64, measured with strace; the test re-measures it).
HANDOFF_CALLS = (
    PostLoadCall("sendmsg", "to hand the listener fd to listenerPath"),
    PostLoadCall("close", "to close the listener fd and the agent's socket"),
    PostLoadCall("setitimer", "to disarm its watchdog timer"),
)
EXEC_CALLS = (PostLoadCall("execve", "to start the command"),)
FAILURE_CALLS = (
    PostLoadCall("write", "to report a failed execve or handoff"),
    PostLoadCall("exit_group", "to exit after a failed execve or handoff"),
)


def post_load_calls(listener: bool) -> tuple[PostLoadCall, ...]:
    """Every syscall exec_filtered can make once the filter is in place."""
    return (HANDOFF_CALLS if listener else ()) + EXEC_CALLS + FAILURE_CALLS


def _notify(program: Sequence[Insn], arch: Arch, nr: int) -> str | None:
    """None when program never answers USER_NOTIF to nr, else "always" or "for some arguments".

    Some arguments are enough: the loader's own (fds, pointers) are not known here.
    """
    found = reach.answers(program, arch, nr)
    notify = {ret for ret in found if ret == reach.ANY or ret & RET_ACTION_FULL == RET_USER_NOTIF}
    if not notify:
        return None
    return "always" if notify == found and reach.ANY not in found else "for some arguments"


def _source(profile: Profile | None, arch: Arch, nr: int, notify: bool) -> str:
    """The JSON path behind nr's answer: a NOTIFY rule's name (or any non-allowing rule's), else the default."""
    if profile is None:
        return "PROFILE"
    for rule in profile.syscalls:
        wanted = rule.action == "SCMP_ACT_NOTIFY" if notify else rule.action not in _PASS_ACTIONS
        if wanted:
            for i, name in enumerate(rule.names):
                if syscalls.resolve(arch.name, name) == nr:
                    return f"{rule.path}.names[{i}]" if rule.path else f"names[{i}]"
    return profile.field_path("defaultAction")


# Answers under which a handoff call does what the loader needs.
_PASS = (RET_ALLOW, RET_LOG)
_PASS_ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")


def refuse_self_notify(program: Sequence[Insn], listener: bool,
                       profile: Profile | None = None, arch: Arch | None = None) -> None:
    """ProfileError if program can answer USER_NOTIF to a call this module makes after loading it,
    or can refuse one of the handoff calls.

    With a listener, such a call waits for an answer: forever before the fd has left
    this process, and after that it asks the agent about ocishim's own call. Without
    one the kernel answers ENOSYS, which breaks execve or the error report. A refused
    handoff call would leave the process filtered with no agent and no way to report.
    """
    arch = arch or libseccomp.native()
    made = ", ".join(dict.fromkeys(c.syscall for c in post_load_calls(listener)))
    for call in post_load_calls(listener):
        nr = syscalls.resolve(arch.name, call.syscall)
        if nr is None:
            raise SystemFailure("ocishim exec", f"the syscall table has no {call.syscall} on {arch.name}")
        when = _notify(program, arch, nr)
        if when is not None:
            outcome = ("its own call would wait for an agent's answer, forever while the listener "
                       "fd is still in ocishim" if listener else
                       "without a listenerPath the kernel answers it ENOSYS")
            raise ProfileError(
                _source(profile, arch, nr, notify=True),
                f"NOTIFY on {call.syscall} ({arch.name} nr {nr}, {when}): ocishim exec calls "
                f"{call.syscall} itself after loading the filter, {call.why}, and {outcome}. "
                f"Refused: under ocishim exec, NOTIFY only syscalls it does not make after the "
                f"load ({made})")
        if call not in HANDOFF_CALLS:
            continue  # execve, and the failure report: their answers are the profile's business
        refused = sorted(ret for ret in reach.answers(program, arch, nr)
                         if ret == reach.ANY or ret & RET_ACTION_FULL not in _PASS)
        if refused:
            raise ProfileError(
                _source(profile, arch, nr, notify=False),
                f"the filter answers {'an unknown action' if refused[0] == reach.ANY else describe(refused[0])} to {call.syscall} ({arch.name} nr {nr}"
                f"{', for some arguments' if len(refused) < len(reach.answers(program, arch, nr)) else ''}), "
                f"which ocishim exec needs after loading the filter, {call.why}. Refused: with a "
                f"listenerPath, allow {', '.join(c.syscall for c in HANDOFF_CALLS)}")


def _agent_socket(listener: Listener) -> socket.socket:
    """A socket connected to listenerPath, whose connect and sends give up after HANDOFF_TIMEOUT.

    SO_SNDTIMEO rather than Python's settimeout: the socket stays blocking, so sendmsg
    after the load is one syscall and no poll.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", HANDOFF_TIMEOUT, 0))
    try:
        s.connect(listener.path)  # a unix connect waits SO_SNDTIMEO when the backlog is full
    except OSError as exc:
        s.close()
        reason = (f"timed out after {HANDOFF_TIMEOUT} s (is the agent accepting?)"
                  if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else exc.strerror or str(exc))
        raise SystemFailure(listener.where, f"cannot connect to {listener.path}: {reason}") from None
    return s


def _agent_message(listener: Listener) -> bytes:
    # The OCI seccomp agent protocol: the container process state as JSON, sent with
    # the listener fd attached (SCM_RIGHTS) on a unix stream socket.
    pid = os.getpid()
    state = {"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": pid,
             "metadata": listener.metadata,
             "state": {"ociVersion": "1.0.2", "id": f"ocishim-exec-{pid}",
                       "status": "creating", "pid": pid, "bundle": os.getcwd()}}
    return json.dumps(state).encode()


def _restore_signals() -> None:
    """Give the command the signal dispositions it would get from a shell.

    Python ignores SIGPIPE and SIGXFSZ, and ignored signals stay ignored across execve.
    Python's own SIGINT handler would run Python code between the load and execve.
    """
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def _die(message: str) -> None:
    """Report and exit with only write and exit_group: nothing of Python's shutdown runs."""
    os.write(2, message.encode(errors="replace"))
    os._exit(1)


def exec_filtered(program: Sequence[Insn], flags: int, argv: Sequence[str],
                  rootfs: str | None = None, env: dict[str, str] | None = None,
                  listener: Listener | None = None, profile: Profile | None = None) -> None:
    """Set no_new_privs, load program with flags, then execve argv. Returns only by raising.

    `profile`, when given, names the rule in the error for a NOTIFY the process would
    wait on itself (see refuse_self_notify).
    """
    env = dict(os.environ if env is None else env)
    refuse_self_notify(program, listener is not None, profile)
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
    agent: socket.socket | None = None
    message = b""
    if listener is not None:
        # Before the chroot: listenerPath is a host path, as with runc, whose agent
        # socket is connected from outside the container.
        message = _agent_message(listener)
        agent = _agent_socket(listener)
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
    # strerror may read message catalogs (files): look every text up now.
    strerror = {code: os.strerror(code) for code in errno.errorcode}

    sys.stdout.flush()
    sys.stderr.flush()
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemFailure("prctl", f"PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
    _restore_signals()
    if agent is not None:
        # The watchdog: SIGALRM (default action: terminate) ends a process that still
        # waits on something HANDOFF_TIMEOUT after this. Timers survive execve, so it
        # is disarmed just before it.
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, HANDOFF_TIMEOUT)
    # A collection could run finalizers (closing files) between the load and execve.
    gc.disable()
    rc = _seccomp(SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if rc < 0:
        err = ctypes.get_errno()
        signal.setitimer(signal.ITIMER_REAL, 0)
        gc.enable()
        raise SystemFailure("seccomp", f"loading the filter failed: {os.strerror(err)}")

    # The filter is in place: from here on, only the calls of post_load_calls.
    if agent is not None:
        assert listener is not None
        try:
            agent.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", rc))],
                          socket.MSG_NOSIGNAL)
        except OSError as exc:
            code = exc.errno or 0
            reason = (f"timed out after {HANDOFF_TIMEOUT} s" if code in (errno.EAGAIN, errno.EWOULDBLOCK)
                      else strerror.get(code, f"errno {code}"))
            _die(f"ocishim: {listener.where}: cannot send the listener fd to {listener.path}: {reason}\n")
        os.close(rc)
        agent.close()
        signal.setitimer(signal.ITIMER_REAL, 0)
    execve(c_path, c_argv, c_envp)
    code = ctypes.get_errno()
    _die(f"ocishim: {path}: execve failed: {strerror.get(code, f'errno {code}')}\n")
