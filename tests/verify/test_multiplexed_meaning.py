"""socketcall(2) and ipc(2) in the checker's meaning (issue 9).

libseccomp puts a rule on a socket or IPC name also onto the arch's multiplexer, with
`arg0 == call` in place of the rule's conditions on argument 0 (measured on 2.5.4 with
its PFC export; ../shared/data/libseccomp/multiplexed.csv lists the calls). Expected
answers are written out here as Python expressions over (nr, args); the checker must
find libseccomp's program equal to the meaning on every arch that multiplexes, and the
meaning must give the written-out answers.
"""

from __future__ import annotations

import csv
import errno

import pytest

from ocishim import syscalls
from ocishim.actions import RET_ALLOW, RET_KILL_PROCESS, action_value
from ocishim.arch import BY_NAME
from ocishim.compile import compile_profile
from ocishim.profile.model import ArgCond, Profile, Rule
from ocishim.verify.check import check_program
from ocishim.verify.meaning import Meaning
from tests import shared_data

CSV = shared_data.MULTIPLEXED_CSV
EPERM = action_value("SCMP_ACT_ERRNO", None)
EACCES = action_value("SCMP_ACT_ERRNO", errno.EACCES)
# arch in the filter -> a native arch whose filter carries it
ARCHES = {"x86": "x86_64", "s390x": "s390x", "s390": "s390x", "ppc64le": "ppc64le", "mipsel": "mipsel"}
OCI = {"x86": "SCMP_ARCH_X86", "s390x": "SCMP_ARCH_S390X", "s390": "SCMP_ARCH_S390",
       "ppc64le": "SCMP_ARCH_PPC64LE", "mipsel": "SCMP_ARCH_MIPSEL"}


def _calls() -> dict[str, int]:
    """name -> call number on x86 for Debian 12's libseccomp, from the shared facts."""
    with open(CSV, newline="") as f:
        return {r["name"]: int(r["mux_nr_arg0"].split(":")[1]) for r in csv.DictReader(f)
                if r["version"] == "2.5.4-debian12" and r["arch"] == "x86"}


CALLS = _calls()


def cond(index, value, op="SCMP_CMP_EQ", two=0) -> ArgCond:
    return ArgCond(index, value, two, op)


CASES = {
    # socket(a1 == 5) allowed: socketcall allows SYS_SOCKET with a1 == 5
    "condition-kept": ((Rule(("socket",), "SCMP_ACT_ALLOW", None, (cond(1, 5),)),),
                       lambda call, a: RET_ALLOW if call == "socketcall" and a[0] == CALLS["socket"] and a[1] == 5 else EPERM),
    # socket(a0 == 2): the condition on a0 is replaced by the call number
    "arg0-replaced": ((Rule(("socket",), "SCMP_ACT_ERRNO", errno.EACCES, (cond(0, 2),)),),
                      lambda call, a: EACCES if call == "socketcall" and a[0] == CALLS["socket"] else EPERM),
    # a repeated index is an OR: each condition gets its own rule on the multiplexer
    "or-of-conditions": ((Rule(("connect",), "SCMP_ACT_ALLOW", None, (cond(2, 16), cond(2, 28))),),
                         lambda call, a: RET_ALLOW if call == "socketcall" and a[0] == CALLS["connect"]
                         and a[2] in (16, 28) else EPERM),
    # IPC names and socket names on their two multiplexers, unconditional rules
    "ipc-and-socket": ((Rule(("semget", "shmat", "accept4"), "SCMP_ACT_ALLOW"),),
                       lambda call, a: RET_ALLOW if (call, a[0]) in {
                           ("ipc", CALLS["semget"]), ("ipc", CALLS["shmat"]),
                           ("socketcall", CALLS["accept4"])} else EPERM),
    # an unconditional rule on the multiplexer itself overrides what is routed there
    "mux-rule-wins": ((Rule(("bind",), "SCMP_ACT_ALLOW"),
                       Rule(("socketcall",), "SCMP_ACT_KILL_PROCESS")),
                      lambda call, a: RET_KILL_PROCESS if call == "socketcall" else EPERM),
}


