"""`ocishim verify --program` on the filter a running runc container has (issue 9).

Each container runs `sleep 60` from a busybox rootfs with Docker's default profile
(converted for this amd64 host by bundles.docker_profile). Its filter is read back
from the kernel (ocishim.inspect.read_filters, PTRACE_SECCOMP_GET_FILTER), written
to a file and given to `ocishim verify PROFILE --program FILE`.

What runc loads is not the profile's program alone, and the expectations say so
from runc's own source (libcontainer/seccomp/patchbpf/enosys_linux.go, 1.1.5):
- runc puts a stub in front: per arch A, ENOSYS for every nr above max_A, the largest
  number that runc's libseccomp resolves for any name of the profile
  (findLastSyscalls: GetSyscallFromNameByArch per rule name, unknown names ignored,
  negative pseudo-numbers never above the start value 0). x86_64 and x32 share the
  audit arch: bit 30 of nr picks the x32 maximum. This is the "stub" class.
- a name runc's libseccomp cannot resolve has its rule skipped, so below max_A every
  number that libseccomp has no name for answers the default action: the "dropped"
  class (with libseccomp 2.5.4: uretprobe, statmount, listmount, mseal, *xattrat...).
max_A and "has a name" are measured here by asking the libseccomp that runc itself
links (found with ldd) through ctypes, and syscall numbers come from the shared table
(../shared/data/syscalls/syscalls.csv), not from ocishim. Every difference verify
reports must fall into one of those two classes, and each difference on a number some
rule names must be predicted exactly. With a profile runc can express in full (only
names its libseccomp knows), the program behind runc's stub must agree outright.

Containers: plain runc (create + start, private --root), the wrapper ocishim-runtime
(rewrites config.json in place, default mode unnamed) and `ocishim run --runtime runc
--enosys auto` (runc reads the rewrite from a private bundle). Through ocishim, the
filter is checked against the rewritten profile runc was given and against the
original profile in the mode used. A filter with one jump changed must make verify
exit 3 with a witness naming that syscall.
"""

from __future__ import annotations

import csv
import ctypes
import json
import os
import platform
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import bundles
from .conftest import SYSCALLS_CSV, run_ocishim
from .test_podman import ocishim_executable

pytestmark = pytest.mark.runtime

TAG = "h9c"
WAIT = 30.0  # seconds: the longest any container step may take
# Return values, from <linux/seccomp.h>: SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | errno.
ALLOW = 0x7FFF0000
EPERM, ENOSYS = 1, 38


def errno_ret(err: int) -> int:
    return 0x00050000 | err


X32_BIT = 1 << 30  # __X32_SYSCALL_BIT
ARCHES = ("x86_64", "x86", "x32")  # what Docker's profile lists for an amd64 host
# The nr interval inspect and verify give each arch: x86_64's own numbers lie below the
# x32 bit; from that bit up, AUDIT_ARCH_X86_64 numbers are x32's (in_x32_syscall).
DOMAIN_END = {"x86_64": X32_BIT - 1, "x86": 0xFFFFFFFF, "x32": 0xFFFFFFFF}


# --- the oracle: runc's libseccomp and the shared syscall table -------------------------

class RuncLibseccomp:
    """The libseccomp runc is linked with, asked through its C API."""

    def __init__(self, path: str) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
        lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
        lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p  # malloc'd, freed below
        self.lib = lib
        self.libc = ctypes.CDLL(None)
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.tokens = {a: lib.seccomp_arch_resolve_name(a.encode()) for a in ARCHES}
        assert all(self.tokens.values()), self.tokens

    def resolve(self, arch: str, name: str) -> int:
        """GetSyscallFromNameByArch: the number, a negative pseudo-number, or -1 (unknown)."""
        return self.lib.seccomp_syscall_resolve_name_arch(self.tokens[arch], name.encode())

    def names(self, arch: str, nr: int) -> bool:
        """Whether this libseccomp has a name for nr on arch (so a rule can reach nr)."""
        ptr = self.lib.seccomp_syscall_resolve_num_arch(self.tokens[arch], ctypes.c_int32(nr).value)
        if ptr:
            self.libc.free(ptr)
        return bool(ptr)


