"""What a user sees on bad input: exact messages, exit codes, and no traceback.

Every case runs `python -m ocishim` as a subprocess. Expected texts are written out
here; names and numbers come from the shared data (syscalls.csv), Go's GOARCH list,
Debian's architecture names and `uname -m`, not from ocishim.
"""

from __future__ import annotations

import csv
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_data.DATA
DOCKER = SHARED / "profiles" / "docker-default.json"
# Docker's profile on an amd64 host carries these arches (its archMap), in ocishim's order.
DOCKER_ARCHES = "x86_64, x86, x32"
KERNEL_RANGE = "is not a Linux version: MAJOR is 1 to 255 and MINOR 0 to 255, such as 5.10"


def ocishim(*args: object, stdin=None, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "ocishim", *map(str, args)], stdin=stdin,
                          capture_output=True, env=full_env, timeout=120, **kw)


def refused(proc: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2, exactly `message` as the one line on stderr, nothing on stdout."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.decode() == message + "\n"
    assert proc.stdout == b""


@pytest.fixture(scope="module")
def docker_bpf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bpf") / "docker.bpf"
    proc = ocishim("patch", DOCKER, "--enosys", "off", "-o", path)
    assert proc.returncode == 0, proc.stderr
    return path


# --- unknown syscall names -------------------------------------------------------

def test_explain_misspelled_name_suggests_closest():
    refused(ocishim("explain", DOCKER, "opnat"),
            f"ocishim: SYSCALL: unknown syscall 'opnat' on {DOCKER_ARCHES}; closest: openat, openat2, open")


def test_explain_with_one_bad_name_among_good_ones_prints_no_table():
    refused(ocishim("explain", DOCKER, "read", "clone_3", "--json"),
            f"ocishim: SYSCALL: unknown syscall 'clone_3' on {DOCKER_ARCHES}; closest: clone3, clone, close")


def test_explain_every_unknown_name_is_named():
    refused(ocishim("explain", DOCKER, "--arch", "x86", "opne", "fchmodat3"),
            "ocishim: SYSCALL: unknown syscall 'opne' on x86; closest: open, clone, openat; "
            "unknown syscall 'fchmodat3' on x86; closest: fchmodat, fchmodat2, fchmod")


def test_explain_name_of_another_arch_says_where_it_is():
    # vm86 is in the x86, ppc and mips o32 tables only (syscalls.csv)
    with open(SHARED / "syscalls" / "syscalls.csv") as f:
        has_vm86 = {row["arch"] for row in csv.DictReader(f) if row["name"] == "vm86"}
    assert has_vm86 == {"x86", "ppc64le", "ppc64", "ppc", "mips", "mipsel"}
    refused(ocishim("explain", DOCKER, "--arch", "amd64", "vm86"),
            "ocishim: SYSCALL: unknown syscall 'vm86' on x86_64 "
            "(the table has it on x86, ppc64le, ppc64, ppc, mips, mipsel)")


def test_explain_numbers_in_any_base_and_numbers_outside_the_table():
    proc = ocishim("explain", DOCKER, "--arch", "amd64", "--json", "0x1b3", "1000")
    assert proc.returncode == 0, proc.stderr
    # clone3 is 435 on x86_64 and Docker's profile answers it ERRNO 38; 1000 is no syscall:
    # Docker's default (errno 1) before, ENOSYS after (unnamed, the default mode)
    assert json.loads(proc.stdout) == [
        {"arch": "x86_64", "name": "clone3", "nr": 435, "before": "ERRNO(ENOSYS)", "after": "ERRNO(ENOSYS)"},
        {"arch": "x86_64", "name": None, "nr": 1000, "before": "ERRNO(EPERM)", "after": "ERRNO(ENOSYS)"},
    ]
    table = ocishim("explain", DOCKER, "--arch", "amd64", "1000").stdout.decode().splitlines()
    assert table[1].split() == ["x86_64", "1000", "(not", "in", "table)", "ERRNO(EPERM)", "ERRNO(ENOSYS)", "*"]


def test_emu_misspelled_name_suggests_closest(docker_bpf):
    refused(ocishim("emu", docker_bpf, "amd64", "clon3"),
            "ocishim: SYSCALL: unknown syscall 'clon3' on x86_64; closest: clone3, clone, close")


def test_emu_name_on_an_arch_without_a_table(docker_bpf):
    refused(ocishim("emu", docker_bpf, "hppa", "read"),
            "ocishim: SYSCALL: ocishim has no syscall table for parisc: give the number instead of the name")


# --- architecture names ----------------------------------------------------------

# Little-endian arches that libseccomp 2.5 can put in one filter together.
TINY_ARCHES = ("x86_64", "x86", "x32", "aarch64", "arm", "ppc64le", "riscv64", "mipsel", "mipsel64",
               "mipsel64n32")
TINY = {"defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_" + a.upper() for a in TINY_ARCHES],
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}

