"""Compile a profile into a BPF program with the host libseccomp (through pyseccomp).

The program is libseccomp's own output. What libseccomp cannot express is kept as data
for the patcher rather than dropped: rules whose names the host libseccomp does not
know but the project's syscall table does (`Compiled.pending`), and the set of numbers
the profile names on each arch (`Compiled.named`), which the ENOSYS stub needs.

libseccomp itself runs in a forked child with a time and a memory limit (`_in_child`):
libseccomp 2.5.4 loops forever inside seccomp_rule_add on some rule sets, and a profile
comes with the container, so without a limit a pod author could hang container creation.
"""

from __future__ import annotations

import gc
import os
import pickle
import resource
import select
import signal
import sys
import time
from typing import Any, Callable, Mapping, Sequence

from . import libseccomp, syscalls
from .libseccomp import binding as pyseccomp
from .actions import OPERATORS, action_value, flags_value
from .arch import BY_OCI, Arch, nr_domain, order
from .bpf import reach
from .bpf.insn import RET, K, Insn, decode
from .errors import CompileError, OcishimError, UsageError
from .profile.model import ArgCond, Profile, Rule
from .record import Record

_set = object.__setattr__  # Records' __init__: fields set once, then immutable

# Socket and SysV IPC calls: on arches with socketcall(2)/ipc(2) libseccomp resolves
# them to pseudo numbers and compiles them itself (direct call plus multiplexer).
MULTIPLEXED = frozenset(
    "socket bind connect listen accept getsockname getpeername socketpair send recv "
    "sendto recvfrom shutdown setsockopt getsockopt sendmsg recvmsg accept4 recvmmsg "
    "sendmmsg semop semget semctl semtimedop msgsnd msgrcv msgget msgctl shmat shmdt "
    "shmget shmctl".split()
)

# libseccomp takes ERRNO data up to 4094; the kernel would clamp larger values to 4095.
_LIBSECCOMP_MAX_ERRNO = 4094
_ERRNO_4095 = "4095 is refused by libseccomp (it takes 0..4094)"

# SCMP_FLTATR_CTL_OPTIMIZE = 2: a binary tree of syscalls per arch (libseccomp >= 2.5).
_OPTIMIZE_BINARY_TREE = 2


class PendingRule(Record):
    """A rule for (arch, nr) that the host libseccomp could not compile: its name is unknown to it."""

    # action: SECCOMP_RET_* value; path: JSON path of the rule; rule: the profile's rule,
    # for compile_proxy. alias: the rule names this number by a name libseccomp knows (an
    # alias of the lacked one): libseccomp compiled it into its program too, so the block
    # holds every rule on the number and answers the default itself instead of falling through.
    __slots__ = ("arch", "name", "nr", "action", "args", "path", "rule", "alias")

    def __init__(self, arch: str, name: str, nr: int, action: int, args: tuple[ArgCond, ...],
                 path: str, rule: Rule | None = None, alias: bool = False) -> None:
        _set(self, "arch", arch)
        _set(self, "name", name)
        _set(self, "nr", nr)
        _set(self, "action", action)
        _set(self, "args", args)
        _set(self, "path", path)
        _set(self, "rule", rule)
        _set(self, "alias", alias)


class Compiled(Record):
    """libseccomp's program for a profile, and what the patcher needs beside it."""

    # arches: in the filter, canonical order; flags: SECCOMP_FILTER_FLAG_* for seccomp(2).
    # named: arch name -> named(A): the numbers of every name a rule lists (by the project's
    # table), and every number libseccomp's program answers with anything but the default
    # action for some arguments (socketcall and ipc on x86, for one).
    # unknown: names neither the table nor libseccomp knows.
    __slots__ = ("program", "arches", "default_action", "bad_arch_action", "flags", "named", "pending",
                 "unknown", "warnings")

    def __init__(self, program: tuple[Insn, ...], arches: tuple[Arch, ...], default_action: int,
                 bad_arch_action: int, flags: int, named: Mapping[str, frozenset[int]],
                 pending: tuple[PendingRule, ...] = (), unknown: tuple[str, ...] = (),
                 warnings: tuple[str, ...] = ()) -> None:
        _set(self, "program", program)
        _set(self, "arches", arches)
        _set(self, "default_action", default_action)
        _set(self, "bad_arch_action", bad_arch_action)
        _set(self, "flags", flags)
        _set(self, "named", named)
        _set(self, "pending", pending)
        _set(self, "unknown", unknown)
        _set(self, "warnings", warnings)


def rule_conditions(args: tuple[ArgCond, ...]) -> tuple[tuple[ArgCond, ...], ...]:
    """The condition sets a rule adds, each one a separate libseccomp rule.

    libseccomp refuses two conditions on one argument in one rule. Like runc, a rule
    that repeats an index becomes one rule per condition: the conditions are OR'd.
    """
    indexes = [c.index for c in args]
    if len(indexes) != len(set(indexes)):
        return tuple((c,) for c in args)
    return (args,)


def filter_arches(profile: Profile, native: Arch) -> tuple[Arch, ...]:
    """The arches a runtime puts in the filter: the native one plus those listed."""
    return order([native] + [BY_OCI[name] for name in profile.architectures])


def compile_profile(profile: Profile, native: Arch | None = None) -> Compiled:
    """Build the libseccomp program for profile, as runc and crun would, plus the patcher's data.

    libseccomp runs in a child process under COMPILE_TIMEOUT and COMPILE_MEMORY.
    """
    return _in_child(_compile_profile, profile.path or "linux.seccomp", profile, native, warm=_warm_arches(profile, native))


def _warm_arches(profile: Profile, native: Arch | None) -> list[str]:
    listed = [BY_OCI[n].name for n in profile.architectures if n in BY_OCI]
    return [(native or libseccomp.native()).name] + listed


class CompileJob:
    """compile_profile started in its child process; `then` goes on there once the program is sent.

    The parent works on while libseccomp compiles, and a second core checks what it can
    of the result while the parent builds on it (patch.check). compiled() gives the
    Compiled exactly as compile_profile does, errors included; then_result() gives what
    `then` returned, or None when the child could not give it (any exception, the time
    limit, the memory limit): the caller then does that work itself, so nothing `then`
    does can change a result. close() ends and reaps the child; always call it.
    """

    def __init__(self, profile: Profile, native: Arch | None,
                 then: Callable[[Compiled], Any] | None = None) -> None:
        self.child: _Child | None = None
        self._compiled: Compiled | None = None
        compile_timeout()  # a bad test limit is refused, isolated or not
        if not ISOLATE:
            self._compiled = _compile_profile(profile, native)
            return
        self.child = _Child(_compile_lib, profile.path or "linux.seccomp", (profile, native), then,
                            _warm_arches(profile, native))

    def compiled(self) -> Compiled:
        if self._compiled is None:
            assert self.child is not None
            # The numbers the program answers by rules are found here, not in the child:
            # the child is checking the program meanwhile (the same code, the same errors).
            self._compiled = _with_rule_numbers(self.child.result())
        return self._compiled

    @property
    def runs_then(self) -> bool:
        """True when `then` runs in a child (with ISOLATE off there is no child, and no then)."""
        return self.child is not None and self.child.then is not None

    def then_result(self) -> Any:
        if self.child is None:
            return None
        return self.child.then_result()

    def close(self) -> None:
        if self.child is not None:
            self.child.close()


def _compile_profile(profile: Profile, native: Arch | None) -> Compiled:
    return _with_rule_numbers(_compile_lib(profile, native))


def _with_rule_numbers(compiled: Compiled) -> Compiled:
    """compiled with named(A) completed by the numbers its program answers by rules."""
    named = {arch.name: compiled.named[arch.name] | answered_by_rules(compiled.program, arch, compiled.default_action)
             for arch in compiled.arches}
    return Compiled(compiled.program, compiled.arches, compiled.default_action, compiled.bad_arch_action,
                    compiled.flags, named, compiled.pending, compiled.unknown, compiled.warnings)