def runc_libseccomp() -> str | None:
    """The libseccomp.so runc loads, from ldd; None for a static runc."""
    out = subprocess.run(["ldd", shutil.which("runc")], capture_output=True, text=True, timeout=WAIT).stdout
    found = re.search(r"libseccomp\.so\.\d+ => (\S+)", out)
    return found.group(1) if found else None


def shared_table() -> dict[str, dict[str, int]]:
    """arch -> name -> nr for the arches here, from the shared table (x32 with bit 30)."""
    table: dict[str, dict[str, int]] = {a: {} for a in ARCHES}
    with open(SYSCALLS_CSV, newline="") as f:
        for row in csv.DictReader(f):
            if row["arch"] in table and not row["until"]:
                table[row["arch"]][row["name"]] = int(row["nr"])
    return table


def arch_name(oci: str) -> str:
    return oci.removeprefix("SCMP_ARCH_").lower()


def runc_max(lib: RuncLibseccomp, seccomp: dict[str, Any]) -> dict[str, int]:
    """findLastSyscalls: per arch of the profile, the largest number runc's libseccomp
    resolves for any rule name; unknown names and pseudo-numbers never count."""
    out = {}
    for arch in map(arch_name, seccomp["architectures"]):
        largest = 0
        for rule in seccomp["syscalls"]:
            for name in rule["names"]:
                largest = max(largest, lib.resolve(arch, name))
        assert largest > 0, f"runc puts no stub on {arch} (no name resolves): not this test's case"
        out[arch] = largest
    return out


def stub_enosys(maxes: dict[str, int], arch: str, nr: int) -> bool:
    """Whether runc's stub answers ENOSYS: the jgt on max_A, x32's max when bit 30 is set."""
    if arch in ("x86_64", "x32"):
        key = "x32" if nr & X32_BIT else "x86_64"
        return key in maxes and nr > maxes[key]
    return nr > maxes[arch]


def rule_answer(rule: dict[str, Any]) -> int:
    action = rule["action"]
    if action == "SCMP_ACT_ALLOW":
        return ALLOW
    if action == "SCMP_ACT_ERRNO":
        return errno_ret(rule.get("errnoRet", EPERM))
    raise AssertionError(f"no expectation written for {action}")


def default_answer(seccomp: dict[str, Any]) -> int:
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO", seccomp["defaultAction"]
    return errno_ret(seccomp.get("defaultErrnoRet", EPERM))


# --- what runc makes of a profile, written out -----------------------------------------

@dataclass(frozen=True)
class Runc:
    lib: RuncLibseccomp
    table: dict[str, dict[str, int]]
    seccomp: dict[str, Any]  # the linux.seccomp runc was given
    maxes: dict[str, int]

    @property
    def default(self) -> int:
        return default_answer(self.seccomp)

    def why(self, arch: str | None, nr: int, got: int) -> str | None:
        """Why runc's filter answers got at (arch, nr), where the expectation differs;
        None when neither of runc's two documented departures explains it."""
        if arch is None:
            return None
        if stub_enosys(self.maxes, arch, nr):
            return "stub: ENOSYS above runc's maximum" if got == errno_ret(ENOSYS) else None
        if got == self.default and not self.lib.names(arch, nr):
            return "dropped: runc's libseccomp has no name for it, its rule was skipped"
        return None

    def ruled_departures(self) -> set[tuple[str, int, int, int]]:
        """(arch, nr, got, expected) on every number an unconditional rule names whose
        name runc's libseccomp lacks: runc answers its stub's ENOSYS or the default
        there, the profile the rule's answer (the rule's own number: one piece each)."""
        out = set()
        for rule in self.seccomp["syscalls"]:
            if rule.get("args"):
                continue
            want = rule_answer(rule)
            for arch in map(arch_name, self.seccomp["architectures"]):
                for name in rule["names"]:
                    nr = self.table[arch].get(name)
                    if nr is None or self.lib.names(arch, nr):
                        continue
                    got = errno_ret(ENOSYS) if stub_enosys(self.maxes, arch, nr) else self.default
                    if got != want:
                        out.add((arch, nr, got, want))
        return out


