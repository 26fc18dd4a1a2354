"""`make install PREFIX=...` (scripts/install_prefix.sh): the launchers it writes work.

ocishim-runtime's launcher starts Python without site (-IS), so that a pass-through
costs no .pth file or sitecustomize; create, run and --ocishim-version set site up
themselves to reach the distribution's libseccomp binding. Run with /usr/bin/python3,
as `make install` is, where it has a binding, pyelftools and psutil.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
FAKE_RUNTIME = "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\"\n"
CONFIG = {
    "ociVersion": "1.0.2",
    "root": {"path": "rootfs"},
    "process": {"args": ["/bin/true"], "cwd": "/"},
    "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                          "syscalls": [{"names": ["read", "write", "exit_group"],
                                        "action": "SCMP_ACT_ALLOW"}]}},
}


def _python_has_the_dependencies() -> str | None:
    if not os.access(PYTHON, os.X_OK):
        return f"{PYTHON} is not here"
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return "install_prefix.sh takes the package's files from git"
    probe = subprocess.run([PYTHON, "-c", "import elftools, psutil\ntry:\n import seccomp\n"
                            "except ImportError:\n import pyseccomp"], capture_output=True)
    if probe.returncode != 0:
        return f"{PYTHON} lacks a libseccomp binding, pyelftools or psutil"
    return None


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    if reason := _python_has_the_dependencies():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("prefix") / "opt"
    done = subprocess.run([str(REPO / "scripts" / "install_prefix.sh"), "install", "", str(root), PYTHON],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"log": str(tmp_path / "ocishim.log"), "cache": "off"}))
    settings.chmod(0o644)
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_")}
    return {**base, "OCISHIM_CONFIG": str(settings), **extra}


def _fake_runtime(tmp_path: Path) -> Path:
    fake = tmp_path / "runc"
    fake.write_text(FAKE_RUNTIME)
    fake.chmod(0o755)
    return fake


def test_launchers(prefix):
    assert (prefix / "bin" / "ocishim-runtime").read_text().splitlines()[0] == f"#!{PYTHON} -IS"
    assert (prefix / "bin" / "ocishim").read_text().splitlines()[0] == f"#!{PYTHON} -IS"


def test_hook_without_site_compiles_with_the_binding(prefix, tmp_path):
    """The hook, started without site, still reaches the binding on a cache miss (the
    cache is off): the config comes back with crun's program, which only a compile makes."""
    hook = subprocess.run([str(prefix / "bin" / "ocishim"), "hook", "precreate"], input=json.dumps(CONFIG),
                          capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    assert hook.returncode == 0, (hook.stderr, (tmp_path / "ocishim.log").read_text())
    assert "run.oci.seccomp_bpf_data" in json.loads(hook.stdout)["annotations"]


def test_other_commands_work_without_site(prefix, tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(CONFIG["linux"]["seccomp"]))
    explained = subprocess.run([str(prefix / "bin" / "ocishim"), "explain", str(profile), "--arch", "x86_64",
                                "read", "mseal"], capture_output=True, text=True, env=_env(tmp_path),
                               timeout=120)
    assert explained.returncode == 0, explained.stderr
    assert "mseal" in explained.stdout


@pytest.mark.parametrize("call,whole", [("site_directories", False), ("whole_site", True)])
def test_startup_sets_up_site(call, whole):
    """Under -S: site_directories puts the site directories on sys.path and nothing else;
    whole_site runs site.main() (which, among others, defines the builtin quit)."""
    code = (f"import builtins, sys\nsys.path.insert(0, {str(REPO)!r})\n"
            f"from ocishim import startup\nstartup.{call}()\nimport os, site\n"
            "print(all(d in sys.path for d in site.getsitepackages() if os.path.isdir(d)), "
            "hasattr(builtins, 'quit'))")
    done = subprocess.run([PYTHON, "-IS", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", str(whole)]


def test_pass_through_is_the_runtime_itself(prefix, tmp_path):
    fake = _fake_runtime(tmp_path)
    argv = ["--root", "/run/x", "--log-format", "json", "state", "h2s4-id"]
    theirs = subprocess.run([str(fake), *argv], capture_output=True)
    ours = subprocess.run([str(prefix / "bin" / "ocishim-runtime"), *argv], capture_output=True,
                          env=_env(tmp_path, OCISHIM_RUNTIME=str(fake)))
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)


def test_version_and_create_reach_the_binding(prefix, tmp_path):
    """Started without site, the wrapper sets site up for what needs libseccomp."""
    wrapper = str(prefix / "bin" / "ocishim-runtime")
    version = subprocess.run([wrapper, "--ocishim-version"], capture_output=True, text=True,
                             env=_env(tmp_path))
    assert version.returncode == 0, version.stderr
    assert "libseccomp: 2." in version.stdout, version.stdout
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(CONFIG))
    fake = _fake_runtime(tmp_path)
    created = subprocess.run([wrapper, "create", "--bundle", str(bundle), "h2s4-id"], capture_output=True,
                             text=True, env=_env(tmp_path, OCISHIM_RUNTIME=str(fake)))
    assert created.returncode == 0, (created.stderr, (tmp_path / "ocishim.log").read_text())
    assert created.stdout.splitlines() == [str(fake), "create", "--bundle", str(bundle), "h2s4-id"]
    patched = json.loads((bundle / "config.json").read_text())
    assert "run.oci.seccomp_bpf_data" in patched["annotations"]


def test_run_without_site_reaches_the_binding(prefix, tmp_path):
    """`ocishim run` started without site leaves site's set-up to the binding's import
    (ocishim/libseccomp.py), which a cold build makes: the run still compiles."""
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(CONFIG))
    fake = _fake_runtime(tmp_path)  # named runc: taken for runc, given the temporary bundle
    env = _env(tmp_path, OCISHIM_CACHE="off", TMPDIR=str(tmp_path))
    done = subprocess.run([str(prefix / "bin" / "ocishim"), "run", "--runtime", str(fake), str(bundle)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[:3] == [str(fake), "run", "--bundle"] and argv[4].startswith("ocishim-"), argv


def test_the_binding_import_sets_site_up():
    """Under -S, importing ocishim.libseccomp runs site.main() first (the builtin quit)."""
    code = (f"import builtins, sys\nsys.path.insert(0, {str(REPO)!r})\nimport site\n"
            "sys.path.extend(site.getsitepackages())\nimport ocishim.libseccomp\n"
            "print(hasattr(builtins, 'quit'))")
    if reason := _python_has_the_dependencies():
        pytest.skip(reason)
    done = subprocess.run([PYTHON, "-IS", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True"], done.stderr


def test_uninstall_removes_every_file(prefix):
    subprocess.run([str(REPO / "scripts" / "install_prefix.sh"), "uninstall", "", str(prefix), PYTHON],
                   check=True, cwd=REPO, timeout=60)
    left = [p for p in prefix.rglob("*") if not p.is_dir()]
    assert left == []

