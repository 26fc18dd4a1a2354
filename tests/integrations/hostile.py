"""Building blocks of the hostile-annotations suite (issue 7, rule 10 of semantics.md).

Everything that decides "weaker" is written out here from the contract and the kernel's
headers, not imported from ocishim: the precedence of actions, the OCI action values,
the syscall numbers (read from the shared table), and a small runc-like compiler of a
JSON profile through the host libseccomp (what runc does with the rewritten profile).
ocishim is used only as the thing under test (the hook) and for the shared instruction
model and emulator, which the kernel sample in the test checks against the kernel.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import csv
import hashlib
import io
import os
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pyseccomp

from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.bpf.insn import Insn, decode
from tests import shared_data

REPO = Path(__file__).resolve().parents[2]
SYSCALL_CSV = shared_data.SYSCALLS_CSV

BPF_ANNOTATION = "run.oci.seccomp_bpf_data"
PREFIX = "ocishim."
CHOICE_KEYS = ("enosys", "emulate-kernel", "unknown-syscall")

U32 = 2**32 - 1
U64 = 2**64 - 1
X32_BIT = 0x40000000

# ---------------------------------------------------------------------------------
# The kernel's actions and their precedence (linux/seccomp.h, kernel/seccomp.c),
# written out again so that "weaker" does not come from the code under test.

KILL_PROCESS = 0x80000000
KILL_THREAD = 0x00000000
TRAP = 0x00030000
ERRNO = 0x00050000
USER_NOTIF = 0x7FC00000
TRACE = 0x7FF00000
LOG = 0x7FFC0000
ALLOW = 0x7FFF0000
ACTION_FULL = 0xFFFF0000

# Higher is stricter: KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW.
_RANK = {KILL_PROCESS: 7, KILL_THREAD: 6, TRAP: 5, ERRNO: 4, USER_NOTIF: 3, TRACE: 2,
         LOG: 1, ALLOW: 0}


def rank(ret: int) -> int:
    """Strictness of a filter return; two ERRNO answers are equal whatever their errno.

    The kernel runs any action value it does not know as KILL_PROCESS.
    """
    return _RANK.get(ret & ACTION_FULL, 7)


def name(ret: int) -> str:
    full = ret & ACTION_FULL
    names = {KILL_PROCESS: "KILL_PROCESS", KILL_THREAD: "KILL_THREAD", TRAP: "TRAP",
             USER_NOTIF: "NOTIFY", TRACE: "TRACE", LOG: "LOG", ALLOW: "ALLOW"}
    if full == ERRNO:
        return f"ERRNO({ret & 0xFFFF})"
    return names.get(full, f"unknown 0x{ret:08x}")


# OCI action -> return value (runtime-spec config-linux.md; errnoRet defaults to EPERM).
_OCI_ACTIONS = {
    "SCMP_ACT_KILL": KILL_THREAD, "SCMP_ACT_KILL_THREAD": KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": KILL_PROCESS, "SCMP_ACT_TRAP": TRAP, "SCMP_ACT_ERRNO": ERRNO,
    "SCMP_ACT_TRACE": TRACE, "SCMP_ACT_ALLOW": ALLOW, "SCMP_ACT_LOG": LOG,
    "SCMP_ACT_NOTIFY": USER_NOTIF,
}
EPERM = 1


def oci_action(action: str, errno_ret: int | None) -> int:
    base = _OCI_ACTIONS[action]
    if base in (ERRNO, TRACE):
        return base | (EPERM if errno_ret is None else errno_ret)
    return base


# ---------------------------------------------------------------------------------
# The shared syscall table: (arch, name) -> nr, and every number per arch.


def _table() -> dict[tuple[str, str], int]:
    out = {}
    with open(SYSCALL_CSV, newline="") as f:
        for row in csv.DictReader(f):
            if row["arch"] in ("x86_64", "x86", "x32"):
                out[(row["arch"], row["name"])] = int(row["nr"])
    return out


TABLE = _table()


def nr_of(arch: str, syscall: str) -> int:
    return TABLE[(arch, syscall)]


ARCHES = ("x86_64", "x32", "x86")
# Numbers no table has: above every table, the top of the 32-bit range, ARM's private
# base, and the x32 bit on its own. x32 gets its own range (bit 30 set).
_UNKNOWN = (1000, 1100, 2000, 4095, 0xF0000, 0x3FFFFFFF, 0x7FFFFFFF, 0x80000000,
            0xFFFFFFFE, 0xFFFFFFFF)


def numbers(arch: str) -> tuple[int, ...]:
    """Every number asked on arch: the table's, 0..1100 (all holes), and unknown ones."""
    table = {nr for (a, _), nr in TABLE.items() if a == arch}
    if arch == "x32":
        base = set(X32_BIT | n for n in range(1101)) | {X32_BIT | 0x3FFFFFFF, X32_BIT | 4095}
    else:
        base = set(range(1101)) | set(_UNKNOWN)
    return tuple(sorted(table | base))