# --- containers ------------------------------------------------------------------------

@dataclass
class World:
    base: Path
    rootfs: Path
    lib: RuncLibseccomp
    table: dict[str, dict[str, int]]
    runc: str
    ocishim: Path
    wrapper: Path
    root: Path  # private runc --root

    def runc_for(self, seccomp: dict[str, Any]) -> Runc:
        return Runc(self.lib, self.table, seccomp, runc_max(self.lib, seccomp))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    if platform.machine() != "x86_64":
        pytest.skip(f"the expectations are written for an amd64 host, not {platform.machine()}")
    if reason := bundles.missing_runtime("runc"):
        pytest.skip(reason)
    if not SYSCALLS_CSV.is_file() or not bundles.PROFILES.is_dir():
        pytest.skip(f"the shared test data is not there ({SYSCALLS_CSV.parent}, {bundles.PROFILES})")
    path = runc_libseccomp()
    if path is None:
        pytest.skip("runc is linked statically: its libseccomp cannot be asked which names it knows")
    base = tmp_path_factory.mktemp(TAG)
    root = base / "runc-root"
    root.mkdir()
    w = World(base, bundles.busybox_rootfs(base / "rootfs"), RuncLibseccomp(path), shared_table(),
              shutil.which("runc"), ocishim_executable(base), ocishim_executable(base, "ocishim-runtime"),
              root)
    try:
        yield w
    finally:
        listed = subprocess.run([w.runc, "--root", str(root), "list", "-q"], capture_output=True,
                                text=True, timeout=WAIT)
        for cid in listed.stdout.split():
            subprocess.run([w.runc, "--root", str(root), "delete", "--force", cid],
                           capture_output=True, timeout=WAIT)


def _wrapper_env(world: World) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_") and k != "PYTHONPATH"}
    env.update(OCISHIM_RUNTIME=world.runc, OCISHIM_CONFIG=str(world.base / "no-settings.json"),
               OCISHIM_CACHE="off")
    return env


def _quiet(world: World, argv: list[str], name: str, env: dict[str, str] | None = None) -> None:
    """Run a create/start: stdio are files (after create the container's init holds them)."""
    log = world.base / f"{name}.log"
    empty = world.base / "empty-stdin"
    empty.touch()
    with open(empty, "rb") as stdin, open(log, "ab") as out:
        proc = subprocess.run(argv, stdin=stdin, stdout=out, stderr=out, env=env, timeout=WAIT)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{log.read_text()}"


