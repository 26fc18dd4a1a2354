"""The command line, run as a user runs it: a subprocess, output and exit code."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocishim import syscalls
from ocishim.bpf.insn import decode, encode
from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
PROFILES = shared_data.PROFILES
DOCKER = PROFILES / "docker-default.json"


def ocishim(*args, check=True, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "ocishim", *map(str, args)],
                          capture_output=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr.decode()}")
    return proc


def test_explain_json_lists_every_x86_64_syscall():
    out = json.loads(ocishim("explain", DOCKER, "--json").stdout)
    x86_64 = [e for e in out if e["arch"] == "x86_64"]
    assert sorted((e["name"], e["nr"]) for e in x86_64) == sorted(syscalls.names("x86_64").items())
    for e in out:
        assert set(e) >= {"arch", "name", "nr", "before", "after"}
    by_name = {e["name"]: e for e in x86_64}
    # facts from Docker's profile text, not from ocishim: read is allowed,
    # clone3 has an explicit ERRNO 38 rule, reboot is not listed (default errno 1)
    assert by_name["read"]["before"] == "ALLOW"
    assert by_name["clone3"]["before"] == "ERRNO(ENOSYS)"
    assert by_name["reboot"]["before"] == "ERRNO(EPERM)"
    assert by_name["socket"]["before"] == "depends on args" and by_name["socket"]["rules"]
    # arches in canonical order: what Docker's archMap gives an amd64 daemon
    assert [a for a in dict.fromkeys(e["arch"] for e in out)] == ["x86_64", "x86", "x32"]


def test_explain_is_deterministic():
    assert ocishim("explain", DOCKER, "--json").stdout == ocishim("explain", DOCKER, "--json").stdout


def test_explain_filters_by_arch_and_name():
    out = json.loads(ocishim("explain", DOCKER, "--json", "--arch", "x86", "read", "mseal").stdout)
    assert [(e["arch"], e["name"]) for e in out] == [("x86", "read"), ("x86", "mseal")]
    bad = ocishim("explain", DOCKER, "--arch", "s390x", check=False)
    assert bad.returncode == 2 and b"--arch" in bad.stderr


def test_patch_formats_agree(tmp_path):
    raw = ocishim("patch", DOCKER, "--format", "bpf").stdout
    b64 = ocishim("patch", DOCKER, "--format", "base64").stdout
    assert b64.endswith(b"\n") and base64.b64decode(b64.strip(), validate=True) == raw
    assert encode(decode(raw)) == raw
    out = tmp_path / "f.bpf"
    ocishim("patch", DOCKER, "-o", out)
    assert out.read_bytes() == raw
    listing = ocishim("patch", DOCKER, "--format", "disasm").stdout.decode()
    assert len(listing.splitlines()) == len(raw) // 8 + 1


@pytest.mark.parametrize("mode", ["auto", "unnamed", "max", "off", "kernel:5.10"])
def test_patch_is_deterministic(mode):
    a = ocishim("patch", DOCKER, "--enosys", mode).stdout
    assert a == ocishim("patch", DOCKER, "--enosys", mode).stdout


@pytest.mark.parametrize("args,where", [
    (["--enosys", "sometimes"], "--enosys"),
    (["--enosys", "kernel:5"], "--enosys"),
    (["--emulate-kernel", "five"], "--emulate-kernel"),
])
def test_bad_mode_flags_exit_2(args, where):
    p = ocishim("patch", DOCKER, *args, check=False)
    assert p.returncode == 2 and where.encode() in p.stderr and b"Traceback" not in p.stderr


def test_emu_cli(tmp_path):
    f = tmp_path / "f.bpf"
    f.write_bytes(ocishim("patch", DOCKER, "--enosys", "off").stdout)
    assert ocishim("emu", f, "x86_64", "read").stdout.decode() == "ALLOW\n"
    assert ocishim("emu", f, "x86_64", "169").stdout.decode() == "ERRNO(EPERM)\n"
    # socket(AF_VSOCK=40) is refused by Docker's rules, AF_INET=2 allowed; args in any base
    assert ocishim("emu", f, "x86_64", "socket", "0x28").stdout.decode() == "ERRNO(EPERM)\n"
    assert ocishim("emu", f, "x86_64", "socket", "0b10").stdout.decode() == "ALLOW\n"
    trace = ocishim("emu", f, "x86", "clone3", "--trace").stdout.decode().splitlines()
    assert trace[-1] == "ERRNO(ENOSYS)" and "A = arch" in trace[0]
    for args in (["x86_64", "nosuchcall"], ["sparc", "read"], ["x86_64", "read", "zz"]):
        p = ocishim("emu", f, *args, check=False)
        assert p.returncode == 2 and b"Traceback" not in p.stderr, args


def test_disasm_of_garbage_is_a_clear_error(tmp_path):
    f = tmp_path / "odd.bpf"
    f.write_bytes(b"\x00" * 13)
    p = ocishim("disasm", f, check=False)
    assert p.returncode == 2 and b"multiple of 8" in p.stderr
    p = ocishim("disasm", tmp_path / "missing", check=False)
    assert p.returncode == 2 and b"missing" in p.stderr


def _commands(parser) -> dict:
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_one_command_parser_is_that_command_of_the_whole_parser():
    """main builds only the parser of the command a line starts with: the same options,
    defaults and help as in the whole parser, which holds every name of COMMANDS."""
    from ocishim import cli

    whole = _commands(cli.build_parser())
    assert sorted(whole) == sorted(cli.COMMANDS)
    for name in cli.COMMANDS:
        alone = _commands(cli.build_parser(name))
        assert list(alone) == [name]
        assert alone[name].format_help() == whole[name].format_help(), name
        assert _options(alone[name]) == _options(whole[name]), name


def _options(parser) -> list:
    return [(a.option_strings, a.dest, a.default, a.nargs, a.choices, a.required)
            for a in parser._actions] + sorted(parser._defaults)


def test_run_usage_errors_name_the_command():
    proc = ocishim("run", check=False)
    assert proc.returncode == 2
    assert b"usage: ocishim run" in proc.stderr and b"BUNDLE" in proc.stderr


PLAIN_RUN_LINES = [
    ["run", "B"],
    ["run", "--runtime", "runc", "B"],
    ["run", "B", "--runtime=runc"],
    ["run", "--runtime", "a", "--runtime", "b", "B"],
    ["run", "--id", "x", "--runtime-arg=--root=/r", "--runtime-arg", "a", "B", "--runtime-arg=--x"],
    ["run", "--enosys", "max", "--emulate-kernel=5.10", "--unknown-syscall", "fail", "B"],
    ["run", "--enosys=kernel:5.4", "--unknown-syscall=warn", "B"],
    ["run", "--audit", "--audit-socket", "/s", "B"],
    ["run", "--id=", "--enosys=", "B"],
    ["run", "--id", "a=b", "B=C"],
    ["run", ""],
]
OTHER_RUN_LINES = [
    ["run"], ["run", "-h"], ["run", "B", "--help"], ["run", "--runt", "x", "B"], ["run", "B", "C"],
    ["run", "--", "B"], ["run", "--id", "-x", "B"], ["run", "--unknown-syscall", "maybe", "B"],
    ["run", "--audit=1", "B"], ["run", "-", "B"], ["run", "--bogus", "B"], ["run", "B", "--id"],
    ["run", "--id", "-5", "B"],
]


@pytest.mark.parametrize("argv", PLAIN_RUN_LINES, ids=" ".join)
def test_plain_run_lines_parse_as_argparse_parses_them(argv):
    from ocishim import cli

    assert vars(cli._plain_run(argv)) == vars(cli._parse(argv))


@pytest.mark.parametrize("argv", OTHER_RUN_LINES, ids=" ".join)
def test_other_run_lines_go_to_argparse(argv):
    from ocishim import cli

    assert cli._plain_run(argv) is None


def test_a_cache_hit_imports_neither_argparse_nor_re(tmp_path):
    """`ocishim run` of a plain line, up to the runtime: no argparse, re, enum or json."""
    # -S: what site imports is not counted; nor what site.main() would import where a
    # -IS launcher asks for it (ocishim/startup.py).
    code = ("import sys; from ocishim import cli, startup; from ocishim.integrations import run\n"
            "run.run = lambda *a, **k: 0\nstartup._whole_done = True\n"
            "assert cli.main(['run', '--runtime', 'runc', 'B']) == 0\n"
            "print(' '.join(m for m in ('argparse', 're', 'enum', 'json', 'typing', 'dataclasses',"
            " 'subprocess', 'tempfile', 'shutil', 'signal') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []
