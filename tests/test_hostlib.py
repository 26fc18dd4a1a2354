"""--host-libseccomp: what plain runc and crun answer on a host with another libseccomp.

Expectations are facts written out here: runtimes.md's measurement (libseccomp 2.4.1:
runc answers ENOSYS to every call from 424 up, pidfd_open, openat2, faccessat2 and
close_range included), the release history of libseccomp (mseal, 462 on x86_64, first
resolved by 2.6.0), and runc's rule (ENOSYS above the highest number named). Checked
against runc and crun themselves in integration/test_doctor.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ocishim import hostlib
from ocishim.arch import BY_NAME
from ocishim.errors import UsageError
from ocishim.patch import patch_profile
from ocishim.profile import load
from tests import shared_data

PROFILE = shared_data.PROFILES / "docker-default.json"
X86_64 = BY_NAME["x86_64"]
CASES = [  # version, runtime, name, nr (x86_64), answer
    ("2.4.1", "runc", "pidfd_open", 434, "ERRNO(ENOSYS)"),
    ("2.4.1", "runc", "faccessat2", 439, "ERRNO(ENOSYS)"),
    ("2.4.1", "runc", "close_range", 436, "ERRNO(ENOSYS)"),
    ("2.4.1", "runc", "openat2", 437, "ERRNO(ENOSYS)"),
    ("2.4.1", "crun", "faccessat2", 439, "ERRNO(EPERM)"),  # the rule is dropped: default errno
    # 2.4.1 names nothing above rseq (334): runc's stub starts at 335 (uretprobe, which
    # the profile allows and 2.4.1 cannot name); crun drops that rule.
    ("2.4.1", "runc", "rseq", 334, "ALLOW"),
    ("2.4.1", "runc", "uretprobe", 335, "ERRNO(ENOSYS)"),
    ("2.4.1", "crun", "uretprobe", 335, "ERRNO(EPERM)"),
    ("2.4.1", "crun", "read", 0, "ALLOW"),
    ("2.4.1", "runc", "read", 0, "ALLOW"),
    ("2.5.4", "crun", "faccessat2", 439, "ALLOW"),
    ("2.5.4", "crun", "mseal", 462, "ERRNO(EPERM)"),
    ("2.5.4", "runc", "mseal", 462, "ERRNO(ENOSYS)"),
    ("2.6.0", "crun", "mseal", 462, "ALLOW"),
    ("2.6.0", "runc", "mseal", 462, "ALLOW"),
    ("2.6.0", "crun", "listns", 470, "ERRNO(EPERM)"),  # no rule: the default
    ("2.6.0", "runc", "listns", 470, "ERRNO(ENOSYS)"),  # above the highest named
]


@pytest.fixture(scope="module")
def docker():
    if not PROFILE.is_file():
        pytest.skip(f"{PROFILE} is not there (the shared test data)")
    profile = load(str(PROFILE), kernel=(6, 18)).profile
    return profile, patch_profile(profile, "off")


@pytest.mark.parametrize("version, runtime, name, nr, expected", CASES)
def test_plain_runtimes(docker, version, runtime, name, nr, expected):
    profile, off = docker
    got = hostlib.plain_answers(profile, off, [X86_64], version, {"x86_64": [(name, nr)]})
    assert got[(runtime, "x86_64", nr)] == expected


def test_versions_and_bad_input():
    assert hostlib.parse_version("v2.5.4") == "2.5.4"
    assert hostlib.parse_version("2.5.4-debian12") == "2.5.4-debian12"
    with pytest.raises(UsageError, match="--host-libseccomp: unknown libseccomp version '2.9'"):
        hostlib.parse_version("2.9")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ocishim", *args], capture_output=True, text=True, timeout=120)


def test_explain_json_and_text(docker):
    proc = _cli("explain", str(PROFILE), "--arch", "x86_64", "faccessat2", "mseal",
                "--host-libseccomp", "2.4.1", "--json")
    assert proc.returncode == 0, proc.stderr
    got = {e["name"]: (e["runc"], e["crun"]) for e in json.loads(proc.stdout)}
    assert got == {"faccessat2": ("ERRNO(ENOSYS)", "ERRNO(EPERM)"), "mseal": ("ERRNO(ENOSYS)", "ERRNO(EPERM)")}
    text = _cli("explain", str(PROFILE), "--arch", "x86_64", "faccessat2", "--host-libseccomp", "2.4.1")
    assert "runc: ERRNO(ENOSYS)  crun: ERRNO(EPERM)" in text.stdout


def test_explain_bad_version_is_one_line_exit_2():
    proc = _cli("explain", str(PROFILE), "read", "--host-libseccomp", "9.9")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("ocishim: --host-libseccomp: ")