def _compile_lib(profile: Profile, native: Arch | None) -> Compiled:
    """libseccomp's program and the patcher's data; named(A) holds the table's numbers only."""
    host = libseccomp.native()
    native = native or host
    default = action_value(profile.default_action, profile.default_errno_ret)
    pyseccomp.get_api()  # makes libseccomp probe the kernel for the actions it may use
    if profile.default_action == "SCMP_ACT_ERRNO" and profile.default_errno_ret == _LIBSECCOMP_MAX_ERRNO + 1:
        raise CompileError(profile.field_path("defaultErrnoRet"), _ERRNO_4095)
    try:
        flt = pyseccomp.SyscallFilter(libseccomp.c_int(default))
    except OSError as exc:
        raise CompileError(profile.field_path("defaultAction"),
                           f"libseccomp refuses {profile.default_action} as default action "
                           f"({libseccomp.oserror_text(exc)})") from None
    arches = _add_arches(flt, profile, native, host)
    if libseccomp.version() >= (2, 5, 0):
        flt.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, _OPTIMIZE_BINARY_TREE)

    lacked: set[tuple[str, int]] = set()  # (arch, nr) whose rules ocishim must compile
    named: dict[str, set[int]] = {a.name: set() for a in arches}
    unknown: dict[str, None] = {}
    for rule in profile.syscalls:
        value = action_value(rule.action, rule.errno_ret)
        for j, name in enumerate(rule.names):
            where = f"{rule.path}.names[{j}]"
            table_nrs = {a.name: syscalls.resolve(a.name, name) for a in arches if a.name in syscalls.arches()}
            for arch_name, nr in table_nrs.items():
                if nr is not None:
                    named[arch_name].add(nr)

            known_by_table = syscalls.known(name)
            if not known_by_table and not any(libseccomp.knows(a, name) for a in arches):
                unknown.setdefault(name, None)
                continue
            if value == default:
                continue  # libseccomp refuses a rule that repeats the default action
            for arch in arches:
                if _libseccomp_handles(arch, name):
                    continue
                nr = table_nrs.get(arch.name)
                if nr is not None:
                    lacked.add((arch.name, nr))
            if libseccomp.knows(host, name):
                # libseccomp takes the host's number and translates it by name per arch.
                _add_rule(flt, value, libseccomp.resolve_name(host, name), rule, where)
    pending = _rules_on(profile, arches, lacked, default)
    program = _export(flt, "little" if native.little_endian else "big")
    bad_arch = flt.get_attr(pyseccomp.Attr.ACT_BADARCH) & 0xFFFFFFFF
    _check_returns(program, {default, bad_arch} | {action_value(r.action, r.errno_ret)
                                                    for r in profile.syscalls})
    return Compiled(
        program=program,
        arches=arches,
        default_action=default,
        bad_arch_action=bad_arch,
        flags=flags_value(profile.flags),
        named={k: frozenset(v) for k, v in named.items()},
        pending=tuple(pending),
        unknown=tuple(unknown),
        warnings=tuple(f"syscall {n!r} is unknown to the syscall table and to libseccomp "
                       f"{'.'.join(map(str, libseccomp.version()))}; its rules are ignored"
                       for n in unknown),
    )


# A program whose rules give one answer to more numbers than this in a row is not
# one libseccomp wrote: refuse it rather than guess what it names.
_MAX_RULE_RUN = 1 << 16


def answered_by_rules(program: tuple[Insn, ...], arch: Arch, default: int) -> set[int]:
    """The numbers of arch that the program answers with anything but default, for some arguments.

    libseccomp puts rules on numbers the profile never names (socket and IPC calls onto
    socketcall and ipc on x86, s390, ppc and mips o32); the stub must not touch those.
    """
    out: set[int] = set()
    lo, hi = nr_domain(arch.name)
    for span in reach.spans(program, arch, lo, hi):
        if span.answers == {default}:
            continue
        if span.hi - span.lo >= _MAX_RULE_RUN:
            raise CompileError("linux.seccomp", f"libseccomp's program answers {arch.name} numbers "
                                                f"{span.lo:#x}..{span.hi:#x} other than by default: "
                                                "not a program ocishim can patch")
        out.update(range(span.lo, span.hi + 1))
    return out


