"""ocishim-runtime fails closed and clean (issue 8, build items 2 and 3).

- Pass-through (state, kill, delete, ...) never depends on the settings file: with it
  missing, corrupt, or untrusted (not root's, or writable by others), a running runc
  container can still be inspected, killed and deleted through the wrapper, and under
  containerd too. The wrapper then finds the real runtime from --ocishim-runtime or
  $OCISHIM_RUNTIME, else the settings' "runtime" if the file is readable and trusted,
  else runc in PATH: an untrusted file's runtime is never executed.
- create with a broken settings file, or with hostile input (JSON nested 100,000 deep,
  a 100 MB config, invalid UTF-8), and any unexpected exception: exit 1, one line in
  --log naming the file (JSON with --log-format json), nothing on the container's stdio,
  no container; stderr only when there is no --log.

Oracles: real runc (its `state`, and whether a container exists), the kernel (/proc
for the container's process), recording scripts that show which runtime ran, and
Python's own import log (PYTHONPROFILEIMPORTTIME) for what the pass-through loads.
The settings are a file in a temporary directory (OCISHIM_CONFIG); /etc/ocishim is
never read or written here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from .bundles import busybox_rootfs, docker_profile, missing_runtime, spec
from .test_containerd import EXAMPLE, EXAMPLE_BINARY, start_containerd, stop_containerd
from .test_podman import ocishim_executable
from tests import shared_data

pytestmark = pytest.mark.runtime

NOBODY = 65534
PROFILE = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
           "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}
# Modules a pass-through must not load: the pipeline and libseccomp.
PIPELINE = ("pyseccomp", "ocishim.libseccomp", "ocishim.profile", "ocishim.patch",
            "ocishim.compile", "ocishim.syscalls", "ocishim.integrations.settings",
            "ocishim.integrations.config")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    if reason := missing_runtime("runc"):
        pytest.skip(reason)
    return tmp_path_factory.mktemp("failclosed")


@pytest.fixture(scope="module")
def wrapper(base) -> Path:
    return ocishim_executable(base, "ocishim-runtime")


@pytest.fixture(scope="module")
def runc() -> str:
    return shutil.which("runc")


@pytest.fixture(scope="module")
def rootfs(base) -> Path:
    return busybox_rootfs(base / "rootfs")


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


class Recorder:
    """A real runtime that records each command line, then execs real runc."""

    def __init__(self, directory: Path, runc: str, name: str = "recorded-runc") -> None:
        self.path = directory / name
        self.calls = directory / f"{name}.calls"
        self.path.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {shlex.quote(str(self.calls))}\n"
                             f"exec {shlex.quote(runc)} \"$@\"\n")
        self.path.chmod(0o755)

    def commands(self) -> list[str]:
        """The runc command of each call (global flags left out)."""
        if not self.calls.exists():
            return []
        out = []
        for line in self.calls.read_text().splitlines():
            words = line.split()
            i = 0
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in ("--root", "--log", "--log-format") else 1
            out.append(words[i] if i < len(words) else "")
        return out


def _env(settings: Path, runtime: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_") and k != "PYTHONPATH"}
    env["OCISHIM_CONFIG"] = str(settings)
    if runtime:
        env["OCISHIM_RUNTIME"] = runtime
    return env


def _wrap(wrapper: Path, args: Sequence[str], env: dict[str, str],
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the wrapper with stdio on files: a created container's init keeps the stdio it
    was given open until it starts, so a pipe would never end."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([str(wrapper), *args], stdout=out, stderr=err, env=env,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


def _runc_state(runc: str, root: Path, cid: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([runc, "--root", str(root), "state", cid], capture_output=True, text=True)


def _write_settings(path: Path, values: dict) -> None:
    path.write_text(json.dumps(values))
    os.chown(path, 0, 0)
    path.chmod(0o644)


# How a settings file breaks. Each leaves the file naming a runtime only where an
# untrusted file still does: the wrapper must not execute that one.
def _missing(path: Path) -> None:
    path.unlink()


def _corrupt(path: Path) -> None:
    path.write_text('{"runtime": ')


def _invalid_utf8(path: Path) -> None:
    path.write_bytes(b'{"log": "\xff\xfe"}')


def _not_root_owned(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY)


def _writable_by_others(path: Path) -> None:
    path.chmod(0o666)


BREAKAGES: dict[str, Callable[[Path], None]] = {
    "missing": _missing, "corrupt": _corrupt, "invalid-utf8": _invalid_utf8,
    "not-root-owned": _not_root_owned, "writable-by-others": _writable_by_others,
}


def _created_and_started(wrapper: Path, env: dict[str, str], root: Path, bundle: Path,
                         cid: str) -> None:
    proc = _wrap(wrapper, ["--root", str(root), "create", "--bundle", str(bundle), cid], env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc
    proc = _wrap(wrapper, ["--root", str(root), "start", cid], env)
    assert proc.returncode == 0, proc


def _wait_status(runc: str, root: Path, cid: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        proc = _runc_state(runc, root, cid)
        if proc.returncode == 0 and json.loads(proc.stdout)["status"] == status:
            return json.loads(proc.stdout)
        assert time.monotonic() < deadline, f"{cid} never {status}: {proc.stdout} {proc.stderr}"
        time.sleep(0.05)


# --- pass-through with broken settings -------------------------------------------------

@pytest.mark.parametrize("source", ["env", "settings"])
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_pass_through_survives_broken_settings(breakage, source, wrapper, runc, rootfs,
                                               state_root, tmp_path):
    """A running container created through the wrapper with good settings; the settings
    then break; `state`, `kill` and `delete` through the wrapper still do what runc does.

    source "env": the real runtime comes from $OCISHIM_RUNTIME, and keeps doing so.
    source "settings": it came from the settings' "runtime"; once the file is broken or
    untrusted the wrapper falls back to runc in PATH, and never runs the runtime an
    untrusted file names."""
    recorder = Recorder(tmp_path, runc)
    settings = tmp_path / "settings.json"
    if source == "env":
        _write_settings(settings, {"log": str(tmp_path / "ocishim.log")})
        env = _env(settings, str(recorder.path))
    else:
        _write_settings(settings, {"log": str(tmp_path / "ocishim.log"), "runtime": str(recorder.path)})
        env = _env(settings)
        assert Path(shutil.which("runc", path=env["PATH"])).resolve() == Path(runc).resolve()
    bundle = tmp_path / "bundle"
    spec(bundle, rootfs, ["/bin/sleep", "600"], docker_profile())
    cid = f"ocishim-fc-{uuid.uuid4().hex[:8]}"
    _created_and_started(wrapper, env, state_root, bundle, cid)
    assert recorder.commands() == ["create", "start"]  # the good settings were used
    pid = _wait_status(runc, state_root, cid, "running")["pid"]
    assert Path(f"/proc/{pid}").exists()

    BREAKAGES[breakage](settings)

    proc = _wrap(wrapper, ["--root", str(state_root), "state", cid], env)
    real = _runc_state(runc, state_root, cid)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, real.stdout, ""), proc
    assert json.loads(proc.stdout)["status"] == "running"

    proc = _wrap(wrapper, ["--root", str(state_root), "kill", cid, "KILL"], env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc
    _wait_status(runc, state_root, cid, "stopped")
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()

    proc = _wrap(wrapper, ["--root", str(state_root), "delete", cid], env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc
    assert _runc_state(runc, state_root, cid).returncode != 0  # gone, says runc

    after = recorder.commands()[2:]
    if source == "env":
        assert after == ["state", "kill", "delete"]
    else:  # runc from PATH did it; the runtime of a broken or untrusted file never ran
        assert after == []


def test_pass_through_loads_no_pipeline(wrapper, runc, tmp_path):
    """What a pass-through imports, from Python's own import log: not libseccomp, not the
    profile or settings code. The same log for --ocishim-version shows that it can see them."""
    settings = tmp_path / "settings.json"
    _write_settings(settings, {"runtime": runc})
    env = {**_env(settings), "PYTHONPROFILEIMPORTTIME": "1"}

    def imported(proc: subprocess.CompletedProcess[str]) -> set[str]:
        return {m.group(1).strip() for m in re.finditer(r"^import time:.*\|(.*)$", proc.stderr, re.M)}

    for runtime_env in ({"OCISHIM_RUNTIME": runc}, {}):  # from the environment, from the settings
        proc = _wrap(wrapper, ["--version"], {**env, **runtime_env})
        assert proc.returncode == 0 and proc.stdout.startswith("runc version"), proc
        modules = imported(proc)
        assert "ocishim.integrations.wrapper" in modules  # the log is there
        assert not {m for m in modules if m.startswith(PIPELINE)}, sorted(modules)

    # The control: --ocishim-version loads libseccomp and the table, and the log shows it.
    proc = _wrap(wrapper, ["--ocishim-version"], env)
    assert proc.returncode == 0, proc
    assert {"pyseccomp", "ocishim.libseccomp", "ocishim.syscalls"} <= imported(proc)


def test_settings_path_agrees_with_settings_module():
    """The wrapper names the settings file without importing settings.py."""
    from ocishim.integrations import settings, wrapper

    assert wrapper.DEFAULT_SETTINGS == settings.DEFAULT_PATH == "/etc/ocishim/config.json"


# --- create refuses: broken settings ----------------------------------------------

def _one_log_line(log: Path) -> dict:
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert list(entry) == ["level", "msg", "time"] and entry["level"] == "error", entry
    assert entry["msg"].startswith("ocishim: "), entry
    return entry


@pytest.mark.parametrize("breakage", [b for b in BREAKAGES if b != "missing"])
def test_create_with_broken_settings_fails_once_clearly(breakage, wrapper, runc, rootfs,
                                                        state_root, tmp_path):
    """No container, one JSON line in --log naming the settings file, nothing on stdio;
    the real runtime (even the one the file names) never runs."""
    recorder = Recorder(tmp_path, runc)
    settings = tmp_path / "settings.json"
    _write_settings(settings, {"runtime": str(recorder.path)})
    BREAKAGES[breakage](settings)
    bundle = tmp_path / "bundle"
    config = spec(bundle, rootfs, ["/bin/true"], PROFILE)
    before = config.read_bytes()
    log = tmp_path / "log.json"
    cid = f"ocishim-fc-{uuid.uuid4().hex[:8]}"
    proc = _wrap(wrapper, ["--root", str(state_root), "--log", str(log), "--log-format", "json",
                           "create", "--bundle", str(bundle), cid], _env(settings))
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", ""), proc
    assert str(settings) in _one_log_line(log)["msg"]
    assert config.read_bytes() == before
    assert _runc_state(runc, state_root, cid).returncode != 0
    assert recorder.commands() == []


# --- create refuses: hostile config.json ------------------------------------------

def _deep(path: Path, depth: int) -> None:
    path.write_text('{"ociVersion": "1.0.2", "x-deep": ' + "[" * depth + "]" * depth
                    + ', "linux": {"seccomp": ' + json.dumps(PROFILE) + "}}")


def _huge(path: Path) -> None:
    """100 MB: valid JSON at both ends, a hole between (the size alone must refuse it)."""
    head = b'{"ociVersion": "1.0.2", "linux": {"seccomp": ' + json.dumps(PROFILE).encode() + b'}, "x": "'
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(100 * 1024 * 1024 - 2)
        f.seek(0, os.SEEK_END)
        f.write(b'"}')


def _not_utf8(path: Path) -> None:
    path.write_bytes(b'{"ociVersion": "1.0.2", "annotations": {"a": "\xc3\x28"}, "linux": {"seccomp": '
                     + json.dumps(PROFILE).encode() + b"}}")


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "nested-100000": (lambda p: _deep(p, 100_000), "nested too deeply"),
    "nested-500": (lambda p: _deep(p, 500), "nested too deeply"),  # parses, deeper than the rewrite goes
    "100MB": (_huge, "larger than"),
    "invalid-utf8": (_not_utf8, "not valid UTF-8"),
}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("log_format", ["json", "text", "no-log"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_config_through_create(case, log_format, wrapper, runc, tmp_path):
    """Exit 1 (runc's convention), the config's path and the reason in one log line, the
    runtime never run, the file untouched; on stderr only without --log."""
    make, reason = HOSTILE[case]
    recorder = Recorder(tmp_path, runc)
    settings = tmp_path / "settings.json"
    _write_settings(settings, {"log": str(tmp_path / "ocishim.log")})
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    config = bundle / "config.json"
    make(config)
    before = _digest(config)
    log = tmp_path / "log"
    flags = {"json": ["--log", str(log), "--log-format", "json"], "text": ["--log", str(log)],
             "no-log": []}[log_format]
    started = time.monotonic()
    proc = _wrap(wrapper, [*flags, "create", "--bundle", str(bundle), "fc-hostile"],
                 _env(settings, str(recorder.path)))
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    if log_format == "no-log":
        [line] = proc.stderr.splitlines()
    else:
        assert proc.stderr == ""
        [line] = log.read_text().splitlines()
    if log_format == "json":
        msg = _one_log_line(log)["msg"]
    else:
        m = re.fullmatch(r'time="[^"]+" level=error msg=(".*")', line)
        assert m, line
        msg = json.loads(m.group(1))  # logrus quotes the value the way JSON does
    assert msg.startswith(f"ocishim: {config}: ") and reason in msg, msg
    assert recorder.commands() == []
    # And in ocishim's own log, where the settings put it, once.
    ours = [line for line in (tmp_path / "ocishim.log").read_text().splitlines() if "refused" in line]
    assert len(ours) == 1 and "create refused: " in ours[0] and str(config) in ours[0], ours
    assert _digest(config) == before
    assert elapsed < 30, f"{case}: {elapsed:.1f} s"


def test_closed_stdio_still_reports(wrapper, runc, tmp_path):
    """A caller that closed stdin, stdout and stderr: the refusal still reaches --log."""
    recorder = Recorder(tmp_path, runc)
    settings = tmp_path / "settings.json"
    _write_settings(settings, {"log": str(tmp_path / "ocishim.log")})
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    _deep(bundle / "config.json", 100_000)
    log = tmp_path / "log.json"
    proc = subprocess.run(["sh", "-c", 'exec "$@" <&- >&- 2>&-', "sh", str(wrapper), "--log", str(log),
                           "--log-format", "json", "create", "--bundle", str(bundle), "fc-closed"],
                          env=_env(settings, str(recorder.path)), timeout=60)
    assert proc.returncode == 1
    assert "nested too deeply" in _one_log_line(log)["msg"]
    assert recorder.commands() == []


def test_unexpected_exception_is_one_line_and_silent(wrapper, runc, rootfs, tmp_path):
    """A bug anywhere in create (here injected: a sitecustomize makes the rewrite print on
    stdout and stderr, through Python and straight to the fds, then raise): exit 1, one
    JSON line "internal error", and the container's stdio gets none of it."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import os, sys\n"
        "import ocishim.integrations.config as config\n"
        "def broken(*args, **kwargs):\n"
        "    print('noise on stdout'); print('noise on stderr', file=sys.stderr)\n"
        "    os.write(1, b'raw noise 1\\n'); os.write(2, b'raw noise 2\\n')\n"
        "    raise KeyError('injected')\n"
        "config.rewrite_for_container = broken\n")
    recorder = Recorder(tmp_path, runc)
    settings = tmp_path / "settings.json"
    _write_settings(settings, {"log": str(tmp_path / "ocishim.log")})
    bundle = tmp_path / "bundle"
    spec(bundle, rootfs, ["/bin/true"], PROFILE)
    log = tmp_path / "log.json"
    env = {**_env(settings, str(recorder.path)), "PYTHONPATH": str(inject)}
    env.pop("PYTHONUNBUFFERED", None)
    for buffering in ({}, {"PYTHONUNBUFFERED": "1"}):  # printed at exit, or at once
        log.unlink(missing_ok=True)
        proc = _wrap(wrapper, ["--log", str(log), "--log-format", "json", "create", "--bundle",
                               str(bundle), "fc-bug"], {**env, **buffering})
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", ""), (buffering, proc)
        assert _one_log_line(log)["msg"] == "ocishim: internal error: KeyError: 'injected'"
    assert recorder.commands() == []
    # The control: the injection is live (a pass-through still works, create does not).
    proc = _wrap(wrapper, ["--version"], env)
    assert proc.returncode == 0 and proc.stdout.startswith("runc version")


