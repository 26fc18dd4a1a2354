"""With a libseccomp older than ocishim supports, every command says so and exits 1.

The old library is a stand-in built here: every symbol pyseccomp and ocishim bind,
with seccomp_version() answering 2.4.4 (Debian 11 shipped 2.5.1, Ubuntu 20.04 2.5.1,
Debian 10 2.3.3). It is found first through LD_LIBRARY_PATH, as a real one would be.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
OLD = (2, 4, 4)
NEEDED = "2.5.0"


def _symbols() -> list[str]:
    import pyseccomp

    text = Path(pyseccomp.__file__).read_text() + (REPO / "ocishim" / "libseccomp.py").read_text()
    return sorted(set(re.findall(r"\b_(?:libseccomp|lib)\.(seccomp_\w+)", text)))


@pytest.fixture(scope="module")
def old_libseccomp(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found (make test installs it)")
    out = tmp_path_factory.mktemp("old-libseccomp")
    names = _symbols()
    assert "seccomp_version" in names and "seccomp_init" in names, names
    lines = ["struct v { unsigned major, minor, micro; };",
             f"static const struct v old = {{{OLD[0]}, {OLD[1]}, {OLD[2]}}};",
             "const struct v *seccomp_version(void) { return &old; }"]
    lines += [f"long {n}(void) {{ return -22; }}" for n in names if n != "seccomp_version"]
    (out / "old.c").write_text("\n".join(lines) + "\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libseccomp.so.2", "-o",
                    str(out / "libseccomp.so.2"), str(out / "old.c")], check=True)
    return out


def _run(cmd: list[str], libdir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir), PYTHONPATH=str(REPO),
               OCISHIM_RUNTIME="/bin/true", OCISHIM_CONFIG=str(libdir / "none.json"))
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60)


PROFILE = str(shared_data.PROFILES / "docker-default.json")
COMMANDS = {
    "explain": ["explain", PROFILE, "read"],
    "patch": ["patch", PROFILE, "--format", "base64"],
    "exec": ["exec", PROFILE, "--", "/bin/true"],
    "run": ["run", "/nonexistent-bundle"],
    "hook": ["hook", "precreate"],
    "disasm": ["disasm", "/dev/null"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_names_both_versions(name, old_libseccomp):
    proc = _run([sys.executable, "-m", "ocishim", *COMMANDS[name]], old_libseccomp, stdin="{}")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert f"found version {'.'.join(map(str, OLD))}" in proc.stderr, proc.stderr
    assert f"needs {NEEDED} or newer" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_the_wrapper_refuses_to_patch(old_libseccomp, tmp_path):
    log = tmp_path / "log.json"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "linux": {"seccomp": '
                                        '{"defaultAction": "SCMP_ACT_ERRNO"}}}')
    proc = _run([sys.executable, "-c", "import sys; from ocishim.runtime import main; sys.exit(main())", "--log", str(log), "--log-format", "json",
                 "create", "--bundle", str(bundle), "id1"], old_libseccomp)
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr == ""
    text = log.read_text()
    assert f"found version {'.'.join(map(str, OLD))}" in text and f"needs {NEEDED}" in text, text


def test_the_real_library_passes():
    """The control: the host's libseccomp (Debian 12: 2.5.4) is new enough."""
    from ocishim import libseccomp

    assert libseccomp.version() >= (2, 5, 0)
    libseccomp.require()
