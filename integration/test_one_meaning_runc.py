"""One meaning per config (semantics.md rule 11) against real runc.

- A config whose unknown top-level field holds numbers Python's float would change
  (1e999, 0.1, 1E5, -0.0, 1.50, a 23-digit integer) goes through
  `ocishim patch --format config`; the numbers' text in the rewritten file is the
  text of the original (cut out of both files with a regex, compared with the list
  written here), and runc runs the rewritten config: exit 0, the expected output.
- The premises, measured: runc (Go's decoder) reads a rule's "Action" key as its
  action, where crun and ocishim read "action"; of a rule's two "action" keys runc
  takes the last and crun the first; crun (C strings) reads "action\u0000x" as
  "action", runc does not. ocishim refuses each config with exit 2 naming the path.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import bundles
from .conftest import run_ocishim

pytestmark = pytest.mark.runtime

NUMBER_TEXTS = ["1e999", "0.1", "1E5", "-0.0", "1.50", "12345678901234567890123", "-0"]
SIGSYS_EXIT = 128 + 31  # a container process killed by SIGSYS, as runc reports it
TIMEOUT = 60


@pytest.fixture
def runc() -> str:
    if reason := bundles.missing_runtime("runc"):
        pytest.skip(reason)
    if not bundles.BUSYBOX.exists():
        pytest.skip("/bin/busybox missing (make test installs busybox-static)")
    return shutil.which("runc")


@pytest.fixture
def runc_root(tmp_path: Path, runc: str) -> Iterator[Path]:
    """A private runc --root; containers left in it are deleted even when a test fails."""
    root = tmp_path / "runc-root"
    root.mkdir()
    yield root
    listed = subprocess.run([runc, "--root", str(root), "list", "-q"], capture_output=True, text=True)
    for cid in listed.stdout.split():
        subprocess.run([runc, "--root", str(root), "delete", "--force", cid], capture_output=True)


def x_extra_texts(text: str) -> list[str]:
    """The number tokens of the "x-extra" array, cut out of JSON text."""
    m = re.search(r'"x-extra": \[([^\]]*)\]', text)
    assert m, text
    return [t.strip() for t in m.group(1).split(",")]


def with_raw_field(config_path: Path, raw: str) -> None:
    """Write `raw` (JSON text for one member) as the first member of the config's top object."""
    text = config_path.read_text()
    assert text.startswith("{")
    config_path.write_text("{\n  " + raw + "," + text[1:])


