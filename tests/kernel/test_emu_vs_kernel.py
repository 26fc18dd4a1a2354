"""Emulator vs kernel: ocishim.bpf.emu answers what the running kernel's seccomp answers.

Each program is libseccomp's own (Compiled.program, no stub), for the real-world
profiles in ../shared/data/profiles (those that compile on this host) and for seeded
random profiles. Every syscall number 0..1100 is put through the kernel (via the
harness, which neutralizes the filter so nothing runs) and through the emulator, and
the two answers must agree after the kernel's ERRNO clamp (markers.kernel_view):

- x86_64: nr 0..1100 except 335 and 336 (uretprobe, uprobe: the kernel lets them past
  seccomp, so the harness never issues them);
- x32: nr 0x40000000 | n for the same n, through the 64-bit entry (the harness refuses
  the x32 forms of 335 and 336 too, so those are left out);
- x86 (i386): nr 0..1100 through `int $0x80`, whether or not the filter carries x86
  (when it does not, both must give the bad-arch action).

For every (arch, nr) whose emulated answer reads the arguments (Result.read_args),
argument values are sampled as well: each condition value of the profile, its
neighbours, the edges 0, 2**32-1, 2**32, 2**64-1 and random 64-bit values, alone in
each argument the program inspects and in combinations built from the rules.

Foreign arches (aarch64, arm, ppc64le, s390x, riscv64, mips...) are checked by the
emulator only, in tests/test_compile_meaning.py: this kernel cannot issue their
syscalls, so there is nothing to compare against here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import pytest

from ocishim import libseccomp, syscalls
from ocishim.actions import describe
from ocishim.arch import BY_NAME, Arch
from ocishim.bpf import emu
from ocishim.bpf.insn import ABS, LD, OFF_ARGS, SIZEOF_SECCOMP_DATA, W, Insn
from ocishim.bpf.markers import kernel_view
from ocishim.compile import Compiled, compile_profile
from ocishim.errors import CompileError, ProfileError
from ocishim.profile import load
from ocishim.profile.model import ArgCond, Profile, Rule

from .harness import (
    X32_SYSCALL_BIT, Call, RefusedCall, check_call, ia32_available, kernel_results,
    require_kernel,
)
from tests import shared_data

PROFILES = shared_data.PROFILES
REQUIRED = ("docker-default.json", "containers-default.json")
# Docker-format profiles decide minKernel against this version rather than the host's,
# so the programs under test are the same on every machine.
KERNEL = (6, 18)

U32 = 2**32 - 1
U64 = 2**64 - 1
NR_LAST = 1100
# The arches the kernel here can issue, and the entry each goes through.
ABI = {"x86_64": "x86_64", "x32": "x86_64", "x86": "i386"}
# i386 registers are 32 bits: the kernel hands the filter zero-extended 32-bit
# arguments, and the harness refuses anything wider. x32 calls enter through the
# 64-bit entry with full 64-bit registers, so x32 arguments are 64-bit.
ARG_WIDTH = {"x86_64": U64, "x32": U64, "x86": U32}

EDGES = (0, 1, 2**31 - 1, 2**31, U32 - 1, U32, 2**32, 2**32 + 1, 2**63, U64 - 1, U64)
SINGLE_VALUES_MAX = 96  # per argument and syscall; rule-built vectors cover the rest
RULE_VECTORS = 4  # per rule with conditions
RANDOM_VECTORS = 8


def _allowed(abi: str, nr: int) -> bool:
    try:
        check_call(Call(nr, abi=abi))  # type: ignore[arg-type]
    except RefusedCall:
        return False
    return True


def numbers(arch: str) -> tuple[int, ...]:
    """The numbers asked on arch: 0..1100 (x32: with bit 30), minus what the harness refuses."""
    base = X32_SYSCALL_BIT if arch == "x32" else 0
    return tuple(base | n for n in range(NR_LAST + 1) if _allowed(ABI[arch], base | n))


# ---------------------------------------------------------------------------------
# Profiles


def profile_files() -> list[str]:
    """Every profile in the shared folder, the two the issue names first."""
    names = sorted(p.name for p in PROFILES.glob("*.json")) if PROFILES.is_dir() else []
    return [n for n in REQUIRED if n in names] + [n for n in names if n not in REQUIRED]


def compile_file(name: str) -> tuple[Profile, Compiled]:
    """Load and compile a shared profile; skip when this host cannot (the two required must)."""
    path = PROFILES / name
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    try:
        profile = load(path, kernel=KERNEL).profile
        assert profile is not None, f"{name} asks for no filter"
        return profile, compile_profile(profile)
    except (ProfileError, CompileError) as exc:
        if name in REQUIRED:
            raise
        pytest.skip(f"{name} does not compile on this host: {exc}")


OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
RULE_ACTIONS = ("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
                "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW")
DEFAULT_ACTIONS = (("SCMP_ACT_ERRNO", 1), ("SCMP_ACT_KILL_PROCESS", None),
                   ("SCMP_ACT_TRAP", None), ("SCMP_ACT_ALLOW", None), ("SCMP_ACT_LOG", None),
                   ("SCMP_ACT_ERRNO", 38))
GENERATED_SEEDS = tuple(range(6))
GEN_ARCHES = ("x86_64", "x86", "x32")


def name_pool() -> tuple[str, ...]:
    """x86_64 names the host libseccomp knows, one per number (socket and ipc calls
    included: on x86 libseccomp compiles them through the socketcall/ipc multiplexers)."""
    host = BY_NAME["x86_64"]
    by_nr: dict[int, str] = {}
    for n in sorted(syscalls.names("x86_64")):
        nr = syscalls.resolve("x86_64", n)
        if libseccomp.knows(host, n) and nr is not None:
            by_nr.setdefault(nr, n)
    return tuple(by_nr.values())


def _value(rng: random.Random) -> int:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice(EDGES)
    if kind == 1:
        return rng.randrange(16)
    if kind == 2:
        return rng.randrange(2**32)
    if kind == 3:
        return rng.randrange(2**32) << 32 | rng.randrange(16)
    return rng.randrange(2**64)


def generate(seed: int) -> Profile:
    """A random profile: 40 rules over x86_64, x86 and x32, half with argument conditions."""
    rng = random.Random(seed)
    # Each name in one rule only: libseccomp refuses (EEXIST) a second rule with the
    # same conditions and another action, and which of two overlapping rules wins is
    # its own business anyway.
    pool = list(name_pool())
    rng.shuffle(pool)
    default, default_errno = DEFAULT_ACTIONS[seed % len(DEFAULT_ACTIONS)]
    rules = []
    for i in range(40):
        # Cycle through actions and operators so that every seed has all of them.
        action = RULE_ACTIONS[(i + seed) % len(RULE_ACTIONS)]
        errno_ret = None
        if action == "SCMP_ACT_ERRNO":
            errno_ret = rng.choice((None, 0, 1, 13, 38, rng.randrange(4095)))
        elif action == "SCMP_ACT_TRACE":
            errno_ret = rng.choice((None, 0, rng.randrange(4096)))
        args: list[ArgCond] = []
        if i % 2:
            for j in range(rng.choice((1, 1, 2, 3))):
                op = OPERATORS[(i // 2 + j + seed) % len(OPERATORS)]
                # Now and then one index twice: compile_profile ORs those, as runc does.
                index = rng.randrange(6) if j == 0 or rng.random() < 0.2 else args[0].index
                args.append(ArgCond(index, _value(rng), _value(rng), op))
        names = tuple(pool.pop() for _ in range(rng.choice((1, 1, 2, 4))))
        rules.append(Rule(names, action, errno_ret, tuple(args), f"syscalls[{i}]"))
    return Profile(default, default_errno, tuple(BY_NAME[a].oci for a in GEN_ARCHES[1:]),
                   syscalls=tuple(rules))


# ---------------------------------------------------------------------------------
# Calls and comparison


def condition_values(profile: Profile) -> tuple[int, ...]:
    """Every value the profile's conditions mention, with neighbours that flip a comparison."""
    out: set[int] = set(EDGES)
    for rule in profile.syscalls:
        for c in rule.args:
            for v in (c.value, c.value_two):
                out.update((v - 1, v, v + 1, v ^ 2**32, v + 2**32, v - 2**32))
            # MASKED_EQ holds with every bit outside the mask set as well.
            out.add(c.value_two | (~c.value & U64))
    return tuple(sorted(v for v in out if 0 <= v <= U64))


