"""ocishim-runtime on its own, in front of real runc (runtimes.md, "a runc-compatible wrapper").

The wrapper is run as an executable, as containerd, Docker and CRI-O run it: the
console script of make test's .venv, or the same kind of script for this checkout.
Its settings come from a settings file in a temporary directory (OCISHIM_CONFIG);
/etc/ocishim/config.json is never read or written here.

Docker and CRI-O are not installed on this machine kind (only podman and containerd
are), so their snippets, examples/docker/daemon.json and examples/crio/10-ocishim.conf,
are checked for syntax and for naming the wrapper where the other documents put it;
they are not run. Both call the wrapper exactly like containerd's shim does (the runc
command line, `--version`, `features`), which test_containerd.py exercises for real.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from . import probes
from . import rootfs as rootfs_mod
from .bundles import REPO, busybox_rootfs, docker_profile, missing_runtime, spec
from .conftest import run_ocishim
from .test_podman import ENOSYS, EPERM, ProbeContract, answers, ocishim_executable, probe_profile
from tests import shared_data

pytestmark = pytest.mark.runtime

WRAPPER_PATH = "/usr/bin/ocishim-runtime"  # where the Debian package and the examples put it
# `make install` (PREFIX=/usr/local) puts it here; runtimes.md predates the package.
PREFIX_PATH = "/usr/local/bin/ocishim-runtime"
DESIGN_RUNTIMES = shared_data.DESIGN / "runtimes.md"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    if reason := missing_runtime("runc"):
        pytest.skip(reason)
    return tmp_path_factory.mktemp("wrapper")


@pytest.fixture(scope="module")
def wrapper(base) -> Path:
    return ocishim_executable(base, "ocishim-runtime")


@pytest.fixture(scope="module")
def runc() -> str:
    return shutil.which("runc")


@pytest.fixture(scope="module")
def rootfs(base) -> Path:
    if reason := probes.missing_tools():
        pytest.skip(reason)
    root = busybox_rootfs(base / "rootfs")
    shutil.copy2(probes.build("enosys_probe"), root / "bin" / "enosys_probe")
    return root


@pytest.fixture
def env(tmp_path, runc) -> dict[str, str]:
    """The wrapper's environment: real runc, and settings that are not the system's."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_") and k != "PYTHONPATH"}
    out["OCISHIM_RUNTIME"] = runc
    out["OCISHIM_CONFIG"] = str(tmp_path / "no-settings.json")
    return out


@pytest.fixture
def state_root(tmp_path, runc) -> Iterator[Path]:
    """A private runc --root; every container left in it is deleted at the end."""
    root = tmp_path / "runc-root"
    root.mkdir()
    try:
        yield root
    finally:
        listed = subprocess.run([runc, "--root", str(root), "list", "-q"], capture_output=True, text=True)
        for cid in listed.stdout.split():
            subprocess.run([runc, "--root", str(root), "delete", "--force", cid], capture_output=True)


