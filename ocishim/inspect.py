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
from dataclasses import dataclass
from typing import Mapping, Sequence

from .actions import ENOSYS, RET_ERRNO, RET_TRACE
from .arch import BY_AUDIT, nr_domain
from .bpf.insn import INSN_SIZE, JA, JEQ, JGE, JMP, K, OFF_ARCH, OFF_NR, Insn, decode, ld_abs, ret
from .errors import OcishimError, SystemFailure, UsageError
from .verify.regions import Cube, full_region, restrict, walk

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


# --- what a filter is: ocishim's stub, runc's stub, or neither -------------------------

@dataclass(frozen=True)
class Layout:
    """A loaded filter cut into the stub in front and the profile's program P behind it."""

    stub: str | None  # "ocishim", "runc" or None
    start: int  # index where P begins (0 without a stub)
    enosys: Mapping[str, tuple[tuple[int, int], ...]]  # arch name -> nr ranges the stub answers ENOSYS


def _arch_chain(program: Sequence[Insn]) -> tuple[list[int], int] | None:
    """The audit values a stub's head tests, and where the head falls through to.

    Both stubs start `ld [4]` and test the arch with a chain of `jeq #AUDIT`; ocishim's
    last test falls through into P, runc's chain ends in a `ja` to P. libseccomp's own
    program starts the same way, but its chain ends in the bad-arch `ret`.
    """
    if not program or program[0] != ld_abs(OFF_ARCH):
        return None
    audits, pc, seen = [], 1, set()
    while 0 <= pc < len(program) and pc not in seen:
        seen.add(pc)
        insn = program[pc]
        if insn.code == JMP | JEQ | K and insn.k in BY_AUDIT:
            audits.append(insn.k)
            pc = pc + 1 + insn.jf
        elif insn.code == JMP | JA and audits:
            pc = pc + 1 + insn.k
        else:
            break
    return (audits, pc) if audits else None


def _is_runc_tail(stub: Sequence[Insn]) -> bool:
    """runc's stub ends `ja +1; ret ERRNO(ENOSYS)` and tests numbers with jgt, never jge
    (libcontainer/seccomp/patchbpf); ocishim's trees use jge only."""
    return (len(stub) >= 3 and stub[-2] == Insn(JMP | JA, 0, 0, 1)
            and stub[-1] == ret(RET_ERRNO | ENOSYS)
            and not any(i.code == JMP | JGE | K for i in stub))


def layout(program: Sequence[Insn]) -> Layout:
    """Which stub program starts with, and the ENOSYS ranges it gives each arch."""
    chain = _arch_chain(program)
    if chain is None:
        return Layout(None, 0, {})
    audits, start = chain
    if not 0 < start < len(program) or program[start] != ld_abs(OFF_ARCH):
        return Layout(None, 0, {})
    stub = program[:start]
    kind = "runc" if _is_runc_tail(stub) else "ocishim"
    return Layout(kind, start, _enosys_of(program, start, audits))


def _enosys_of(program: Sequence[Insn], start: int, audits: Sequence[int]) -> dict[str, tuple[tuple[int, int], ...]]:
    """Per arch, the nr ranges the stub answers ERRNO(ENOSYS): P is replaced by returns of
    a value no stub returns, and the stub is walked symbolically over every nr."""
    passing = RET_TRACE | 0xFFFF  # TRACE(0xffff): never a stub's answer
    cut = tuple(program[:start]) + (ret(passing),) * (len(program) - start)
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for audit in dict.fromkeys(audits):
        region = restrict(full_region(), OFF_ARCH, (Cube(audit, audit),))
        hits: list[tuple[int, int]] = []
        for leaf in walk(cut, region):
            if leaf.answer == RET_ERRNO | ENOSYS:
                hits += _intervals(leaf.region[OFF_NR // 4])
        for arch in BY_AUDIT[audit]:
            low, high = nr_domain(arch.name)
            ranges = [(max(a, low), min(b, high)) for a, b in hits if a <= high and b >= low]
            out[arch.name] = _merge(ranges)
    return out


def _intervals(cubes) -> list[tuple[int, int]]:
    """Plain intervals for the cubes of one word; a single known bit (runc's x32 test,
    bit 30) splits an interval into the stretches with that bit as required."""
    out: list[tuple[int, int]] = []
    for c in cubes:
        if not c.mask:
            out.append((c.lo, c.hi))
            continue
        if c.mask & (c.mask - 1):
            raise SystemFailure("filter", "a stub tests more than one bit of the syscall number: "
                                          "cannot list its ENOSYS ranges")
        step = c.mask << 1
        if (c.hi - c.lo) // step > 64:
            raise SystemFailure("filter", "a stub tests a low bit of the syscall number: "
                                          "cannot list its ENOSYS ranges")
        for block in range(c.lo - c.lo % step, c.hi + 1, step):
            a, b = max(block + c.bits, c.lo), min(block + c.bits + c.mask - 1, c.hi)
            if a <= b:
                out.append((a, b))
    return out


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return tuple((a, b) for a, b in merged)


# --- which process, and which config.json ------------------------------------------------

# Where runtimes keep their state, per container: runc's state.json (init_process_pid, and
# the bundle in config.labels) and crun's status (pid, bundle). containerd's shim runs
# runc with --root /run/containerd/runc/<namespace>; dockerd's runtimes get
# <exec-root>/runtime-<name>/moby; podman runs runc and crun with their defaults.
STATE_ROOTS = ("/run/runc", "/run/crun", "/run/containerd/runc/*", "/run/docker/runtime-*/*",
               "/var/run/docker/runtime-*/*")
MAX_STATE_BYTES = 16 << 20


@dataclass(frozen=True)
class Container:
    id: str
    pid: int
    state: str  # the state file it was found by
    bundle: str | None


def _state_dirs(extra_roots: Sequence[str]) -> list[str]:
    import glob

    roots: list[str] = list(extra_roots)
    for pattern in STATE_ROOTS:
        roots += sorted(glob.glob(pattern))
    return list(dict.fromkeys(os.path.realpath(r) for r in roots if os.path.isdir(r)))


def _read_state(path: str) -> Container | None:
    """The container a runc state.json or a crun status file describes, or None when
    the file is not one (a root holds other things too)."""
    import json

    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_STATE_BYTES))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    cid = os.path.basename(os.path.dirname(path))
    if os.path.basename(path) == "state.json":
        pid = data.get("init_process_pid")
        labels = (data.get("config") or {}).get("labels") if isinstance(data.get("config"), dict) else None
        bundle = next((label[len("bundle="):] for label in labels or () if isinstance(label, str)
                       and label.startswith("bundle=")), None)
    else:
        pid, bundle = data.get("pid"), data.get("bundle")
    if not isinstance(pid, int) or pid <= 0:
        return None
    return Container(cid, pid, path, bundle if isinstance(bundle, str) else None)


def containers(extra_roots: Sequence[str] = ()) -> list[Container]:
    """Every container the runtimes' state directories list."""
    found = []
    for root in _state_dirs(extra_roots):
        try:
            names = sorted(os.listdir(root))
        except OSError:
            continue
        for name in names:
            for leaf in ("state.json", "status"):
                path = os.path.join(root, name, leaf)
                if os.path.isfile(path) and (c := _read_state(path)) is not None:
                    found.append(c)
    return found


def find(target: str, extra_roots: Sequence[str] = ()) -> tuple[int, Container | None]:
    """The pid to read, and the container it belongs to when a runtime's state says so.

    target is a pid or a container id (a unique prefix of one will do, as docker allows).
    """
    import psutil

    known = containers(extra_roots)
    if target.isdigit():
        pid = int(target)
        if not psutil.pid_exists(pid):
            raise UsageError("PID", f"no process {pid}")
        try:
            lineage = [pid] + [p.pid for p in psutil.Process(pid).parents()]
        except psutil.NoSuchProcess:
            raise UsageError("PID", f"no process {pid}") from None
        for candidate in lineage:  # the nearest container init at or above pid
            match = [c for c in known if c.pid == candidate]
            if match:
                return pid, match[0]
        return pid, None
    exact = [c for c in known if c.id == target]
    chosen = exact or [c for c in known if c.id.startswith(target)]
    if not chosen:
        raise UsageError("CONTAINER-ID", f"no container {target!r} in the runtimes' state "
                                         f"directories ({', '.join(_state_dirs(extra_roots)) or 'none found'}); "
                                         "give its pid, or --root DIR")
    if len({(c.id, c.pid) for c in chosen}) > 1:
        raise UsageError("CONTAINER-ID", f"{target!r} is ambiguous: "
                                         f"{', '.join(sorted({c.id for c in chosen}))}")
    c = chosen[0]
    if not psutil.pid_exists(c.pid):
        raise UsageError("CONTAINER-ID", f"container {c.id} is not running (pid {c.pid} is gone)")
    return c.pid, c


