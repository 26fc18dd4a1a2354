"""Issue 8, build item 5: `ocishim run BUNDLE` gives a bundle the meaning the runtime
would give it in place.

The oracle is the runtime itself: the same bundle run in place with plain `runc run`
(and plain `crun run`) must show the container the same files and exit the same, and
the file contents the container prints are the ones this test wrote. What runc 1.1.5
and crun 1.8.1 resolve against the bundle directory (read in their sources):
- runc chdirs to the bundle; root.path and the source of a mount with a `bind`/`rbind`
  option are joined onto its working directory; the hooks it starts itself
  (createRuntime among them) run there;
- crun chdirs to the bundle, realpath()s root.path, hands bind sources to mount(2) as
  they are and runs createRuntime hooks there;
- neither rewrites the source of another mount (a tmpfs's source is a label, seen
  unchanged in /proc/mounts).

crun refuses this machine's hybrid cgroups, so crun runs under bundles.crun_prefix()
with --cgroup-manager=disabled, as in test_run.py. Each runtime gets a private --root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


import pytest

from . import bundles
from .test_run import _runtime

pytestmark = pytest.mark.runtime

EXIT = 7  # the container's own exit code

# (source as written in config.json, destination, the file the container cats there,
#  its content). Every source is relative; the bundle holds what they name.
BINDS = [
    ("data/f.txt", "/mnt/file", "/mnt/file", "a relative file\n"),
    ("dir", "/mnt/dir", "/mnt/dir/x.txt", "in a relative directory\n"),
    ("./dot.txt", "/mnt/dot", "/mnt/dot", "a ./ source\n"),
    ("sub/../up.txt", "/mnt/up", "/mnt/up", "a .. that stays inside\n"),
    ("../outside/o.txt", "/mnt/out", "/mnt/out", "a .. that leaves the bundle\n"),
    ("../outside/rdir", "/mnt/rdir", "/mnt/rdir/y.txt", "an rbind of type none, outside\n"),
]
# A source whose ".." follows a symlink: runc joins it lexically onto the bundle
# (filepath.Join), crun leaves it to the kernel, which resolves ".." after the symlink.
# Each runtime must keep its own answer under ocishim.
TWIST_SOURCE, TWIST_DEST = "lnk/../twist.txt", "/mnt/twist"
TWIST = {"runc": "lexical: bundle/twist.txt\n", "crun": "physical: bundle/sub/twist.txt\n"}
HOOK_READS = ("data/f.txt", "sub/../up.txt")  # what the createRuntime hook reads, from its cwd
TMPFS = "/mnt/t"


def _script() -> str:
    cats = " ".join([*(cat for _, _, cat, _ in BINDS), TWIST_DEST])
    return f"cat {cats} && /bin/busybox grep ' {TMPFS} ' /proc/mounts; exit {EXIT}"


def _expected_output(runtime: str) -> str:
    """What the container prints in place: the contents this test wrote, then the tmpfs
    line with its source as written (runtimes do not resolve a tmpfs's source)."""
    return "".join(content for *_, content in BINDS) + TWIST[runtime] + f"tmpfs {TMPFS} tmpfs"


def _tree(path: Path) -> dict[str, str]:
    """Every entry under path: a file's hash, a symlink's target, or 'dir'."""
    out = {}
    for p in sorted(path.rglob("*")):
        key = str(p.relative_to(path))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[key] = "dir"
        else:
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Case:
    """A bundle with relative paths everywhere a runtime resolves them."""

    top: Path  # holds the bundle, the file outside it, the hook's records
    bundle: Path
    hook_out: Path

    def records(self) -> list[str]:
        """What the hook read, one record per run, in order."""
        return self.hook_out.read_text().split("--\n")[:-1] if self.hook_out.exists() else []


def _make_case(top: Path) -> Case:
    if shutil.which("runc") is None:
        pytest.skip("the bundle is written by `runc spec`: runc not found (make test installs it)")
    if not bundles.BUSYBOX.exists():
        pytest.skip("/bin/busybox missing (apt-get install busybox-static)")
    bundle = top / "bundle"
    rootfs = bundles.busybox_rootfs(bundle / "rootfs")
    config_path = bundles.spec(bundle, rootfs, ["sh", "-c", _script()], bundles.docker_profile())
    config = json.loads(config_path.read_text())
    assert config["root"]["path"] == "rootfs"  # relative, as runc spec writes it
    (top / "outside").mkdir()
    for source, destination, cat, content in BINDS:
        is_dir = cat != destination
        host = bundle / source
        (host if is_dir else host.parent).mkdir(parents=True, exist_ok=True)
        (host / Path(cat).name if is_dir else host).write_text(content)
        # Mount points made in advance, so that neither runtime writes into the bundle.
        target = rootfs / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if is_dir else target.write_text("")
        rbind = destination == "/mnt/rdir"
        options = ["rbind", "ro"] if rbind else ["bind", "ro"]
        config["mounts"].append({"destination": destination, "type": "none" if rbind else "bind",
                                 "source": source, "options": options})
    (bundle / "sub" / "deep").mkdir(parents=True, exist_ok=True)
    (bundle / "lnk").symlink_to("sub/deep")
    (bundle / "twist.txt").write_text(TWIST["runc"])
    (bundle / "sub" / "twist.txt").write_text(TWIST["crun"])
    (rootfs / TWIST_DEST.lstrip("/")).write_text("")
    config["mounts"].append({"destination": TWIST_DEST, "type": "bind", "source": TWIST_SOURCE,
                             "options": ["bind", "ro"]})
    (rootfs / TMPFS.lstrip("/")).mkdir()
    config["mounts"].append({"destination": TMPFS, "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev"]})
    # A createRuntime hook given by a relative path (out of the bundle, so that only
    # resolving it as the runtime does finds it), reading relative paths: both
    # runtimes start it from their working directory, the bundle.
    hook_out = top / "hook-records"
    hook = top / "hooks" / "record.sh"
    hook.parent.mkdir()
    reads = " ".join(HOOK_READS)
    hook.write_text(f'#!/bin/sh\n/bin/cat {reads} >> "$1" && echo -- >> "$1"\n')
    hook.chmod(0o755)
    config["hooks"] = {"createRuntime": [{"path": "../hooks/record.sh",
                                          "args": ["record.sh", str(hook_out)]}]}
    config_path.write_text(json.dumps(config, indent=2))
    return Case(top, bundle, hook_out)


