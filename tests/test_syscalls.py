"""The syscall table: against the host libseccomp, against the data README, and its generator."""

from __future__ import annotations

import csv
import functools
import hashlib
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocishim import libseccomp, syscalls
from ocishim.arch import ARCHES, BY_NAME, X32_SYSCALL_BIT
from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_data.DATA
SYSCALLS_CSV = SHARED / "syscalls" / "syscalls.csv"
KNOWN_CSV = SHARED / "libseccomp" / "known.csv"
GENERATOR = REPO / "scripts" / "gen_syscall_table.py"
DATA_MODULE = REPO / "ocishim" / "syscalls" / "_data.py"

needs_shared_data = pytest.mark.skipif(
    not (SYSCALLS_CSV.is_file() and KNOWN_CSV.is_file()),
    reason=f"the shared data is not next to the repo ({SHARED})",
)


# --- the table against the host libseccomp -------------------------------------------

# Socket and SysV IPC calls: on arches that also have socketcall(2)/ipc(2), libseccomp
# answers these with a negative pseudo number and compiles a rule on the multiplexer
# (and on the direct call). That is not a disagreement about the number.
MULTIPLEXED = frozenset({
    "socket", "bind", "connect", "listen", "accept", "getsockname", "getpeername",
    "socketpair", "send", "recv", "sendto", "recvfrom", "shutdown", "setsockopt",
    "getsockopt", "sendmsg", "recvmsg", "accept4", "recvmmsg", "sendmmsg",
    "semop", "semget", "semctl", "semtimedop", "msgsnd", "msgrcv", "msgget", "msgctl",
    "shmat", "shmdt", "shmget", "shmctl",
})

# Every known disagreement between the table and some libseccomp release, with why.
ALLOWED: dict[tuple[str, str], str] = {
    ("arm", "sync_file_range2"):
        "alias: the uapi headers define 341 under two names; libseccomp knows only "
        "arm_sync_file_range and gives sync_file_range2 a pseudo number",
    ("x32", "map_shadow_stack"):
        "libseccomp 2.5.5 (and Debian 12's patched 2.5.4) give x32 a pseudo number; "
        "the x32 table has it since 6.10 and libseccomp 2.5.6+ knows it",
    ("loongarch64", "memfd_secret"):
        "libseccomp 2.6.x gives a pseudo number; the uapi headers have 447 since 7.0 "
        "(see the Known limitations of the syscalls README)",
}


@dataclass(frozen=True)
class Finding:
    """One (arch, name) where the table and the host libseccomp disagree."""

    arch: str
    name: str
    libseccomp_nr: int
    table_nr: int | None
    problem: str

    def __str__(self) -> str:
        return (f"{self.arch} {self.name}: libseccomp {self.libseccomp_nr}, "
                f"table {self.table_nr}: {self.problem}")


@functools.cache
def _known() -> dict[str, dict[str, set[str]]]:
    """known.csv as version -> arch -> names that release resolves to a real number."""
    out: dict[str, dict[str, set[str]]] = {}
    with KNOWN_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["version"], {}).setdefault(row["arch"], set()).add(row["name"])
    return out


@functools.cache
def _candidate_names() -> tuple[str, ...]:
    """Every name in the table (any arch) or in any libseccomp release (any arch)."""
    names = {n for a in syscalls.arches() for n in syscalls.names(a)}
    for by_arch in _known().values():
        for arch_names in by_arch.values():
            names |= arch_names
    return tuple(sorted(names))


def _compare(arch: str) -> tuple[Counter[str], list[Finding]]:
    """Resolve every candidate name with both; count the outcomes, list the disagreements."""
    a = BY_NAME[arch]
    ours = syscalls.names(arch)
    theirs = {n: libseccomp.resolve_name(a, n) for n in _candidate_names()}
    their_name_of = {nr: n for n, nr in theirs.items() if nr >= 0}
    has_multiplexer = "socketcall" in ours or "ipc" in ours
    host = ".".join(map(str, libseccomp.version()))
    # Distro builds only add names to their upstream release, never drop them.
    upstream_knows = _known().get(host, {}).get(arch)

    counts: Counter[str] = Counter()
    findings: list[Finding] = []

    def disagree(name: str, problem: str) -> None:
        findings.append(Finding(arch, name, theirs[name], ours.get(name), problem))

    for name, nr in theirs.items():
        mine = ours.get(name)
        if nr >= 0:
            if mine == nr:
                counts["same number"] += 1
            elif mine is None:
                disagree(name, "missing from the table")
            else:
                disagree(name, "different number")
        elif mine is None:
            counts["in neither"] += 1
        elif nr == libseccomp.NR_SCMP_ERROR:
            # libseccomp must really not know it: not under another name, not upstream.
            if mine in their_name_of:
                disagree(name, f"libseccomp knows {mine} as {their_name_of[mine]}")
            elif upstream_knows is not None and name in upstream_knows:
                disagree(name, f"known.csv says libseccomp {host} knows it")
            else:
                counts["only in the table (newer than libseccomp)"] += 1
        elif name in MULTIPLEXED and has_multiplexer:
            counts["multiplexed (pseudo number)"] += 1
        else:
            disagree(name, "pseudo number for a name the table has")
    return counts, findings


