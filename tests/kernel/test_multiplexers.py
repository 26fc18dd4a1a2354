"""socketcall(2) and ipc(2) keep their rules' answers on the real kernel (issue 7).

On i386 libseccomp compiles a rule for a socket call (socket, connect, sendmsg...)
onto the direct syscall and also onto socketcall (nr 102) with `arg0 == SYS_*`, and a
rule for an IPC call (semop, shmget, msgsnd...) onto ipc (nr 117) with `arg0 == call`
(libseccomp src/syscalls.c abi_rule_add). The profile never names 102 or 117, yet
their answers are rules' answers, so semantics.md v2 counts them in named(A): the stub
only ever replaces the default action.

For every shared profile (those without SCMP_ARCH_X86 get it added, so each one is
tried on i386) and for profiles of our own that name socket and IPC calls but not
socketcall or ipc, each is patched in every mode and the kernel answers i386 calls
(`int $0x80`) through both the patched and the unpatched program. The oracle is the
kernel's answer on the unpatched program and the contract written out here:
  - a multiplexer the unpatched program answers with anything but the default action,
    for some arguments, is named: every call on it keeps the unpatched answer, in
    every mode (the stub reads only arch and nr, so that holds for arg0 = 0 or 21 too);
  - one it answers with the default for every probed call and the profile does not
    name gets ENOSYS in `unnamed` when the stub applies (rule 2), and in the other
    modes either the default or ENOSYS, the same for every call on that nr.
Direct i386 socket/IPC syscalls the profile names keep their answers as well.
"""

from __future__ import annotations

import csv
import functools
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import pytest

from ocishim.actions import describe
from ocishim.patch import Patched, patch_profile
from ocishim.profile import load, load_object
from ocishim.profile.model import Profile

from .harness import Call, ia32_available, kernel_results, require_kernel
from .test_emu_vs_kernel import KERNEL, PROFILES

ROOT = Path(__file__).resolve().parents[2]
SYSCALL_CSV = PROFILES.parent / "syscalls" / "syscalls.csv"

# i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl).
NR_SOCKETCALL, NR_IPC = 102, 117
U32 = 0xFFFFFFFF

# include/uapi/linux/net.h: socketcall's call numbers.
SOCKETCALL = {
    "socket": 1, "bind": 2, "connect": 3, "listen": 4, "accept": 5, "getsockname": 6,
    "getpeername": 7, "socketpair": 8, "send": 9, "recv": 10, "sendto": 11,
    "recvfrom": 12, "shutdown": 13, "setsockopt": 14, "getsockopt": 15, "sendmsg": 16,
    "recvmsg": 17, "accept4": 18, "recvmmsg": 19, "sendmmsg": 20,
}
# include/uapi/linux/ipc.h: ipc's call numbers (the kernel reads the low 16 bits of
# arg0 as the call and the high 16 as a version).
IPC = {
    "semop": 1, "semget": 2, "semctl": 3, "semtimedop": 4, "msgsnd": 11, "msgrcv": 12,
    "msgget": 13, "msgctl": 14, "shmat": 21, "shmdt": 22, "shmget": 23, "shmctl": 24,
}
MUX = {NR_SOCKETCALL: ("socketcall", SOCKETCALL), NR_IPC: ("ipc", IPC)}

# SECCOMP_RET_* (include/uapi/linux/seccomp.h), for the default action of a profile.
RET = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
       "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
       "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
       "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
ERRNO_EPERM, ERRNO_ENOSYS = 0x00050001, 0x00050026
EMULATE = (5, 4)
RANDOM_VECTORS = 2  # per call number, random 32-bit args 1..5

# (id, --enosys mode, --emulate-kernel)
MODES = [("unnamed", "unnamed", None), ("auto", "auto", None), ("max", "max", None),
         ("off", "off", None), ("kernel:5.4", "kernel:5.4", None),
         ("unnamed+emulate5.4", "unnamed", EMULATE)]