def run_runc(runc: str, root: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([runc, "--root", str(root), "run", "--bundle", str(bundle),
                           bundles.container_id("ocishim-one-meaning")],
                          capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def run_crun(root: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    """crun in a private mount namespace with cgroup2 (it refuses this host's hybrid cgroups)."""
    cid = bundles.container_id("ocishim-one-meaning")
    try:
        return subprocess.run([*bundles.crun_prefix(), "crun", "--root", str(root), *bundles.CRUN_ARGS,
                               "run", "--bundle", str(bundle), cid],
                              capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["crun", "--root", str(root), "delete", "--force", cid], capture_output=True)


def test_rewritten_numbers_keep_their_text_and_runc_runs_it(runc, runc_root, tmp_path):
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    bundle = tmp_path / "bundle"
    config = bundles.spec(bundle, rootfs, ["sh", "-c", "echo one-meaning"], bundles.docker_profile())
    with_raw_field(config, '"x-extra": [' + ", ".join(NUMBER_TEXTS) + "]")
    assert x_extra_texts(config.read_text()) == NUMBER_TEXTS

    patched = tmp_path / "patched"  # a sibling of bundle: the relative root path still holds
    patched.mkdir()
    proc = run_ocishim(["patch", "--format", "config", str(bundle), "-o", str(patched / "config.json")])
    assert proc.returncode == 0, proc.stderr
    text = (patched / "config.json").read_text()
    assert x_extra_texts(text) == NUMBER_TEXTS
    rewritten = json.loads(text)
    assert "run.oci.seccomp_bpf_data" in rewritten["annotations"]  # it was rewritten indeed

    ran = run_runc(runc, runc_root, patched)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "one-meaning"


def _twin_profile() -> dict[str, Any]:
    """Docker's profile without mkdir/mkdirat, plus one rule for them whose "action" is
    ALLOW and whose "Action" (a case twin) is KILL_PROCESS."""
    profile = bundles.docker_profile(minus=("mkdir", "mkdirat"))
    profile["syscalls"].append({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ALLOW",
                                "Action": "SCMP_ACT_KILL_PROCESS"})
    return profile


def test_premise_runc_reads_a_case_twin(runc, runc_root, tmp_path):
    """Measured: runc takes "Action" for "action". Without the twin, mkdir is allowed
    (it fails on the read-only rootfs, exit 1); with it, runc kills the process."""
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    args = ["sh", "-c", "mkdir /one-meaning-dir"]

    plain = _twin_profile()
    del plain["syscalls"][-1]["Action"]
    control = bundles.spec(tmp_path / "control", rootfs, args, plain)
    ran = run_runc(runc, runc_root, control.parent)
    assert ran.returncode == 1, (ran.returncode, ran.stderr)

    twin = bundles.spec(tmp_path / "twin", rootfs, args, _twin_profile())
    ran = run_runc(runc, runc_root, twin.parent)
    assert ran.returncode == SIGSYS_EXIT, (ran.returncode, ran.stderr)


def test_premise_runc_and_crun_take_different_duplicates(runc, runc_root, tmp_path):
    """Measured: of two "action" keys in one rule, runc takes the last (KILL_PROCESS: the
    process dies of SIGSYS), crun the first (ALLOW: mkdir fails on the read-only rootfs)."""
    if reason := bundles.missing_runtime("crun"):
        pytest.skip(reason)
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    profile = bundles.docker_profile(minus=("mkdir", "mkdirat"))
    profile["syscalls"].append({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ALLOW", "@@": 0})
    config = bundles.spec(tmp_path / "dup", rootfs, ["sh", "-c", "mkdir /one-meaning-dir"], profile)
    text = config.read_text()
    assert text.count('"@@": 0') == 1
    config.write_text(text.replace('"@@": 0', '"action": "SCMP_ACT_KILL_PROCESS"'))

    assert run_runc(runc, runc_root, config.parent).returncode == SIGSYS_EXIT
    ran = run_crun(tmp_path / "crun-root", config.parent)
    assert ran.returncode == 1, (ran.returncode, ran.stderr)
    assert "Read-only file system" in ran.stderr

    proc = run_ocishim(["explain", str(config)])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    index = len(profile["syscalls"]) - 1
    assert f"linux.seccomp.syscalls[{index}].action: duplicate key" in proc.stderr, proc.stderr


def test_premise_crun_reads_a_key_up_to_nul(runc, runc_root, tmp_path):
    """Measured: a rule {"action\u0000x": KILL_PROCESS, "action": ALLOW} kills under crun
    (which reads the first key as "action") and allows under runc."""
    if reason := bundles.missing_runtime("crun"):
        pytest.skip(reason)
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    profile = bundles.docker_profile(minus=("mkdir", "mkdirat"))
    profile["syscalls"].append({"names": ["mkdir", "mkdirat"], "action\u0000x": "SCMP_ACT_KILL_PROCESS",
                                "action": "SCMP_ACT_ALLOW"})
    config = bundles.spec(tmp_path / "nul", rootfs, ["sh", "-c", "mkdir /one-meaning-dir"], profile)
    assert '"action\\u0000x"' in config.read_text()

    ran = run_runc(runc, runc_root, config.parent)
    assert ran.returncode == 1, (ran.returncode, ran.stderr)
    assert run_crun(tmp_path / "crun-root", config.parent).returncode == SIGSYS_EXIT

    proc = run_ocishim(["explain", str(config)])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    index = len(profile["syscalls"]) - 1
    assert f'linux.seccomp.syscalls[{index}]["action\\u0000x"]: a NUL character' in proc.stderr, \
        proc.stderr


def test_ocishim_refuses_the_case_twin(runc, tmp_path):
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    profile = _twin_profile()
    config = bundles.spec(tmp_path / "twin", rootfs, ["true"], profile)
    index = len(profile["syscalls"]) - 1
    for args in (["patch", "--format", "config", str(config)], ["explain", str(config)]):
        proc = run_ocishim(args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"linux.seccomp.syscalls[{index}].Action: " in proc.stderr, proc.stderr