def _state(world: World, cid: str) -> dict | None:
    proc = subprocess.run([world.runc, "--root", str(world.root), "state", cid], capture_output=True,
                          text=True, timeout=WAIT)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _sleeping(pid: int) -> bool:
    """The container's process is `sleep 60` already: runc loaded the filter (with
    noNewPrivileges it does so just before the execve) and exec'd the workload."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0060\x00"
    except OSError:
        return False


def _wait_for(what: str, probe, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class ReadBack:
    cid: str
    config: Path  # the config.json runc read (a copy)
    program: Path  # the filter read back, raw, host byte order
    inspect: dict  # `ocishim inspect ID --json`


def _read_back(world: World, cid: str, pid: int, config: Path) -> ReadBack:
    from ocishim.bpf.insn import encode
    from ocishim.inspect import read_filters

    _wait_for(f"{cid} running sleep", lambda: _sleeping(pid))
    filters = read_filters(pid)
    assert len(filters) == 1, f"runc loads one filter, read {len(filters)}"
    program = world.base / f"{cid}.bpf"
    program.write_bytes(encode(filters[0], "host"))
    proc = run_ocishim(["inspect", cid, "--root", str(world.root), "--json"])
    assert proc.returncode == 0, proc.stderr
    kept = world.base / f"{cid}.config.json"
    shutil.copyfile(config, kept)
    return ReadBack(cid, kept, program, json.loads(proc.stdout))


def _delete(world: World, cid: str) -> None:
    subprocess.run([world.runc, "--root", str(world.root), "delete", "--force", cid],
                   capture_output=True, timeout=WAIT)


def run_plain(world: World, seccomp: dict[str, Any], name: str) -> ReadBack:
    """runc create + start, nothing of ocishim in between."""
    cid = f"{TAG}-{name}-{uuid.uuid4().hex[:8]}"
    bundle = world.base / cid
    config = bundles.spec(bundle, world.rootfs, ["sleep", "60"], seccomp)
    pid_file = world.base / f"{cid}.pid"
    try:
        _quiet(world, [world.runc, "--root", str(world.root), "create", "--bundle", str(bundle),
                       "--pid-file", str(pid_file), cid], cid)
        _quiet(world, [world.runc, "--root", str(world.root), "start", cid], cid)
        return _read_back(world, cid, int(pid_file.read_text()), config)
    finally:
        _delete(world, cid)


def run_wrapper(world: World, seccomp: dict[str, Any]) -> tuple[ReadBack, Path]:
    """ocishim-runtime create + start, as containerd calls it: it rewrites config.json in
    place (default mode, unnamed) and hands over to runc. Returns (read-back, original)."""
    cid = f"{TAG}-wrapper-{uuid.uuid4().hex[:8]}"
    bundle = world.base / cid
    config = bundles.spec(bundle, world.rootfs, ["sleep", "60"], seccomp)
    original = world.base / f"{cid}.original.json"
    shutil.copyfile(config, original)
    pid_file = world.base / f"{cid}.pid"
    env = _wrapper_env(world)
    try:
        _quiet(world, [str(world.wrapper), "--root", str(world.root), "create", "--bundle", str(bundle),
                       "--pid-file", str(pid_file), cid], cid, env)
        _quiet(world, [str(world.wrapper), "--root", str(world.root), "start", cid], cid, env)
        assert json.loads(config.read_text()) != json.loads(original.read_text()), "nothing rewritten"
        return _read_back(world, cid, int(pid_file.read_text()), config), original
    finally:
        _delete(world, cid)


def run_ocishim_run(world: World, seccomp: dict[str, Any], mode: str) -> tuple[ReadBack, Path]:
    """`ocishim run --runtime runc` (in the foreground, as a user runs it): runc gets a
    private bundle whose config.json is the rewrite; it is read while the container runs."""
    cid = f"{TAG}-run-{uuid.uuid4().hex[:8]}"
    bundle = world.base / cid
    original = bundles.spec(bundle, world.rootfs, ["sleep", "60"], seccomp)
    log = world.base / f"{cid}.log"
    empty = world.base / "empty-stdin"
    empty.touch()
    env = _wrapper_env(world)
    with open(empty, "rb") as stdin, open(log, "ab") as out:
        proc = subprocess.Popen([str(world.ocishim), "run", "--runtime", "runc", "--id", cid,
                                 f"--runtime-arg=--root={world.root}", "--enosys", mode, str(bundle)],
                                stdin=stdin, stdout=out, stderr=out, env=env)

    def running() -> dict | None:
        if proc.poll() is not None:
            raise AssertionError(f"ocishim run exited {proc.returncode}: {log.read_text()}")
        state = _state(world, cid)
        return state if state and state["status"] == "running" else None

    try:
        state = _wait_for(f"{cid} running", running)
        given = Path(state["bundle"]) / "config.json"
        assert given.resolve() != original.resolve(), "ocishim run must not hand runc the user's bundle"
        return _read_back(world, cid, state["pid"], given), original
    finally:
        _delete(world, cid)
        try:
            proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=WAIT)


# --- verify ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    code: int
    reports: dict[str, dict]

    @property
    def program(self) -> dict:
        return self.reports["program vs profile"]

    def departures(self) -> set[tuple[str | None, int, int, int]]:
        return {(d["witness"]["arch"], d["witness"]["nr"], d["got_value"], d["expected_value"])
                for d in self.program["differences"]}


def verify(profile: Path, program: Path, mode: str) -> Verdict:
    proc = run_ocishim(["verify", str(profile), "--program", str(program), "--enosys", mode, "--json"])
    assert proc.returncode in (0, 3), f"exit {proc.returncode}: {proc.stderr}"
    reports = {r["check"]: r for r in json.loads(proc.stdout)}
    # ocishim's own programs for the profile are not what is under test, but a
    # disagreement there would also give exit 3: they must agree for the code to mean the program.
    for check in ("libseccomp vs profile", "patched vs rule 1"):
        assert reports[check]["agrees"], reports[check]
    assert reports["program vs profile"]["undecided"] == []
    return Verdict(proc.returncode, reports)


def assert_explained(verdict: Verdict, runc: Runc, ruled: set[tuple[str, int, int, int]]) -> dict[str, int]:
    """Every difference is runc's stub or a dropped rule, every predicted difference on a
    ruled number is reported, and nothing else on a ruled number; counts per reason."""
    assert verdict.code == 3
    found = verdict.departures()
    unexplained = sorted((a, hex(n), hex(g), hex(e)) for a, n, g, e in found if runc.why(a, n, g) is None)
    assert not unexplained, f"differences runc's documented behaviour does not explain: {unexplained}"
    ruled_numbers = {(a, n) for a, n, _, _ in ruled}
    on_ruled = {d for d in found if (d[0], d[1]) in ruled_numbers}
    assert on_ruled == ruled, (sorted(on_ruled - ruled), sorted(ruled - on_ruled))
    counts: dict[str, int] = {}
    for a, n, g, _ in found:
        reason = runc.why(a, n, g).split(":")[0]
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def stub_ranges(maxes: dict[str, int]) -> dict[str, list[list[int]]]:
    """The ENOSYS ranges runc's stub gives each arch, within the nr interval of the arch."""
    out = {a: [[m + 1, DOMAIN_END[a]]] for a, m in maxes.items()}
    if "x86_64" in maxes and "x32" not in maxes:
        # runc's x86_64-only section skips numbers with bit 30 set and sends the rest to
        # its jgt: those from 2^31 without bit 30, which inspect counts as x32's
        out["x32"] = [[1 << 31, (1 << 31) + X32_BIT - 1]]
    return out