# Our own profiles: socket and IPC calls named with mixed actions, socketcall and ipc
# never named. Some call numbers are left out (accept, socketpair, recvmmsg...), so
# the default answers on the multiplexers are probed as well.
_OWN_RULES = [
    {"names": ["read", "write", "exit_group", "socket", "connect", "sendmsg", "recvmsg",
               "sendto", "recvfrom", "getsockopt", "setsockopt", "accept4", "shutdown",
               "semop", "semget", "semctl", "shmget", "shmat", "shmdt", "msgsnd",
               "msgrcv"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["bind", "listen"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    {"names": ["msgget", "msgctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22},
    {"names": ["shmctl"], "action": "SCMP_ACT_TRAP"},
]
OWN = {
    "own-eperm": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                  "syscalls": _OWN_RULES},
    "own-kill-process": {"defaultAction": "SCMP_ACT_KILL_PROCESS",
                         "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                         "syscalls": _OWN_RULES},
    # Argument conditions: socket only for AF_UNIX (1), sendmsg only with flags 0,
    # shmget only without IPC_CREAT (0o1000) in shmflg. libseccomp overwrites the arg0
    # condition with the call number on socketcall and keeps the others at the same
    # index, although socketcall's and ipc's arguments are laid out differently.
    "own-conditions": {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write", "exit_group", "connect", "semop"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["sendmsg"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["shmget"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 0o1000, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
        ]},
}


def shared_files() -> list[str]:
    return sorted(p.name for p in PROFILES.glob("*.json")) if PROFILES.is_dir() else []


PROFILE_IDS = [*shared_files(), *OWN]


@functools.cache
def profile(pid: str) -> Profile:
    """The profile as an engine on x86_64 hands it over, with SCMP_ARCH_X86 added if missing."""
    if pid in OWN:
        loaded = load_object(OWN[pid], pid)
    else:
        loaded = load(str(PROFILES / pid), kernel=KERNEL)
    p = loaded.profile
    assert p is not None, f"{pid} asks for no filter"
    if "SCMP_ARCH_X86" not in p.architectures:
        p = p.replace(architectures=(*p.architectures, "SCMP_ARCH_X86"))
    return p


@functools.cache
def patched(pid: str, mode: str, emulate: tuple[int, int] | None) -> Patched:
    return patch_profile(profile(pid), mode, emulate=emulate)


@functools.cache
def x86_table() -> dict[str, tuple[int, tuple[int, int]]]:
    """name -> (i386 nr, since) from the shared syscall table."""
    out = {}
    with SYSCALL_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["arch"] == "x86":
                major, minor = row["since"].split(".")
                out[row["name"]] = (int(row["nr"]), (int(major), int(minor)))
    return out


def default_answer(p: Profile) -> int:
    ret = RET[p.default_action]
    if p.default_action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        ret |= p.default_errno_ret if p.default_errno_ret is not None else 1
    return ret


def stub_applies(p: Profile) -> bool:
    """semantics.md rule 2, without --emulate-kernel: only then does E(A) of the mode
    apply (with a permissive default, --emulate-kernel adds only numbers newer than
    its version, and socketcall and ipc are older than any, see below)."""
    d = default_answer(p)
    return d != ERRNO_ENOSYS and p.default_action not in (
        "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")


def rule_vectors(p: Profile, names: Iterable[str]) -> list[dict[int, int]]:
    """Argument values (index -> value) from the conditions of rules on names, with
    neighbours, alone and all of a rule together; i386 arguments are 32 bits."""
    wanted = set(names)
    out: list[dict[int, int]] = []
    for rule in p.syscalls:
        if not wanted & set(rule.names) or not rule.args:
            continue
        together: dict[int, int] = {}
        for c in rule.args:
            target = c.value_two if c.op == "SCMP_CMP_MASKED_EQ" else c.value
            together[c.index] = target & U32
            for v in {target, target - 1, target + 1, c.value, ~target}:
                out.append({c.index: v & U32})
        out.append(together)
    return out


def mux_calls(p: Profile, nr: int) -> list[Call]:
    """Calls on socketcall or ipc: every call number and its neighbours, odd arg0
    values, and the argument values the profile's rules test."""
    mux_name, numbers = MUX[nr]
    arg0s = sorted({*range(0, max(numbers.values()) + 2), 0xFFFF, 0x10000 | 1, 0x10000 | 23,
                    2**31, U32})
    calls = [Call(nr, (a0,), abi="i386") for a0 in arg0s]
    calls += [Call(nr, (a0, U32, U32, U32, U32, U32), abi="i386") for a0 in numbers.values()]
    rng = random.Random(nr)  # seeded: the same calls every run
    for a0 in numbers.values():
        calls += [Call(nr, (a0, *(rng.randrange(U32 + 1) for _ in range(5))), abi="i386")
                  for _ in range(RANDOM_VECTORS)]
    for name, a0 in numbers.items():
        for vec in rule_vectors(p, [name]):
            args = [0] * 6
            for i, v in vec.items():
                args[i] = v
            args[0] = a0  # libseccomp's rule on the multiplexer tests arg0 == call
            calls.append(Call(nr, tuple(args), abi="i386"))
    for vec in rule_vectors(p, [mux_name]):
        args = [0] * 6
        for i, v in vec.items():
            args[i] = v
        calls.append(Call(nr, tuple(args), abi="i386"))
    return list(dict.fromkeys(calls))


def direct_calls(p: Profile) -> list[Call]:
    """Direct i386 socket/IPC syscalls the profile names, with its condition values."""
    named = set(p.names())
    calls = []
    for name in sorted(named & (set(SOCKETCALL) | set(IPC))):
        if name not in x86_table():
            continue  # semop, semtimedop, send, recv: only through the multiplexer on i386
        nr = x86_table()[name][0]
        calls.append(Call(nr, abi="i386"))
        for vec in rule_vectors(p, [name]):
            args = [0] * 6
            for i, v in vec.items():
                args[i] = v
            calls.append(Call(nr, tuple(args), abi="i386"))
    return list(dict.fromkeys(calls))


def names_socket_calls(p: Profile) -> bool:
    return bool(set(p.names()) & set(SOCKETCALL))


def names_ipc_calls(p: Profile) -> bool:
    return bool(set(p.names()) & set(IPC))


def needs_ia32() -> None:
    require_kernel()
    if reason := ia32_available():
        pytest.skip(f"i386 calls (int $0x80) cannot be issued: {reason}")


def show(call: Call) -> str:
    return f"i386 nr {call.nr}({', '.join(hex(a) for a in call.args)})"


# ---------------------------------------------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("mode_id,mode,emulate", MODES, ids=[m[0] for m in MODES])
@pytest.mark.parametrize("pid", PROFILE_IDS)
def test_multiplexers_keep_unpatched_answers(pid: str, mode_id: str, mode: str,
                                            emulate: tuple[int, int] | None):
    needs_ia32()
    p = profile(pid)
    pt = patched(pid, mode, emulate)
    assert "x86" in {a.name for a in pt.compiled.arches}, f"{pid}: the filter lacks x86"
    d = default_answer(p)
    # --emulate-kernel never reaches the multiplexers: they are older than its version.
    assert all(x86_table()[name][1] <= EMULATE for name, _ in MUX.values())
    per_nr = {nr: mux_calls(p, nr) for nr in MUX}
    direct = direct_calls(p)
    if names_socket_calls(p) or names_ipc_calls(p):
        assert direct, f"{pid}: no direct i386 call for its socket/IPC names"
    calls = [c for nr in MUX for c in per_nr[nr]] + direct
    before = dict(zip(calls, kernel_results(pt.compiled.program, calls)))
    after = dict(zip(calls, kernel_results(pt.program, calls)))
    wrong: list[str] = []

    for nr, (mux_name, numbers) in MUX.items():
        mine = per_nr[nr]
        rule_answers = [c for c in mine if before[c] != d]
        names_calls = names_socket_calls(p) if nr == NR_SOCKETCALL else names_ipc_calls(p)
        if names_calls and p.default_action != "SCMP_ACT_ALLOW":
            # libseccomp must have put a rule on the multiplexer, or this test says nothing.
            assert rule_answers, f"{pid}: no rule's answer on {mux_name} although named calls"
        if rule_answers or mux_name in p.names():
            # Named: every call keeps the unpatched answer (rule 1).
            for c in mine:
                if after[c] != before[c]:
                    wrong.append(f"{show(c)}: patched {describe(after[c])}, unpatched "
                                 f"{describe(before[c])}")
            continue
        # Unnamed by name and by program: the stub may answer ENOSYS instead of the
        # default, for the whole nr at once.
        answers = {after[c] for c in mine}
        if mode == "unnamed" and stub_applies(p):
            allowed = [{ERRNO_ENOSYS}]
        elif mode == "off" and emulate is None:
            allowed = [{d}]
        else:  # auto, max, kernel:X.Y decide by age or by the maximum: either, whole nr
            allowed = [{d}, {ERRNO_ENOSYS}]
        if answers not in allowed:
            wrong.append(f"{mux_name} (unnamed, default {describe(d)}): patched answers "
                         f"{sorted(describe(a) for a in answers)}, want one of "
                         f"{[[describe(a) for a in w] for w in allowed]}")

    for c in direct:
        name = next(n for n, (nr, _) in x86_table().items() if nr == c.nr)
        since = x86_table()[name][1]
        want_direct = ERRNO_ENOSYS if emulate is not None and since > emulate else before[c]
        if after[c] != want_direct:
            wrong.append(f"{show(c)} ({name}): patched {describe(after[c])}, want "
                         f"{describe(want_direct)}")
    assert not wrong, f"{pid} [{mode_id}]: {len(wrong)} of {len(calls)} calls wrong:\n" + \
        "\n".join(wrong[:40])


def test_every_profile_is_tried_on_i386():
    """The shared profiles are all here, each filter carries x86, and ours name no
    multiplexer (so only libseccomp's program can make them named)."""
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there")
    assert {"docker-default.json", "containers-default.json",
            "spo-security-profiles-operator.json"} <= set(PROFILE_IDS)
    for pid in PROFILE_IDS:
        assert "SCMP_ARCH_X86" in profile(pid).architectures
    for pid in OWN:
        names = set(profile(pid).names())
        assert not {"socketcall", "ipc"} & names
        assert names & set(SOCKETCALL) and names & set(IPC)


@pytest.mark.kernel
def test_libseccomp_moves_socket_rules_onto_socketcall():
    """What the oracle relies on, measured on the kernel (libseccomp abi_rule_add): the
    socket rule lands on socketcall(SYS_SOCKET) with its arg0 condition replaced by the
    call number, so socketcall(1, ...) is allowed whatever the family, while the direct
    socket(2) (AF_INET) falls to the default; sendmsg's arg2 condition stays on arg2.
    ipc's rule tests the whole arg0, so a call number with version bits (the kernel
    reads only the low 16 bits as the call) gets the default."""
    needs_ia32()
    p = profile("own-conditions")
    prog = patch_profile(p, "off").compiled.program
    socket_nr = x86_table()["socket"][0]
    sendmsg = SOCKETCALL["sendmsg"]
    calls = [Call(NR_SOCKETCALL, (1, 0), abi="i386"), Call(NR_SOCKETCALL, (1, U32), abi="i386"),
             Call(socket_nr, (1,), abi="i386"), Call(socket_nr, (2,), abi="i386"),
             Call(NR_SOCKETCALL, (sendmsg, 0, 0), abi="i386"),
             Call(NR_SOCKETCALL, (sendmsg, 0, 1), abi="i386"),
             Call(NR_SOCKETCALL, (SOCKETCALL["accept"],), abi="i386"),
             Call(NR_IPC, (IPC["semop"],), abi="i386"),
             Call(NR_IPC, (0x10000 | IPC["semop"],), abi="i386")]
    allow = RET["SCMP_ACT_ALLOW"]
    assert [describe(a) for a in kernel_results(prog, calls)] == [describe(a) for a in (
        allow, allow, allow, ERRNO_EPERM, allow, ERRNO_EPERM, ERRNO_EPERM,
        allow, ERRNO_EPERM)]


# ---------------------------------------------------------------------------------
# explain (no kernel): the CLI reports the same for the multiplexers


def explain(path: Path) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, "-m", "ocishim", "explain", str(path), "--arch", "x86",
                           "socketcall", "ipc", "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    return {row["name"]: row for row in rows}


@pytest.mark.parametrize("pid", ["docker-default.json", "own-eperm", "own-conditions"])
def test_explain_unnamed_keeps_multiplexers(pid: str, tmp_path: Path):
    if pid in OWN:
        path = tmp_path / f"{pid}.json"
        path.write_text(json.dumps(OWN[pid]))
    else:
        path = PROFILES / pid
        if not path.is_file():
            pytest.skip(f"{path} is not there")
    rows = explain(path)
    assert set(rows) == {"socketcall", "ipc"}
    for name, nr in (("socketcall", NR_SOCKETCALL), ("ipc", NR_IPC)):
        row = rows[name]
        assert (row["arch"], row["nr"]) == ("x86", nr)
        assert row["before"] != "ERRNO(EPERM)", f"{name}: libseccomp put no rule on it"
        assert row["after"] == row["before"], row