# ---------------------------------------------------------------------------------
# Boundary arguments of a profile's conditions.


def _near(v: int) -> list[int]:
    return [x for x in (v - 1, v, v + 1, v | 1 << 32, v & U32) if 0 <= x <= U64]


def arg_sets(profile: Mapping[str, Any], width: int) -> tuple[tuple[int, ...], ...]:
    """Argument tuples on and around every condition of every rule.

    Per rule: all its conditions met at once, then each condition moved to each of its
    boundary values (v-1, v, v+1, with and without a high word) while the others stay met.
    """
    out: set[tuple[int, ...]] = set()
    for rule in profile.get("syscalls") or ():
        conds = rule.get("args") or ()
        if not conds:
            continue
        base = [0] * 6
        for c in conds:
            meet = c.get("valueTwo", 0) if c["op"] == "SCMP_CMP_MASKED_EQ" else c["value"]
            base[c["index"]] = meet
        out.add(tuple(a & width for a in base))
        for c in conds:
            for v in _near(c["value"]) + _near(c.get("valueTwo", 0)):
                moved = list(base)
                moved[c["index"]] = v
                out.add(tuple(a & width for a in moved))
    return tuple(sorted(out))


ZERO = (0,) * 6
WIDTH = {"x86_64": U64, "x32": U64, "x86": U32}
Key = tuple[str, int, tuple[int, ...]]


@dataclass(frozen=True)
class Answers:
    """A program's answer for every probe: (arch, nr, ZERO) always, other args where it reads them."""

    by_key: dict[Key, int]

    def get(self, arch: str, nr: int, args: tuple[int, ...]) -> int:
        hit = self.by_key.get((arch, nr, args))
        # No entry: zero args took a path that never loaded an argument, and the path
        # depends only on what was loaded, so every argument value gets that answer.
        return hit if hit is not None else self.by_key[(arch, nr, ZERO)]


_answers_cache: dict[tuple[bytes, str], Answers] = {}


def answers(program: Sequence[Insn], profile: Mapping[str, Any], key: bytes) -> Answers:
    """Emulate program on every x86_64, x32 and i386 number, and boundary args where read."""
    cache_key = (key, json.dumps(profile, sort_keys=True))
    if cache_key in _answers_cache:
        return _answers_cache[cache_key]
    out: dict[Key, int] = {}
    for arch in ARCHES:
        a = BY_NAME[arch]
        extra = arg_sets(profile, WIDTH[arch])
        for nr in numbers(arch):
            first = emu.run(program, a, nr, ZERO)
            out[(arch, nr, ZERO)] = first.ret
            if first.read_args:
                for args in extra:
                    out[(arch, nr, args)] = emu.run(program, a, nr, args).ret
    result = Answers(out)
    _answers_cache[cache_key] = result
    return result


def weaker(candidate: Answers, reference: Answers, limit: int = 5) -> list[str]:
    """Probes where candidate answers less strictly than reference (first few)."""
    found = []
    for key in sorted(set(candidate.by_key) | set(reference.by_key)):
        c, r = candidate.get(*key), reference.get(*key)
        if rank(c) < rank(r):
            arch, nr, args = key
            found.append(f"{arch} nr {nr:#x} args {args}: {name(c)} < {name(r)}")
            if len(found) >= limit:
                break
    return found


def differs(a: Answers, b: Answers) -> bool:
    return any(a.get(*k) != b.get(*k) for k in set(a.by_key) | set(b.by_key))


# ---------------------------------------------------------------------------------
# runc's view: the JSON profile compiled as runc compiles it, by the host libseccomp.

_SCMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
             "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_SCMP_ARCHES = {"SCMP_ARCH_X86_64": pyseccomp.Arch.X86_64, "SCMP_ARCH_X86": pyseccomp.Arch.X86,
                "SCMP_ARCH_X32": pyseccomp.Arch.X32}
_NR_SCMP_ERROR = -1


def runc_program(seccomp: Mapping[str, Any]) -> tuple[Insn, ...] | None:
    """The program runc 1.1 would build from this linux.seccomp; None where runc fails.

    As runc does: names libseccomp cannot resolve are skipped, a rule whose action is
    the default is skipped, each condition is passed as written. runc's own ENOSYS stub
    is left out: both sides of a comparison would get one, and it only ever replaces
    the default action above the highest named number.
    """
    default = oci_action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    try:
        f = pyseccomp.SyscallFilter(default)
        for arch in seccomp.get("architectures") or ():
            token = _SCMP_ARCHES[arch]
            if not f.exist_arch(token):
                f.add_arch(token)
        for rule in seccomp.get("syscalls") or ():
            action = oci_action(rule["action"], rule.get("errnoRet"))
            if action == default:
                continue
            conds = [pyseccomp.Arg(c["index"], _SCMP_OPS[c["op"]], c["value"], c.get("valueTwo", 0))
                     for c in rule.get("args") or ()]
            for syscall in rule["names"]:
                if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, syscall) == _NR_SCMP_ERROR:
                    continue
                f.add_rule(action, syscall, *conds)
        with tempfile.TemporaryFile() as out:
            f.export_bpf(out)
            out.seek(0)
            return decode(out.read(), "little")
    except OSError:
        return None  # libseccomp refused the profile: runc creates no container


# ---------------------------------------------------------------------------------
# Configs and the hook.


def config(seccomp: Mapping[str, Any], annotations: Mapping[str, Any] | None = None) -> dict:
    """A minimal OCI config.json around a seccomp profile."""
    cfg: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"args": ["/bin/sh"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "annotations": {"io.kubernetes.pod.name": "hostile"},
        "linux": {"seccomp": copy.deepcopy(dict(seccomp))},
    }
    cfg["annotations"].update(annotations or {})
    return cfg


def without_ours(cfg: Mapping[str, Any]) -> dict:
    """The config with every ocishim.* annotation and crun's BPF annotation taken out."""
    out = copy.deepcopy(dict(cfg))
    out["annotations"] = {k: v for k, v in (out.get("annotations") or {}).items()
                          if not k.startswith(PREFIX) and k != BPF_ANNOTATION}
    return out


@dataclass(frozen=True)
class Outcome:
    rc: int
    stdout: str
    stderr: str

    @property
    def accepted(self) -> bool:
        return self.rc == 0

    @property
    def config(self) -> dict:
        return json.loads(self.stdout)

    @property
    def bpf(self) -> bytes:
        return base64.b64decode(self.config["annotations"][BPF_ANNOTATION], validate=True)

    @property
    def program(self) -> tuple[Insn, ...]:
        return decode(self.bpf, "little")


def run_hook(cfg: Mapping[str, Any], settings_path: str) -> Outcome:
    """The precreate hook in this process, settings read from settings_path as the CLI does."""
    from ocishim.integrations.hook import precreate
    from ocishim.integrations.settings import load_settings

    out, err = io.StringIO(), io.StringIO()
    # The hook's one line for its caller is written to fd 2 itself: catch it there too.
    with tempfile.TemporaryFile() as fd2, contextlib.redirect_stderr(err):
        saved = os.dup(2)
        os.dup2(fd2.fileno(), 2)
        try:
            settings = load_settings(settings_path)
            rc = precreate(io.StringIO(json.dumps(cfg)), out, settings)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        fd2.seek(0)
        raw = fd2.read().decode()
    return Outcome(rc, out.getvalue(), err.getvalue() + raw)


def write_settings(directory: Path, values: Mapping[str, Any], log: Path) -> str:
    """A settings file (the administrator's), logging to a file so nothing goes to stderr."""
    body = dict(values)
    body.setdefault("log", str(log))
    text = json.dumps(body, sort_keys=True)
    path = directory / f"settings-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    path.write_text(text)
    return str(path)


def names_annotation(message: str, keys: Iterable[str]) -> bool:
    """True when the message names one of the annotations (annotations.ocishim.KEY)."""
    return any(f"annotations.{PREFIX}{k}" in message for k in keys)