@needs_shared_data
@pytest.mark.parametrize("arch", syscalls.arches())
def test_table_matches_host_libseccomp(arch: str) -> None:
    if BY_NAME[arch] not in libseccomp.supported_arches():
        pytest.skip(f"libseccomp {libseccomp.version()} has no {arch} table")
    counts, findings = _compare(arch)
    allowed = [f for f in findings if (f.arch, f.name) in ALLOWED]
    unexpected = [f for f in findings if (f.arch, f.name) not in ALLOWED]
    counts["allowed"] = len(allowed)
    summary = f"{arch}: " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    print(summary)
    for f in allowed:
        print(f"  allowed: {f} ({ALLOWED[f.arch, f.name]})")
    assert counts["same number"] > 0, summary
    assert not unexpected, (
        f"{len(unexpected)} disagreements with libseccomp {libseccomp.version()} "
        f"({summary}):\n" + "\n".join(f"  {f}" for f in unexpected)
    )


def test_allowed_alias_is_the_same_number() -> None:
    arm = BY_NAME["arm"]
    if arm not in libseccomp.supported_arches():
        pytest.skip("libseccomp has no arm table")
    assert libseccomp.resolve_name(arm, "arm_sync_file_range") == 341
    assert syscalls.resolve("arm", "sync_file_range2") == 341
    assert syscalls.resolve("arm", "arm_sync_file_range") == 341


# --- facts from ../shared/data/syscalls/README.md -------------------------------------

NUMBERS = [
    ("x86_64", "read", 0),
    ("x86_64", "clone3", 435),
    ("x86_64", "faccessat2", 439),
    ("x86_64", "rseq_slice_yield", 471),
    ("x32", "read", 0x40000000),
    ("x32", "pwritev2", 0x40000223),
    ("x32", "io_setup", 0x4000021F),
    ("x32", "io_submit", 0x40000220),
    ("arm", "breakpoint", 983041),
    ("arm", "cacheflush", 983042),
    ("arm", "usr26", 983043),
    ("arm", "usr32", 983044),
    ("arm", "set_tls", 983045),
    ("arm", "get_tls", 983046),
    ("arm", "sync_file_range2", 341),
    ("arm", "arm_sync_file_range", 341),
    ("s390", "file_setattr", 469),
    ("mips", "rseq_slice_yield", 4471),
    ("mips64", "rseq_slice_yield", 5471),
    ("mips64n32", "rseq_slice_yield", 6471),
    ("x86_64", "quotactl_fd", 443),
]


@pytest.mark.parametrize("arch, name, nr", NUMBERS)
def test_number(arch: str, name: str, nr: int) -> None:
    assert syscalls.resolve(arch, name) == nr
    assert syscalls.resolve(arch, syscalls.name(arch, nr) or "") == nr