# --- the tests ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain(world) -> tuple[ReadBack, Runc]:
    seccomp = bundles.docker_profile()
    return run_plain(world, seccomp, "plain"), world.runc_for(seccomp)


def test_inspect_reads_runc_stub_at_the_measured_maximum(plain):
    back, runc = plain
    assert runc.maxes["x86_64"] < X32_BIT <= runc.maxes["x32"]  # the measurement means what it says
    (f,) = back.inspect["filters"]
    assert f["stub"] == "runc"
    assert f["enosys"] == stub_ranges(runc.maxes)


def test_plain_runc_filter_means_its_profile_but_for_runc_departures(plain):
    """--enosys off: the profile as it is. runc's program differs exactly where runc's
    stub answers ENOSYS above its maximum and where its libseccomp dropped a rule."""
    back, runc = plain
    seccomp = json.loads(back.config.read_text())["linux"]["seccomp"]
    assert seccomp == runc.seccomp
    ruled = runc.ruled_departures()
    # Docker's profile allows names libseccomp 2.5.4 lacks: some above runc's maximum
    # (statmount 457 on x86_64), some below it (uretprobe 335 on x86_64; every one on x32,
    # whose maximum is 547 from the x32 compat range).
    assert {g for _, _, g, _ in ruled} == {errno_ret(ENOSYS), runc.default}, sorted(ruled)
    verdict = verify(back.config, back.program, "off")
    counts = assert_explained(verdict, runc, ruled)
    # unnamed numbers above the maximum: the profile's default, runc's ENOSYS, on every arch
    stub_unnamed = {a for a, n, g, e in verdict.departures()
                    if e == runc.default and stub_enosys(runc.maxes, a, n)}
    assert stub_unnamed == set(ARCHES)
    assert counts["stub"] and counts["dropped"]


def test_flipped_instruction_is_found_with_its_syscall(plain, world):
    """One jump of the read-back filter changed: getpid (x86_64 nr 39) no longer jumps to
    ALLOW and falls through to the default. A RET ALLOW is not flipped instead because
    libseccomp shares one per arch: every allowed syscall of the arch would change."""
    from ocishim.bpf.insn import Insn, decode, encode

    back, runc = plain
    program = list(decode(back.program.read_bytes(), "host"))
    ld_arch, jeq_k = (0x20, 4), 0x15  # BPF_LD|BPF_W|BPF_ABS [4], BPF_JMP|BPF_JEQ|BPF_K
    # runc's stub comes first and loads the arch once; the profile's program starts at the
    # second `ld [4]`: find the x86_64 branch there, then getpid's test in it.
    loads = [i for i, insn in enumerate(program) if (insn.code, insn.k) == ld_arch]
    p_start = loads[1]
    x86_64 = next(i for i in range(p_start, len(program))
                  if program[i].code == jeq_k and program[i].k == runc.lib.tokens["x86_64"])
    getpid = world.table["x86_64"]["getpid"]
    at = next(i for i in range(x86_64 + 1, len(program))
              if program[i].code == jeq_k and program[i].k == getpid)
    target = program[at + 1 + program[at].jt]
    assert target == Insn(0x06, 0, 0, ALLOW), target  # BPF_RET|BPF_K ALLOW
    program[at] = Insn(program[at].code, 0, program[at].jf, program[at].k)
    flipped = world.base / "flipped.bpf"
    flipped.write_bytes(encode(program, "host"))

    before = verify(back.config, back.program, "off").departures()
    after = verify(back.config, flipped, "off")
    assert after.code == 3
    assert after.departures() - before == {("x86_64", getpid, runc.default, ALLOW)}
    assert before - after.departures() == set()
    (new,) = [d for d in after.program["differences"] if d["witness"]["nr"] == getpid
              and d["witness"]["arch"] == "x86_64"]
    assert (new["got"], new["expected"]) == ("ERRNO(EPERM)", "ALLOW")