def _profile(arch: str, rules) -> Profile:
    return Profile("SCMP_ACT_ERRNO", None, (OCI[arch],),
                   syscalls=tuple(Rule(r.names, r.action, r.errno_ret, r.args, f"syscalls[{i}]")
                                  for i, r in enumerate(rules)))


def test_the_facts_are_there():
    assert len(CALLS) == 32 and CALLS["socket"] == 1 and CALLS["shmctl"] == 24


@pytest.mark.parametrize("arch", sorted(ARCHES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_libseccomp_program_means_the_profile(arch, case):
    rules, _ = CASES[case]
    profile = _profile(arch, rules)
    compiled = compile_profile(profile, BY_NAME[ARCHES[arch]])
    report = check_program(compiled.program, Meaning(profile, compiled.arches))
    assert not report.undecided, [u.text() for u in report.undecided]
    assert not report.differences, [d.text() for d in report.differences]


POINTS = [(a0, a1, a2) for a0 in (0, 1, 2, 3, 5, 18, 21, 24) for a1 in (0, 5) for a2 in (0, 16, 28)]


@pytest.mark.parametrize("arch", sorted(ARCHES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_meaning_on_the_multiplexers(arch, case):
    rules, expect = CASES[case]
    a = BY_NAME[arch]
    meaning = Meaning(_profile(arch, rules), [a])
    for call in ("socketcall", "ipc"):
        nr = syscalls.resolve(arch, call)
        assert nr is not None, (arch, call)
        for a0, a1, a2 in POINTS:
            args = (a0, a1, a2, 0, 0, 0)
            assert meaning.answer(a.audit, nr, args) == expect(call, args), (arch, call, args)


def test_older_libseccomp_does_not_route_ppc():
    """libseccomp 2.5.0 and 2.5.1 route nothing through ppc's socketcall (multiplexed.csv)."""
    with open(CSV, newline="") as f:
        routed = {r["name"] for r in csv.DictReader(f)
                  if r["version"] == "2.5.1" and r["arch"] == "ppc" and r["mux_nr_arg0"]}
    assert routed == set()
    ppc = BY_NAME["ppc"]
    rules = (Rule(("socket",), "SCMP_ACT_ALLOW"),)
    old = Meaning(Profile("SCMP_ACT_ERRNO", None, ("SCMP_ARCH_PPC",), syscalls=rules), [ppc], libseccomp=(2, 5, 1))
    new = Meaning(Profile("SCMP_ACT_ERRNO", None, ("SCMP_ARCH_PPC",), syscalls=rules), [ppc], libseccomp=(2, 5, 2))
    nr = syscalls.resolve("ppc", "socketcall")
    assert old.answer(ppc.audit, nr, (1, 0, 0, 0, 0, 0)) == EPERM
    assert new.answer(ppc.audit, nr, (1, 0, 0, 0, 0, 0)) == RET_ALLOW


def test_names_on_a_number():
    """Meaning.names_on: every name of the profile whose rules land on a number, directly,
    as an alias, or through socketcall/ipc (what JSON readers must see replaced where
    ocishim repairs that number; integrations.config)."""
    rules = (Rule(("socket", "bind", "personality"), "SCMP_ACT_ALLOW"), Rule(("semget",), "SCMP_ACT_ALLOW"),
             Rule(("sync_file_range2",), "SCMP_ACT_ALLOW"), Rule(("arm_sync_file_range",), "SCMP_ACT_ALLOW"))
    profile = Profile("SCMP_ACT_ERRNO", None, (), syscalls=rules)
    x86, x86_64, arm = BY_NAME["x86"], BY_NAME["x86_64"], BY_NAME["arm"]
    meaning = Meaning(profile, [x86, x86_64, arm])
    assert meaning.names_on(x86, syscalls.resolve("x86", "socketcall")) == {"socket", "bind"}
    assert meaning.names_on(x86, syscalls.resolve("x86", "ipc")) == {"semget"}
    assert meaning.names_on(x86_64, syscalls.resolve("x86_64", "socket")) == {"socket"}
    assert meaning.names_on(x86_64, syscalls.resolve("x86_64", "personality")) == {"personality"}
    assert meaning.names_on(arm, 341) == {"sync_file_range2", "arm_sync_file_range"}
    assert meaning.names_on(x86_64, syscalls.resolve("x86_64", "getpid")) == frozenset()