SINCE = [
    ("x86_64", "clone3", "5.3"),
    ("x86_64", "faccessat2", "5.8"),
    ("x86_64", "quotactl_fd", "5.14"),
    ("x86_64", "map_shadow_stack", "6.6"),
    ("x86", "map_shadow_stack", "6.7"),
    ("aarch64", "map_shadow_stack", "6.7"),
    ("x32", "map_shadow_stack", "6.10"),
    ("x86_64", "uretprobe", "6.11"),
    ("x32", "uretprobe", "6.11"),
    ("x86_64", "uprobe", "6.18"),
    ("x86_64", "listns", "6.19"),
    ("x86_64", "kexec_file_load", "3.17"),
    ("x32", "kexec_file_load", "3.17"),
    ("x32", "io_setup", "3.16"),
    ("x32", "pwritev2", "4.8"),
    ("aarch64", "clone3", "5.3"),
    ("riscv64", "memfd_secret", "5.14"),
    ("arm", "get_tls", "4.15"),
    ("arm", "io_pgetevents", "4.19"),
    ("aarch64", "rseq", "4.19"),
    ("riscv64", "rseq", "4.19"),
    ("x86", "pkey_alloc", "4.9"),
    ("arm", "pkey_alloc", "4.9"),
    ("aarch64", "pkey_alloc", "4.9"),
    ("ppc64", "pkey_alloc", "4.16"),
    ("ppc64le", "pkey_alloc", "4.16"),
    ("s390x", "pkey_alloc", "5.1"),
    ("loongarch64", "memfd_secret", "7.0"),
]
SINCE += [
    (arch, "rseq_slice_yield", "7.0")
    for arch in syscalls.arches() if arch != "s390"  # frozen at 6.18, before it came
]
# Section (b) of the README: the same value on all seven arches it names.
_COMMON_SINCE = {
    "clone3": "5.3", "close_range": "5.9", "faccessat2": "5.8", "openat2": "5.6",
    "pidfd_open": "5.3", "fchmodat2": "6.6", "cachestat": "6.5", "futex_waitv": "5.16",
    "mseal": "6.10", "statmount": "6.8", "listmount": "6.8", "lsm_get_self_attr": "6.8",
    "setxattrat": "6.13", "file_getattr": "6.17", "io_uring_setup": "5.1", "statx": "4.11",
    "copy_file_range": "4.5", "memfd_create": "3.17", "getrandom": "3.17", "bpf": "3.18",
    "execveat": "3.19", "userfaultfd": "4.3", "membarrier": "4.3", "mlock2": "4.4",
    "rseq": "4.18", "io_pgetevents": "4.18", "pidfd_send_signal": "5.1",
}
_EXCEPTIONS = {("aarch64", "rseq"), ("arm", "io_pgetevents")}  # listed above
SINCE += [
    (arch, name, version)
    for arch in ("x86_64", "x86", "x32", "aarch64", "arm", "ppc64le", "s390x")
    for name, version in _COMMON_SINCE.items()
    if (arch, name) not in _EXCEPTIONS
]


@pytest.mark.parametrize("arch, name, version", SINCE)
def test_since(arch: str, name: str, version: str) -> None:
    nr = syscalls.resolve(arch, name)
    assert nr is not None, f"{arch} has no {name}"
    assert syscalls.since(arch, nr) == syscalls.parse_version(version)


FLOORS = {
    "x32": "3.4", "aarch64": "3.7", "ppc64le": "3.13", "riscv64": "4.15", "loongarch64": "5.19",
}


@pytest.mark.parametrize("arch", syscalls.arches())
def test_floor(arch: str) -> None:
    assert syscalls.format_version(syscalls.floor(arch)) == FLOORS.get(arch, "3.0")


ROWS = {
    "x86": 461, "ppc": 452, "s390": 440, "mips": 437, "mipsel": 437, "arm": 431,
    "ppc64": 424, "ppc64le": 424, "mips64n32": 397, "mipsel64n32": 397, "s390x": 390,
    "x86_64": 385, "x32": 374, "mips64": 373, "mipsel64": 373, "riscv64": 328,
    "aarch64": 327, "loongarch64": 324,
}
MAX_NR = {
    "mips": 4471, "mipsel": 4471, "mips64": 5471, "mipsel64": 5471, "mips64n32": 6471,
    "mipsel64n32": 6471, "x32": 0x40000223, "arm": 0xF0006, "s390": 469,
}


def test_arches_are_the_eighteen_in_arch_order() -> None:
    assert set(syscalls.arches()) == set(ROWS)
    assert syscalls.arches() == tuple(a.name for a in ARCHES if a.name in ROWS)


@pytest.mark.parametrize("arch", syscalls.arches())
def test_rows_and_highest_number(arch: str) -> None:
    assert len(syscalls.names(arch)) == ROWS[arch]
    assert syscalls.max_nr(arch) == MAX_NR.get(arch, 471)
    nrs = syscalls.numbers(arch)
    assert list(nrs) == sorted(set(nrs)) == sorted(set(syscalls.names(arch).values()))


@pytest.mark.parametrize("arch", syscalls.arches())
def test_until_only_on_s390(arch: str) -> None:
    expected = (6, 19) if arch == "s390" else None
    assert {syscalls.until(arch, nr) for nr in syscalls.numbers(arch)} == {expected}


@pytest.mark.parametrize("twin, base", [
    ("ppc64le", "ppc64"), ("mipsel", "mips"), ("mipsel64", "mips64"),
    ("mipsel64n32", "mips64n32"),
])
def test_endian_twins_have_the_same_numbers(twin: str, base: str) -> None:
    assert syscalls.names(twin) == syscalls.names(base)


def test_x32_numbers_carry_the_x32_bit() -> None:
    assert all(nr & X32_SYSCALL_BIT for nr in syscalls.numbers("x32"))


# --- API behaviour ---------------------------------------------------------------------

