"""How `ocishim run` tells runc from crun (integrations/run.py: named_kind, _Probe).

A runtime whose file is named runc is taken for runc without a `--version` start: it gets
the temporary bundle, which any runtime reads, and no `delete` afterwards (runc's and
crun's `run` both delete their container). Any other name is asked. The oracle is the
real runtime: the container's own output, exit code and the runtime's `list`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocishim.integrations.run import named_kind

from . import bundles
from .conftest import REPO

TIMEOUT = 60


def test_named_kind_reads_the_file_name_behind_symlinks(tmp_path):
    (tmp_path / "runc").write_bytes(b"")
    (tmp_path / "runc-1.1").write_bytes(b"")
    (tmp_path / "crun").write_bytes(b"")
    (tmp_path / "link-to-crun").symlink_to(tmp_path / "crun")
    (tmp_path / "runc-link").symlink_to(tmp_path / "crun")  # named runc, but crun's file
    assert named_kind(str(tmp_path / "runc")) == "runc"
    assert named_kind(str(tmp_path / "runc-1.1")) == "runc"
    assert named_kind(str(tmp_path / "crun")) is None
    assert named_kind(str(tmp_path / "link-to-crun")) is None
    assert named_kind(str(tmp_path / "runc-link")) is None


def _needs(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (make test installs it)")


def _ocishim_run(prefix: list[str], binary: Path, root: Path, global_args: list[str],
                 bundle: Path, cid: str, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TMPDIR=str(tmpdir), OCISHIM_CACHE="off")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    runtime_args = [f"--runtime-arg={a}" for a in ("--root", str(root), *global_args)]
    return subprocess.run([*prefix, sys.executable, "-m", "ocishim", "run", "--runtime", str(binary),
                           "--id", cid, *runtime_args, str(bundle)],
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)


def _listed(binary: str, root: Path) -> list[str]:
    proc = subprocess.run([binary, "--root", str(root), "list"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()]


@pytest.mark.parametrize("name", ["runc", "my-runtime"])
def test_crun_under_another_name(name, tmp_path):
    """crun copied to a file named runc (taken for runc unasked) or to another name (asked:
    it says crun): the container runs, its exit code and output come back, and neither
    the container nor the temporary bundle is left behind."""
    _needs("crun", "runc", "unshare")
    copy = tmp_path / "bin" / name
    copy.parent.mkdir()
    shutil.copy2(shutil.which("crun"), copy)
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    bundle = bundles.spec(tmp_path / "bundle", rootfs, ["sh", "-c", "echo ran; exit 3"],
                          bundles.docker_profile()).parent
    root, tmpdir = tmp_path / "state", tmp_path / "tmp"
    root.mkdir()
    tmpdir.mkdir()
    cid = bundles.container_id()
    try:
        proc = _ocishim_run(bundles.crun_prefix(), copy, root, list(bundles.CRUN_ARGS), bundle,
                            cid, tmpdir)
        assert proc.returncode == 3, proc.stderr
        assert proc.stdout == "ran\n", proc.stderr
        assert _listed(str(copy), root) == []
        assert list(tmpdir.iterdir()) == []
    finally:
        subprocess.run([str(copy), "--root", str(root), "delete", "--force", cid],
                       capture_output=True, timeout=TIMEOUT)


def test_runc_under_another_name_is_asked(tmp_path):
    """runc copied to another name: asked, it says runc, and is given no --config (which
    runc refuses); the container runs and is gone afterwards."""
    _needs("runc")
    copy = tmp_path / "bin" / "my-runtime"
    copy.parent.mkdir()
    shutil.copy2(shutil.which("runc"), copy)
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    bundle = bundles.spec(tmp_path / "bundle", rootfs, ["sh", "-c", "echo ran; exit 4"],
                          bundles.docker_profile()).parent
    root, tmpdir = tmp_path / "state", tmp_path / "tmp"
    root.mkdir()
    tmpdir.mkdir()
    cid = bundles.container_id()
    try:
        proc = _ocishim_run([], copy, root, [], bundle, cid, tmpdir)
        assert proc.returncode == 4, proc.stderr
        assert proc.stdout == "ran\n", proc.stderr
        assert _listed(str(copy), root) == []
        assert list(tmpdir.iterdir()) == []
    finally:
        subprocess.run([str(copy), "--root", str(root), "delete", "--force", cid],
                       capture_output=True, timeout=TIMEOUT)


@pytest.mark.parametrize("listener", [None, "agent.sock", "/run/agent.sock"])
@pytest.mark.parametrize("cache", ["off", "hit"])
def test_the_seccomp_text_kept_from_the_rewrite_writes_the_same_bytes(listener, cache, tmp_path,
                                                                     monkeypatch):
    """write_bundle with the Filter's linux.seccomp text writes config.json byte for byte
    as writing the decoded object again does, for runc's way (which may make a relative
    listenerPath absolute: then the text is not used) and crun's."""
    import copy

    from ocishim.integrations import run
    from ocishim.modes import Mode

    _needs("runc")
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    seccomp = bundles.docker_profile()
    if listener:
        seccomp["listenerPath"] = listener
    bundle = bundles.spec(tmp_path / "bundle", rootfs, ["true"], seccomp).parent
    entries = tmp_path / "cache"
    entries.mkdir(mode=0o700)
    monkeypatch.setenv("OCISHIM_CACHE", "off" if cache == "off" else str(entries))
    if cache == "hit":
        run.patched_config(str(bundle), Mode("unnamed"), None, False)  # stores the entry
        assert len(list(entries.iterdir())) == 1
    config, text = run.patched_config(str(bundle), Mode("unnamed"), None, False)
    assert text is not None
    for crun in (False, True):
        written = []
        for kept in (text, None):
            prepared = run.write_bundle(copy.deepcopy(config), str(bundle), crun, kept)
            try:
                written.append((Path(prepared.tmp) / "config.json").read_bytes())
            finally:
                shutil.rmtree(prepared.tmp)
        assert written[0] == written[1]
        if listener == "agent.sock" and not crun:  # resolved like runc: absolute now
            assert f'"listenerPath": "{os.path.realpath(bundle)}/agent.sock"'.encode() in written[0]
