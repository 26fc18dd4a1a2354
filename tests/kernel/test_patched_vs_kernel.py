"""The kernel runs the patched program as the emulator says (issue 3, "The kernel").

Docker's default profile and containers-common's, each patched in the modes auto,
max, unnamed and kernel:5.4 (Patched.program, stub and libseccomp's program), are
loaded through the harness. For every x86_64 number 0..1100 except 335 and 336, the
x32 numbers 0x40000000 | n (same exceptions) and the i386 numbers 0..1100, plus
sampled arguments where the answer depends on them, the kernel's answer must equal
the emulator's (see test_emu_vs_kernel for how calls are chosen).

Then a few facts, worked out here from the profile JSON and the shared syscall table
rather than taken from ocishim's output, are checked on both the kernel and the
emulator: which numbers get ENOSYS and which keep EPERM.
"""

from __future__ import annotations

import csv
import functools
import json

import pytest

from ocishim.actions import describe
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.bpf.markers import kernel_view
from ocishim.compile import Compiled, compile_profile
from ocishim.patch.enosys import parse_mode
from ocishim.patch.stub import Patched, build
from ocishim.profile import load
from ocishim.profile.model import Profile

from .harness import Call, kernel_results
from .test_emu_vs_kernel import ABI, KERNEL, PROFILES, check, needs_kernel_for, numbers

SYSCALL_CSV = PROFILES.parent / "syscalls" / "syscalls.csv"
DOCKER, CONTAINERS = "docker-default.json", "containers-default.json"
MODES = ("auto", "max", "unnamed", "kernel:5.4")
ARCHES = tuple(ABI)  # x86_64, x32, x86

# moby oci/caps/defaults.go DefaultCapabilities(): what a default `docker run` has.
# Spelled out here so that the facts below follow from the data, not from ocishim.
MOBY_DEFAULT_CAPS = frozenset({
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
})

ERRNO_EPERM, ERRNO_ENOSYS = 0x00050001, 0x00050026


@functools.cache
def compiled(name: str) -> tuple[Profile, Compiled]:
    path = PROFILES / name
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    profile = load(path, caps=MOBY_DEFAULT_CAPS, kernel=KERNEL).profile
    assert profile is not None
    return profile, compile_profile(profile)


@functools.cache
def patched(name: str, mode: str) -> Patched:
    return build(compiled(name)[1], parse_mode(mode))


def answers(program, nrs: list[int]) -> tuple[list[int], list[int]]:
    """(kernel, emulator) answers for x86_64 calls with zero arguments."""
    x86_64 = BY_NAME["x86_64"]
    kernel = kernel_results(program, [Call(nr) for nr in nrs])
    emulated = [kernel_view(emu.run(program, x86_64, nr).ret) for nr in nrs]
    return kernel, emulated


# ---------------------------------------------------------------------------------
# Facts from the data


@functools.cache
def table() -> dict[tuple[str, str], tuple[int, tuple[int, int]]]:
    """(arch, name) -> (nr, since) from the shared syscall table."""
    out = {}
    with SYSCALL_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            major, minor = row["since"].split(".")
            out[(row["arch"], row["name"])] = (int(row["nr"]), (int(major), int(minor)))
    return out


def names_in(rules: list[dict]) -> set[str]:
    return {n for r in rules for n in (r.get("names") or [r.get("name")]) if n}


def test_docker_facts_from_the_data():
    """Why Docker's profile gets ENOSYS for 470 and 1000 and keeps EPERM for 169 (auto, max)."""
    if not (PROFILES / DOCKER).is_file() or not SYSCALL_CSV.is_file():
        pytest.skip(f"{PROFILES} or {SYSCALL_CSV} is not there")
    doc = json.loads((PROFILES / DOCKER).read_text())
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == 1
    rules = doc["syscalls"]
    x86_64 = {name: v for (arch, name), v in table().items() if arch == "x86_64"}
    assert x86_64["listns"] == (470, (6, 19))
    assert x86_64["reboot"] == (169, (3, 0))
    assert 1000 not in {nr for nr, _ in x86_64.values()}
    assert "listns" not in names_in(rules)
    # reboot is named only by rules that need CAP_SYS_BOOT, which default docker lacks.
    for rule in rules:
        if "reboot" in names_in([rule]):
            assert "CAP_SYS_BOOT" in rule["includes"]["caps"]
    assert "CAP_SYS_BOOT" not in MOBY_DEFAULT_CAPS
    named = [x86_64[n] for n in names_in(rules) if n in x86_64]
    # Every named syscall is older than listns, so listns is newer than the baseline,
    # and the highest named number is below 470 (max mode).
    assert max(since for _, since in named) < (6, 19)
    assert max(nr for nr, _ in named) < 470
    # Some syscalls of kernel 3.0 (the table's floor) are named unconditionally, so the
    # baseline is at least 3.0 and reboot is not younger than it.
    plain = names_in([r for r in rules if not r.get("includes") and not r.get("excludes")])
    assert any(x86_64[n][1] == (3, 0) for n in plain if n in x86_64)


