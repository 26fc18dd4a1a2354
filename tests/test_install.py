"""`ocishim install podman-hook|containerd|docker|crio`: paths, the edit, the backup, --dry-run.

Expectations come from outside ocishim: Python's tomllib and json read back what was
written (as containerd and dockerd would), GNU patch applies the --dry-run diff, and the
original bytes are compared as bytes. Real engines load these files in
integration/test_k8s_installer.py (containerd), test_docker_settings.py (dockerd) and
test_deb.py (podman).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_TOML = (b'version = 2\n\n# the administrator\'s comment stays\n[plugins]\n'
                 b'  [plugins."io.containerd.grpc.v1.cri"]\n'
                 b'    [plugins."io.containerd.grpc.v1.cri".cni]\n      bin_dir = "/usr/lib/cni"\n')


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """`ocishim` and `ocishim-runtime` scripts for this checkout, as console scripts are."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, module in (("ocishim", "ocishim.cli"), ("ocishim-runtime", "ocishim.runtime")):
        script = d / name
        script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                          f"from {module} import main\nsys.exit(main())\n")
        script.chmod(0o755)
    return d


def run(bin_dir: Path, *args: str, env: dict | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    """ocishim by its absolute path, with an empty PATH unless env says otherwise."""
    return subprocess.run([str(bin_dir / "ocishim"), *args], capture_output=True, text=True,
                          timeout=60, env=env if env is not None else {"PATH": ""},
                          cwd=cwd or "/")


def refused(proc: subprocess.CompletedProcess[str], where: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and where in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- paths

def test_podman_hook_names_its_own_absolute_path_with_an_empty_path(bin_dir: Path, tmp_path: Path) -> None:
    proc = run(bin_dir, "install", "podman-hook", "--dir", str(tmp_path / "hooks"))
    assert proc.returncode == 0, proc.stderr
    hook = json.loads((tmp_path / "hooks" / "ocishim-precreate.json").read_text())
    assert hook == {"version": "1.0.0", "hook": {"path": str(bin_dir / "ocishim"),
                                                 "args": ["ocishim", "hook", "precreate"]},
                    "when": {"always": True}, "stages": ["precreate"]}


@pytest.mark.parametrize("option, value, where", [
    ("--ocishim", "bin/ocishim", "--ocishim"),
    ("--ocishim", "/nonexistent/ocishim", "--ocishim"),
    ("--ocishim", "{tmp}/plain-file", "--ocishim"),
    ("--wrapper", "ocishim-runtime", "--wrapper"),
    ("--config", "settings.json", "--config"),
    ("--config", "{tmp}/missing-settings.json", "--config"),
    ("--config", "{tmp}/world-writable.json", "world-writable.json"),
    ("--config", "{tmp}/bad-settings.json", "enosys"),
])
def test_paths_refused_before_anything_is_written(bin_dir: Path, tmp_path: Path, option: str,
                                                  value: str, where: str) -> None:
    (tmp_path / "plain-file").write_text("not executable")
    (tmp_path / "world-writable.json").write_text("{}")
    (tmp_path / "world-writable.json").chmod(0o666)
    (tmp_path / "bad-settings.json").write_text('{"enosys": "sometimes"}')
    for engine, target in (("podman-hook", ["--dir", str(tmp_path / "hooks")]),
                           ("docker", ["--file", str(tmp_path / "daemon.json")])):
        proc = run(bin_dir, "install", engine, *target, option, value.format(tmp=tmp_path),
                   cwd=tmp_path)
        refused(proc, where)
    assert not (tmp_path / "hooks").exists() and not (tmp_path / "daemon.json").exists()


def test_without_own_path_it_asks_for_one(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ocishim", "install", "podman-hook", "--dir",
                           str(tmp_path / "hooks")], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    refused(proc, "--ocishim")
    assert not (tmp_path / "hooks").exists()


def test_settings_for_engines_that_pass_no_arguments_refused(bin_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text("{}")
    for engine in ("containerd", "crio"):
        refused(run(bin_dir, "install", engine, "--file", str(tmp_path / "x.conf"),
                    "--config", str(tmp_path / "s.json")), "--config")


# ---------------------------------------------------------------- containerd

def test_containerd_edit_backup_idempotence(bin_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(ORIGINAL_TOML)
    config.chmod(0o600)
    proc = run(bin_dir, "install", "containerd", "--file", str(config))
    assert proc.returncode == 0, proc.stderr
    written = config.read_bytes()
    assert written.startswith(ORIGINAL_TOML)  # the administrator's text, comment included
    parsed = tomllib.loads(written.decode())
    runtimes = parsed["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes["ocishim"] == {"runtime_type": "io.containerd.runc.v2",
                                   "options": {"BinaryName": str(bin_dir / "ocishim-runtime")}}
    assert runtimes["runc"] == {"runtime_type": "io.containerd.runc.v2"}
    assert parsed["plugins"]["io.containerd.grpc.v1.cri"]["cni"] == {"bin_dir": "/usr/lib/cni"}
    assert (tmp_path / "config.toml.ocishim.bak").read_bytes() == ORIGINAL_TOML
    assert (config.stat().st_mode & 0o777) == 0o600
    # Again: nothing changes, the backup stays the original.
    assert run(bin_dir, "install", "containerd", "--file", str(config)).returncode == 0
    assert config.read_bytes() == written
    # Another wrapper: the block is replaced, not added twice.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(bin_dir / "ocishim-runtime", other / "ocishim-runtime")
    proc = run(bin_dir, "install", "containerd", "--file", str(config), "--wrapper",
               str(other / "ocishim-runtime"))
    assert proc.returncode == 0, proc.stderr
    again = config.read_text()
    assert again.count("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.ocishim]") == 1
    assert tomllib.loads(again)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"][
        "ocishim"]["options"]["BinaryName"] == str(other / "ocishim-runtime")
    assert (tmp_path / "config.toml.ocishim.bak").read_bytes() == written


@pytest.mark.parametrize("original, plugin", [
    (b"", "io.containerd.grpc.v1.cri"),  # empty: containerd's defaults, written as version 2
    (None, "io.containerd.grpc.v1.cri"),  # no file at all
    (b'[plugins.cri]\n  sandbox_image = "pause"\n', "cri"),  # no version: version 1's names
    (b'version = 3\n', "io.containerd.cri.v1.runtime"),
    (b'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
     b'  runtime_type = "io.containerd.runc.v2"\n  [plugins."io.containerd.grpc.v1.cri".containerd.'
     b'runtimes.runc.options]\n    SystemdCgroup = true\n', "io.containerd.grpc.v1.cri"),
])
def test_containerd_versions(bin_dir: Path, tmp_path: Path, original: bytes | None, plugin: str) -> None:
    config = tmp_path / "config.toml"
    if original is not None:
        config.write_bytes(original)
    assert run(bin_dir, "install", "containerd", "--file", str(config)).returncode == 0
    parsed = tomllib.loads(config.read_text())
    runtimes = parsed["plugins"][plugin]["containerd"]["runtimes"]
    assert runtimes["ocishim"]["options"]["BinaryName"] == str(bin_dir / "ocishim-runtime")
    if original and b"SystemdCgroup" in original:
        assert runtimes["runc"]["options"] == {"SystemdCgroup": True}  # the file's own, kept
    if not original:
        assert parsed["version"] == 2
    assert (tmp_path / "config.toml.ocishim.bak").exists() == bool(original is not None)


@pytest.mark.parametrize("text, where", [
    (b'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.ocishim]\n'
     b'  runtime_type = "io.containerd.runc.v2"\n', "outside ocishim's block"),
    (b'version = 2\n[plugins\n', "not valid TOML"),
    (b'version = 9\n', "version"),
    (b'# BEGIN ocishim install (ocishim replaces this block on the next install)\n', "marker"),
    (b'\xff\xfe', "UTF-8"),
])
def test_containerd_refusals_leave_the_file(bin_dir: Path, tmp_path: Path, text: bytes, where: str) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(text)
    refused(run(bin_dir, "install", "containerd", "--file", str(config)), where)
    assert config.read_bytes() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "config.toml"]


def test_symlinked_config_refused_and_target_untouched(bin_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_bytes(ORIGINAL_TOML)
    (tmp_path / "config.toml").symlink_to(real)
    refused(run(bin_dir, "install", "containerd", "--file", str(tmp_path / "config.toml")), "config.toml")
    assert real.read_bytes() == ORIGINAL_TOML
    refused(run(bin_dir, "install", "containerd", "--file", "config.toml"), "--file")


# ---------------------------------------------------------------- --dry-run

@pytest.mark.parametrize("engine, original", [
    ("containerd", ORIGINAL_TOML),
    ("docker", b'{"log-level": "warn", "runtimes": {"other": {"path": "/usr/bin/other"}}}'),
    ("docker", None),
    ("crio", None),
])
def test_dry_run_diff_applies_to_what_install_writes(bin_dir: Path, tmp_path: Path, engine: str,
                                                    original: bytes | None) -> None:
    target = tmp_path / "engine.conf"
    if original is not None:
        target.write_bytes(original)
    proc = run(bin_dir, "install", engine, "--file", str(target), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("--- ") and "\n+++ " + str(target) in proc.stdout
    assert (target.read_bytes() if original is not None else None) == original  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == (["bin", "engine.conf"] if original else ["bin"])
    # GNU patch turns the original into what a real install writes.
    copy = tmp_path / "copy.conf"
    copy.write_bytes(original or b"")
    applied = subprocess.run(["patch", "--quiet", str(copy)], input=proc.stdout, text=True,
                             capture_output=True, timeout=30)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert run(bin_dir, "install", engine, "--file", str(target)).returncode == 0
    assert copy.read_bytes() == target.read_bytes()


# ---------------------------------------------------------------- docker, crio

def test_docker_keeps_other_keys_and_passes_the_settings(bin_dir: Path, tmp_path: Path) -> None:
    daemon = tmp_path / "daemon.json"
    original = b'{"log-level": "warn", "runtimes": {"other": {"path": "/usr/bin/other"}}, "debug": false}'
    daemon.write_bytes(original)
    settings = tmp_path / "docker-settings.json"
    settings.write_text('{"enosys": "max"}')
    proc = run(bin_dir, "install", "docker", "--file", str(daemon), "--config", str(settings))
    assert proc.returncode == 0, proc.stderr
    written = json.loads(daemon.read_text())
    assert list(written) == ["log-level", "runtimes", "debug"]
    assert written["runtimes"] == {
        "other": {"path": "/usr/bin/other"},
        "ocishim": {"path": str(bin_dir / "ocishim-runtime"),
                    "runtimeArgs": [f"--ocishim-config={settings}"]}}
    assert (tmp_path / "daemon.json.ocishim.bak").read_bytes() == original


@pytest.mark.parametrize("text, where", [
    (b'{"runtimes": {}, "runtimes": {}}', "duplicate key"),
    (b'{"runtimes": [1]}', "runtimes"),
    (b'[]', "JSON object"),
    (b'{"a": NaN', "not valid JSON"),
])
def test_docker_refusals(bin_dir: Path, tmp_path: Path, text: bytes, where: str) -> None:
    daemon = tmp_path / "daemon.json"
    daemon.write_bytes(text)
    refused(run(bin_dir, "install", "docker", "--file", str(daemon)), where)
    assert daemon.read_bytes() == text


def test_crio_drop_in(bin_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "crio.conf.d" / "10-ocishim.conf"
    assert run(bin_dir, "install", "crio", "--file", str(target), "--name", "ocishim-x").returncode == 0
    assert tomllib.loads(target.read_text()) == {"crio": {"runtime": {"runtimes": {"ocishim-x": {
        "runtime_path": str(bin_dir / "ocishim-runtime"), "runtime_type": "oci",
        "runtime_root": "/run/runc"}}}}}
    assert (target.stat().st_mode & 0o777) == 0o644


# ---------------------------------------------------------------- the wrapper's --ocishim-config

def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "process": {"args": ["/bin/true"]}, "root": {"path": "rootfs"},
        "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                              "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}}}))
    return bundle


