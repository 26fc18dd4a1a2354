"""Hostile files around everything ocishim writes or trusts (issue 8, "Files").

Real files, real root, real chown to another uid (65534, nobody), real FIFOs, sockets,
devices, PID namespaces (unshare) and a full tmpfs. Each case checks the outcome and
that nothing outside the intended file changed: a guard snapshot (type, mode, owner,
inode, content hash or link target) of the whole work tree, of a root-only victim
file that planted symlinks point at, and of a few system files, taken before and after.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
DOCKER = shared_data.PROFILES / "docker-default.json"
NOBODY = 65534
SYSTEM_GUARDS = ("/etc/passwd", "/etc/hostname", "/dev/null")
# What our temporaries look like, written out again from the contract in the brief:
# ".<target>.ocishim-" and a random suffix.
TEMP_GLOB = ".{}.ocishim-*"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: chown to another uid, unshare, mount (CI runs as root)")

# A config.json for the wrapper: an OCI profile with one rule, nothing else it needs.
CONFIG = {"ociVersion": "1.0.2", "process": {"args": ["/bin/true"]}, "root": {"path": "rootfs"},
          "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
                                "architectures": ["SCMP_ARCH_X86_64"],
                                "syscalls": [{"names": ["read", "write", "exit_group"],
                                              "action": "SCMP_ACT_ALLOW"}]}}}


# ---------------------------------------------------------------- guards

def snapshot(*roots: str | Path) -> dict[str, tuple]:
    """Every path under roots (not following symlinks): type, mode, owner, inode, content."""
    out: dict[str, tuple] = {}

    def one(path: str) -> None:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                content: object = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = st.st_rdev
        out[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     st.st_ino, content)

    for root in map(str, roots):
        one(root)
        if stat.S_ISDIR(os.lstat(root).st_mode):
            for dirpath, dirnames, filenames in os.walk(root):  # does not follow symlinks
                for name in dirnames + filenames:
                    one(os.path.join(dirpath, name))
    return out


def assert_unchanged(before: dict[str, tuple], after: dict[str, tuple], *intended: str | Path) -> None:
    """after equals before except for the intended paths."""
    skip = set(map(str, intended))
    b = {k: v for k, v in before.items() if k not in skip}
    a = {k: v for k, v in after.items() if k not in skip}
    assert set(a) == set(b), f"appeared {sorted(set(a) - set(b))}, vanished {sorted(set(b) - set(a))}"
    changed = sorted(k for k in b if a[k] != b[k])
    assert not changed, f"changed: {[(k, b[k], a[k]) for k in changed]}"


class Work:
    """A private work tree: victim/ (what an attacker aims at) and out/ (where ocishim writes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.victim = root / "victim"
        self.victim.mkdir(mode=0o700)
        self.secret = self.victim / "secret"
        self.secret.write_bytes(b"root only\n")
        self.secret.chmod(0o600)
        (self.victim / "other").write_bytes(b"another file\n")
        self.out = root / "out"
        self.out.mkdir(mode=0o755)
        (self.out / "neighbour").write_bytes(b"next to the target\n")
        # ocishim-runtime as containerd runs it: an executable (it knows itself by argv[0]).
        self.wrapper = root / "ocishim-runtime"
        self.wrapper.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                                "from ocishim.runtime import main\nsys.exit(main())\n")
        self.wrapper.chmod(0o755)

    def guards(self) -> dict[str, tuple]:
        return snapshot(self.root, *SYSTEM_GUARDS)