def test_expressible_profile_agrees_behind_runc_stub(world):
    """Docker's profile without the names runc's libseccomp lacks, for x86_64 and x86:
    - behind runc's stub, the program runc's libseccomp built means the profile exactly:
      verify --enosys off agrees, exit 0. The stub is cut off as runc's source lays it
      out (it loads the arch once, at its start; the profile's program starts at the
      next `ld [4]`), not by ocishim's reading of it;
    - the whole program in mode `max` (ENOSYS above the highest named number, runc's
      rule) differs only where runc's stub runs before libseccomp's x32 test: x86_64
      numbers from 2^31 without bit 30, which the stub answers ENOSYS and libseccomp's
      program the bad-arch action (KILL_THREAD, libseccomp's default, which runc keeps).
    x32 stays out: ocishim's `max` leaves x32's compat range 512-547 out of x32's
    maximum, runc does not, so x32 numbers 457-511 would differ as well."""
    from ocishim.bpf.insn import decode, encode

    seccomp = bundles.docker_profile()
    seccomp["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    arches = ("x86_64", "x86")
    lacked = {n for rule in seccomp["syscalls"] for n in rule["names"]
              if any(n in world.table[a] and not world.lib.names(a, world.table[a][n]) for a in arches)}
    assert {"uretprobe", "statmount"} <= lacked  # what libseccomp 2.5.4 lacks; makes the case real
    for rule in seccomp["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in lacked]
    seccomp["syscalls"] = [r for r in seccomp["syscalls"] if r["names"]]
    back = run_plain(world, seccomp, "expressible")
    runc = world.runc_for(seccomp)
    assert back.inspect["filters"][0]["enosys"] == stub_ranges(runc.maxes)

    program = decode(back.program.read_bytes(), "host")
    loads = [i for i, insn in enumerate(program) if (insn.code, insn.k) == (0x20, 4)]  # ld [4]
    assert loads[0] == 0 and len(loads) >= 2
    behind = world.base / "behind-stub.bpf"
    behind.write_bytes(encode(program[loads[1]:], "host"))
    agreed = verify(back.config, behind, "off")
    assert (agreed.code, agreed.program["differences"]) == (0, []), agreed.program["differences"]
    assert agreed.program["agrees"] and agreed.program["pieces"] > 0

    whole = verify(back.config, back.program, "max")
    assert whole.code == 3
    departures = whole.departures()
    assert departures, "runc's stub answers the bad-arch numbers: verify must see it"
    for arch, nr, got, want in departures:
        assert (arch, got, want) == (None, errno_ret(ENOSYS), 0), (arch, hex(nr), hex(got), hex(want))
        assert nr >> 31 == 1 and not nr & X32_BIT and stub_enosys(runc.maxes, "x86_64", nr), hex(nr)
    assert {d["witness"]["audit"] for d in whole.program["differences"]} == {world.lib.tokens["x86_64"]}


@pytest.mark.parametrize("front", ["wrapper", "ocishim-run-auto"])
def test_through_ocishim(front, world):
    """runc started through ocishim: the filter against the rewritten profile runc was
    given (--enosys off: it is the profile now), and against the original profile in the
    mode ocishim used. Both differ only in runc's two departures; inspect names the mode."""
    seccomp = bundles.docker_profile()
    if front == "wrapper":
        back, original = run_wrapper(world, seccomp)
        mode = "unnamed"  # the wrapper's default: no settings file
    else:
        mode = "auto"
        back, original = run_ocishim_run(world, seccomp, mode)
    assert json.loads(original.read_text())["linux"]["seccomp"] == seccomp
    given = json.loads(back.config.read_text())["linux"]["seccomp"]
    assert given != seccomp and given["syscalls"][:-1] == seccomp["syscalls"]  # ocishim's rule, appended
    assert given["syscalls"][-1]["errnoRet"] == ENOSYS
    runc = world.runc_for(given)
    (f,) = back.inspect["filters"]
    assert f["stub"] == "runc" and f["enosys"] == stub_ranges(runc.maxes)
    assert (mode, "profile") in zip(f["matches"], f["match_kind"]), f

    # the rewritten profile: ocishim's ENOSYS rule names numbers runc's libseccomp lacks
    # (below the maximum: dropped, the default answers instead of ENOSYS)
    ruled = runc.ruled_departures()
    assert (runc.default, errno_ret(ENOSYS)) in {(g, e) for _, _, g, e in ruled}, sorted(ruled)
    assert_explained(verify(back.config, back.program, "off"), runc, ruled)

    # the original profile in ocishim's mode: ENOSYS is expected on E(A); runc answers it
    # for what the rule could name and above its maximum, the default elsewhere below it
    versus_original = verify(original, back.program, mode)
    allowed = {d for d in ruled if d[3] == ALLOW}
    counts = assert_explained(versus_original, runc, allowed)
    assert any(e == errno_ret(ENOSYS) and g == runc.default for _, _, g, e in versus_original.departures())
    assert counts["dropped"]