# Names a proxy for compile_proxy may be: plain calls every arch has, none multiplexed.
_PROXIES = ("getpid", "getppid", "gettid", "sync", "getuid")


def compile_proxy(arch: Arch, rules, default: int, where: str) -> tuple[tuple[Insn, ...], int]:
    """libseccomp's program for rules put on a proxy syscall it knows, in a filter of arch alone.

    Returns the program and the proxy's number on arch. The rules' own names are not
    used: this is how the patcher learns what libseccomp makes of rules on a name it lacks.
    libseccomp runs in a child process under COMPILE_TIMEOUT and COMPILE_MEMORY.
    """
    return _in_child(_compile_proxy, where or "linux.seccomp", arch, tuple(rules), default, where,
                     warm=[arch.name])


def _compile_proxy(arch: Arch, rules, default: int, where: str) -> tuple[tuple[Insn, ...], int]:
    host = libseccomp.native()
    proxy = next((name for name in _PROXIES
                  if libseccomp.resolve_name(arch, name) >= 0 and libseccomp.resolve_name(host, name) >= 0),
                 None)
    if proxy is None:
        raise CompileError(where, f"libseccomp {'.'.join(map(str, libseccomp.version()))} "
                                  f"knows no plain syscall on {arch.oci} to compile these rules on")
    flt = pyseccomp.SyscallFilter(libseccomp.c_int(default))
    if arch != host:
        flt.remove_arch(libseccomp.c_int(host.token))
        try:
            flt.add_arch(libseccomp.c_int(arch.token))
        except OSError as exc:
            raise CompileError(where, f"libseccomp cannot build a filter for {arch.oci} "
                                      f"({libseccomp.oserror_text(exc)})") from None
    nr = libseccomp.resolve_name(host, proxy)
    for rule in rules:
        _add_rule(flt, action_value(rule.action, rule.errno_ret), nr, rule, rule.path or where)
    program = _export(flt, "little" if arch.little_endian else "big")
    _check_returns(program, {default, flt.get_attr(pyseccomp.Attr.ACT_BADARCH) & 0xFFFFFFFF}
                   | {action_value(r.action, r.errno_ret) for r in rules})
    return program, libseccomp.resolve_name(arch, proxy)


def _rules_on(profile: Profile, arches: tuple[Arch, ...], targets: set[tuple[str, int]],
              default: int) -> list[PendingRule]:
    """Every rule on each (arch, nr) of targets, in profile order, aliases included.

    A number can have a name libseccomp lacks and another it knows (arm 341:
    sync_file_range2 and arm_sync_file_range). libseccomp merges rules on one number
    (an unconditional rule overrides conditional ones); the block must see them all.
    """
    if not targets:
        return []
    by_name = {a.name: a for a in arches}
    target_arches = sorted({arch_name for arch_name, _ in targets})
    out: list[PendingRule] = []
    for rule in profile.syscalls:
        value = action_value(rule.action, rule.errno_ret)
        if value == default:
            continue
        for arch_name in target_arches:  # (arch, nr) in sorted order, as sorted(targets)
            arch = by_name[arch_name]
            lacked: dict[int, list[str]] = {}
            known: dict[int, list[str]] = {}
            for n in rule.names:
                nr = syscalls.resolve(arch_name, n)
                if (arch_name, nr) in targets and not _libseccomp_handles(arch, n):
                    lacked.setdefault(nr, []).append(n)
                theirs = libseccomp.resolve_name(arch, n)
                if (arch_name, theirs) in targets:
                    known.setdefault(theirs, []).append(n)
            for nr in sorted(set(lacked) | set(known)):
                name = (lacked.get(nr) or known[nr])[0]
                out.append(PendingRule(arch_name, name, nr, value, rule.args, rule.path, rule,
                                       alias=nr not in lacked))
    return out


