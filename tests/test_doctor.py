"""ocishim doctor's readings of configuration files and binaries, on files the test
writes: the repository's examples (the files users copy), the hook file in the schema
runtimes.md gives, and ELF binaries built here with and without libseccomp."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ocishim import doctor

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
HOOK = {"version": "1.0.0", "hook": {"path": "/usr/local/bin/ocishim", "args": ["ocishim", "hook", "precreate"]},
        "when": {"always": True}, "stages": ["precreate"]}


def _put(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_nothing_installed(tmp_path):
    assert doctor.hook_status(str(tmp_path)) == {
        "installed": [], "wired": False,
        "podman_hooks_dirs": ["/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"]}
    wrapper = doctor.wrapper_status(str(tmp_path))
    assert (wrapper["containerd"], wrapper["docker"], wrapper["crio"]) == (False, False, False)


def test_hook_in_a_default_directory_is_wired(tmp_path):
    path = _put(tmp_path, "etc/containers/oci/hooks.d/ocishim-precreate.json", json.dumps(HOOK))
    assert doctor.hook_status(str(tmp_path))["installed"] == [str(path)]
    assert doctor.hook_status(str(tmp_path))["wired"] is True


def test_hook_in_its_own_directory_needs_containers_conf(tmp_path):
    path = _put(tmp_path, "etc/ocishim/hooks.d/ocishim-precreate.json", json.dumps(HOOK))
    status = doctor.hook_status(str(tmp_path))
    assert (status["installed"], status["wired"]) == ([str(path)], False)
    # The example containers.conf points podman at /etc/ocishim/hooks.d.
    _put(tmp_path, "etc/containers/containers.conf", (EXAMPLES / "podman" / "containers.conf").read_text())
    status = doctor.hook_status(str(tmp_path))
    assert (status["installed"], status["wired"]) == ([str(path)], True)
    assert status["podman_hooks_dirs"] == ["/etc/ocishim/hooks.d"]


def test_a_hook_of_another_stage_or_program_is_not_ocishims(tmp_path):
    _put(tmp_path, "etc/containers/oci/hooks.d/a.json", json.dumps({**HOOK, "stages": ["prestart"]}))
    _put(tmp_path, "etc/containers/oci/hooks.d/b.json",
         json.dumps({**HOOK, "hook": {"path": "/usr/bin/nvidia-container-toolkit"}}))
    _put(tmp_path, "etc/containers/oci/hooks.d/c.json", "{not json")
    assert doctor.hook_status(str(tmp_path))["installed"] == []


@pytest.mark.parametrize("engine, rel, example", [
    ("containerd", "etc/containerd/config.toml", "containerd/config.toml"),
    ("docker", "etc/docker/daemon.json", "docker/daemon.json"),
    ("crio", "etc/crio/crio.conf.d/10-ocishim.conf", "crio/10-ocishim.conf"),
])
def test_wrapper_wired_by_the_examples(tmp_path, engine, rel, example):
    _put(tmp_path, rel, (EXAMPLES / example).read_text())
    status = doctor.wrapper_status(str(tmp_path))
    assert {e: status[e] for e in ("containerd", "docker", "crio")} == \
        {e: e == engine for e in ("containerd", "docker", "crio")}


def test_wrapper_not_wired_by_other_runtimes(tmp_path):
    _put(tmp_path, "etc/docker/daemon.json", json.dumps({"runtimes": {"x": {"path": "/usr/bin/ocishim-runtime-not"}}}))
    _put(tmp_path, "etc/containerd/config.toml", "not = [toml")
    status = doctor.wrapper_status(str(tmp_path))
    assert (status["docker"], status["containerd"]) == (False, False)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """Three ELF files built here: one linking libseccomp, one with a copy of it inside
    (a static link), one with neither."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found (make test installs it)")
    d = tmp_path_factory.mktemp("doctor-elf")
    src = d / "s.c"
    src.write_text("#include <seccomp.h>\nint main(void){return seccomp_init(0) ? 0 : 1;}\n")
    plain = d / "p.c"
    plain.write_text("int main(void){return 0;}\n")
    out = {}
    for name, source, flags in (("linked", src, ["-lseccomp"]), ("static", src, ["-static", "-lseccomp"]),
                                ("none", plain, [])):
        proc = subprocess.run(["gcc", "-o", str(d / name), str(source), *flags], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot build the {name} test binary (libseccomp-dev?): {proc.stderr[-300:]}")
        out[name] = d / name
    return out


def test_linked_libseccomp_is_the_one_ldd_shows(binaries):
    found = doctor.runtime_libseccomp(str(binaries["linked"]))
    ldd = subprocess.run(["ldd", str(binaries["linked"])], capture_output=True, text=True).stdout
    line = next(line for line in ldd.splitlines() if "libseccomp" in line)
    assert found.how == "linked"
    assert found.path == str(Path(line.split("=>")[1].split()[0]).resolve())


def test_static_libseccomp_is_embedded_and_none_is_none(binaries):
    assert doctor.runtime_libseccomp(str(binaries["static"])).how == "embedded"
    assert doctor.runtime_libseccomp(str(binaries["none"])).how is None


def test_no_libseccomp_is_broken():
    verdict, why = doctor._verdict("x", doctor.RuntimeLibseccomp(None, None, None), False, {}, {})
    assert verdict == "broken" and "cannot load any filter" in why


def test_kernel_version_parse():
    assert doctor.kernel_version("6.18.44-fc-v595") == (6, 18)
    assert doctor.kernel_version("5.10.0-28-amd64") == (5, 10)


def _executables(tmp_path: Path) -> tuple[Path, Path]:
    """Executables named as the installer expects them (it checks that they exist)."""
    bin_dir = tmp_path / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("ocishim", "ocishim-runtime"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
        out.append(bin_dir / name)
    return out[0], out[1]


@pytest.mark.parametrize("engine, rel", [
    ("containerd", "etc/containerd/config.toml"),
    ("docker", "etc/docker/daemon.json"),
    ("crio", "etc/crio/crio.conf.d/10-ocishim.conf"),
])
def test_what_ocishim_install_writes_is_seen_as_wired(tmp_path, engine, rel):
    """The engine configs `ocishim install` writes (its own code, another module's) read
    as wired; the default hooks directory podman reads too."""
    import sys

    target = tmp_path / rel
    target.parent.mkdir(parents=True)
    ocishim, wrapper = _executables(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "ocishim", "install", engine, "--file", str(target),
                           "--wrapper", str(wrapper), "--ocishim", str(ocishim)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status = doctor.wrapper_status(str(tmp_path))
    assert {e: status[e] for e in ("containerd", "docker", "crio")} == \
        {e: e == engine for e in ("containerd", "docker", "crio")}


def test_the_hook_ocishim_install_writes_is_seen_as_wired(tmp_path):
    import sys

    hooks = tmp_path / "etc" / "containers" / "oci" / "hooks.d"
    ocishim, _ = _executables(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "ocishim", "install", "podman-hook", "--dir", str(hooks),
                           "--ocishim", str(ocishim)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status = doctor.hook_status(str(tmp_path))
    assert status["wired"] is True and len(status["installed"]) == 1
