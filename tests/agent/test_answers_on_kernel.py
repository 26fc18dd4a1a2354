"""Audit never changes an answer: on the kernel, through the real agent, each call gets what
the unaudited filter gives, as the emulator says (the oracle), and exactly the default's and
the stub's refusals reach the agent.

The audited filter is loaded neutralized (tests/agent/helpers.py), so nothing runs; the
agent answers the USER_NOTIF returns. The expected answer comes from the emulator on the
*unaudited* patched program, and which calls must be notified from the patch's own E(A)
and the profile's default, written out here again (issue 13, semantics.md).
"""

from __future__ import annotations

import pytest

from ocishim import audit, syscalls
from ocishim.actions import RET_ACTION_FULL, RET_DATA, RET_ERRNO
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.bpf.markers import kernel_answer, kernel_view
from ocishim.patch import patch_profile
from ocishim.patch.enosys import contains
from ocishim.profile import load, load_object
from tests import shared_data

from . import helpers

pytestmark = pytest.mark.kernel
X86_64 = BY_NAME["x86_64"]
X32 = BY_NAME["x32"]
SKIP_NRS = {335, 336}
PROFILES = str(shared_data.PROFILES)


def _calls() -> list[tuple[int, tuple[int, ...]]]:
    """x86_64 0..520 and x32 0..560 with zero arguments, and arguments that fail conditions."""
    calls = [(nr, ()) for nr in range(0, 521) if nr not in SKIP_NRS]
    calls += [(0x40000000 | nr, ()) for nr in range(0, 561, 7) if nr not in SKIP_NRS]
    calls += [(41, (40, 1, 0)), (41, (16, 3, 0)), (135, (0x12345,)), (135, (0,)),
              (56, (0x10000000, 0, 0, 0, 0)), (272, (0x20000000,)), (1000, (1, 2, 3))]
    return calls


def _arch_of(nr: int):
    return X32 if nr & 0x40000000 else X86_64


def _check(profile, mode: str = "unnamed", plain: tuple[str, ...] = ()) -> dict:
    patched = patch_profile(profile, mode)
    audited = audit.audit_program(patched, plain)
    neutral, markers = helpers.neutralize_audited(audited.program)
    calls = _calls()
    agent = helpers.start_agent()
    try:
        proc = helpers.run_probe(agent.socket, neutral, calls, audit.metadata(audited.program), "h13-oracle")
        got = helpers.results(proc)
        agent.stop()
        lines = agent.lines()
    finally:
        helpers.cleanup(agent)
    default = patched.compiled.default_action
    plain_nrs = {(a, syscalls.resolve(a, n)) for a in ("x86_64", "x32") for n in plain}
    expected_notified = 0
    wrong = []
    assert len(got) == len(calls)
    for (nr, args), (seen_nr, text) in zip(calls, got):
        assert seen_nr == nr
        assert not text.startswith("ok"), f"nr {nr:#x} returned without error: {text}"
        arch = _arch_of(nr)
        want = kernel_view(emu.run(patched.program, arch, nr, args).ret)
        have = kernel_answer(int(text), markers)
        if have != want:
            wrong.append((hex(nr), args, hex(want), hex(have)))
        in_enosys = contains(patched.enosys.get(arch.name, ()), nr)
        refused_by_default = want == default and default & RET_ACTION_FULL == RET_ERRNO and default & RET_DATA
        if (arch.name, nr) not in plain_nrs and (in_enosys or refused_by_default):
            expected_notified += 1
    assert not wrong, f"{len(wrong)} answers changed by audit, e.g. {wrong[:5]}"
    detached = [line for line in lines if line["event"] == "detached"]
    assert [d["notifications"] for d in detached] == [expected_notified]
    assert expected_notified > 0
    return {"lines": lines, "notified": expected_notified}


def test_docker_default_every_number():
    profile = load(f"{PROFILES}/docker-default.json").profile
    out = _check(profile)
    # socket(AF_VSOCK) fails the profile's conditions: EPERM from the default, through the agent.
    notified = {(l["syscall"], l["answer"]) for l in out["lines"] if l["event"] in ("notified", "repeated")}
    assert ("socket", "EPERM") in notified
    assert ("reboot", "ENOSYS") in notified
    assert not any(name == "clone3" for name, _ in notified)  # its own ERRNO(ENOSYS) rule


def _profile(obj: dict):
    return load_object(obj, "test", kind="seccomp").profile


def test_kill_default_only_the_stub_is_notified():
    profile = _profile({"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                     {"names": ["getpid"], "action": "SCMP_ACT_TRAP"},
                                     {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                                      "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]})
    _check(profile)


def test_errno_default_large_errno_and_explicit_errno_rules_stay():
    profile = _profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 3999,
                        "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                     {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                                     {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                                     {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]})
    for mode in ("off", "unnamed"):
        _check(profile, mode)


def test_plain_syscalls_keep_their_answer_on_the_kernel():
    profile = _profile({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW"}]})
    out = _check(profile, "off", plain=tuple(c.syscall for c in audit.PLAIN["exec"]))
    # More kinds of call than the log's burst: some are only in `repeated` lines.
    named = {l["syscall"] for l in out["lines"] if l["event"] in ("notified", "repeated")}
    assert not named & {"write", "close", "sendmsg", "execve", "exit_group", "setitimer"}
    assert "openat" in named


def test_one_agent_serves_several_containers_at_once():
    """Three audited processes at the same time, each with its own filter and errno: each
    gets its own filter's answers from the one event loop."""
    import threading

    getppid = syscalls.resolve("x86_64", "getppid")
    errnos = (1, 6, 13)  # EPERM, ENXIO, EACCES as defaultErrnoRet
    agent = helpers.start_agent()
    outcomes: dict[int, object] = {}
    try:
        def one(err: int) -> None:
            profile = _profile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": err,
                                "architectures": ["SCMP_ARCH_X86_64"],
                                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
            audited = audit.audit_program(patch_profile(profile, "off"))
            neutral, _ = helpers.neutralize_audited(audited.program)
            outcomes[err] = helpers.run_probe(agent.socket, neutral, [(getppid, ())] * 20_000,
                                              audit.metadata(audited.program), f"h13-multi-{err}", 60)
        threads = [threading.Thread(target=one, args=(e,)) for e in errnos]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        agent.stop()
        lines = agent.lines()
    finally:
        helpers.cleanup(agent)
    for err in errnos:
        assert {text for _, text in helpers.results(outcomes[err])} == {str(err)}
    detached = {l["container"]: l["notifications"] for l in lines if l["event"] == "detached"}
    assert detached == {f"h13-multi-{e}": 20_000 for e in errnos}