def _wrap(wrapper: Path, args: Sequence[str], env: dict[str, str], cwd: Path | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the wrapper. Output goes to files, not pipes: after `create` the container's
    init keeps the stdio it was given open until it starts, so a pipe never ends."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([str(wrapper), *args], stdout=out, stderr=err, env=env, cwd=cwd,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           out.read().decode(), err.read().decode())


def _bundle(path: Path, rootfs: Path, args: Sequence[str], seccomp: dict[str, Any] | None,
            annotations: dict[str, str] | None = None) -> tuple[Path, bytes]:
    """A bundle as a runtime's caller writes it, with fields no runtime knows; returns
    (config path, its original bytes)."""
    config_path = spec(path, rootfs, args, seccomp)
    config = json.loads(config_path.read_text())
    config = {"x-vendor": {"z": 1, "a": [3, 2, 1]}, **config}  # unknown, first
    config["annotations"] = {"org.example.keep": "me", **(annotations or {})}
    if seccomp is not None:
        config["linux"]["seccomp"]["x-unknown-note"] = "kept"
    original = (json.dumps(config, indent=4) + "\n").encode()
    config_path.write_bytes(original)
    return config_path, original


def _key_orders(value: Any, path: str = "") -> Iterator[tuple[str, list[str]]]:
    if isinstance(value, dict):
        yield path, list(value)
        for k, v in value.items():
            yield from _key_orders(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _key_orders(v, f"{path}[{i}]")


def _assert_key_order_kept(before: dict, after: dict) -> None:
    """Every object keeps its keys in their order (new keys may only follow)."""
    after_orders = dict(_key_orders(after))
    for path, keys in _key_orders(before):
        assert after_orders[path][:len(keys)] == keys, path


def _patched_by_cli(original: bytes, tmp: Path, *flags: str) -> dict:
    source = tmp / f"original-{uuid.uuid4().hex[:6]}.json"
    source.write_bytes(original)
    proc = run_ocishim(["patch", "--format", "config", *flags, str(source)])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- pass-through: byte-identical to runc -----------------------------------------------

@pytest.mark.parametrize("args", [["--version"], ["features"], ["--help"], ["list", "--help"]])
def test_pass_through_is_byte_identical(args, wrapper, runc, env):
    mine = _wrap(wrapper, args, env)
    real = subprocess.run([runc, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert (mine.returncode, mine.stdout, mine.stderr) == (real.returncode, real.stdout, real.stderr)
    assert mine.stdout  # something was compared


def test_real_runtime_from_flag_and_settings(wrapper, runc, env, tmp_path):
    """--ocishim-runtime PATH (taken out of the command line) and the settings' "runtime"."""
    real = subprocess.run([runc, "--version"], capture_output=True, text=True).stdout
    no_env = {k: v for k, v in env.items() if k != "OCISHIM_RUNTIME"}
    proc = _wrap(wrapper, ["--ocishim-runtime", runc, "--version"], no_env)
    assert (proc.returncode, proc.stdout) == (0, real), proc.stderr
    proc = _wrap(wrapper, [f"--ocishim-runtime={runc}", "--version"], no_env)
    assert (proc.returncode, proc.stdout) == (0, real), proc.stderr
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"runtime": runc}))
    proc = _wrap(wrapper, ["--version"], {**no_env, "OCISHIM_CONFIG": str(settings)})
    assert (proc.returncode, proc.stdout) == (0, real), proc.stderr


# --- create and run: the rewrite --------------------------------------------------------

@pytest.mark.parametrize("style", ["containerd", "equals", "short", "cwd"])
def test_create_rewrites_the_config(style, wrapper, runc, env, rootfs, state_root, tmp_path):
    """The command-line shapes runtimes' callers use; the config becomes what
    `ocishim patch --format config` makes of it, unknown fields and key order kept,
    replaced by a rename (a new inode), and runc creates the container from it."""
    bundle = tmp_path / "bundle"
    config_path, original = _bundle(bundle, rootfs, ["/bin/true"], docker_profile())
    inode = config_path.stat().st_ino
    cid = f"ocishim-w-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "log.json"
    globals_ = {"containerd": ["--root", str(state_root), "--log", str(log), "--log-format", "json"],
                "equals": [f"--root={state_root}", f"--log={log}", "--log-format=json"],
                "short": ["--root", str(state_root)],
                "cwd": ["--root", str(state_root)]}[style]
    bundle_args = {"containerd": ["--bundle", str(bundle)], "equals": [f"--bundle={bundle}"],
                   "short": ["-b", str(bundle)], "cwd": []}[style]
    proc = _wrap(wrapper, [*globals_, "create", *bundle_args, "--pid-file", str(tmp_path / "pid"), cid],
                 env, cwd=bundle)
    assert proc.returncode == 0, (proc.stderr, log.read_text() if log.exists() else "")
    assert proc.stdout == proc.stderr == ""  # create's stdio is the container's
    state = json.loads(subprocess.run([runc, "--root", str(state_root), "state", cid],
                                      capture_output=True, text=True, check=True).stdout)
    assert state["status"] == "created" and state["bundle"] == str(bundle)

    after = json.loads(config_path.read_text())
    assert after == _patched_by_cli(original, tmp_path)
    _assert_key_order_kept(json.loads(original), after)
    assert after["x-vendor"] == {"z": 1, "a": [3, 2, 1]}
    assert after["linux"]["seccomp"]["x-unknown-note"] == "kept"
    assert after["annotations"]["org.example.keep"] == "me"
    assert "run.oci.seccomp_bpf_data" in after["annotations"]
    assert config_path.stat().st_ino != inode
    assert not list(bundle.glob(".config.json.ocishim-*"))  # no temp file left


def test_patching_twice_is_patching_once(wrapper, runc, env, rootfs, state_root, tmp_path):
    bundle = tmp_path / "bundle"
    config_path, _ = _bundle(bundle, rootfs, ["/bin/true"], probe_profile(),
                             {"ocishim.enosys": "unnamed"})
    outputs = []
    for _ in range(2):
        cid = f"ocishim-w-{uuid.uuid4().hex[:8]}"
        proc = _wrap(wrapper, ["--root", str(state_root), "create", "--bundle", str(bundle), cid], env)
        assert proc.returncode == 0, proc.stderr
        outputs.append(config_path.read_bytes())
        subprocess.run([runc, "--root", str(state_root), "delete", "--force", cid], check=True)
    assert outputs[0] == outputs[1]
    rules = json.loads(outputs[1])["linux"]["seccomp"]["syscalls"]
    assert sum(r.get("errnoRet") == ENOSYS and "faccessat2" in r["names"] for r in rules) == 1


def test_run_gives_the_container_the_rewritten_filter(wrapper, env, rootfs, state_root, tmp_path):
    """`run`: rewritten, then runc runs the probe with stdio inherited (runc ignores the
    crun annotation: the JSON rule and runc's own stub, see ProbeContract.runc)."""
    bundle = tmp_path / "bundle"
    _bundle(bundle, rootfs, ["/bin/enosys_probe"], probe_profile(), {"ocishim.enosys": "unnamed"})
    cid = f"ocishim-w-{uuid.uuid4().hex[:8]}"
    proc = _wrap(wrapper, ["--root", str(state_root), "run", "--bundle", str(bundle), cid], env)
    assert proc.returncode == 0, proc.stderr
    got = answers(proc.stdout)
    assert got == ProbeContract(probe_profile()).runc("unnamed")
    assert got["faccessat2"] == ENOSYS != EPERM


def test_trixie_bash_through_the_wrapper(wrapper, runc, env, state_root, tmp_path):
    """Debian trixie's bash `[ -x /bin/ls ]` (glibc 2.41 tries faccessat2 first) under an
    EPERM profile lacking faccessat2: false under plain runc, true through the wrapper
    when the mode puts faccessat2 in E(A). (`auto` keeps EPERM for this profile: it
    names 6.13 syscalls, and faccessat2 is 5.8; see integration/test_run.py.)"""
    try:
        trixie = rootfs_mod.debootstrap_rootfs("trixie")
    except rootfs_mod.RootfsUnavailable as exc:
        pytest.skip(str(exc))
    cmd = ["/bin/bash", "-c", "[ -x /bin/ls ] && echo yes || echo no"]
    seccomp = docker_profile(minus=["faccessat2"])
    plain = tmp_path / "plain"
    spec(plain, trixie, cmd, seccomp)
    proc = subprocess.run([runc, "--root", str(state_root), "run", "--bundle", str(plain),
                           f"ocishim-w-{uuid.uuid4().hex[:8]}"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert proc.stdout == "no\n", proc.stderr
    for mode in ("unnamed", "kernel:5.4"):
        bundle = tmp_path / mode.replace(":", "-")
        _bundle(bundle, trixie, cmd, seccomp, {"ocishim.enosys": mode})
        proc = _wrap(wrapper, ["--root", str(state_root), "run", "--bundle", str(bundle),
                               f"ocishim-w-{uuid.uuid4().hex[:8]}"], env)
        assert (proc.returncode, proc.stdout) == (0, "yes\n"), (mode, proc.stderr)


def test_config_without_seccomp_is_left_alone(wrapper, env, rootfs, state_root, tmp_path):
    bundle = tmp_path / "bundle"
    config_path, original = _bundle(bundle, rootfs, ["/bin/true"], None)
    cid = f"ocishim-w-{uuid.uuid4().hex[:8]}"
    proc = _wrap(wrapper, ["--root", str(state_root), "create", "--bundle", str(bundle), cid], env)
    assert proc.returncode == 0, proc.stderr
    assert config_path.read_bytes() == original


# --- errors during create ------------------------------------------------------------

def _bad_annotation(config: dict) -> None:
    config["annotations"]["ocishim.enosys"] = "bogus"


def _bad_operator(config: dict) -> None:
    config["linux"]["seccomp"]["syscalls"][0]["args"] = [{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]


ERROR_CASES = {
    "annotation": (_bad_annotation, "ocishim: annotations.ocishim.enosys: unknown mode 'bogus'"),
    "operator": (_bad_operator, 'linux.seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_FOO"'),
    "not-json": (None, "invalid JSON at line"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
@pytest.mark.parametrize("log_flags", ["separate", "equals"])
def test_create_error_is_one_json_log_line(case, log_flags, wrapper, runc, env, rootfs, state_root, tmp_path):
    edit, message = ERROR_CASES[case]
    bundle = tmp_path / "bundle"
    config_path, _ = _bundle(bundle, rootfs, ["/bin/true"], docker_profile())
    if edit is None:
        config_path.write_text("{garbage")
    else:
        config = json.loads(config_path.read_text())
        edit(config)
        config_path.write_text(json.dumps(config, indent=2))
    before = config_path.read_bytes()
    log = tmp_path / "log.json"
    flags = (["--log", str(log), "--log-format", "json"] if log_flags == "separate"
             else [f"--log={log}", "--log-format=json"])
    cid = f"ocishim-w-{uuid.uuid4().hex[:8]}"
    proc = _wrap(wrapper, ["--root", str(state_root), *flags, "create", "--bundle", str(bundle), cid], env)
    assert proc.returncode == 1
    assert proc.stdout == proc.stderr == ""
    [line] = log.read_text().splitlines()
    entry = json.loads(line)
    assert list(entry) == ["level", "msg", "time"] and entry["level"] == "error"
    assert entry["msg"].startswith("ocishim: ") and message in entry["msg"], entry["msg"]
    assert datetime.datetime.fromisoformat(entry["time"]).tzinfo is not None
    assert config_path.read_bytes() == before  # fail closed: nothing half-done
    assert subprocess.run([runc, "--root", str(state_root), "state", cid], capture_output=True).returncode != 0


def test_create_error_in_text_log_format(wrapper, env, rootfs, state_root, tmp_path):
    """Without --log-format json: one logrus-style text line, as runc writes."""
    bundle = tmp_path / "bundle"
    config_path, _ = _bundle(bundle, rootfs, ["/bin/true"], docker_profile(), {"ocishim.enosys": "bogus"})
    log = tmp_path / "log.txt"
    proc = _wrap(wrapper, ["--root", str(state_root), "--log", str(log), "create", "--bundle", str(bundle), "x"], env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "")
    [line] = log.read_text().splitlines()
    assert re.fullmatch(r'time="[^"]+" level=error msg="ocishim: annotations.ocishim.enosys: unknown mode .*"', line), line


# --- the real runtime ------------------------------------------------------------------

def test_unknown_real_runtime(wrapper, env, rootfs, state_root, tmp_path):
    missing = str(tmp_path / "no-such-runc")
    proc = _wrap(wrapper, ["state", "x"], {**env, "OCISHIM_RUNTIME": missing})
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"real runtime {missing!r} is not an executable" in proc.stderr, proc.stderr
    # During create the same message goes to the log, stdio stays silent.
    bundle = tmp_path / "bundle"
    _bundle(bundle, rootfs, ["/bin/true"], docker_profile())
    log = tmp_path / "log.json"
    proc = _wrap(wrapper, ["--root", str(state_root), "--log", str(log), "--log-format", "json",
                           "create", "--bundle", str(bundle), "x"], {**env, "OCISHIM_RUNTIME": missing})
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "")
    assert "is not an executable" in json.loads(log.read_text())["msg"]


def test_never_resolves_to_itself(wrapper, env, tmp_path):
    proc = _wrap(wrapper, ["--version"], {**env, "OCISHIM_RUNTIME": str(wrapper)}, timeout=30)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "is ocishim-runtime itself" in proc.stderr, proc.stderr
    # A symlink to it is still itself.
    link = tmp_path / "runc"
    link.symlink_to(wrapper)
    proc = _wrap(wrapper, ["--version"], {**env, "OCISHIM_RUNTIME": str(link)}, timeout=30)
    assert proc.returncode == 1 and "is ocishim-runtime itself" in proc.stderr, proc.stderr
    # A script that runs it again cannot be seen from argv[0]: without a guard this is
    # an endless exec loop (the timeout would fire).
    script = tmp_path / "runc-script"
    script.write_text(f'#!/bin/sh\nexec {wrapper} "$@"\n')
    script.chmod(0o755)
    proc = _wrap(wrapper, ["--version"], {**env, "OCISHIM_RUNTIME": str(script)}, timeout=30)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "ran ocishim-runtime again" in proc.stderr, proc.stderr


# --- a kill during the rewrite ---------------------------------------------------------

FILLER_MB = 12  # the CLI (used for the expected config) refuses files over 16 MiB
RANDOM_KILLS = 12
TARGETED_KILLS = 4
SEED = 20261122


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place meanwhile
        return -1


def test_sigkill_during_rewrite_leaves_old_or_new(wrapper, env, rootfs, tmp_path):
    """SIGKILL at many points of a create: config.json is always the old bytes or the new.

    The config carries ~12 MB of an unknown field so that writing the new file takes
    a measurable time. Kill points: seeded random delays over a whole run, and kills
    aimed at the write itself (as soon as the temp file appears, and once it is half
    written). The real runtime is /bin/true: only the rewrite matters here.
    """
    bundle = tmp_path / "bundle"
    config_path = spec(bundle, rootfs, ["/bin/true"], docker_profile())
    config = json.loads(config_path.read_text())
    config["x-filler"] = "ocishim filler " * (FILLER_MB * 1024 * 1024 // 15)
    old = (json.dumps(config, indent=2) + "\n").encode()
    env = {**env, "OCISHIM_RUNTIME": shutil.which("true") or "/bin/true"}
    argv = [str(wrapper), "create", "--bundle", str(bundle), "ocishim-kill-test"]

    config_path.write_bytes(old)
    started = time.monotonic()
    subprocess.run(argv, env=env, check=True, timeout=120)
    whole_run = time.monotonic() - started
    new = config_path.read_bytes()
    assert new != old and json.loads(new) == _patched_by_cli(old, tmp_path)

    def temp_files() -> list[Path]:
        return list(bundle.glob(".config.json.ocishim-*"))

    def attempt(kill_when) -> tuple[str, bool]:
        config_path.write_bytes(old)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            kill_when(proc)
        finally:
            proc.send_signal(signal.SIGKILL)  # no-op when it already exited
            proc.wait()
        data = config_path.read_bytes()
        assert data in (old, new), f"a mix: {len(data)} bytes, old {len(old)}, new {len(new)}"
        leftover = temp_files()
        for path in leftover:  # what a killed writer leaves; the next one uses another name
            path.unlink()
        return ("old" if data == old else "new"), bool(leftover)

    def after(delay: float):
        return lambda proc: time.sleep(delay)

    def once_temp(min_size: int):
        def wait(proc: subprocess.Popen) -> None:
            deadline = time.monotonic() + 2 * whole_run + 10
            while proc.poll() is None and time.monotonic() < deadline:
                if any(_size(p) >= min_size for p in temp_files()):
                    return
                time.sleep(0.0005)
        return wait

    rng = random.Random(SEED)
    plans = [after(rng.uniform(0, whole_run * 1.3)) for _ in range(RANDOM_KILLS)]
    plans += [once_temp(1)] * TARGETED_KILLS + [once_temp(len(new) // 2)] * TARGETED_KILLS
    outcomes = [attempt(plan) for plan in [after(0), *plans, lambda proc: proc.wait()]]
    # The two ends: killed before it started, and "killed" once it had finished.
    assert outcomes[0][0] == "old" and outcomes[-1][0] == "new", outcomes
    # At least one kill landed while the new file was being written and still left
    # the old config whole.
    assert any(o == "old" and during for o, during in outcomes), outcomes


# --- snippets for engines that do not run here ----------------------------------------

def _wrapper_paths(text: str) -> set[str]:
    return set(re.findall(r"/[\w./-]*ocishim-runtime\b", text))


def test_docker_and_crio_snippets():
    daemon = json.loads((REPO / "examples" / "docker" / "daemon.json").read_text())
    assert daemon["runtimes"]["ocishim"] == {"path": WRAPPER_PATH}

    crio = tomllib.loads((REPO / "examples" / "crio" / "10-ocishim.conf").read_text())
    runtime = crio["crio"]["runtime"]["runtimes"]["ocishim"]
    assert runtime["runtime_path"] == WRAPPER_PATH and runtime["runtime_type"] == "oci"

    containerd = tomllib.loads((REPO / "examples" / "containerd" / "config.toml").read_text())
    options = containerd["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["ocishim"]
    assert options["runtime_type"] == "io.containerd.runc.v2"
    assert options["options"]["BinaryName"] == WRAPPER_PATH

    # The RuntimeClass handler names the runtime the snippets define.
    runtimeclass = (REPO / "examples" / "kubernetes" / "runtimeclass.yaml").read_text()
    assert re.search(r"^handler:\s*ocishim\s*$", runtimeclass, re.M)

    # Every example gives the package's path; the documents that one or make install's.
    for doc in sorted((REPO / "examples").rglob("*")):
        if doc.is_file():
            assert _wrapper_paths(doc.read_text(errors="replace")) <= {WRAPPER_PATH}, doc
    for doc in (REPO / "README.md", DESIGN_RUNTIMES):
        if doc.is_file():
            assert _wrapper_paths(doc.read_text(errors="replace")) <= {WRAPPER_PATH, PREFIX_PATH}, doc
    assert WRAPPER_PATH in (REPO / "README.md").read_text()
