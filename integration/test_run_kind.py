"""How `ocishim run` tells runc from crun (integrations/run.py: named_kind, _Probe).

A runtime whose file is named runc is taken for runc without a `--version` start: it gets
the temporary bundle, which any runtime reads, and no `delete` afterwards (runc's and
crun's `run` both delete their container). Any other name is asked. The oracle is the
real runtime: the container's own output, exit code and the runtime's `list`.
"""

from __future__ import annotations

import json
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


class _Copy:
    """A runtime's binary copied under another name, a bundle whose process prints "ran"
    and exits with `code`, a private state root and TMPDIR, and a container id."""

    def __init__(self, tmp_path: Path, runtime: str, name: str, code: int) -> None:
        _needs(runtime, "runc")  # runc: `runc spec` writes the bundle
        self.binary = tmp_path / "bin" / name
        self.binary.parent.mkdir()
        shutil.copy2(shutil.which(runtime), self.binary)
        rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
        self.bundle = bundles.spec(tmp_path / "bundle", rootfs, ["sh", "-c", f"echo ran; exit {code}"],
                                   bundles.docker_profile()).parent
        self.root, self.tmpdir = tmp_path / "state", tmp_path / "tmp"
        self.root.mkdir()
        self.tmpdir.mkdir()
        self.cid = bundles.container_id()

    def run(self, prefix: list[str], global_args: list[str]) -> subprocess.CompletedProcess[str]:
        return _ocishim_run(prefix, self.binary, self.root, global_args, self.bundle, self.cid,
                            self.tmpdir)

    def left(self) -> tuple[list[str], list[Path]]:
        """The containers the runtime still lists, and what is left in TMPDIR."""
        return _listed(str(self.binary), self.root), list(self.tmpdir.iterdir())

    def cleanup(self) -> None:
        subprocess.run([str(self.binary), "--root", str(self.root), "delete", "--force", self.cid],
                       capture_output=True, timeout=TIMEOUT)


@pytest.mark.parametrize("name", ["runc", "my-runtime"])
def test_crun_under_another_name(name, tmp_path):
    """crun copied to a file named runc (taken for runc unasked) or to another name (asked:
    it says crun): the container runs, its exit code and output come back, and neither
    the container nor the temporary bundle is left behind."""
    _needs("unshare")
    copy = _Copy(tmp_path, "crun", name, 3)
    try:
        proc = copy.run(bundles.crun_prefix(), list(bundles.CRUN_ARGS))
        assert (proc.returncode, proc.stdout) == (3, "ran\n"), proc.stderr
        assert copy.left() == ([], [])
    finally:
        copy.cleanup()


def test_runc_under_another_name_is_asked(tmp_path):
    """runc copied to another name: asked, it says runc, and is given no --config (which
    runc refuses); the container runs and is gone afterwards."""
    copy = _Copy(tmp_path, "runc", "my-runtime", 4)
    try:
        proc = copy.run([], [])
        assert (proc.returncode, proc.stdout) == (4, "ran\n"), proc.stderr
        assert copy.left() == ([], [])
    finally:
        copy.cleanup()


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


FAKE = """#!/bin/sh
# A stand-in runtime: says which it is, and prints the config a `run` would load.
[ "$1" = --version ] && { echo "{name} version 0"; exit 0; }
[ "$1" = --root ] && shift 2
[ "$1" = state ] && exit 1  # no such container
[ "$1" = run ] || exit 0
shift
config=
while [ $# -gt 1 ]; do
    case $1 in
        --bundle) [ -z "$config" ] && config=$2/config.json; shift 2 ;;
        --config) config=$2; shift 2 ;;
        *) shift ;;
    esac
done
cat "$config"
"""


@pytest.mark.parametrize("name, kept", [("runc", False), ("crun", True)])
def test_crun_program_goes_only_to_crun(name, kept, tmp_path):
    """runc is given the rewritten config without run.oci.seccomp_bpf_data (which it does
    not read), neither ocishim's nor one the bundle brought; crun is given ocishim's."""
    _needs("runc")
    fake = tmp_path / "bin" / name
    fake.parent.mkdir()
    fake.write_text(FAKE.replace("{name}", name))
    fake.chmod(0o755)
    rootfs = bundles.busybox_rootfs(tmp_path / "rootfs")
    seccomp = bundles.docker_profile()
    config_path = bundles.spec(tmp_path / "bundle", rootfs, ["true"], seccomp)
    config = json.loads(config_path.read_text())
    config.setdefault("annotations", {})["run.oci.seccomp_bpf_data"] = "AAAAAAAAAAA="  # forged
    config_path.write_text(json.dumps(config))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = _ocishim_run([], fake, tmp_path / "state", [], config_path.parent, "h11-kind", tmpdir)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    enosys = {n for r in loaded["linux"]["seccomp"]["syscalls"] if r.get("errnoRet") == 38
              for n in r["names"]}
    assert "acct" in enosys  # rewritten: acct is unnamed in Docker's profile
    program = loaded.get("annotations", {}).get("run.oci.seccomp_bpf_data")
    if kept:
        assert program not in (None, "AAAAAAAAAAA=")
    else:
        assert program is None
