"""Ask the running kernel what a seccomp filter answers, without running any syscall.

kernel_results(program, calls) neutralizes a copy of the program (every return that
is not ERRNO becomes ERRNO(marker), see ocishim.bpf.markers), then probe.c loads it
into a forked child and issues every call there; the errno each call fails with is
mapped back to the filter's return value. Safety holds at three levels:
  - neutralize() leaves only RET #ERRNO(k) in the program;
  - the probe refuses to load a program with any other return, so after loading
    nothing the child asks for can run (the syscall fails before it starts);
  - x86_64 numbers 335 and 336 (uretprobe, uprobe), which the kernel lets past
    seccomp, are refused here and again by the probe.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from ocishim.actions import RET_ERRNO
from ocishim.bpf.insn import Insn, encode, ret
from ocishim.bpf.markers import kernel_answer, neutralize

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "probe.c"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-fno-tree-loop-distribute-patterns",
          "-Wl,-z,now")

ABIS = ("x86_64", "i386")
X32_SYSCALL_BIT = 0x40000000
# Never issued on the 64-bit entry, x32 variants included (see probe.c).
REFUSED_NRS = frozenset({335, 336})

_CALL = struct.Struct("=8Q")  # nr, args[6], flags
_FLAG_I386 = 1
_U32 = 0xFFFFFFFF
_U64 = 2**64 - 1

# Exit codes of the probe.
_EXIT_INPUT, _EXIT_LOAD, _EXIT_IA32, _EXIT_CHILD = 2, 3, 4, 5


class HarnessError(RuntimeError):
    """The probe could not give an answer; the message is the probe's own."""


class RefusedCall(ValueError):
    """A call the harness never issues (x86_64 uretprobe/uprobe, out-of-range values)."""


@dataclass(frozen=True)
class Call:
    """One syscall to put through the filter. Fewer than 6 args are padded with zeros.

    abi "i386" issues it through `int $0x80` (seccomp_data.arch AUDIT_ARCH_I386, 32-bit
    nr and args); x32 numbers (nr | 0x40000000) go through the "x86_64" entry.
    """

    nr: int
    args: tuple[int, ...] = field(default=(0, 0, 0, 0, 0, 0))
    abi: Literal["x86_64", "i386"] = "x86_64"

    def __post_init__(self) -> None:
        args = tuple(self.args)
        if len(args) > 6:
            raise ValueError(f"a syscall has at most 6 arguments, not {len(args)}")
        object.__setattr__(self, "args", args + (0,) * (6 - len(args)))
        if self.abi not in ABIS:
            raise ValueError(f"abi must be one of {ABIS}, not {self.abi!r}")


def check_call(call: Call) -> None:
    """Raise RefusedCall unless the call is one the probe may issue."""
    width = _U32 if call.abi == "i386" else _U64
    if not 0 <= call.nr <= _U32:
        raise RefusedCall(f"nr {call.nr:#x} does not fit 32 bits")
    for i, a in enumerate(call.args):
        if not 0 <= a <= width:
            raise RefusedCall(f"{call.abi} arg {i} = {a:#x} is out of range")
    if call.abi == "x86_64" and call.nr & ~X32_SYSCALL_BIT in REFUSED_NRS:
        raise RefusedCall(f"nr {call.nr:#x} refused: x86_64 uretprobe/uprobe bypass seccomp")


def _cache_dir() -> Path:
    for base in (HERE.parents[1] / ".cache", Path(tempfile.gettempdir())):
        d = base / f"ocishim-probe-{os.getuid()}"
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    raise HarnessError("no writable cache directory for the probe binary")