def arg_indexes(program: Sequence[Insn]) -> tuple[int, ...]:
    """The argument indexes any `ld [k]` of the program reads."""
    ks = {i.k for i in program if i.code == LD | W | ABS}
    return tuple(sorted({(k - OFF_ARGS) // 8 for k in ks if OFF_ARGS <= k < SIZEOF_SECCOMP_DATA}))


@dataclass(frozen=True)
class Probe:
    arch: Arch
    call: Call
    emulated: int  # the emulator's return, through kernel_view

    def show(self) -> str:
        args = ", ".join(f"{a:#x}" for a in self.call.args)
        return f"{self.arch.name} nr {self.call.nr:#x} ({self.call.abi}) args ({args})"


def arg_sets(profile: Profile, indexes: Sequence[int], values: Sequence[int], width: int,
             rng: random.Random) -> list[tuple[int, ...]]:
    """Argument vectors for one arg-filtered syscall: single values, rule-built and random."""
    vals = sorted({v & width for v in values})
    out: dict[tuple[int, ...], None] = {}
    for i in indexes:
        picks = vals if len(vals) <= SINGLE_VALUES_MAX else rng.sample(vals, SINGLE_VALUES_MAX)
        for v in picks:
            args = [0] * 6
            args[i] = v
            out[tuple(args)] = None
    for rule in profile.syscalls:
        if not rule.args:
            continue
        for _ in range(RULE_VECTORS):
            args = [0] * 6
            for c in rule.args:
                near = (c.value, c.value - 1, c.value + 1, c.value_two,
                        c.value_two | (~c.value & U64))
                args[c.index] = min(max(rng.choice(near), 0), U64) & width
            out[tuple(args)] = None
    for _ in range(RANDOM_VECTORS):
        args = [0] * 6
        for i in indexes:
            args[i] = rng.choice(vals)
        out[tuple(args)] = None
    return list(out)


def probes(program: Sequence[Insn], profile: Profile, arches: Iterable[str] = tuple(ABI),
           seed: int = 0) -> list[Probe]:
    """Every call to compare on program: all numbers per arch, plus arguments where they matter."""
    rng = random.Random(seed)
    values = condition_values(profile) + tuple(rng.randrange(2**64) for _ in range(8))
    indexes = arg_indexes(program)
    out = []
    for name in arches:
        arch, abi = BY_NAME[name], ABI[name]  # type: ignore[assignment]
        for nr in numbers(name):
            first = emu.run(program, arch, nr)
            out.append(Probe(arch, Call(nr, abi=abi), kernel_view(first.ret)))
            if not first.read_args:
                continue
            for args in arg_sets(profile, indexes, values, ARG_WIDTH[name], rng):
                got = emu.run(program, arch, nr, args).ret
                out.append(Probe(arch, Call(nr, args, abi), kernel_view(got)))
    return out


def disagreements(program: Sequence[Insn], asked: Sequence[Probe]) -> list[str]:
    """Where the kernel and the emulator differ, one line each."""
    got = kernel_results(program, [p.call for p in asked])
    return [f"{p.show()}: kernel {describe(k)}, emulator {describe(p.emulated)}"
            for p, k in zip(asked, got) if k != p.emulated]


def needs_kernel_for(arches: Iterable[str]) -> None:
    require_kernel()
    if "x86" in arches and (reason := ia32_available()):
        pytest.skip(f"i386 calls (int $0x80) cannot be issued: {reason}")


def check(program: Sequence[Insn], profile: Profile, arches: Sequence[str], seed: int = 0) -> int:
    """Compare kernel and emulator on program; returns how many calls were compared."""
    asked = probes(program, profile, arches, seed)
    bad = disagreements(program, asked)
    assert not bad, f"{len(bad)} of {len(asked)} calls differ:\n" + "\n".join(bad[:40])
    return len(asked)


# ---------------------------------------------------------------------------------
# Tests


def test_numbers_leave_out_only_what_the_harness_refuses():
    assert len(numbers("x86_64")) == NR_LAST + 1 - 2
    assert 335 not in numbers("x86_64") and 336 not in numbers("x86_64")
    assert X32_SYSCALL_BIT | 335 not in numbers("x32")
    assert len(numbers("x32")) == NR_LAST + 1 - 2
    assert numbers("x86") == tuple(range(NR_LAST + 1))  # i386 335/336 are ordinary calls


def test_generated_profiles_cover_every_operator_and_action():
    ops, actions = set(), set()
    for seed in GENERATED_SEEDS:
        for rule in generate(seed).syscalls:
            actions.add(rule.action)
            ops.update(c.op for c in rule.args)
    assert ops == set(OPERATORS)
    assert {"SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE",
            "SCMP_ACT_ERRNO"} <= actions


@pytest.mark.kernel
@pytest.mark.parametrize("arch", list(ABI))
@pytest.mark.parametrize("name", profile_files())
def test_shared_profile(name: str, arch: str):
    needs_kernel_for([arch])
    profile, compiled = compile_file(name)
    n = check(compiled.program, profile, [arch])
    assert n >= len(numbers(arch))


@pytest.mark.kernel
@pytest.mark.parametrize("arch", GEN_ARCHES)
@pytest.mark.parametrize("seed", GENERATED_SEEDS)
def test_generated_profile(seed: int, arch: str):
    needs_kernel_for([arch])
    profile = generate(seed)
    compiled = compile_profile(profile)
    assert {a.name for a in compiled.arches} == set(GEN_ARCHES)
    # Some syscalls must depend on their arguments, or the sampling tests nothing.
    a = BY_NAME[arch]
    assert any(emu.run(compiled.program, a, nr).read_args for nr in numbers(arch))
    check(compiled.program, profile, [arch], seed)


def test_shared_profiles_are_there():
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there")
    assert set(REQUIRED) <= set(profile_files())
