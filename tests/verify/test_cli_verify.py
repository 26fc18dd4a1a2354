"""`ocishim verify`: exit 0 when all agree, 3 on differences (with witnesses), 2 on bad input."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ocishim import libseccomp, syscalls
from ocishim.bpf.insn import decode, encode
from tests import shared_data

ROOT = Path(__file__).resolve().parents[2]
PROFILES = shared_data.PROFILES


def _ocishim(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocishim", *args], cwd=ROOT, input=stdin,
                          capture_output=True, timeout=120)


def _bug_profile(tmp_path: Path) -> Path:
    """libseccomp 2.5.4's first pinned bug: arg2 < 10 OR arg2 > 0x1_0000000a -> EACCES."""
    seccomp = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
                             "args": [{"index": 2, "value": 10, "op": "SCMP_CMP_LT"},
                                      {"index": 2, "value": 2**32 + 10, "op": "SCMP_CMP_GT"}]}]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ociVersion": "1.0.2", "linux": {"seccomp": seccomp}}))
    return path


def test_agreeing_profile_exits_0():
    proc = _ocishim("verify", str(PROFILES / "docker-default-20.10.0.json"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].startswith("libseccomp vs profile: agrees") and lines[1].startswith("patched vs rule 1: agrees")


@pytest.mark.skipif(libseccomp.version() >= (2, 6, 0), reason="the bug is libseccomp < 2.6's")
def test_libseccomp_bug_exits_3_with_a_witness(tmp_path):
    proc = _ocishim("verify", str(_bug_profile(tmp_path)), "--json")
    assert proc.returncode == 3, proc.stderr
    reports = {r["check"]: r for r in json.loads(proc.stdout)}
    lib = reports["libseccomp vs profile"]
    assert not lib["agrees"] and lib["differences"]
    for d in lib["differences"]:
        w = d["witness"]
        assert (w["arch"], w["nr"]) == ("x86_64", syscalls.resolve("x86_64", "personality"))
        a2 = w["args"][2]
        # the rule written out again: EACCES exactly when it holds
        want = "ERRNO(EACCES)" if a2 < 10 or a2 > 2**32 + 10 else "ERRNO(EPERM)"
        assert d["expected"] == want != d["got"]
    # ocishim repairs libseccomp's program there: the patched program keeps rule 1 with
    # the profile's meaning on personality
    assert reports["patched vs rule 1"]["agrees"]
    text = _ocishim("verify", str(_bug_profile(tmp_path)))
    out = text.stdout.decode()
    assert text.returncode == 3 and "DIFFERS" in out and "personality(135)" in out
    assert "repaired: x86_64 personality(135): libseccomp 2.5.4 answered ALLOW" in out or \
        "repaired: x86_64 personality(135)" in out, out


def test_program_from_elsewhere(tmp_path):
    """--program: the patched filter itself agrees; one answer changed is reported."""
    profile = str(PROFILES / "docker-default-20.10.0.json")
    patched = _ocishim("patch", profile, "--format", "bpf")
    assert patched.returncode == 0, patched.stderr
    good = tmp_path / "good.bpf"
    good.write_bytes(patched.stdout)
    proc = _ocishim("verify", profile, "--program", str(good), "--json")
    assert proc.returncode == 0, proc.stdout.decode()[-2000:]
    # Turn every ENOSYS return into EPERM: the stub's answers in E(A) are gone.
    program = [i.__class__(i.code, i.jt, i.jf, 0x50001 if (i.code == 6 and i.k == 0x50026) else i.k)
               for i in decode(patched.stdout)]
    bad = tmp_path / "bad.bpf"
    bad.write_bytes(encode(program))
    proc = _ocishim("verify", profile, "--program", str(bad), "--json")
    assert proc.returncode == 3
    (other,) = [r for r in json.loads(proc.stdout) if r["check"] == "program vs profile"]
    assert other["differences"] and all(d["expected"] == "ERRNO(ENOSYS)" and d["got"] == "ERRNO(EPERM)"
                                        for d in other["differences"])


def test_bad_input_exits_2(tmp_path):
    assert _ocishim("verify", str(tmp_path / "missing.json")).returncode == 2
    short = tmp_path / "short.bpf"
    short.write_bytes(b"\x00" * 5)
    assert _ocishim("verify", str(PROFILES / "docker-default-20.10.0.json"), "--program", str(short)).returncode == 2


def test_help_states_the_exit_codes():
    proc = _ocishim("verify", "--help")
    assert proc.returncode == 0 and b"3 differences" in proc.stdout and b"2 bad input" in proc.stdout