# --- does the filter equal what ocishim makes of the container's config? ----------------

def _config_path(container: Container) -> str | None:
    """The config.json the runtime ran: crun keeps a copy in its state directory."""
    here = os.path.join(os.path.dirname(container.state), "config.json")
    if os.path.isfile(here):
        return here
    if container.bundle and os.path.isfile(os.path.join(container.bundle, "config.json")):
        return os.path.join(container.bundle, "config.json")
    return None


def _candidate_modes(config: dict) -> list[tuple[str, object, object]]:
    """(label, Mode, emulate) to try: every mode, and what the settings or the
    container's own annotation chose."""
    from .integrations.settings import for_container, load_settings
    from .patch import parse_mode

    out = [(m, parse_mode(m), None) for m in ("unnamed", "auto", "max", "off")]
    try:
        settings = load_settings()
        chosen, _ = for_container(settings, config)
    except OcishimError:
        return out
    for s in (settings, chosen):
        label = str(s.mode) + (f", emulate-kernel {s.emulate[0]}.{s.emulate[1]}" if s.emulate else "")
        if label not in [o[0] for o in out]:
            out.append((label, s.mode, s.emulate))
    return out


def same_answers(a: Sequence[Insn], b: Sequence[Insn]) -> bool:
    """Whether two programs answer alike for every arch, number and argument: each
    region of a's exact walk gives b's walk a single answer, a's."""
    return all(other.answer == leaf.answer for leaf in walk(a) for other in walk(b, leaf.region))


def matching_modes(filters: Sequence[tuple[Insn, ...]], config_path: str) -> list[list[tuple[str, str]]]:
    """Per filter, (mode, how) for each mode in which ocishim's rewrite of config_path
    produces it.

    how is "bytes" when the filter is byte for byte the patched program (what crun
    loads from the annotation). runc loads its own stub in front of libseccomp's program
    for the rewritten linux.seccomp: how is "profile" when the config runc read is that
    rewrite and the program behind runc's stub answers exactly as libseccomp's program
    for it does here (runc adds rules in its own order, so the bytes differ). The config
    may be the rewritten one already (the wrapper rewrites in place): its last rule is
    then ocishim's, and the rewrite of the config without it must give the config back.
    """
    import copy

    from .compile import compile_profile
    from .integrations.config import _previous_rule, rewrite
    from .profile import load, load_object

    config = load(config_path).config
    if not isinstance(config, dict):
        return [[] for _ in filters]
    # A config that ends in ocishim's rule was rewritten already: what ocishim made it
    # from is the config without that rule (a rewrite of the rewritten config would
    # add nothing in most modes, and so seem to match them all).
    original = config
    if _previous_rule(config) is not None:
        original = copy.deepcopy(config)
        del original["linux"]["seccomp"]["syscalls"][-1]
    loaded_json = _seccomp_of(config)
    as_loaded = load_object(copy.deepcopy(config), config_path, kind="config").profile
    json_program = compile_profile(as_loaded).program if as_loaded is not None else None
    out: list[list[tuple[str, str]]] = [[] for _ in filters]
    for label, mode, emulate in _candidate_modes(config):
        try:
            result = rewrite(copy.deepcopy(original), mode, emulate, config_path)
        except OcishimError:
            continue
        if result.patched is None:
            continue
        same_json = _seccomp_of(result.config) == loaded_json
        for i, program in enumerate(filters):
            how = None
            if program == result.patched.program:
                how = "bytes"
            elif same_json and json_program is not None and layout(program).stub == "runc" \
                    and same_answers(program[layout(program).start:], json_program):
                how = "profile"
            if how and label not in [m for m, _ in out[i]]:
                out[i].append((label, how))
    return out


def _seccomp_of(config) -> object:
    import json

    linux = config.get("linux") if isinstance(config, dict) else None
    return json.dumps(linux.get("seccomp") if isinstance(linux, dict) else None, sort_keys=True, default=str)