def _check_returns(program: tuple[Insn, ...], expected: set[int]) -> None:
    """Fail closed on a program that returns something no rule asks for.

    libseccomp 2.5.4 byte-swaps some return values of long big-endian programs built
    on a little-endian host; such a filter must not be used.
    """
    for pc, insn in enumerate(program):
        if insn.code == RET | K and insn.k not in expected:
            raise CompileError("linux.seccomp", f"libseccomp produced a corrupt program: "
                               f"instruction {pc} returns {insn.k:#010x}, which no rule asks for")


def _libseccomp_handles(arch: Arch, name: str) -> bool:
    nr = libseccomp.resolve_name(arch, name)
    return nr >= 0 or (nr < -1 and name in MULTIPLEXED)


def _add_arches(flt: pyseccomp.SyscallFilter, profile: Profile, native: Arch, host: Arch) -> tuple[Arch, ...]:
    supported = libseccomp.supported_arches()
    listed = {name: i for i, name in enumerate(profile.architectures)}
    wanted = filter_arches(profile, native)
    if host not in wanted:
        # Before adding: libseccomp refuses arches whose byte order differs from those present.
        flt.remove_arch(libseccomp.c_int(host.token))
    present: list[Arch] = [host] if host in wanted else []
    # The native arch first, so that a listed arch that cannot join it is the one named.
    for arch in [native] + [a for a in wanted if a != native]:
        where = (profile.field_path(f"architectures[{listed[arch.oci]}]") if arch.oci in listed
                 else "native architecture")
        if arch not in supported:
            v = ".".join(map(str, libseccomp.version()))
            raise CompileError(where, f"{arch.oci} is not supported by the host libseccomp {v}")
        if arch == host:
            continue
        try:
            flt.add_arch(libseccomp.c_int(arch.token))
        except OSError as exc:
            others = ", ".join(a.oci for a in present) or "an empty filter"
            raise CompileError(where, f"libseccomp cannot add {arch.oci} to a filter for "
                                      f"{others} ({libseccomp.oserror_text(exc)})") from None
        present.append(arch)
    return wanted


def _add_rule(flt: pyseccomp.SyscallFilter, value: int, nr: int, rule: Rule, where: str) -> None:
    if rule.action == "SCMP_ACT_ERRNO" and rule.errno_ret == _LIBSECCOMP_MAX_ERRNO + 1:
        raise CompileError(f"{rule.path}.errnoRet", _ERRNO_4095)
    for conds in rule_conditions(rule.args):
        args = [pyseccomp.Arg(c.index, OPERATORS[c.op], c.value, c.value_two) for c in conds]
        try:
            flt.add_rule(libseccomp.c_int(value), nr, *args)
        except OSError as exc:
            raise CompileError(where, f"libseccomp refuses this rule ({libseccomp.oserror_text(exc)})") from None