@pytest.fixture
def work() -> Iterator[Work]:
    root = Path(tempfile.mkdtemp(prefix="ocishim-files-"))
    try:
        yield Work(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ocishim(*args: object, env: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
            stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """`python -m ocishim ARGS`, as a user runs it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_")}
    full_env.update(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([*prefix, sys.executable, "-m", "ocishim", *map(str, args)],
                          input=stdin, capture_output=True, env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def expected_bpf() -> bytes:
    """The filter as printed on stdout: the bytes every -o target must receive."""
    proc = ocishim("patch", DOCKER, "--format", "bpf")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) >= 8 * 100 and len(proc.stdout) % 8 == 0
    return proc.stdout


def temporaries(directory: Path, target: str) -> list[str]:
    return sorted(p.name for p in directory.glob(TEMP_GLOB.format(target)))


def random_temp_name(target: str) -> str:
    return f".{target}.ocishim-{secrets.token_hex(6)}"


# ---------------------------------------------------------------- symlinks at temp names

def test_symlinks_planted_at_temporary_names_are_not_followed(work: Work, expected_bpf: bytes) -> None:
    """An attacker-owned directory full of symlinks at the names a writer might use,
    among them the old fixed name `.out.bpf.ocishim-<pid>` for the pids a PID namespace
    hands out first, all pointing at a root-only file."""
    os.chown(work.out, NOBODY, NOBODY)
    target = work.out / "out.bpf"
    planted = [f".out.bpf.ocishim-{pid}" for pid in range(1, 65)]
    planted += [random_temp_name("out.bpf") for _ in range(64)]
    for name in planted:
        os.symlink(work.secret, work.out / name)
        os.lchown(work.out / name, NOBODY, NOBODY)
    before = work.guards()
    # In a new PID namespace ocishim is pid 1 or 2: exactly the planted old names.
    proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", target,
                   prefix=("unshare", "--pid", "--fork"))
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == expected_bpf
    st = os.lstat(target)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == 0
    assert_unchanged(before, work.guards(), target)
    assert sorted(temporaries(work.out, "out.bpf")) == sorted(planted)  # symlinks left alone


def test_temp_swapped_for_a_symlink_during_the_write_never_redirects(work: Work) -> None:
    """The race of issue 8: an attacker replaces the temporary file with a symlink to a
    root-only file while it is written. The old writer then chmod'ed that file by path."""
    from ocishim.files import write_atomically

    os.chown(work.out, NOBODY, NOBODY)
    target = work.out / "config.json"
    data = b"x" * (8 * 1024 * 1024)  # a long write: a wide window for the attacker
    stop = threading.Event()
    hits: list[str] = []

    def attacker() -> None:
        n = 0
        while not stop.is_set():
            for entry in os.scandir(work.out):
                if entry.name.startswith(".config.json.ocishim-") and not entry.is_symlink():
                    n += 1
                    link = work.out / f"attacker-{n}"
                    os.symlink(work.secret, link)
                    try:
                        os.rename(link, work.out / entry.name)
                        hits.append(entry.name)
                    except FileNotFoundError:
                        os.unlink(link)

    thread = threading.Thread(target=attacker, daemon=True)
    before = snapshot(work.victim, *SYSTEM_GUARDS)
    thread.start()
    try:
        for _ in range(20):
            try:
                write_atomically(str(target), data)
            except FileNotFoundError:
                pass  # the attacker renamed our temporary away: a refusal, not a redirection
            if target.is_symlink():  # the attacker's link was renamed into place: its own dir
                target.unlink()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert hits, "the attacker never caught a temporary file: the test proves nothing"
    assert_unchanged(before, snapshot(work.victim, *SYSTEM_GUARDS))


# ---------------------------------------------------------------- the target itself

def test_symlinked_target_is_refused(work: Work) -> None:
    target = work.out / "out.bpf"
    os.symlink(work.secret, target)
    before = work.guards()
    proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", target)
    assert proc.returncode == 2
    assert str(target) in proc.stderr.decode() and "symbolic link" in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    assert_unchanged(before, work.guards())


@pytest.mark.parametrize("kind", ["directory", "socket"])
def test_directory_or_socket_target_is_refused(work: Work, kind: str) -> None:
    target = work.out / "out.bpf"
    sock = None
    if kind == "directory":
        target.mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(target))
    try:
        before = work.guards()
        proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", target)
        assert proc.returncode == 2, proc.stderr
        assert str(target) in proc.stderr.decode() and kind in proc.stderr.decode()
        assert_unchanged(before, work.guards())
    finally:
        if sock is not None:
            sock.close()


def test_existing_mode_kept_set_id_bits_dropped(work: Work, expected_bpf: bytes) -> None:
    target = work.out / "out.bpf"
    target.write_bytes(b"old")
    target.chmod(0o6750)
    before = work.guards()
    assert ocishim("patch", DOCKER, "--format", "bpf", "-o", target).returncode == 0
    st = os.lstat(target)
    assert stat.S_IMODE(st.st_mode) == 0o750 and target.read_bytes() == expected_bpf
    assert_unchanged(before, work.guards(), target)


def test_fifo_target_is_written_into(work: Work, expected_bpf: bytes) -> None:
    target = work.out / "filter.fifo"
    os.mkfifo(target, 0o600)
    assert len(expected_bpf) < 65536  # fits the pipe buffer: read once the writer is done
    before = work.guards()
    reader = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
    try:
        proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", target)
        assert proc.returncode == 0, proc.stderr
        got = b""
        while chunk := os.read(reader, 65536):
            got += chunk
    finally:
        os.close(reader)
    assert got == expected_bpf
    assert_unchanged(before, work.guards())  # still the same FIFO; no temporary left


def test_fifo_without_reader_fails_at_once(work: Work) -> None:
    target = work.out / "filter.fifo"
    os.mkfifo(target, 0o600)
    before = work.guards()
    started = time.monotonic()
    proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", target, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 1
    assert str(target) in proc.stderr.decode() and "no reader" in proc.stderr.decode()
    assert_unchanged(before, work.guards())


def test_dev_null_is_written_into_not_replaced(work: Work) -> None:
    """A character device is written into, not replaced. The device is a null device
    made for the test (mknod 1,3) in the test's own directory: a regression must not
    replace the machine's /dev/null, which every later process writes into."""
    before = work.guards()
    devdir = work.root / "dev"
    devdir.mkdir()
    null = devdir / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", str(null))
    assert proc.returncode == 0, proc.stderr
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert sorted(os.listdir(devdir)) == ["null"]  # no temporary beside it
    after = {k: v for k, v in work.guards().items() if not str(k).startswith(str(devdir))}
    assert_unchanged(before, after)


def test_dev_stdout_means_stdout(work: Work, expected_bpf: bytes) -> None:
    before = work.guards()
    proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected_bpf
    assert_unchanged(before, work.guards())


# ---------------------------------------------------------------- stale temporaries

def test_stale_temporaries_removed_others_left(work: Work, expected_bpf: bytes) -> None:
    target = work.out / "out.bpf"
    target.write_bytes(b"old")
    stale = [".out.bpf.ocishim-4242", ".out.bpf.ocishim-1", random_temp_name("out.bpf")]
    for name in stale:
        (work.out / name).write_bytes(b"half a fil")
    foreign = random_temp_name("out.bpf")  # another user's file with our name: not ours
    (work.out / foreign).write_bytes(b"theirs")
    os.chown(work.out / foreign, NOBODY, NOBODY)
    link = random_temp_name("out.bpf")  # a symlink with our name: never followed
    os.symlink(work.secret, work.out / link)
    directory = random_temp_name("out.bpf")
    (work.out / directory).mkdir()
    locked = random_temp_name("out.bpf")  # a live writer holds it
    (work.out / locked).write_bytes(b"being written")
    kept = [foreign, link, directory, locked, ".out.bpf.ocishim-notours", ".other.ocishim-4242",
            ".out.bpf.ocishim-0123456789abc"]
    for name in kept[4:]:
        (work.out / name).write_bytes(b"not a temporary of out.bpf")
    before = work.guards()
    holder = os.open(work.out / locked, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", target)
    finally:
        os.close(holder)
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == expected_bpf
    for name in stale:
        assert not (work.out / name).exists()
    assert_unchanged(before, work.guards(), target, *(str(work.out / n) for n in stale))


def test_old_fixed_temporary_no_longer_blocks_in_a_pid_namespace(work: Work, expected_bpf: bytes) -> None:
    """Issue 8: `.NAME.ocishim-PID` left by a kill made every later run in a PID
    namespace (same pid again) fail with "File exists"."""
    target = work.out / "out.bpf"
    for pid in (1, 2):
        (work.out / f".out.bpf.ocishim-{pid}").write_bytes(b"left by a SIGKILL")
    before = work.guards()
    for _ in range(2):
        proc = ocishim("patch", DOCKER, "--format", "bpf", "-o", target,
                       prefix=("unshare", "--pid", "--fork"))
        assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == expected_bpf
    assert temporaries(work.out, "out.bpf") == []
    assert_unchanged(before, work.guards(), target, work.out / ".out.bpf.ocishim-1",
                     work.out / ".out.bpf.ocishim-2")


# ---------------------------------------------------------------- the wrapper's config.json

def run_wrapper(work: Work, bundle: Path, log: Path, settings: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_") and k != "PYTHONPATH"}
    env["OCISHIM_RUNTIME"] = "/bin/true"
    env["OCISHIM_CONFIG"] = str(settings or work.root / "no-settings.json")
    if settings is not None:
        del env["OCISHIM_RUNTIME"]  # the settings name the runtime
    return subprocess.run([str(work.wrapper), "--log", str(log), "--log-format", "json",
                           "create", "--bundle", str(bundle), "ocishim-files-test"],
                          capture_output=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def error_lines(log: Path) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line for line in lines if line["level"] == "error"]


def test_wrapper_refuses_a_symlinked_config_json(work: Work) -> None:
    bundle = work.root / "bundle"
    bundle.mkdir()
    real = work.victim / "config.json"
    real.write_text(json.dumps(CONFIG))
    os.symlink(real, bundle / "config.json")
    log = work.root / "log.json"
    log.write_text("")
    before = work.guards()
    proc = run_wrapper(work, bundle, log)
    assert proc.returncode == 1 and proc.stdout == b"" and proc.stderr == b""
    [line] = error_lines(log)
    assert str(bundle / "config.json") in line["msg"] and "symbolic link" in line["msg"]
    assert_unchanged(before, work.guards(), log)
    # Control: the same config as a regular file is patched and the runtime runs.
    os.unlink(bundle / "config.json")
    shutil.copy(real, bundle / "config.json")
    log.write_text("")
    proc = run_wrapper(work, bundle, log)
    assert proc.returncode == 0, log.read_text()
    assert "run.oci.seccomp_bpf_data" in json.loads((bundle / "config.json").read_text())["annotations"]


def test_wrapper_refuses_a_fifo_config_json(work: Work) -> None:
    """Bytes pushed into a FIFO would not be what the runtime reads next: refused."""
    bundle = work.root / "bundle"
    bundle.mkdir()
    fifo = bundle / "config.json"
    os.mkfifo(fifo, 0o644)
    log = work.root / "log.json"
    log.write_text("")
    before = work.guards()
    fed = threading.Event()

    def feed() -> None:  # the one writer the wrapper's read waits for
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO
                time.sleep(0.01)
                continue
            fcntl.fcntl(fd, fcntl.F_SETFL, 0)
            os.write(fd, json.dumps(CONFIG).encode())
            os.close(fd)
            fed.set()
            return

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    proc = run_wrapper(work, bundle, log)
    thread.join(timeout=70)
    assert fed.is_set()
    assert proc.returncode == 1 and proc.stdout == b"" and proc.stderr == b""
    [line] = error_lines(log)
    assert str(fifo) in line["msg"] and "FIFO" in line["msg"]
    assert_unchanged(before, work.guards(), log)


# ---------------------------------------------------------------- settings files

def _settings_case(work: Work, case: str) -> Path:
    """A settings file whose `runtime` would leave a marker if root ever ran it."""
    marker = work.root / "runtime-ran"
    runtime = work.victim / "evil-runtime"
    runtime.write_text(f"#!/bin/sh\ntouch {marker}\n")
    runtime.chmod(0o755)
    body = json.dumps({"runtime": str(runtime), "log": str(work.root / "settings.log")})
    etc = work.root / "etc"
    etc.mkdir(mode=0o755)
    path = etc / "config.json"
    path.write_text(body)
    path.chmod(0o644)
    if case == "owned by nobody":
        os.chown(path, NOBODY, NOBODY)
    elif case == "writable by all":
        path.chmod(0o666)
    elif case == "writable by group":
        path.chmod(0o664)
    elif case == "directory writable by all":
        etc.chmod(0o777)
    elif case == "directory owned by nobody":
        os.chown(etc, NOBODY, NOBODY)
    elif case == "symlink into a user's directory":
        home = work.root / "home"
        home.mkdir(mode=0o755)
        os.chown(home, NOBODY, NOBODY)
        path.rename(home / "config.json")
        os.symlink(home / "config.json", path)
    else:
        assert case == "root's, 0644, root directories", case
    return path


SETTINGS_REFUSED = ["owned by nobody", "writable by all", "writable by group",
                    "directory writable by all", "directory owned by nobody",
                    "symlink into a user's directory"]


@pytest.mark.parametrize("case", SETTINGS_REFUSED)
def test_untrusted_settings_refused_by_the_hook(work: Work, case: str) -> None:
    path = _settings_case(work, case)
    before = work.guards()
    proc = ocishim("hook", "precreate", env={"OCISHIM_CONFIG": str(path)},
                   stdin=json.dumps(CONFIG).encode())
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert proc.stdout == b"" and "Traceback" not in err
    assert str(path) in err and "refusing" in err
    assert_unchanged(before, work.guards())


@pytest.mark.parametrize("case", SETTINGS_REFUSED)
def test_untrusted_settings_runtime_never_executed_by_the_wrapper(work: Work, case: str) -> None:
    path = _settings_case(work, case)
    bundle = work.root / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(CONFIG))
    log = work.root / "log.json"
    log.write_text("")
    before = work.guards()
    proc = run_wrapper(work, bundle, log, settings=path)
    assert proc.returncode == 1 and proc.stdout == b"" and proc.stderr == b""
    assert any(str(path) in line["msg"] and "refusing" in line["msg"] for line in error_lines(log))
    assert not (work.root / "runtime-ran").exists()
    assert_unchanged(before, work.guards(), log)


def test_trusted_settings_accepted(work: Work) -> None:
    """Control for the refusals: the same file, root's and 0644 in root's 0755 directory,
    works (and the path to it passes through /tmp, root's sticky directory)."""
    path = _settings_case(work, "root's, 0644, root directories")
    proc = ocishim("hook", "precreate", env={"OCISHIM_CONFIG": str(path)},
                   stdin=json.dumps(CONFIG).encode())
    assert proc.returncode == 0, proc.stderr
    assert "run.oci.seccomp_bpf_data" in json.loads(proc.stdout)["annotations"]
    bundle = work.root / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(CONFIG))
    log = work.root / "log.json"
    log.write_text("")
    assert run_wrapper(work, bundle, log, settings=path).returncode == 0, log.read_text()
    assert (work.root / "runtime-ran").exists()  # the settings' runtime is the one exec'd


# ---------------------------------------------------------------- a full disk

FULL_DISK_DRIVER = r"""
import json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from test_files_hostile import snapshot
disk, wrapper, log, profile, config = sys.argv[2:7]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "none", disk], check=True)
with open(os.path.join(disk, "out.bpf"), "wb") as f:
    f.write(b"the old filter\n")
os.chmod(os.path.join(disk, "out.bpf"), 0o640)
os.mkdir(os.path.join(disk, "bundle"))
with open(os.path.join(disk, "bundle", "config.json"), "w") as f:
    f.write(config)
fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
full = False
while not full:
    try:
        os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28, exc
        full = True
os.close(fd)
before = snapshot(disk)
env = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_")}
env.update(PYTHONPATH=os.path.dirname(sys.argv[1]), OCISHIM_RUNTIME="/bin/true",
           OCISHIM_CONFIG="/nonexistent/ocishim.json")
cli = subprocess.run([sys.executable, "-m", "ocishim", "patch", profile, "--format", "bpf",
                      "-o", os.path.join(disk, "out.bpf")], capture_output=True, env=env)
wrap = subprocess.run([wrapper, "--log", log, "--log-format", "json", "create", "--bundle",
                       os.path.join(disk, "bundle"), "ocishim-full-disk"],
                      capture_output=True, env=env, stdin=subprocess.DEVNULL)
after = snapshot(disk)
print(json.dumps({"cli": [cli.returncode, cli.stdout.decode(), cli.stderr.decode()],
                  "wrapper": [wrap.returncode, wrap.stdout.decode(), wrap.stderr.decode()],
                  "before": sorted(before.items()), "after": sorted(after.items())}))
"""


def test_full_disk_fails_cleanly(work: Work) -> None:
    """A tmpfs of 256 KiB filled up (in a private mount namespace, gone with it):
    exit 1 with a message, the old files intact, no temporary left."""
    disk = work.root / "disk"
    disk.mkdir()
    log = work.root / "log.json"
    log.write_text("")
    before = work.guards()
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                           FULL_DISK_DRIVER, str(Path(__file__).parent), str(disk),
                           str(work.wrapper), str(log), str(DOCKER), json.dumps(CONFIG)],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    rc, out, err = result["cli"]
    assert rc == 1 and out == "" and "Traceback" not in err
    assert f"{disk}/out.bpf" in err and "No space left on device" in err
    rc, out, err = result["wrapper"]
    assert (rc, out, err) == (1, "", "")
    [line] = error_lines(log)
    assert f"{disk}/bundle/config.json" in line["msg"] and "No space left on device" in line["msg"]
    # Inside the full disk: every file as it was (old out.bpf, old config.json, no temporary).
    assert sorted(p for p, _ in result["before"]) == [
        str(disk), f"{disk}/bundle", f"{disk}/bundle/config.json", f"{disk}/filler", f"{disk}/out.bpf"]
    assert result["after"] == result["before"]
    assert_unchanged(before, work.guards(), log)