@pytest.fixture(params=["runc", "crun"])
def runtime(request, tmp_path_factory):
    rt = _runtime(request.param, tmp_path_factory)
    yield rt
    rt.cleanup()


@pytest.fixture
def case(tmp_path) -> Case:
    return _make_case(tmp_path)


def _outcome(proc: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """The exit code and what the container printed, up to the tmpfs line's source and
    type (the rest of that line is mount options, which differ by runtime)."""
    out = proc.stdout
    cut = out.find(f"tmpfs {TMPFS} tmpfs")
    return proc.returncode, (out[:cut + len(f"tmpfs {TMPFS} tmpfs")] if cut >= 0 else out)


def _hook_saw() -> str:
    return "".join(content for source, _, _, content in BINDS if source in HOOK_READS)


# How the bundle is named: (what `ocishim run` gets, what `--bundle` gets in place, the
# cwd of both, relative to the case's top). ABS stands for the bundle's absolute path.
ABS = "<abs>"
FORMS = {
    "absolute-dir": (ABS, ABS, "."),
    "relative-dir": ("bundle", "bundle", "."),
    "relative-dir-dotted": ("./bundle/", "./bundle/", "."),
    "absolute-config": (ABS + "/config.json", ABS, "."),
    "relative-config": ("bundle/config.json", "bundle", "."),
    "config-in-cwd": ("config.json", ".", "bundle"),
    "dot-in-cwd": (".", ".", "bundle"),
}


def _form(case: Case, form: str) -> tuple[str, str, Path]:
    ocishim_arg, in_place_arg, cwd = FORMS[form]
    return (ocishim_arg.replace(ABS, str(case.bundle)), in_place_arg.replace(ABS, str(case.bundle)),
            case.top / cwd)


def test_in_place_premise(runtime, case):
    """Without ocishim, each runtime resolves the relative sources, root.path and the
    hook's path against the bundle: the container prints the files this test wrote,
    the hook reads its files, and nothing in the bundle is written."""
    before = _tree(case.bundle)
    proc = runtime.run_plain(str(case.bundle), runtime.new_id(), case.top, stdin=subprocess.DEVNULL)
    assert _outcome(proc) == (EXIT, _expected_output(runtime.name)), proc.stderr
    assert case.records() == [_hook_saw()]
    assert _tree(case.bundle) == before


@pytest.mark.parametrize("form", list(FORMS))
def test_ocishim_run_means_what_the_runtime_does_in_place(form, runtime, case):
    ocishim_arg, in_place_arg, cwd = _form(case, form)
    before = _tree(case.bundle)
    in_place = runtime.run_plain(in_place_arg, runtime.new_id(), cwd, stdin=subprocess.DEVNULL)
    assert _outcome(in_place) == (EXIT, _expected_output(runtime.name)), in_place.stderr

    proc = runtime.run_ocishim(ocishim_arg, runtime.new_id(), cwd=cwd, stdin=subprocess.DEVNULL)
    assert _outcome(proc) == _outcome(in_place), \
        f"ocishim run --runtime {runtime.name} {ocishim_arg} (in {cwd}):\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    # The hook ran from the bundle both times and read the same files.
    assert case.records() == [_hook_saw(), _hook_saw()]
    # Nothing written into the bundle, nothing left behind.
    assert _tree(case.bundle) == before
    assert sorted(os.listdir(runtime.tmpdir)) == []
    assert runtime.ids() == []


def test_cwd_through_a_symlink(runtime, case):
    """A shell in the bundle reached through a symlink has that path in $PWD. runc's
    os.Getwd() returns $PWD when it names the working directory, so in place runc joins
    root.path onto the symlinked path and then refuses it ("invalid rootfs: not an
    absolute path, or a symlink", runc 1.1.5); crun realpath()s the bundle and runs.
    Under ocishim each runtime must do the same as in place."""
    alias = case.top / "alias"
    alias.symlink_to("bundle")
    before = _tree(case.bundle)
    in_place = runtime.run_plain(".", runtime.new_id(), alias, stdin=subprocess.DEVNULL)
    proc = runtime.run_ocishim(".", runtime.new_id(), cwd=alias, stdin=subprocess.DEVNULL)
    if runtime.name == "runc":
        assert in_place.returncode == 1 and "a symlink" in in_place.stderr, in_place.stderr
        assert proc.returncode == 1 and "invalid rootfs: not an absolute path, or a symlink" in proc.stderr, \
            proc.stderr
        assert case.records() == []
    else:
        assert _outcome(in_place) == (EXIT, _expected_output(runtime.name)), in_place.stderr
        assert case.records() == [_hook_saw(), _hook_saw()]
    assert _outcome(proc) == _outcome(in_place), proc.stderr
    assert _tree(case.bundle) == before
    assert sorted(os.listdir(runtime.tmpdir)) == []
    assert runtime.ids() == []