# mode -> nr -> expected answer of the patched Docker default, following the facts above:
# listns (470, 6.19) and 1000 (in no table) are unnamed and newer than any baseline;
# reboot (169, 3.0) is unnamed but not newer than the profile (auto), 5.4 (kernel:5.4)
# or the highest named number (max), so only `unnamed` turns it into ENOSYS.
DOCKER_EXPECTED = {
    "auto": {470: ERRNO_ENOSYS, 1000: ERRNO_ENOSYS, 169: ERRNO_EPERM},
    "max": {470: ERRNO_ENOSYS, 1000: ERRNO_ENOSYS, 169: ERRNO_EPERM},
    "kernel:5.4": {470: ERRNO_ENOSYS, 1000: ERRNO_ENOSYS, 169: ERRNO_EPERM},
    "unnamed": {470: ERRNO_ENOSYS, 1000: ERRNO_ENOSYS, 169: ERRNO_ENOSYS},
    "off": {470: ERRNO_EPERM, 1000: ERRNO_EPERM, 169: ERRNO_EPERM},
}


@pytest.mark.kernel
@pytest.mark.parametrize("mode", list(DOCKER_EXPECTED))
def test_docker_enosys_and_eperm(mode: str):
    needs_kernel_for(["x86_64"])
    expected = DOCKER_EXPECTED[mode]
    nrs = list(expected)
    kernel, emulated = answers(patched(DOCKER, mode).program, nrs)
    want = [expected[nr] for nr in nrs]
    assert [describe(v) for v in kernel] == [describe(v) for v in want]
    assert emulated == want


@pytest.mark.kernel
@pytest.mark.parametrize("mode", [*MODES, "off"])
def test_containers_default_answers_enosys_already(mode: str):
    # defaultErrnoRet is ENOSYS: no stub, and unnamed numbers answer ENOSYS anyway.
    if not (PROFILES / CONTAINERS).is_file():
        pytest.skip(f"{PROFILES / CONTAINERS} is not there")
    doc = json.loads((PROFILES / CONTAINERS).read_text())
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == 38
    assert "listns" not in names_in(doc["syscalls"])
    needs_kernel_for(["x86_64"])
    kernel, emulated = answers(patched(CONTAINERS, mode).program, [470, 1000])
    assert kernel == emulated == [ERRNO_ENOSYS, ERRNO_ENOSYS]


# ---------------------------------------------------------------------------------
# Every number


@pytest.mark.kernel
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", [DOCKER, CONTAINERS])
def test_patched_kernel_equals_emulator(name: str, mode: str, arch: str):
    needs_kernel_for([arch])
    profile, _ = compiled(name)
    check(patched(name, mode).program, profile, [arch])


def expected_outside_e(c: Compiled, arch: str, nr: int, libseccomp_answer: int) -> int | None:
    """What rule 1 wants outside E(A), zero arguments: libseccomp's answer, or for a
    name the host libseccomp lacks the action of its (unconditional) rules; None when
    such a rule has conditions (the emulator comparison covers those)."""
    rules = [r for r in c.pending if r.arch == arch and r.nr == nr]
    if not rules:
        return libseccomp_answer
    if any(r.args for r in rules) or len({r.action for r in rules}) != 1:
        return None
    return kernel_view(rules[0].action)


@pytest.mark.kernel
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("mode", [*MODES, "off"])
@pytest.mark.parametrize("name", [DOCKER, CONTAINERS])
def test_kernel_enosys_exactly_in_e_and_rules_elsewhere(name: str, mode: str, arch: str):
    """On the kernel: ENOSYS on E(A); outside it libseccomp's answer or the rule of a
    name libseccomp lacks (rule 1 and rule 7), every number, zero arguments."""
    needs_kernel_for([arch])
    _, c = compiled(name)
    p = patched(name, mode)
    ranges = p.enosys.get(arch, ())
    nrs = numbers(arch)
    calls = [Call(nr, abi=ABI[arch]) for nr in nrs]  # type: ignore[arg-type]
    got = kernel_results(p.program, calls)
    unpatched = kernel_results(c.program, calls)
    wrong, in_e = [], 0
    for nr, g, u in zip(nrs, got, unpatched):
        if any(a <= nr <= b for a, b in ranges):
            in_e += 1
            want: int | None = ERRNO_ENOSYS
        else:
            want = expected_outside_e(c, arch, nr, u)
        if want is not None and g != want:
            wrong.append(f"{arch} nr {nr:#x}: kernel {describe(g)}, want {describe(want)} "
                         f"(libseccomp alone: {describe(u)})")
    if wrong:
        pytest.fail(f"{len(wrong)} numbers wrong:\n" + "\n".join(wrong[:40]))
    if name == DOCKER and mode not in ("off", "max"):
        assert in_e, "Docker's default profile has an empty E(A)"
