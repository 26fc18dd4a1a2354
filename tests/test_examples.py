"""examples/ runs without ../shared: the demo's profiles ship in examples/profiles.

The committed profiles must be what scripts/gen_example_profiles.py makes from the
shared data (checked against a conversion written out again in tests/test_convert.py's
oracle), and make_bundle.py must work from a copy of examples/ alone, with the system
Python and nothing of this checkout on its path, as it does from the installed package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED = shared_data.PROFILES
sys.path.insert(0, str(REPO / "tests"))


def test_no_example_reaches_outside_examples() -> None:
    checked = 0
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "../shared" not in text and "shared/data" not in text, path
            assert "integration.bundles" not in text, path
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("name, source, kernel", [
    ("old-host.json", "docker-default-20.10.0.json", (5, 4)),
    ("docker-minus-faccessat2.json", "docker-default.json", (6, 18)),
])
def test_shipped_profiles_are_dockers_minus_faccessat2(name: str, source: str, kernel: tuple[int, int]) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not there (the shared test data)")
    from test_convert import DOCKER_DEFAULT_CAPS, expected

    want = expected(json.loads((SHARED / source).read_text()), "x86_64", set(DOCKER_DEFAULT_CAPS), kernel, "docker")
    for rule in want["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "faccessat2"]
    want["syscalls"] = [r for r in want["syscalls"] if r["names"]]
    want["defaultErrnoRet"] = 1
    shipped = json.loads((EXAMPLES / "profiles" / name).read_text())
    assert shipped == want
    assert not any("faccessat2" in r["names"] for r in shipped["syscalls"])


def test_make_bundle_runs_from_a_copy_of_examples(tmp_path: Path) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc not found (make test installs it)")
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    bundle = tmp_path / "bundle"
    proc = subprocess.run(["/usr/bin/python3", "-I", str(copy / "make_bundle.py"), str(bundle),
                           str(tmp_path / "rootfs"), "--", "/bin/true"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stderr
    config = json.loads((bundle / "config.json").read_text())
    assert config["linux"]["seccomp"] == json.loads((copy / "profiles" / "old-host.json").read_text())
    assert config["process"]["args"] == ["/bin/true"]