def probe_binary() -> Path:
    """The compiled probe, rebuilt when probe.c or the flags change."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + "\0".join(CFLAGS).encode()).hexdigest()[:16]
    target = _cache_dir() / f"probe-{key}"
    if target.exists():
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise HarnessError("gcc not found")
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    proc = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"compiling {SOURCE.name} failed:\n{proc.stderr}")
    os.replace(tmp, target)  # atomic, so parallel runs never see half a binary
    for stale in target.parent.glob("probe-" + "?" * len(key)):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def _run_probe(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(probe_binary()), *args], capture_output=True, text=True,
                          timeout=timeout)


@functools.cache
def available() -> str | None:
    """None when kernel_results can run here, else why not: a reason to skip, not a bug.

    A probe that does not compile or answers wrongly is a bug: that raises instead.
    """
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"needs Linux x86_64, not {platform.system()} {platform.machine()}"
    if shutil.which("gcc") is None:
        return "gcc not found"
    if not Path("/proc/sys/kernel/seccomp/actions_avail").exists():
        return "the kernel has no seccomp filter support (CONFIG_SECCOMP_FILTER)"
    proc = run_probe_files(encode([ret(RET_ERRNO | 1)]), encode_calls([Call(39)]), timeout=30)
    if proc.returncode == _EXIT_LOAD:
        # seccomp(2) itself refused, e.g. by the filter of a container we run in.
        return f"seccomp filters cannot be loaded here: {proc.stderr.strip()}"
    return None


def require_kernel() -> None:
    """pytest.skip unless kernel_results can run here."""
    import pytest

    if reason := available():
        pytest.skip(reason)


@functools.cache
def ia32_available() -> str | None:
    """None when i386 calls (int $0x80) work, else the reason."""
    if reason := available():
        return reason
    proc = _run_probe(["--check-ia32"], timeout=30)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip() or f"probe --check-ia32 exited with {proc.returncode}"


def encode_calls(calls: Sequence[Call]) -> bytes:
    """The probe's CALLS file: 8 host-order u64 per call."""
    return b"".join(_CALL.pack(c.nr, *c.args, _FLAG_I386 if c.abi == "i386" else 0)
                    for c in calls)


def run_probe_files(filter_bytes: bytes, calls_bytes: bytes,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the probe on raw file contents, as they are; for testing the probe's own checks."""
    with tempfile.TemporaryDirectory(prefix="ocishim-probe-") as d:
        fpath, cpath = Path(d) / "filter.bpf", Path(d) / "calls.bin"
        fpath.write_bytes(filter_bytes)
        cpath.write_bytes(calls_bytes)
        return _run_probe([str(fpath), str(cpath)], timeout)


def kernel_results(program: Sequence[Insn], calls: Sequence[Call],
                   timeout: float = 120) -> list[int]:
    """For each call, the seccomp return value the kernel applied under program.

    ERRNO data is reported clamped to MAX_ERRNO as the kernel applies it (see
    markers.kernel_view); other returns are the program's own values.
    """
    for call in calls:
        check_call(call)
    neutral, markers = neutralize(program)
    if not calls:
        return []
    if any(c.abi == "i386" for c in calls) and (reason := ia32_available()):
        raise HarnessError(f"i386 calls cannot be issued: {reason}")

    proc = run_probe_files(encode(neutral), encode_calls(calls), timeout)
    if proc.returncode != 0:
        kind = {_EXIT_INPUT: "refused its input", _EXIT_LOAD: "could not load the filter",
                _EXIT_IA32: "cannot issue i386 calls",
                _EXIT_CHILD: "child failed"}.get(proc.returncode, "failed")
        raise HarnessError(f"probe {kind} (exit {proc.returncode}): {proc.stderr.strip()}")

    lines = proc.stdout.splitlines()
    if len(lines) != len(calls):
        raise HarnessError(f"probe printed {len(lines)} results for {len(calls)} calls")
    results = []
    for call, line in zip(calls, lines):
        nr, errno = map(int, line.split())
        if nr != call.nr:
            raise HarnessError(f"probe answered nr {nr} where nr {call.nr} was asked")
        results.append(kernel_answer(errno, markers))
    return results