@pytest.mark.parametrize("settings, enosys_rule", [({"enosys": "off"}, False), ({}, True)])
def test_wrapper_reads_the_settings_file_its_flag_names(bin_dir: Path, tmp_path: Path,
                                                       settings: dict, enosys_rule: bool) -> None:
    """Docker passes runtimeArgs before runc's arguments: the flag is read and removed."""
    bundle = _bundle(tmp_path)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**settings, "log": str(tmp_path / "log")}))
    argv_file = tmp_path / "argv"
    fake = tmp_path / "fake-runc"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_file}\n')
    fake.chmod(0o755)
    proc = subprocess.run([str(bin_dir / "ocishim-runtime"), f"--ocishim-config={path}",
                           "--root", str(tmp_path / "root"), "create", "--bundle", str(bundle), "h12-id"],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "OCISHIM_RUNTIME": str(fake), "OCISHIM_CACHE": "off"})
    assert proc.returncode == 0, proc.stderr
    assert argv_file.read_text().split("\n")[:-1] == ["--root", str(tmp_path / "root"), "create",
                                                      "--bundle", str(bundle), "h12-id"]
    rules = json.loads((bundle / "config.json").read_text())["linux"]["seccomp"]["syscalls"]
    assert any(r.get("errnoRet") == 38 for r in rules) == enosys_rule


def test_wrapper_missing_settings_file_refuses_create(bin_dir: Path, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    before = (bundle / "config.json").read_bytes()
    proc = subprocess.run([str(bin_dir / "ocishim-runtime"), "--ocishim-config", str(tmp_path / "nope.json"),
                           "--log", str(tmp_path / "runtime.log"), "create", "--bundle", str(bundle), "h12-id"],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "OCISHIM_RUNTIME": "/bin/true"})
    assert proc.returncode == 1
    assert "--ocishim-config" in (tmp_path / "runtime.log").read_text()
    assert "nope.json" in (tmp_path / "runtime.log").read_text()
    assert (bundle / "config.json").read_bytes() == before