def _export(flt: pyseccomp.SyscallFilter, byteorder: str) -> tuple[Insn, ...]:
    # A memfd, not a pipe: libseccomp writes the whole program before anyone reads,
    # and a large program fills a pipe's buffer and blocks forever.
    fd = os.memfd_create("ocishim-bpf", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as f:
        flt.export_bpf(f)
        f.seek(0)
        data = f.read()
    # libseccomp writes the program in the byte order of the filter's arches.
    return decode(data, byteorder)


# --------------------------------------------------------------------------------------
# libseccomp in a child process, with a time and a memory limit.
# --------------------------------------------------------------------------------------

# Seconds one compile (compile_profile, or one compile_proxy) may take, export included.
# Docker's default profile (x86_64, x86, x32) takes about 50 ms here. libseccomp 2.5.4
# never returns on some rule sets: two rules on one syscall that share a comparison on
# arg0 other than EQ and differ in a condition on another argument (`arg1 == 0 &&
# arg0 < 5`, `arg3 == 0 && arg0 < 5`, any actions): the second seccomp_rule_add loops.
# So the limit only has to be far above any real profile on a loaded machine.
COMPILE_TIMEOUT = 10.0
# A testing aid: a lower limit in seconds (0 < value <= COMPILE_TIMEOUT), so that tests of
# the limit do not wait the whole default many times. It can only make ocishim give up
# sooner, never accept more.
TIMEOUT_ENV = "OCISHIM_COMPILE_TIMEOUT"
# Address space the child may add to what it inherits (RLIMIT_AS). Docker's default
# profile on x86_64, x86 and x32 adds about 1 MiB; a hostile profile gets ENOMEM from
# libseccomp, which fails the compile, instead of taking the node's memory.
COMPILE_MEMORY = 1 << 30
# Python callers that already compile in a child process they kill on a deadline (the
# rule parity test runs thousands of compiles that way) may set this False: a fork costs
# a page-table copy of the whole parent, about 4 ms for the CLI and 15 ms or more for a
# process holding hundreds of megabytes. Nothing outside Python code can change it.
ISOLATE = True


def compile_timeout() -> float:
    """The time limit in seconds: COMPILE_TIMEOUT, or the lower test limit from TIMEOUT_ENV."""
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return COMPILE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= COMPILE_TIMEOUT:  # NaN fails too
        raise UsageError(TIMEOUT_ENV, f"{text!r} is not a number of seconds in (0, {COMPILE_TIMEOUT:g}]")
    return value


def _in_child(fn: Callable[..., Any], where: str, *args: Any, warm: Sequence[str] | None = None) -> Any:
    """fn(*args) in a forked child under the limits; its value, or its exception, re-raised here.

    A fork without exec: pyseccomp and everything fn needs are already imported, so the
    child costs a page-table copy. The child never returns into the caller's code: it
    leaves by os._exit, without atexit handlers or flushing stdio buffers it inherited,
    and its fds 0-2 point at /dev/null, since they may be the container's stdio.
    If another thread held a lock at fork time and the child blocks on it, the time
    limit ends it like a libseccomp loop: the compile fails, closed.
    """
    compile_timeout()  # a bad test limit is refused, isolated or not
    if not ISOLATE:
        return fn(*args)
    child = _Child(fn, where, args, None, warm)
    try:
        return child.result()
    finally:
        child.close()


class _Child:
    """One forked child running fn(*args), then optionally then(value), under the limits.

    The child sends length-prefixed pickles on a pipe: fn's outcome, then then's. The
    parent reads the first with result() (fn's value, or its exception re-raised here)
    and the second with then_result() (None unless then returned normally), both before
    one deadline, COMPILE_TIMEOUT (or the test limit) after the fork.
    """

    def __init__(self, fn: Callable[..., Any], where: str, args: tuple[Any, ...],
                 then: Callable[[Any], Any] | None, warm: Sequence[str] | None) -> None:
        self.where = where
        self.limit = compile_timeout()
        _warm_caches(warm)
        rfd, wfd = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(rfd)
            os.close(wfd)
            raise CompileError(where, f"cannot start a process to run libseccomp in ({exc.strerror})") from None
        if pid == 0:  # the child: never returns
            # A collection would touch every inherited object and copy its page: the child
            # is short-lived, so it frees nothing and skips that cost.
            gc.disable()
            status = 1
            try:
                os.close(rfd)
                status = _child_run(fn, args, wfd, then)
            finally:
                os._exit(status)
        os.close(wfd)
        self.pid, self.rfd, self.then = pid, rfd, then
        self.frames_left = 1 if then is None else 2  # what the child sends at most
        self.deadline = time.monotonic() + self.limit
        self.buffer = b""
        self.eof = self.timed_out = False
        self.status: int | None = None

    def _frame(self) -> bytes | None:
        """The next whole message, or None at the end of the pipe or the deadline."""
        while True:
            if len(self.buffer) >= 8:
                size = int.from_bytes(self.buffer[:8], "big")
                if len(self.buffer) >= 8 + size:
                    data, self.buffer = self.buffer[8:8 + size], self.buffer[8 + size:]
                    self.frames_left -= 1
                    return data
            if self.eof or self.timed_out:
                return None
            chunk, self.timed_out = _read_some(self.rfd, self.deadline)
            self.eof = not chunk and not self.timed_out
            self.buffer += chunk

    def _reap(self, kill: bool) -> int:
        if self.status is None:
            if kill:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _, self.status = os.waitpid(self.pid, 0)
            os.close(self.rfd)
        return self.status

    def result(self) -> Any:
        data = self._frame()
        if data is None:
            status = self._reap(kill=self.timed_out)
            if self.timed_out:
                raise CompileError(self.where, f"libseccomp did not finish compiling these rules within {self.limit:g} s")
            how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exited with status {os.waitstatus_to_exitcode(status)}")
            raise CompileError(self.where, f"libseccomp's process {how} while compiling these rules")
        kind, value = pickle.loads(data)
        if kind == "ok":
            return value
        self.frames_left = 0  # the child sends nothing more after a failure
        if kind == "error":  # an OcishimError: rebuilt by class, where and message
            cls, err_where, message = value
            raise cls(err_where, message)
        if kind == "memory":
            raise CompileError(self.where, f"libseccomp needed more than {COMPILE_MEMORY >> 20} MiB "
                                           "to compile these rules")
        raise value  # any other exception, as fn raised it (a bug, not the profile's fault)

    def then_result(self) -> Any:
        data = self._frame() if self.status is None else None
        if data is None:
            return None
        try:
            kind, value = pickle.loads(data)
        except Exception:
            return None
        return value if kind == "ok" else None

    def close(self) -> None:
        """Reap the child: it leaves by itself once it has sent everything; otherwise it
        is ended first (nothing more is read from it)."""
        self._reap(kill=self.frames_left > 0)


def _warm_caches(arches: Sequence[str] | None = None) -> None:
    """Fill the lookup caches the compile uses here, for the arches it will use (default:
    all of the table's), once per process.

    Filled in a child they would die with it, and every later compile would build the
    syscall table again (about 20 ms for all its arches; a hook needs two or three).
    """
    for arch_name in arches if arches is not None else syscalls.arches():
        if arch_name in syscalls.arches():
            syscalls.resolve(arch_name, "read")
    syscalls.known("read")
    libseccomp.supported_arches()
    libseccomp.version()


def _child_setup() -> None:
    """Limits and stdio for the child."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    # sys.stdout and sys.stderr may write elsewhere than fds 1 and 2 (a dup, a log file),
    # and hold what the parent buffered: the child gets its own, on /dev/null.
    sys.stdout = sys.stderr = open(1, "w", closefd=False)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = _address_space() + COMPILE_MEMORY
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int:
    """Bytes of address space this process maps now (VmSize)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _child_run(fn: Callable[..., Any], args: tuple[Any, ...], wfd: int,
               then: Callable[[Any], Any] | None = None) -> int:
    """Run fn and write the pickled outcome to wfd, then then's; the exit status."""
    try:
        _child_setup()
        outcome: tuple[str, Any] = ("ok", fn(*args))
    except OcishimError as exc:
        outcome = ("error", (type(exc), exc.where, exc.message))
    except MemoryError:
        outcome = ("memory", None)
    except BaseException as exc:  # handed to the parent as it is, or as text
        outcome = ("raise", exc)
    try:
        data = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
    except Exception:
        import traceback

        data = pickle.dumps(("raise", RuntimeError("".join(
            traceback.format_exception(outcome[1])).strip())))
    _write_frame(wfd, data)
    if then is not None and outcome[0] == "ok":
        try:
            follow: tuple[str, Any] = ("ok", then(outcome[1]))
            data = pickle.dumps(follow, pickle.HIGHEST_PROTOCOL)
        except BaseException:  # the parent does this work itself
            data = pickle.dumps(("failed", None))
        _write_frame(wfd, data)
    return 0


def _write_frame(wfd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(wfd, view):]


def _read_some(fd: int, deadline: float) -> tuple[bytes, bool]:
    """What the child has written to fd (b"" at its end); (b"", True) when the deadline passes first.

    What the child wrote in time is taken even when this process comes to read it after the
    deadline (it works on while libseccomp compiles): the limit is on the child's time.
    """
    poller = select.poll()  # not select(): fd may be above FD_SETSIZE in a busy process
    poller.register(fd, select.POLLIN)
    left = max(0.0, deadline - time.monotonic())
    if not poller.poll(left * 1000):
        return b"", True
    return os.read(fd, 1 << 20), False
