"""The kernel's action cache keeps working through the stub (issue 3, "The cache"; rule 4).

For every profile in ../shared/data/profiles that compiles on this host and every mode,
the (arch, nr) the kernel's constant-action evaluator (ocishim.bpf.cache) finds
always-ALLOW are the same for the baseline program and the patched one. The baseline
is the `off` program: libseccomp's program plus ocishim's rules for the names the host
libseccomp does not know (when there are none of those, `off` is libseccomp's program
byte for byte). Numbers: 0..1100 on every arch of the filter, and 0x40000000 | 0..1100
for x32.

Whether the kernel itself caches a syscall cannot be observed from user space, so the
evaluator is not compared with the kernel here (tests/bpf/test_cache.py checks it rule
by rule against kernel/seccomp.c). What makes the cache see through the stub is checked
directly instead: outside the rule blocks the stub uses only `ld [0]`, `ld [4]`,
`jeq/jgt/jge/jset #k`, `ja` and `ret #k`.
"""

from __future__ import annotations

import functools

import pytest

from ocishim.arch import X32_SYSCALL_BIT
from ocishim.bpf.cache import always_allowed
from ocishim.bpf.insn import (ABS, JA, JEQ, JGE, JGT, JMP, JSET, K, LD, OFF_ARCH, OFF_NR, RET, W,
                              Insn, bpf_class, encode, ld_abs)
from ocishim.compile import Compiled, compile_profile
from ocishim.errors import CompileError, ProfileError
from ocishim.patch.enosys import parse_mode
from ocishim.patch.stub import Patched, build
from ocishim.profile import load
from tests import shared_data

PROFILES = shared_data.PROFILES
# Docker-format profiles decide minKernel against this version, not the host's.
KERNEL = (6, 18)
MODES = ("auto", "unnamed", "max", "off", "kernel:5.4")
NR_LAST = 1100

# Rule 4: what the stub may use outside its rule blocks.
CACHE_FRIENDLY = frozenset({LD | W | ABS, JMP | JEQ | K, JMP | JGT | K, JMP | JGE | K,
                            JMP | JSET | K, JMP | JA, RET | K})


def profile_files() -> list[str]:
    return sorted(p.name for p in PROFILES.glob("*.json")) if PROFILES.is_dir() else []


@functools.cache
def _compile(name: str) -> Compiled | str:
    try:
        profile = load(PROFILES / name, kernel=KERNEL).profile
    except ProfileError as exc:
        return f"{name} does not load: {exc}"
    if profile is None:
        return f"{name} asks for no filter"
    try:
        return compile_profile(profile)
    except CompileError as exc:
        return f"{name} does not compile on this host: {exc}"


def compiled(name: str) -> Compiled:
    """The compiled profile, or skip with the reason this host cannot compile it."""
    c = _compile(name)
    if isinstance(c, str):
        pytest.skip(c)
    return c


@functools.cache
def patched(name: str, mode: str) -> Patched:
    return build(compiled(name), parse_mode(mode))


def numbers(arch: str) -> range | list[int]:
    if arch == "x32":
        return [X32_SYSCALL_BIT | n for n in range(NR_LAST + 1)]
    return range(NR_LAST + 1)


def cached(program: tuple[Insn, ...], c: Compiled) -> dict[str, frozenset[int]]:
    """Per arch of the filter, the numbers the kernel would cache as always ALLOW."""
    return {a.name: always_allowed(program, a, numbers(a.name)) for a in c.arches}


def fail_or_known(wrong: list[str], what: str) -> None:
    """Fail, listing what is wrong."""
    if wrong:
        pytest.fail(f"{len(wrong)} {what}:\n" + "\n".join(wrong[:40]))


# ---------------------------------------------------------------------------------


def test_shared_profiles_are_there():
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there")
    assert {"docker-default.json", "containers-default.json"} <= set(profile_files())


@pytest.mark.parametrize("name", profile_files())
def test_off_is_libseccomp_program_without_pending_names(name: str):
    c = compiled(name)
    off = patched(name, "off")
    if c.pending:
        # The rule blocks for names libseccomp lacks sit in a stub before P.
        assert off.stub_length > 0
        assert off.program[off.stub_length:] == c.program
    else:
        assert encode(off.program) == encode(c.program)
        assert off.stub_length == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", profile_files())
def test_cached_syscalls_stay_cached(name: str, mode: str):
    c = compiled(name)
    before = cached(patched(name, "off").program, c)
    after = cached(patched(name, mode).program, c)
    wrong = []
    for arch in before:
        lost = sorted(before[arch] - after[arch])
        gained = sorted(after[arch] - before[arch])
        if lost or gained:
            wrong.append(f"{arch}: no longer cached {[hex(n) for n in lost]}, "
                         f"newly cached {[hex(n) for n in gained]}")
    fail_or_known(wrong, "arches whose always-ALLOW set changed")
    # The check must have something to check.
    if name.startswith(("docker-default", "containers-default")):
        assert before["x86_64"], "no always-ALLOW syscall at all"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", profile_files())
def test_stub_uses_only_cache_friendly_instructions(name: str, mode: str):
    p = patched(name, mode)
    stub = p.program[:p.stub_length]
    if not stub:
        return
    assert stub[0] == ld_abs(OFF_ARCH), "the stub must read arch before nr (rule 3)"
    # Layout (ocishim/patch/stub.py): arch tests and nr trees, then the ENOSYS leaf
    # (the stub's first return), then the rule blocks for names libseccomp lacks.
    rets = [pc for pc, insn in enumerate(stub) if bpf_class(insn.code) == RET]
    assert rets, "a stub without a return"
    dispatch = stub[:rets[0] + 1] if p.compiled.pending else stub
    bad = [f"insn {pc}: {insn}" for pc, insn in enumerate(dispatch)
           if insn.code not in CACHE_FRIENDLY
           or (insn.code == LD | W | ABS and insn.k not in (OFF_NR, OFF_ARCH))]
    assert not bad, "instructions the kernel's cache evaluator cannot follow:\n" + "\n".join(bad)
    # Every return of the stub, rule blocks included, is a constant.
    assert all(stub[pc].code == RET | K for pc in rets)
    # Every jump stays inside the program and goes forward.
    for pc, insn in enumerate(dispatch):
        if insn.code == JMP | JA:
            assert pc + 1 + insn.k < len(p.program), f"insn {pc} jumps past the end"
        elif bpf_class(insn.code) == JMP:
            assert pc + 1 + max(insn.jt, insn.jf) < len(p.program), f"insn {pc} jumps past the end"
