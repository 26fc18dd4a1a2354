"""Hostile annotations never make the filter weaker (issue 7; rule 10 of semantics.md).

Annotations come from pod authors; the settings file from the administrator. For every
profile below (ERRNO, ENOSYS, KILL_PROCESS, KILL_THREAD, TRAP, LOG, ALLOW and NOTIFY
defaults; KILL, TRAP, NOTIFY, TRACE, LOG, ERRNO and ALLOW rules, with argument conditions, on
old syscalls and on syscalls newer than the emulated kernels), every settings file and
every hostile annotation set, the precreate hook must either refuse (exit 2, nothing on
stdout, a message naming the annotation) or give a program whose answer, for every
x86_64, x32 and i386 number and the rules' boundary arguments, is at least as strict as
the settings-only program's (the same config without ocishim.* annotations). The same
holds for the JSON profile a runc-like compile of the rewritten config gives. With
"annotations": "ignore" the annotations change nothing.

Which way a case must go is worked out in the hand-picked tests from the contract
(the precedence of actions and what each mode does), not from ocishim's output; the
matrix only checks that no accepted answer is weaker and no refusal is needless.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from kernel.harness import Call, ia32_available, kernel_results, require_kernel

from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.bpf.markers import kernel_view

from . import hostile as H
from .hostile import ALLOW, ERRNO, KILL_PROCESS, TRAP, Outcome, nr_of

ALL3 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
LISTENER = "/run/ocishim-test/agent.sock"
BASICS = ["read", "write", "close", "exit", "exit_group", "rt_sigreturn", "futex", "brk"]
ENOSYS = 38

# Kernel versions of the syscalls the profiles name (shared table): listmount,
# statmount 6.8; mseal 6.10; fchmodat2 6.6; cachestat 6.5; openat2 5.6;
# pidfd_open 5.3; faccessat2 5.8; kcmp 3.5; the rest 3.0. The host libseccomp 2.5.4
# knows none of listmount, statmount, mseal: their rules are ocishim's own.

PROFILES: dict[str, dict[str, Any]] = {
    "eperm": {
        "defaultAction": "SCMP_ACT_ERRNO", "architectures": ALL3, "listenerPath": LISTENER,
        "syscalls": [
            {"names": BASICS + ["listmount", "openat2"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat2"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["pidfd_open"], "action": "SCMP_ACT_TRAP"},
            {"names": ["clone"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 0, "value": 0x10000000, "valueTwo": 0x10000000,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["statmount", "kcmp"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["cachestat", "getppid"], "action": "SCMP_ACT_LOG"},
            {"names": ["faccessat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 2, "value": 5, "op": "SCMP_CMP_GT"}]},
            {"names": ["mseal"], "action": "SCMP_ACT_KILL",
             "args": [{"index": 1, "value": 4096, "op": "SCMP_CMP_LE"}]},
        ],
    },
    "enosys-default": {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": ENOSYS, "architectures": ALL3,
        "syscalls": [
            {"names": BASICS + ["listmount"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["fchmodat2"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["pidfd_open"], "action": "SCMP_ACT_TRAP"},
        ],
    },
    "kill-process": {
        "defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64"],
        "listenerPath": LISTENER,
        "syscalls": [
            {"names": BASICS + ["listmount"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["fchmodat2"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["statmount"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ],
    },
    "kill-thread": {
        "defaultAction": "SCMP_ACT_KILL", "architectures": ALL3,
        "syscalls": [
            {"names": BASICS + ["openat2"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 9, "op": "SCMP_CMP_LT"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        ],
    },
    "trap": {
        "defaultAction": "SCMP_ACT_TRAP", "architectures": ALL3, "listenerPath": LISTENER,
        "syscalls": [
            {"names": BASICS + ["cachestat"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mseal"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["listmount"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
            # On i386 libseccomp puts socket rules on socketcall as well.
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ],
    },
    "log": {
        "defaultAction": "SCMP_ACT_LOG", "architectures": ALL3, "listenerPath": LISTENER,
        "syscalls": [
            {"names": ["mseal"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["fchmodat2"], "action": "SCMP_ACT_TRAP"},
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kcmp"], "action": "SCMP_ACT_NOTIFY"},
        ],
    },
    "allow": {  # the issue's case first: a forged enosys-rule annotation points at it
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ALL3, "listenerPath": LISTENER,
        "syscalls": [
            {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {"names": ["fchmodat2"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["listmount"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["kcmp"], "action": "SCMP_ACT_TRAP"},
            {"names": ["cachestat"], "action": "SCMP_ACT_LOG"},
            {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
        ],
    },
    "notify-default": {
        "defaultAction": "SCMP_ACT_NOTIFY", "architectures": ALL3, "listenerPath": LISTENER,
        "syscalls": [
            {"names": BASICS, "action": "SCMP_ACT_ALLOW"},
            {"names": ["fchmodat2"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    },
    "unknown-name": {
        "defaultAction": "SCMP_ACT_ERRNO", "architectures": ALL3,
        "syscalls": [
            {"names": BASICS + ["not_a_real_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["fchmodat2"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    },
}

# The administrator's settings files.
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "unnamed": {"enosys": "unnamed"},
    "auto": {"enosys": "auto"},
    "max": {"enosys": "max"},
    "off": {"enosys": "off"},
    "kernel:5.4": {"enosys": "kernel:5.4"},
    "emulate-5.10": {"emulate-kernel": "5.10"},
    "off+emulate-6.1": {"enosys": "off", "emulate-kernel": "6.1"},
    "unknown-fail": {"unknown-syscall": "fail"},
    "ignore+off": {"enosys": "off", "annotations": "ignore"},
    "use+auto": {"enosys": "auto", "annotations": "use"},
}

# One RET ALLOW, little-endian: a pod's "filter" that lets everything through.
ALLOW_ALL_BPF = base64.b64encode(struct.pack("<HBBI", 0x06, 0, 0, ALLOW)).decode()


def forged_rule(profile: dict[str, Any], index: int = 0) -> str:
    """What ocishim used to write for its own rule, pointing at one of the profile's rules."""
    return json.dumps({"index": index, "names": profile["syscalls"][index]["names"]},
                      separators=(",", ":"))