def test_alias_lookups() -> None:
    assert syscalls.name("arm", 341) == "arm_sync_file_range"  # first in name order
    assert syscalls.since("arm", 341) == (3, 0)


def test_absent_names_and_numbers() -> None:
    assert syscalls.resolve("x86_64", "no_such_syscall") is None
    assert syscalls.resolve("aarch64", "open") is None
    assert syscalls.name("x86_64", 100_000) is None
    assert syscalls.since("x86_64", 100_000) is None
    assert syscalls.until("x86_64", 100_000) is None


def test_names_returns_a_copy() -> None:
    syscalls.names("x86_64").clear()
    assert syscalls.resolve("x86_64", "read") == 0


@pytest.mark.parametrize("function, args", [
    (syscalls.resolve, ("parisc", "read")),  # in ocishim.arch, not in the table
    (syscalls.name, ("sparc", 0)),
    (syscalls.since, ("", 0)),
    (syscalls.until, ("X86_64", 0)),
    (syscalls.names, ("SCMP_ARCH_X86_64",)),
    (syscalls.numbers, ("i386",)),
    (syscalls.max_nr, ("arm64",)),
    (syscalls.floor, ("amd64",)),
])
def test_unknown_arch_is_a_key_error(
    function: Callable[..., object], args: tuple[object, ...]
) -> None:
    with pytest.raises(KeyError, match="unknown arch"):
        function(*args)


@pytest.mark.parametrize("text", ["", "5", "5.", ".10", "v5.10", "5.10.1", "5,10", "five.ten",
                                  "5.-1", "5.10-rc1"])
def test_parse_version_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="expected MAJOR.MINOR"):
        syscalls.parse_version(text)


def test_parse_version() -> None:
    assert syscalls.parse_version("5.10") == (5, 10)
    assert syscalls.parse_version(" 7.0\n") == (7, 0)
    assert syscalls.format_version((5, 10)) == "5.10"


@given(st.integers(1, 255), st.integers(0, 255))
def test_version_round_trip(major: int, minor: int) -> None:
    assert syscalls.parse_version(syscalls.format_version((major, minor))) == (major, minor)


@pytest.mark.parametrize("text", ["0.0", "0.9", "256.0", "5.256", "99999.1"])
def test_versions_no_linux_has(text: str) -> None:
    """KERNEL_VERSION() packs major and minor into 8 bits each (and Linux began at 1.0)."""
    with pytest.raises(ValueError, match="is not a Linux version"):
        syscalls.parse_version(text)


# --- the generator ---------------------------------------------------------------------

def _generate(tmp_path: Path, out_name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    # Run from elsewhere: the output must not depend on the working directory.
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args, "-o", str(tmp_path / out_name)],
        cwd=tmp_path, capture_output=True, check=False,
    )


@needs_shared_data
def test_generator_is_deterministic_and_committed_output_is_fresh(tmp_path: Path) -> None:
    for out in ("a.py", "b.py"):
        result = _generate(tmp_path, out)
        assert result.returncode == 0, result.stderr.decode()
    first = (tmp_path / "a.py").read_bytes()
    assert first == (tmp_path / "b.py").read_bytes()
    assert first == DATA_MODULE.read_bytes(), \
        "ocishim/syscalls/_data.py is stale: run scripts/gen_syscall_table.py"


@needs_shared_data
def test_generated_header_names_script_source_and_hash() -> None:
    sha256 = hashlib.sha256(SYSCALLS_CSV.read_bytes()).hexdigest()
    header = DATA_MODULE.read_text().splitlines()[:3]
    assert header[0] == ("# Generated by scripts/gen_syscall_table.py "
                         "from ../shared/data/syscalls/syscalls.csv")
    assert header[1] == f"# sha256 of the input: {sha256}"
    assert "Do not edit" in header[2]
    from ocishim.syscalls import _data
    assert _data.SOURCE_SHA256 == sha256


@pytest.mark.parametrize("body, message", [
    ("x86_64,read,0,3.0,\nx86_64,read,0,3.0,\n", "duplicate row"),
    ("sparc,read,0,3.0,\n", "not in ocishim.arch.ARCHES"),
    ("x86_64,read,zero,3.0,\n", "bad nr"),
    ("x86_64,read,0,3,\n", "bad version"),
    ("x86_64,read,0,3.0\n", "fields"),
])
def test_generator_rejects_bad_rows(tmp_path: Path, body: str, message: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,name,nr,since,until\n" + body)
    result = _generate(tmp_path, "out.py", str(bad))
    assert result.returncode == 1
    assert message in result.stderr.decode()
    assert "bad.csv:" in result.stderr.decode()
    assert not (tmp_path / "out.py").exists()