# (spelling, the libseccomp/OCI arch it means). Sources: Go's GOARCH values, Debian's
# architecture names, `uname -m`, the OCI SCMP_ARCH_* names, libseccomp's own names.
ARCH_SPELLINGS = [
    ("amd64", "x86_64"), ("x86_64", "x86_64"), ("X86_64", "x86_64"), ("x86-64", "x86_64"),
    ("SCMP_ARCH_X86_64", "x86_64"), ("386", "x86"), ("i386", "x86"), ("i686", "x86"), ("x86", "x86"),
    ("x32", "x32"), ("arm64", "aarch64"), ("aarch64", "aarch64"), ("SCMP_ARCH_AARCH64", "aarch64"),
    ("armhf", "arm"), ("armel", "arm"), ("armv7l", "arm"), ("arm", "arm"),
    ("ppc64le", "ppc64le"), ("ppc64el", "ppc64le"), ("riscv64", "riscv64"),
    ("mipsle", "mipsel"), ("mips64le", "mipsel64"), ("mips64el", "mipsel64"),
    ("loong64", "loongarch64"), ("loongarch64", "loongarch64"), ("s390x", "s390x"),
    ("ppc64", "ppc64"), ("powerpc", "ppc"), ("mips", "mips"), ("mips64", "mips64"), ("hppa", "parisc"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "seccomp.json"
    path.write_text(json.dumps(TINY))
    return path


@pytest.mark.parametrize("spelling,arch", ARCH_SPELLINGS)
def test_arch_spellings(tiny, spelling, arch):
    proc = ocishim("explain", tiny, "--arch", spelling, "--json", "read")
    if arch in TINY_ARCHES:
        assert proc.returncode == 0, proc.stderr
        assert [e["arch"] for e in json.loads(proc.stdout)] == [arch]
    else:  # the message names the arch the spelling stands for
        refused(proc, f"ocishim: --arch: {arch} is not in this filter ({', '.join(TINY_ARCHES)})")


def test_emu_takes_the_same_spellings(docker_bpf):
    for spelling in ("amd64", "SCMP_ARCH_X86_64", "x86_64"):
        assert ocishim("emu", docker_bpf, spelling, "read").stdout == b"ALLOW\n"
    for spelling in ("386", "i686", "x86"):  # clone3 has an ERRNO 38 rule in Docker's profile
        assert ocishim("emu", docker_bpf, spelling, "clone3").stdout == b"ERRNO(ENOSYS)\n"


def test_unknown_arch_suggests_closest(docker_bpf):
    known = ("x86_64, x86, x32, aarch64, arm, ppc64le, ppc64, ppc, s390x, s390, riscv64, mips, mipsel, "
             "mips64, mipsel64, mips64n32, mipsel64n32, parisc, parisc64, loongarch64, "
             "and Go, Docker and Debian names such as amd64, arm64, i386, armhf")
    refused(ocishim("emu", docker_bpf, "amd46", "read"),
            f"ocishim: ARCH: unknown architecture 'amd46'; closest: amd64, arm64 (known: {known})")
    refused(ocishim("explain", DOCKER, "--arch", "sparc"),
            f"ocishim: --arch: unknown architecture 'sparc'; closest: parisc, parisc64 (known: {known})")


# --- numbers out of range --------------------------------------------------------

@pytest.mark.parametrize("nr", ["-1", "0x100000000", "4294967296"])
def test_syscall_numbers_out_of_range(docker_bpf, nr):
    message = f"ocishim: SYSCALL: syscall number {nr} is out of range (0 to 0xffffffff)"
    refused(ocishim("emu", docker_bpf, "x86_64", nr), message)
    refused(ocishim("explain", DOCKER, "--json", nr), message)


def test_emu_arguments_must_fit_64_bits(docker_bpf):
    refused(ocishim("emu", docker_bpf, "x86_64", "socket", "0x10000000000000000"),
            "ocishim: ARG 0: does not fit in 64 bits: '0x10000000000000000'")
    refused(ocishim("emu", docker_bpf, "x86_64", "socket", "2", str(-2**63 - 1)),
            f"ocishim: ARG 1: does not fit in 64 bits: '{-2**63 - 1}'")
    # the edges fit: all ones, and the most negative signed value
    assert ocishim("emu", docker_bpf, "x86_64", "read", "0xffffffffffffffff", str(-2**63)).returncode == 0


@pytest.mark.parametrize("command", [["patch", DOCKER], ["explain", DOCKER, "read"], ["run", "/nonexistent"]])
@pytest.mark.parametrize("flag,value,message", [
    ("--emulate-kernel", "99999.1", f"'99999.1' {KERNEL_RANGE}"),
    ("--emulate-kernel", "5.-1", "bad kernel version '5.-1': expected MAJOR.MINOR, such as 5.10"),
    ("--emulate-kernel", "0.9", f"'0.9' {KERNEL_RANGE}"),
    ("--enosys", "kernel:99999.1", f"'99999.1' {KERNEL_RANGE}"),
    ("--enosys", "kernel:5.256", f"'5.256' {KERNEL_RANGE}"),
])
def test_kernel_versions_out_of_range(command, flag, value, message):
    refused(ocishim(*command, flag, value), f"ocishim: {flag}: {message}")


def test_docker_min_kernel_version_out_of_range():
    refused(ocishim("explain", DOCKER, "--kernel", "99999.1", "read"), f"ocishim: --kernel: '99999.1' {KERNEL_RANGE}")


def test_kernel_versions_at_the_edges_are_taken():
    for value in ("1.0", "255.255"):
        assert ocishim("explain", DOCKER, "--emulate-kernel", value, "--json", "read").returncode == 0


# --- --version and help ----------------------------------------------------------

def test_version_names_libseccomp_and_the_table():
    lines = ocishim("--version").stdout.decode().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("ocishim ")
    # libseccomp: the version the library itself reports, and the file it is in
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    version = ".".join(map(str, lib.seccomp_version().contents))
    assert lines[1].startswith(f"libseccomp {version} (/") and lines[1].endswith(")")
    path = lines[1][len(f"libseccomp {version} ("):-1]
    assert os.path.samefile(path, _ldconfig_path("libseccomp.so.2"))
    # the table: the newest `since` of the shared CSV
    with open(SHARED / "syscalls" / "syscalls.csv") as f:
        newest = max(tuple(map(int, row["since"].split("."))) for row in csv.DictReader(f))
    assert lines[2].startswith(f"syscall table: syscalls up to Linux {newest[0]}.{newest[1]} (data sha256 ")


def _ldconfig_path(soname: str) -> str:
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    paths = [line.split(" => ")[1].strip() for line in out.splitlines()
             if line.strip().startswith(soname + " ") and "x86-64" in line]
    assert paths, f"{soname} is not in the loader cache"
    return paths[0]


COMMANDS = ("explain", "patch", "exec", "run", "disasm", "emu", "hook", "install")


def test_main_help_is_for_users():
    out = ocishim("--help").stdout.decode()
    for command in COMMANDS:
        assert f"\n    {command} " in out, command
    assert "examples:" in out and "ENOSYS" in out
    assert "argument parsing" not in out  # the module docstring is for readers of the code
    assert ocishim("help").stdout.decode() == out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_command_is_the_command_help(command):
    own = ocishim(command, "--help")
    assert own.returncode == 0 and own.stdout
    assert ocishim("help", command).stdout == own.stdout


def test_every_option_has_a_help_text():
    sys.path.insert(0, str(REPO))
    from ocishim.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    checked = 0
    for name, sp in sub.choices.items():
        for action in sp._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 10, (name, action.dest)
                checked += 1
        if name in ("explain", "patch", "disasm", "emu", "run", "exec"):
            assert sp.epilog and "example" in sp.epilog, name
    assert checked > 25


def test_help_for_an_unknown_command():
    proc = ocishim("help", "explian")
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("ocishim: help: no command 'explian'; closest: explain (commands: ")


# --- disasm - / emu - -------------------------------------------------------------

def test_disasm_and_emu_read_stdin(docker_bpf):
    with open(docker_bpf, "rb") as f:
        piped = ocishim("disasm", "-", stdin=f)
    assert piped.returncode == 0 and piped.stdout == ocishim("disasm", docker_bpf).stdout
    with open(docker_bpf, "rb") as f:
        assert ocishim("emu", "-", "x86", "clone3", stdin=f).stdout == b"ERRNO(ENOSYS)\n"


def test_disasm_stdin_errors_name_stdin(tmp_path):
    odd = tmp_path / "odd"
    odd.write_bytes(b"\0" * 13)
    with open(odd, "rb") as f:
        refused(ocishim("disasm", "-", stdin=f), "ocishim: stdin: length 13 is not a multiple of 8 bytes")
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (2 << 20))
    with open(big, "rb") as f:
        refused(ocishim("disasm", "-", stdin=f), "ocishim: stdin: larger than 1024 KiB: not a seccomp "
                                                 "filter (the kernel takes at most 4096 instructions, 32 KiB)")


# --- hostile files through the CLI and the hook ----------------------------------

DEPTH = 100_000
BIG = 100 << 20


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[dict[str, Path]]:
    d = tmp_path_factory.mktemp("hostile")
    files = {
        "deep-arrays": "[" * DEPTH + "]" * DEPTH,
        "deep-objects": '{"linux":' * DEPTH + "1" + "}" * DEPTH,
        "deep-in-seccomp": '{"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": '
                           + "[" * DEPTH + "]" * DEPTH + "}}}",
    }
    out = {}
    for name, text in files.items():
        out[name] = d / f"{name}.json"
        out[name].write_text(text)
    out["invalid-utf8"] = d / "invalid-utf8.json"
    out["invalid-utf8"].write_bytes(b'{"linux": "\xff\xfe"}')
    out["big"] = d / "big.json"
    with open(out["big"], "wb") as f:  # a real 100 MB JSON document, not a sparse file
        f.write(b'{"ociVersion": "')
        f.write(b"a" * (BIG - 18))
        f.write(b'"}')
    assert out["big"].stat().st_size == BIG
    yield out
    out["big"].unlink()  # pytest keeps old temp dirs: do not leave 100 MB behind each run


FILE_MESSAGES = {
    "deep-arrays": "invalid JSON: nested too deeply",
    "deep-objects": "invalid JSON: nested too deeply",
    "deep-in-seccomp": "invalid JSON: nested too deeply",
    "invalid-utf8": "not valid UTF-8 (byte offset 11)",
    "big": f"file is {BIG} bytes, larger than the 16 MiB limit",
}
# On stdin the size is known only by reading: the hook stops one byte past the limit.
STDIN_MESSAGES = dict(FILE_MESSAGES, big="larger than the 16 MiB limit")


@pytest.mark.parametrize("case", sorted(FILE_MESSAGES))
@pytest.mark.parametrize("command", [["explain"], ["patch"], ["patch", "--format", "config"]])
def test_hostile_files_through_the_cli(hostile, case, command):
    path = hostile[case]
    refused(ocishim(command[0], path, *command[1:]), f"ocishim: {path}: {FILE_MESSAGES[case]}")


@pytest.fixture()
def hook_settings(tmp_path) -> tuple[Path, Path]:
    """Settings that send the hook's log to a file here, not the host's /var/log."""
    log = tmp_path / "ocishim.log"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"log": str(log)}))
    settings.chmod(0o600)
    return settings, log


@pytest.mark.parametrize("case", sorted(STDIN_MESSAGES))
def test_hostile_stdin_through_the_hook(hostile, hook_settings, case):
    settings, log = hook_settings
    with open(hostile[case], "rb") as f:
        proc = ocishim("hook", "precreate", stdin=f, env={"OCISHIM_CONFIG": str(settings)})
    reason = f"stdin: {STDIN_MESSAGES[case]}"
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""  # podman would take anything here as the new config
    err = proc.stderr.decode()
    assert err.startswith(f"ocishim: {reason} (") and err.count("\n") == 1 and "Traceback" not in err
    logged = log.read_text().splitlines()
    assert len(logged) == 1 and f"precreate: {reason}; the container is not created" in logged[0]


def test_hook_with_stdin_closed(hook_settings):
    settings, log = hook_settings
    proc = ocishim("hook", "precreate", env={"OCISHIM_CONFIG": str(settings)},
                   preexec_fn=lambda: os.close(0))
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode().startswith("ocishim: stdin: closed: the hook reads config.json on stdin (")
    assert "stdin: closed" in log.read_text()