# --- the wrapper's own version -----------------------------------------------------

def test_ocishim_version(wrapper, runc, tmp_path):
    """--ocishim-version is ocishim's; --version stays runc's, byte for byte."""
    import ctypes
    import ctypes.util

    settings = tmp_path / "settings.json"
    _corrupt(settings)  # needs no settings either
    env = _env(settings, runc)
    proc = _wrap(wrapper, ["--ocishim-version"], env)
    assert (proc.returncode, proc.stderr) == (0, ""), proc
    lines = proc.stdout.splitlines()
    # The version the package is built with (setup.cfg), not the code's own constant.
    setup_cfg = (Path(__file__).resolve().parents[1] / "setup.cfg").read_text()
    expected = re.search(r"^version\s*=\s*([0-9][^\s]*)\s*$", setup_cfg, re.M).group(1)
    assert lines[0] == f"ocishim-runtime version {expected}"
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))

    class V(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib.seccomp_version.restype = ctypes.POINTER(V)
    v = lib.seccomp_version().contents
    assert lines[1] == f"libseccomp: {v.major}.{v.minor}.{v.micro}"
    newest = max(tuple(map(int, row["since"].split("."))) for row in _shared_rows())
    assert lines[2] == f"syscall table: Linux {newest[0]}.{newest[1]}"
    real = subprocess.run([runc, "--version"], capture_output=True, text=True)
    proc = _wrap(wrapper, ["--version"], env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (real.returncode, real.stdout, real.stderr)


def _shared_rows() -> list[dict[str, str]]:
    """The shared syscall table the generated one comes from (not ocishim's copy)."""
    import csv

    path = shared_data.SYSCALLS_CSV
    if not path.is_file():
        pytest.skip(f"{path} is not there (the shared data)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- containerd: kill and delete with a corrupt settings file ----------------------

def test_containerd_kills_and_deletes_with_corrupt_settings(tmp_path, runc, rootfs):
    """Issue 8's acceptance: a long-running container started by containerd through the
    wrapper with good settings; the settings file is corrupted; `ctr task kill` and
    `ctr task delete`/`ctr container delete` still succeed, through the wrapper, and the
    process and runc's state are gone. A new container is refused, naming the file.

    No OCISHIM_RUNTIME here: the settings name the real runtime, so after the corruption
    the wrapper falls back to runc in PATH (the same runc)."""
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    ocishim_runtime = ocishim_executable(tmp_path, "ocishim-runtime")
    calls = tmp_path / "wrapper.calls"
    front = tmp_path / "ocishim-runtime-recorded"
    front.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {shlex.quote(str(calls))}\n"
                     f"exec {shlex.quote(str(ocishim_runtime))} \"$@\"\n")
    front.chmod(0o755)
    recorder = Recorder(tmp_path, runc)
    settings = tmp_path / "settings.json"
    _write_settings(settings, {"runtime": str(recorder.path), "log": str(tmp_path / "ocishim.log")})
    env = _env(settings)
    daemon = start_containerd(tmp_path / "daemon",
                              EXAMPLE.read_text().replace(EXAMPLE_BINARY, str(front)), env)
    try:
        cid = f"fc-{uuid.uuid4().hex[:8]}"
        proc = daemon.ctr("run", "-d", "--seccomp", "--runc-binary", str(front),
                          "--rootfs", str(rootfs), cid, "/bin/sleep", "600")
        assert proc.returncode == 0, proc.stderr
        rows = [line.split() for line in daemon.ctr("task", "ls").stdout.splitlines()[1:]]
        [pid] = [int(r[1]) for r in rows if r[0] == cid and r[-1] == "RUNNING"]
        assert Path(f"/proc/{pid}").exists()
        assert recorder.commands()[:2] == ["create", "start"]
        runc_root = Path("/run/containerd/runc") / daemon.namespace
        assert _runc_state(runc, runc_root, cid).returncode == 0

        _corrupt(settings)
        recorded_before = len(recorder.commands())

        proc = daemon.ctr("task", "kill", "--signal", "SIGKILL", cid)
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 30
        while not any(r[0] == cid and r[-1] == "STOPPED" for r in
                      (line.split() for line in daemon.ctr("task", "ls").stdout.splitlines()[1:])):
            assert time.monotonic() < deadline, "the task did not stop"
            time.sleep(0.1)
        for args in (("task", "delete", cid), ("container", "delete", cid)):
            proc = daemon.ctr(*args)
            assert proc.returncode == 0, (args, proc.stderr)
        assert cid not in daemon.ctr("container", "ls", "-q").stdout.split()
        assert not Path(f"/proc/{pid}").exists()
        assert _runc_state(runc, runc_root, cid).returncode != 0  # runc no longer knows it

        commands = [line.split() for line in calls.read_text().splitlines() if cid in line.split()]
        after = [w[w.index("--log-format") + 2] if "--log-format" in w else w[0] for w in commands][2:]
        assert "kill" in after and "delete" in after, after  # through the wrapper
        assert len(recorder.commands()) == recorded_before  # the broken file's runtime: never

        # create is refused, once and clearly, naming the file.
        bad = f"fc-bad-{uuid.uuid4().hex[:8]}"
        proc = daemon.ctr("run", "--rm", "--seccomp", "--runc-binary", str(front),
                          "--rootfs", str(rootfs), bad, "/bin/echo", "container ran")
        assert proc.returncode != 0 and "container ran" not in proc.stdout
        assert f"OCI runtime create failed: ocishim: {settings}: " in proc.stderr, proc.stderr
        assert bad not in daemon.ctr("task", "ls", "-q").stdout.split()
    finally:
        stop_containerd(daemon)