def annotation_sets(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Hostile annotation sets that are well-formed values (garbage is tested apart)."""
    e, k, u = "ocishim.enosys", "ocishim.emulate-kernel", "ocishim.unknown-syscall"
    sets: dict[str, dict[str, Any]] = {f"enosys={m}": {e: m} for m in (
        "unnamed", "auto", "max", "off", "kernel:3.0", "kernel:5.4", "kernel:6.20")}
    sets.update({f"emulate={v}": {k: v} for v in ("3.0", "6.0", "6.20")})
    sets["off+emulate=3.0"] = {e: "off", k: "3.0"}
    sets["unnamed+emulate=6.20"] = {e: "unnamed", k: "6.20"}
    sets["unknown=warn"] = {u: "warn"}
    sets["unknown=fail"] = {u: "fail"}
    sets["forged-rule"] = {"ocishim.enosys-rule": forged_rule(profile)}
    sets["forged-bpf"] = {H.BPF_ANNOTATION: ALLOW_ALL_BPF}
    sets["forged-all"] = {"ocishim.enosys-rule": forged_rule(profile),
                          H.BPF_ANNOTATION: ALLOW_ALL_BPF, e: "unnamed"}
    return sets


# Values no setting takes: each must stop the container, naming the annotation.
GARBAGE: list[tuple[str, Any]] = [
    ("enosys", "bogus"), ("enosys", "UNNAMED"), ("enosys", ""), ("enosys", "kernel:"),
    ("enosys", "kernel:x.y"), ("enosys", "unnamed "), ("enosys", 5), ("enosys", ["off"]),
    ("emulate-kernel", "latest"), ("emulate-kernel", "-1.0"), ("emulate-kernel", "6.20.1.7"),
    ("emulate-kernel", ""), ("emulate-kernel", 6.1),
    ("unknown-syscall", "ignore"), ("unknown-syscall", "WARN"), ("unknown-syscall", True),
]


# ---------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ocishim-hostile-") as d:
        yield Path(d)


def settings_file(workdir: Path, values: dict[str, str]) -> str:
    return H.write_settings(workdir, values, workdir / "ocishim.log")


def profile_answers(outcome: Outcome, profile: dict[str, Any]) -> H.Answers:
    return H.answers(outcome.program, profile, outcome.bpf)


def runc_answers(outcome: Outcome, profile: dict[str, Any]) -> H.Answers | None:
    seccomp = outcome.config["linux"]["seccomp"]
    program = H.runc_program(seccomp)
    if program is None:
        return None
    key = json.dumps(seccomp, sort_keys=True).encode()
    return H.answers(program, profile, b"runc:" + key)


def assert_refused(outcome: Outcome, keys: list[str], why: str) -> None:
    assert outcome.rc == 2, f"{why}: expected exit 2, got {outcome.rc}\n{outcome.stderr}"
    assert outcome.stdout == "", f"{why}: a refused config must print nothing on stdout"
    assert H.names_annotation(outcome.stderr, keys), \
        f"{why}: the message must name annotations.ocishim.{'/'.join(keys)}: {outcome.stderr!r}"
    assert "Traceback" not in outcome.stderr


def assert_not_weaker(ann: Outcome, ref: Outcome, profile: dict[str, Any], where: str) -> None:
    """ann accepted: its program and its JSON profile are at least as strict as ref's."""
    bad = H.weaker(profile_answers(ann, profile), profile_answers(ref, profile))
    assert not bad, f"{where}: the annotated BPF program is weaker:\n  " + "\n  ".join(bad)

    original = profile["syscalls"]
    rules = ann.config["linux"]["seccomp"].get("syscalls") or []
    assert rules[:len(original)] == original, \
        f"{where}: the profile's rules were removed or changed in linux.seccomp.syscalls"
    rest = {k: v for k, v in ann.config["linux"]["seccomp"].items() if k != "syscalls"}
    ref_rest = {k: v for k, v in ref.config["linux"]["seccomp"].items() if k != "syscalls"}
    assert rest == ref_rest, f"{where}: linux.seccomp outside the rules changed"

    runc_ref, runc_ann = runc_answers(ref, profile), runc_answers(ann, profile)
    if runc_ann is not None:  # None: runc would refuse, which is never weaker
        assert runc_ref is not None, f"{where}: runc accepts the annotated profile only"
        bad = H.weaker(runc_ann, runc_ref)
        assert not bad, f"{where}: the rewritten JSON profile is weaker for runc:\n  " + \
            "\n  ".join(bad)


# ---------------------------------------------------------------------------------
# The matrix


@pytest.mark.parametrize("profile_name", list(PROFILES))
def test_matrix(profile_name: str, workdir: Path):
    """Every settings file x every hostile annotation set: refused, or never weaker."""
    profile = PROFILES[profile_name]
    sets = annotation_sets(profile)
    checked = refused = accepted = restated = 0
    needless: list[str] = []
    for sname, svalues in SETTINGS.items():
        spath = settings_file(workdir, svalues)
        ref = H.run_hook(H.config(profile), spath)
        for aname, ann_values in sets.items():
            where = f"{profile_name} / settings {sname} / annotations {aname}"
            ours = sorted(k[len(H.PREFIX):] for k in ann_values if k.startswith(H.PREFIX))
            ann = H.run_hook(H.config(profile, ann_values), spath)
            checked += 1
            if not ref.accepted:
                # No container with the settings alone: no annotation may make one.
                assert not ann.accepted, f"{where}: refused without annotations, accepted with"
                assert ann.stdout == ""
                refused += 1
                continue
            if svalues.get("annotations") == "ignore":
                assert ann.accepted, f"{where}: ignored annotations refused:\n{ann.stderr}"
                assert ann.bpf == ref.bpf, f"{where}: ignored annotations changed the program"
                assert H.without_ours(ann.config) == H.without_ours(ref.config), \
                    f"{where}: ignored annotations changed the config"
                accepted += 1
                continue
            if restates(svalues, ann_values):
                # Saying again what the administrator said changes nothing: never refused.
                assert ann.accepted, f"{where}: refused an annotation equal to the settings"
                assert ann.bpf == ref.bpf, f"{where}: the same values gave another program"
                restated += 1
            if not ann.accepted:
                if ann_values.get("ocishim.unknown-syscall") == "fail" and \
                        UNKNOWN_NAME in json.dumps(profile) and UNKNOWN_NAME in ann.stderr:
                    # fail, asked for by the pod, refuses the profile's unknown name:
                    # the message names the name, not the annotation.
                    assert ann.rc == 2 and ann.stdout == "", where
                else:
                    assert_refused(ann, ours, where)
                refused += 1
                reason = needless_refusal(profile, svalues, ann_values, ann, ref, workdir)
                if reason:
                    needless.append(f"{where}: {reason}")
                continue
            accepted += 1
            assert_not_weaker(ann, ref, profile, where)
            assert ann.config["annotations"].get(H.BPF_ANNOTATION) != ALLOW_ALL_BPF, \
                f"{where}: a foreign run.oci.seccomp_bpf_data was kept"
            assert ann.config["annotations"]["io.kubernetes.pod.name"] == "hostile"
            if aname in ("forged-bpf", "enosys=unnamed") or sname in ("default", "off"):
                again = H.run_hook(ann.config, spath)
                assert again.accepted and again.stdout == ann.stdout, \
                    f"{where}: re-patching the patched config is not byte-identical"
    assert checked == len(SETTINGS) * len(sets)
    assert refused + accepted == checked
    # enosys=unnamed restates the default settings, enosys=off restates "off", and so on.
    assert restated >= 2 * (len(SETTINGS) - 2)
    assert not needless, "refused although no answer would be weaker:\n" + "\n".join(needless)


UNKNOWN_NAME = "not_a_real_syscall"


def restates(svalues: dict[str, str], ann_values: dict[str, Any]) -> bool:
    """True when every annotation is a choice key whose value the settings already have."""
    effective = {"enosys": "unnamed", "unknown-syscall": "warn", **svalues}
    if not ann_values or effective.get("annotations") == "ignore":
        return False
    return all(k.startswith(H.PREFIX) and k[len(H.PREFIX):] in H.CHOICE_KEYS
               and effective.get(k[len(H.PREFIX):]) == v for k, v in ann_values.items())


def needless_refusal(profile: dict[str, Any], svalues: dict[str, str], ann_values: dict[str, Any],
                     ann: Outcome, ref: Outcome, workdir: Path) -> str | None:
    """Why a refusal of a mode or emulate-kernel annotation was needless, or None.

    The annotation's result is what the administrator would get with the annotation's
    values in the settings file. If that is at least as strict as the settings alone
    everywhere the suite looks, rule 10 allows the annotation. Refusals that name
    enosys-rule or unknown-syscall are left alone: refusing a forged rule marker, or
    `warn` against `fail`, is never weaker and may be a deliberate simplification.
    """
    if not H.names_annotation(ann.stderr, ["enosys", "emulate-kernel"]) or \
            H.names_annotation(ann.stderr, ["enosys-rule", "unknown-syscall"]):
        return None
    merged = dict(svalues)
    for key in H.CHOICE_KEYS:
        if H.PREFIX + key in ann_values:
            merged[key] = ann_values[H.PREFIX + key]
    alone = H.run_hook(H.config(profile), settings_file(workdir, merged))
    if not alone.accepted:
        return None
    if H.weaker(profile_answers(alone, profile), profile_answers(ref, profile), limit=1):
        return None
    runc_alone, runc_ref = runc_answers(alone, profile), runc_answers(ref, profile)
    if runc_alone is None or runc_ref is None or H.weaker(runc_alone, runc_ref, limit=1):
        return None
    return f"the same values as settings give nothing weaker ({ann.stderr.strip()})"


# ---------------------------------------------------------------------------------
# Hand-picked cases: the outcome follows from the contract


def x86_64(name: str) -> int:
    return nr_of("x86_64", name)


# (profile, settings, annotations, why, [(arch, nr, expected action of the annotated
# program, expected action of the settings-only program)]). Expectations are the
# contract's: unnamed gives ENOSYS to every unnamed number, emulate-kernel X gives
# ENOSYS to everything newer than X or unknown, off adds nothing.
MUST_ACCEPT = [
    ("eperm", {"enosys": "off"}, {"ocishim.enosys": "unnamed"},
     "ERRNO(ENOSYS) for ERRNO(EPERM): equal by precedence",
     [("x86_64", 1000, ERRNO | ENOSYS, ERRNO | 1), ("x86", 1000, ERRNO | ENOSYS, ERRNO | 1),
      ("x86_64", x86_64("fchmodat2"), KILL_PROCESS, KILL_PROCESS)]),
    ("enosys-default", {}, {"ocishim.enosys": "max"},
     "the default already answers ENOSYS: max changes nothing",
     [("x86_64", 1000, ERRNO | ENOSYS, ERRNO | ENOSYS)]),
    ("allow", {}, {"ocishim.emulate-kernel": "6.6"},
     "ALLOW of syscalls newer than 6.6 (statmount 6.8) becomes ENOSYS: stricter; the "
     "profile's rules on newer syscalls are NOTIFY (listmount, below ERRNO) only",
     [("x86_64", x86_64("statmount"), ERRNO | ENOSYS, ALLOW),
      ("x86_64", x86_64("listmount"), ERRNO | ENOSYS, 0x7FC00000),
      ("x86_64", x86_64("fchmodat2"), KILL_PROCESS, KILL_PROCESS),
      ("x86_64", x86_64("ptrace"), ERRNO | ENOSYS, ERRNO | ENOSYS)]),
    ("kill-process", {"enosys": "unnamed"}, {"ocishim.enosys": "off"},
     "no stub: KILL_PROCESS where the administrator's unnamed gave ENOSYS: stricter",
     [("x86_64", 1000, KILL_PROCESS, ERRNO | ENOSYS)]),
    ("kill-thread", {"enosys": "kernel:5.4"}, {"ocishim.enosys": "kernel:6.20"},
     "a later baseline: fewer ENOSYS, more KILL_THREAD: stricter",
     [("x86_64", x86_64("faccessat2"), 0, ERRNO | ENOSYS)]),
    ("eperm", {"unknown-syscall": "warn"}, {"ocishim.unknown-syscall": "fail"},
     "fail is stricter than warn; the profile names nothing unknown",
     [("x86_64", 1000, ERRNO | ENOSYS, ERRNO | ENOSYS)]),
    ("log", {}, {"ocishim.emulate-kernel": "6.11"},
     "LOG default: ENOSYS for unknown numbers and the table's newer than 6.11 is "
     "stricter; mseal (6.10) keeps KILL_PROCESS",
     [("x86_64", 1000, ERRNO | ENOSYS, 0x7FFC0000),
      ("x86_64", x86_64("mseal"), KILL_PROCESS, KILL_PROCESS)]),
    ("eperm", {"enosys": "off"}, {"ocishim.emulate-kernel": "6.10"},
     "statmount NOTIFY and listmount ALLOW (6.8) stay, cachestat LOG stays; only unknown "
     "numbers and the table's after 6.10 change, from ERRNO(EPERM) to ERRNO(ENOSYS)",
     [("x86_64", 1000, ERRNO | ENOSYS, ERRNO | 1),
      ("x86_64", x86_64("listmount"), ALLOW, ALLOW)]),
]

MUST_REFUSE = [
    ("kill-process", {"enosys": "off"}, {"ocishim.enosys": "unnamed"}, "enosys",
     "unnamed turns the KILL_PROCESS default into ERRNO(ENOSYS) for unnamed numbers"),
    ("kill-process", {"enosys": "off"}, {"ocishim.enosys": "max"}, "enosys",
     "max turns KILL_PROCESS into ENOSYS above the highest named number (1000)"),
    ("trap", {"enosys": "off"}, {"ocishim.enosys": "auto"}, "enosys",
     "auto turns the TRAP default into ENOSYS for unknown numbers"),
    ("kill-thread", {"enosys": "kernel:5.4"}, {"ocishim.enosys": "kernel:3.0"}, "enosys",
     "an earlier baseline: ENOSYS instead of KILL_THREAD for syscalls of 3.1-5.4"),
    ("eperm", {"enosys": "off"}, {"ocishim.emulate-kernel": "6.0"}, "emulate-kernel",
     "fchmodat2 (6.6) KILL_PROCESS would become ERRNO(ENOSYS)"),
    ("trap", {}, {"ocishim.emulate-kernel": "6.0"}, "emulate-kernel",
     "mseal (6.10) KILL_PROCESS and the TRAP default on unknown numbers would become ENOSYS"),
    ("log", {}, {"ocishim.emulate-kernel": "6.0"}, "emulate-kernel",
     "mseal (6.10) KILL_PROCESS and fchmodat2 (6.6) TRAP would become ENOSYS"),
    ("allow", {}, {"ocishim.emulate-kernel": "6.0"}, "emulate-kernel",
     "fchmodat2 (6.6) KILL_PROCESS would become ENOSYS"),
    ("eperm", {"emulate-kernel": "5.10"}, {"ocishim.emulate-kernel": "6.20"}, "emulate-kernel",
     "the administrator's 5.10 answers ENOSYS for listmount (6.8); 6.20 would ALLOW it"),
    ("kill-process", {"emulate-kernel": "5.10"}, {"ocishim.emulate-kernel": "6.20"},
     "emulate-kernel",
     "the administrator's 5.10 answers ENOSYS for statmount (6.8); 6.20 gives it NOTIFY"),
]


@pytest.mark.parametrize("case", MUST_ACCEPT, ids=lambda c: f"{c[0]}-{c[2]}")
def test_must_accept(case, workdir: Path):
    """Annotations that give nothing weaker are applied (the suite cannot pass by refusing all)."""
    profile_name, svalues, ann_values, why, expect = case
    profile = PROFILES[profile_name]
    spath = settings_file(workdir, svalues)
    ref = H.run_hook(H.config(profile), spath)
    ann = H.run_hook(H.config(profile, ann_values), spath)
    assert ref.accepted, ref.stderr
    assert ann.accepted, f"{why}: refused:\n{ann.stderr}"
    assert_not_weaker(ann, ref, profile, why)
    for arch, nr, want_ann, want_ref in expect:
        got_ann = emu.run(ann.program, BY_NAME[arch], nr).ret
        got_ref = emu.run(ref.program, BY_NAME[arch], nr).ret
        assert (H.name(got_ann), H.name(got_ref)) == (H.name(want_ann), H.name(want_ref)), \
            f"{why}: {arch} nr {nr}"


@pytest.mark.parametrize("case", MUST_REFUSE, ids=lambda c: f"{c[0]}-{c[2]}")
def test_must_refuse(case, workdir: Path):
    """Annotations that would make some answer weaker stop the container, naming the annotation."""
    profile_name, svalues, ann_values, key, why = case
    profile = PROFILES[profile_name]
    spath = settings_file(workdir, svalues)
    ref = H.run_hook(H.config(profile), spath)
    assert ref.accepted, ref.stderr
    ann = H.run_hook(H.config(profile, ann_values), spath)
    assert_refused(ann, [key], why)
    # The same case with annotations ignored by the administrator: the container runs
    # with exactly the settings-only filter.
    ignoring = settings_file(workdir, {**svalues, "annotations": "ignore"})
    ign = H.run_hook(H.config(profile, ann_values), ignoring)
    assert ign.accepted, ign.stderr
    assert ign.bpf == ref.bpf
    assert H.without_ours(ign.config) == H.without_ours(ref.config)


def test_unknown_syscall_warn_against_fail(workdir: Path):
    """The administrator's fail holds: a profile naming an unknown syscall gets no container."""
    profile = PROFILES["unknown-name"]
    spath = settings_file(workdir, {"unknown-syscall": "fail"})
    ref = H.run_hook(H.config(profile), spath)
    assert ref.rc == 2 and ref.stdout == "", "settings alone: fail must refuse the unknown name"
    assert "not_a_real_syscall" in ref.stderr
    ann = H.run_hook(H.config(profile, {"ocishim.unknown-syscall": "warn"}), spath)
    assert ann.rc == 2 and ann.stdout == "", f"warn overrode the administrator's fail:\n{ann.stderr}"
    # Control: with warn in the settings the same profile is accepted, so the refusal
    # above comes from the administrator's fail.
    warn = H.run_hook(H.config(profile), settings_file(workdir, {"unknown-syscall": "warn"}))
    assert warn.accepted, warn.stderr


@pytest.mark.parametrize("key,value", GARBAGE, ids=lambda v: repr(v))
def test_garbage_annotation(key: str, value: Any, workdir: Path):
    """A value no setting takes stops the container and names the annotation; ignored, it does nothing."""
    profile = PROFILES["eperm"]
    ann_values = {H.PREFIX + key: value}
    for svalues in ({}, {"enosys": "off", "annotations": "use"}):
        out = H.run_hook(H.config(profile, ann_values), settings_file(workdir, svalues))
        assert_refused(out, [key], f"{key}={value!r}")
    spath = settings_file(workdir, {"annotations": "ignore"})
    ref = H.run_hook(H.config(profile), spath)
    ign = H.run_hook(H.config(profile, ann_values), spath)
    assert ref.accepted and ign.accepted, ign.stderr
    assert ign.bpf == ref.bpf
    assert H.without_ours(ign.config) == H.without_ours(ref.config)


# ---------------------------------------------------------------------------------
# Forged markers: ocishim.enosys-rule and run.oci.seccomp_bpf_data


PTRACE_RULE = {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}


@pytest.mark.parametrize("marker", [
    json.dumps({"index": 0, "names": ["ptrace"]}, separators=(",", ":")),
    json.dumps({"index": 0, "names": ["ptrace"]}),
    json.dumps({"index": -6, "names": ["ptrace"]}),
    json.dumps({"index": 99, "names": ["ptrace"]}),
    "{not json",
])
@pytest.mark.parametrize("svalues", [{}, {"enosys": "off"}, {"enosys": "max"}])
def test_forged_enosys_rule_keeps_the_profile_rule(marker: str, svalues: dict, workdir: Path):
    """The issue's case: a forged marker pointing at the profile's ptrace ERRNO(38) rule.

    Refusing (naming the annotation) is never weaker; when accepted, ptrace must keep
    ERRNO(ENOSYS) in crun's program on every arch and in the JSON rules runc reads.
    """
    profile = PROFILES["allow"]
    assert profile["syscalls"][0] == PTRACE_RULE
    spath = settings_file(workdir, svalues)
    ref = H.run_hook(H.config(profile), spath)
    ann = H.run_hook(H.config(profile, {"ocishim.enosys-rule": marker}), spath)
    assert ref.accepted, ref.stderr
    if not ann.accepted:
        assert_refused(ann, ["enosys-rule"], "forged enosys-rule")
        return
    for arch in H.ARCHES:
        got = emu.run(ann.program, BY_NAME[arch], nr_of(arch, "ptrace")).ret
        assert got == ERRNO | ENOSYS, f"crun: {arch} ptrace answers {H.name(got)}"
    rules = ann.config["linux"]["seccomp"]["syscalls"]
    assert rules[0] == PTRACE_RULE, "runc: the profile's ptrace rule was removed or changed"
    runc = H.runc_program(ann.config["linux"]["seccomp"])
    assert runc is not None
    got = emu.run(runc, BY_NAME["x86_64"], nr_of("x86_64", "ptrace")).ret
    assert got == ERRNO | ENOSYS, f"runc: x86_64 ptrace answers {H.name(got)}"
    assert_not_weaker(ann, ref, profile, "forged enosys-rule")


@pytest.mark.parametrize("profile_name", ["allow", "eperm", "kill-process", "trap"])
def test_repatch_is_idempotent(profile_name: str, workdir: Path):
    """ocishim's own output, patched again, comes back byte for byte (without a trusted marker)."""
    profile = PROFILES[profile_name]
    for svalues in ({}, {"enosys": "max"}, {"emulate-kernel": "5.10"}):
        spath = settings_file(workdir, svalues)
        first = H.run_hook(H.config(profile), spath)
        assert first.accepted, first.stderr
        second = H.run_hook(first.config, spath)
        assert second.accepted, second.stderr
        assert second.stdout == first.stdout, f"{profile_name} {svalues}: not idempotent"
        third = H.run_hook(second.config, spath)
        assert third.stdout == first.stdout


@pytest.mark.parametrize("forged", [ALLOW_ALL_BPF, "!!not base64!!", "", "AAAA"])
def test_foreign_bpf_data_is_replaced(forged: str, workdir: Path):
    """A run.oci.seccomp_bpf_data from the pod is replaced by ocishim's program, whatever it holds."""
    profile = PROFILES["kill-process"]
    for svalues in ({}, {"annotations": "ignore"}, {"enosys": "off"}):
        spath = settings_file(workdir, svalues)
        ref = H.run_hook(H.config(profile), spath)
        ann = H.run_hook(H.config(profile, {H.BPF_ANNOTATION: forged}), spath)
        assert ref.accepted and ann.accepted, ann.stderr
        assert ann.bpf == ref.bpf
        assert ann.config == ref.config


# ---------------------------------------------------------------------------------
# The real entry points: the CLI hook and the runtime wrapper


def cli_hook(cfg: dict, spath: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OCISHIM_CONFIG": spath}
    return subprocess.run([sys.executable, "-m", "ocishim", "hook", "precreate"],
                          input=json.dumps(cfg), capture_output=True, text=True, env=env,
                          cwd=H.REPO, timeout=120)


def test_cli_refuses_a_weakening_annotation(workdir: Path):
    spath = settings_file(workdir, {"enosys": "off"})
    proc = cli_hook(H.config(PROFILES["kill-process"], {"ocishim.enosys": "unnamed"}), spath)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "annotations.ocishim.enosys" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_refuses_garbage(workdir: Path):
    spath = settings_file(workdir, {})
    proc = cli_hook(H.config(PROFILES["eperm"], {"ocishim.emulate-kernel": "latest"}), spath)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "annotations.ocishim.emulate-kernel" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_accepts_and_matches_in_process(workdir: Path):
    spath = settings_file(workdir, {"enosys": "off"})
    cfg = H.config(PROFILES["eperm"], {"ocishim.enosys": "unnamed"})
    proc = cli_hook(cfg, spath)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == H.run_hook(cfg, spath).stdout


def test_cli_ignore(workdir: Path):
    spath = settings_file(workdir, {"enosys": "off", "annotations": "ignore"})
    profile = PROFILES["kill-process"]
    proc = cli_hook(H.config(profile, {"ocishim.enosys": "unnamed",
                                       "ocishim.emulate-kernel": "3.0"}), spath)
    ref = cli_hook(H.config(profile), spath)
    assert proc.returncode == 0 and ref.returncode == 0, proc.stderr
    got = base64.b64decode(json.loads(proc.stdout)["annotations"][H.BPF_ANNOTATION])
    want = base64.b64decode(json.loads(ref.stdout)["annotations"][H.BPF_ANNOTATION])
    assert got == want


def test_wrapper_create_refuses_and_logs(workdir: Path):
    """ocishim-runtime create: exit 1, one JSON error line naming the annotation, bundle untouched.

    The real runtime is /bin/true: if the wrapper wrongly went on, it would exit 0.
    """
    wrapper = Path(sys.executable).parent / "ocishim-runtime"
    assert wrapper.exists(), f"{wrapper} not installed (make test installs it)"
    bundle = workdir / "bundle"
    bundle.mkdir(exist_ok=True)
    text = json.dumps(H.config(PROFILES["kill-process"], {"ocishim.enosys": "unnamed"}))
    (bundle / "config.json").write_text(text)
    log = workdir / "runtime-log.json"
    log.unlink(missing_ok=True)
    spath = settings_file(workdir, {"enosys": "off", "runtime": "/bin/true"})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OCISHIM_CONFIG": spath}
    proc = subprocess.run([str(wrapper), "--log", str(log), "--log-format", "json", "create",
                           "--bundle", str(bundle), "--pid-file", str(workdir / "pid"),
                           "hostile-1"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == "" and proc.stderr == "", "create must not print on the container's stdio"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["level"] == "error" and "annotations.ocishim.enosys" in e["msg"] for e in lines), lines
    assert (bundle / "config.json").read_text() == text


# ---------------------------------------------------------------------------------
# The kernel agrees


KERNEL_CASES = [
    ("eperm", {"enosys": "off"}, {"ocishim.enosys": "unnamed"}),
    ("allow", {}, {"ocishim.emulate-kernel": "6.6"}),
    ("kill-process", {"enosys": "unnamed"}, {"ocishim.enosys": "off"}),
    ("kill-thread", {"enosys": "kernel:5.4"}, {"ocishim.enosys": "kernel:6.20"}),
]


@pytest.mark.kernel
@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_kernel_sample(case, workdir: Path):
    """Both programs of an accepted case, loaded (neutralised) into the kernel: it answers as
    the emulator does, and the annotated answer is never weaker, for every sampled call."""
    require_kernel()
    if reason := ia32_available():
        pytest.skip(f"i386 calls (int $0x80) cannot be issued here: {reason}")
    profile_name, svalues, ann_values = case
    profile = PROFILES[profile_name]
    spath = settings_file(workdir, svalues)
    ref = H.run_hook(H.config(profile), spath)
    ann = H.run_hook(H.config(profile, ann_values), spath)
    assert ref.accepted and ann.accepted, ann.stderr  # each case is in MUST_ACCEPT

    calls: list[tuple[str, Call]] = []
    for arch in H.ARCHES:
        abi = "i386" if arch == "x86" else "x86_64"
        for nr in H.numbers(arch)[::3] + H.numbers(arch)[-12:]:
            if abi == "x86_64" and nr & ~H.X32_BIT in (335, 336):
                continue  # uretprobe/uprobe: never issued (harness rule)
            calls.append((arch, Call(nr, H.ZERO, abi)))
        for name_ in {n for r in profile["syscalls"] if r.get("args") for n in r["names"]}:
            for args in H.arg_sets(profile, H.WIDTH[arch]):
                calls.append((arch, Call(nr_of(arch, name_), args, abi)))
    assert len(calls) > 1000
    results = {}
    for label, outcome in (("ref", ref), ("ann", ann)):
        program = outcome.program
        kernel = kernel_results(program, [c for _, c in calls])
        emulated = [kernel_view(emu.run(program, BY_NAME[a], c.nr, c.args).ret) for a, c in calls]
        mismatch = [(a, hex(c.nr), c.args, H.name(k), H.name(e))
                    for (a, c), k, e in zip(calls, kernel, emulated) if k != e]
        assert not mismatch, f"{label}: kernel and emulator differ: {mismatch[:5]}"
        results[label] = kernel
    weaker = [(a, hex(c.nr), H.name(x), H.name(r))
              for (a, c), x, r in zip(calls, results["ann"], results["ref"]) if H.rank(x) < H.rank(r)]
    assert not weaker, f"the kernel runs the annotated program weaker: {weaker[:5]}"
    assert results["ann"] != results["ref"], "the annotation changed nothing the kernel sees"
