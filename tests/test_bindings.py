"""ocishim runs the same with PyPI's pyseccomp and with Debian's python3-seccomp (`seccomp`).

Both drive the same libseccomp, so the oracle is simple: every shared profile patched in
every mode gives the same bytes through either binding. The Debian run is a second
interpreter, /usr/bin/python3, which has python3-seccomp and no pyseccomp; the test
checks which module each run really loaded, so a run that fell back is caught.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
PROFILES = shared_data.PROFILES
DEBIAN_PYTHON = "/usr/bin/python3"

# One child per interpreter: compile every profile in several modes and arches, print
# one JSON object {binding, results}. KILL_PROCESS (an action >= 2**31) and a foreign
# arch (a token >= 2**31) are what Debian's C-int declarations would overflow on.
_SCRIPT = r"""
import base64, json, sys
from ocishim import libseccomp
from ocishim.bpf.insn import encode
from ocishim.errors import OcishimError
from ocishim.patch import parse_mode, patch_profile
from ocishim.profile import load, loads

out = {"binding": libseccomp.binding.__name__, "native": libseccomp.native().name,
       "version": libseccomp.version(), "results": {}}
extra = {
    "kill-process": {"defaultAction": "SCMP_ACT_KILL_PROCESS",
                     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                     "syscalls": [{"names": ["read", "mseal"], "action": "SCMP_ACT_ALLOW"},
                                  {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                                   "args": [{"index": 0, "value": 18446744073709551615,
                                             "valueTwo": 40, "op": "SCMP_CMP_MASKED_EQ"}]}]},
    "aarch64-only": {"defaultAction": "SCMP_ACT_TRAP", "architectures": ["SCMP_ARCH_AARCH64"],
                     "syscalls": [{"names": ["openat", "mseal"], "action": "SCMP_ACT_LOG"}]},
}
def run(key, profile):
    for mode in ("unnamed", "max", "off", "kernel:5.10"):
        try:
            p = patch_profile(profile, parse_mode(mode), None)
            out["results"][f"{key} {mode}"] = base64.b64encode(encode(p.program)).decode()
        except OcishimError as exc:
            out["results"][f"{key} {mode}"] = f"error {exc.exit_code}: {exc}"
for path in sys.argv[1:]:
    loaded = load(path)
    if loaded.profile is not None:
        run(path.rsplit("/", 1)[-1], loaded.profile)
for key, obj in extra.items():
    run(key, loads(json.dumps(obj)).profile)
print(json.dumps(out))
"""


def _run(python: str) -> dict:
    profiles = sorted(str(p) for p in PROFILES.glob("*.json"))
    assert len(profiles) >= 10, profiles
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONHOME", None)
    proc = subprocess.run([python, "-c", _SCRIPT, *profiles], capture_output=True, text=True,
                          env=env, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def debian_run() -> dict:
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import seccomp"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Debian's python3-seccomp is not installed (make deps installs it)")
    return _run(DEBIAN_PYTHON)


def test_debian_binding_gives_the_same_programs_as_pyseccomp(debian_run: dict) -> None:
    venv = _run(sys.executable)
    assert venv["binding"] == "pyseccomp"
    assert debian_run["binding"] == "seccomp"  # no pyseccomp there: the fallback was used
    assert debian_run["native"] == venv["native"]
    assert debian_run["version"] == venv["version"]
    assert len(venv["results"]) >= 40
    assert debian_run["results"] == venv["results"]
    # Not every run may be a refusal: the comparison must be about programs.
    programs = [v for v in venv["results"].values() if not v.startswith("error")]
    assert len(programs) >= 36


def test_debian_binding_cli_version_and_exec() -> None:
    """`ocishim --version` and a filter loaded by `ocishim exec`, with Debian's module only."""
    if subprocess.run([DEBIAN_PYTHON, "-c", "import seccomp"], capture_output=True).returncode:
        pytest.skip("Debian's python3-seccomp is not installed (make deps installs it)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    v = subprocess.run([DEBIAN_PYTHON, "-m", "ocishim", "--version"], capture_output=True,
                       text=True, env=env, timeout=60, cwd="/")
    assert v.returncode == 0, v.stderr
    assert v.stdout.startswith("ocishim ") and "libseccomp 2." in v.stdout
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}
    e = subprocess.run([DEBIAN_PYTHON, "-m", "ocishim", "exec", "/dev/stdin", "--", DEBIAN_PYTHON,
                        "-c", "import ctypes, os; l = ctypes.CDLL(None, use_errno=True); "
                              "print(l.syscall(110), ctypes.get_errno())"],
                       input=json.dumps(profile), capture_output=True, text=True, env=env,
                       timeout=60, cwd="/")
    assert e.returncode == 0, e.stderr
    assert e.stdout.split() == ["-1", "42"]  # getppid (110 on x86_64) answered by the kernel