# --- the report ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FilterReport:
    index: int
    length: int
    stub: str | None
    enosys: Mapping[str, tuple[tuple[int, int], ...]]
    matches: tuple[tuple[str, str], ...]  # (mode, "bytes" | "profile")

    def as_json(self) -> dict:
        """`matches`: the modes; `match_kind`: how each matched, in the same order."""
        return {"index": self.index, "length": self.length, "stub": self.stub,
                "enosys": {arch: [list(r) for r in ranges] for arch, ranges in self.enosys.items()},
                "matches": [m for m, _ in self.matches], "match_kind": [h for _, h in self.matches]}


@dataclass(frozen=True)
class Report:
    pid: int
    container: Container | None
    config: str | None
    filters: tuple[FilterReport, ...]
    config_error: str | None = None  # why the config could not be compared
    processes: tuple[int, ...] = ()  # pid and its descendants (the container's processes)

    def as_json(self) -> dict:
        out = {"pid": self.pid, "filters": [f.as_json() for f in self.filters],
               "processes": list(self.processes)}
        if self.config_error:
            out["config_error"] = self.config_error
        return out


def inspect(target: str, extra_roots: Sequence[str] = (), programs: list | None = None) -> Report:
    """Read the filters of a pid or container and say what each one is; the programs
    read go into `programs` when given."""
    pid, container = find(target, extra_roots)
    filters = read_filters(pid)
    if programs is not None:
        programs.extend(filters)
    config = _config_path(container) if container else None
    matches: list[list[tuple[str, str]]] = [[] for _ in filters]
    error = None
    if config and filters:
        # The bundle's config.json is the container owner's: a bad one is reported,
        # and the filters read are still worth showing.
        try:
            matches = matching_modes(filters, config)
        except OcishimError as exc:
            error = str(exc)
    reports = []
    for i, program in enumerate(filters):
        lay = layout(program)
        reports.append(FilterReport(i, len(program), lay.stub, lay.enosys, tuple(matches[i])))
    return Report(pid, container, config, tuple(reports), error, _processes(pid))


def _processes(pid: int) -> tuple[int, ...]:
    """pid and every process below it (psutil), which inherited its filters or
    added their own on top."""
    import psutil

    try:
        return (pid,) + tuple(sorted(p.pid for p in psutil.Process(pid).children(recursive=True)))
    except psutil.NoSuchProcess:
        return (pid,)


def ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    """`0-1 5 467-0x3fffffff`: numbers from 0x10000 up in hex, as explain writes them."""
    def num(n: int) -> str:
        return f"{n:#x}" if n >= 0x10000 else str(n)

    return " ".join(num(a) if a == b else f"{num(a)}-{num(b)}" for a, b in ranges) or "none"


def report_text(report: Report, programs: Sequence[tuple[Insn, ...]] = ()) -> str:
    lines = [f"pid {report.pid}" + (f": container {report.container.id} ({report.container.state})"
                                     if report.container else "")]
    if len(report.processes) > 1:
        lines.append(f"processes {' '.join(map(str, report.processes))}")
    if report.config:
        lines.append(f"config {report.config}" + (f": cannot compare: {report.config_error}"
                                                  if report.config_error else ""))
    if not report.filters:
        lines.append("no seccomp filter")
    for f in report.filters:
        stub = {"ocishim": "ocishim's stub", "runc": "runc's stub", None: "no stub"}[f.stub]
        lines.append(f"filter {f.index}: {f.length} instructions, {stub}")
        for arch, ranges in f.enosys.items():
            lines.append(f"  ENOSYS {arch}: {ranges_text(ranges)}")
        if report.config and not report.config_error:
            for mode, how in f.matches:
                lines.append(f"  matches ocishim --enosys {mode}: " + (
                    "the patched program, byte for byte" if how == "bytes" else
                    "the rewritten profile behind runc's stub (same answers everywhere)"))
            if not f.matches:
                lines.append("  matches no mode of ocishim for this config")
        if f.index < len(programs):
            from .bpf.disasm import disassemble

            lines += ["  " + line for line in disassemble(programs[f.index]).splitlines()]
    return "\n".join(lines) + "\n"


def cmd_inspect(args) -> int:
    """`ocishim inspect PID|CONTAINER-ID [--root DIR] [--json]`."""
    import json
    import sys

    programs: list[tuple[Insn, ...]] = []
    report = inspect(args.target, args.root, programs)
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report_text(report, programs if args.disasm else ()))
    return 0
