"""ELF facts of real files on this machine, each against another reader: dpkg for the
libc versions, `go version FILE` for Go binaries, readelf for machines; and the
fallback rows' arch and version limits as fallbacks.csv's README defines them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ocishim.scan import elf, facts


def _dpkg(package: str, field: str = "Version") -> str:
    return subprocess.run(["dpkg-query", "-W", f"-f=${{{field}}}", package], capture_output=True, text=True).stdout


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text).groups() if x is not None)


def test_shared_glibc_version_from_its_version_definitions():
    path = "/lib/x86_64-linux-gnu/libc.so.6"
    if not Path(path).exists():
        pytest.skip(f"{path} is not there (not an x86_64 Debian)")
    assert elf.read("/usr/lib/x86_64-linux-gnu/libc.so.6", path).glibc_defines == _version(_dpkg("libc6"))


def test_static_glibc_floor_is_at_most_its_version():
    built = _dpkg("busybox-static", "Built-Using")
    m = re.search(r"glibc \(= ([\d.]+)", built)
    if not m:
        pytest.skip("busybox-static is not installed (make test installs it)")
    facts_ = elf.read("/bin/busybox", "/bin/busybox")
    assert facts_.static and facts_.static_libc[0] == "glibc"
    floor = facts_.static_libc[1]
    assert floor is not None and (2, 34) <= floor <= _version(m.group(1))


def test_go_version_as_the_go_tool_reads_it():
    runc = shutil.which("runc")
    if runc is None or shutil.which("go") is None:
        pytest.skip("runc and go are needed (make test installs both)")
    says = subprocess.run(["go", "version", runc], capture_output=True, text=True).stdout
    assert elf.read(runc, runc).go_version == says.split(": ", 1)[1].strip()


def test_musl_loader_version():
    loader = Path("/lib/ld-musl-x86_64.so.1")
    if not loader.exists():
        pytest.skip("musl is not installed (make test installs musl-tools)")
    # On the host the loader is a symlink; the scan reads the file it names.
    assert elf.read(str(loader), str(loader.resolve())).musl_version == _version(_dpkg("musl"))


def test_machine_as_readelf_names_it():
    header = subprocess.run(["readelf", "-h", "/bin/true"], capture_output=True, text=True).stdout
    expected = {"Advanced Micro Devices X86-64": "x86_64", "AArch64": "aarch64"}[
        re.search(r"Machine:\s+(.*)", header).group(1).strip()]
    assert elf.read("/bin/true", "/bin/true").arch == expected


@pytest.mark.parametrize("function, arches", [
    ("pthread_create() [x86_64 x86]", ("x86_64", "x86")),
    ("stat() [32-bit ABIs: x86 arm mips ppc s390 m68k sh]", ("x86", "arm", "mips", "ppc", "s390", "m68k", "sh", "sheb")),
    ("clock_settime() [32-bit ABIs]", facts.THIRTY_TWO_BIT),
    ("posix_spawn() with CLONE_CLEAR_SIGHAND [every arch with the clone3 wrapper]", None),
    ("faccessat() with any flags", None),
])
def test_row_arches(function, arches):
    assert facts.Row("glibc", (2, 34), "x", function, "ENOSYS", "").arches() == arches


def _names(rows):
    return {(r.syscall, r.function.split("(")[0]) for r in rows}


def test_applicable_rows_follow_version_and_arch():
    rows_241 = _names(facts.applicable("glibc", (2, 41), "x86_64"))
    assert ("clone3", "pthread_create") in rows_241 and ("faccessat2", "faccessat") in rows_241
    rows_233 = _names(facts.applicable("glibc", (2, 33), "x86_64"))
    assert ("clone3", "pthread_create") not in rows_233 and ("faccessat2", "faccessat") in rows_233
    # 32-bit time64 rows never on x86_64; futex_time64's 2.33 row ends at 2.33
    assert not any(s.endswith("time64") for s, _ in rows_241)
    assert any(r.syscall == "futex_time64" for r in facts.applicable("glibc", (2, 33), "x86"))
    assert not any(r.syscall == "futex_time64" and r.version == (2, 33)
                   for r in facts.applicable("glibc", (2, 34), "x86"))
    # "any" and "if-needed" rows cannot break on EPERM: never findings
    assert not any(r.fallback_on in ("any", "if-needed") for r in facts.applicable("glibc", None, "x86"))
    assert _names(facts.applicable("go", (1, 23), "x86_64")) == set()
    assert _names(facts.applicable("go", (1, 24), "x86_64")) == {("getrandom", "crypto/rand.Read ")}
