"""Issue 8: `ocishim exec` never waits on itself when a profile says SCMP_ACT_NOTIFY.

After seccomp(2) returns, the loader still makes a few syscalls of its own (hand the
listener fd to listenerPath, close, execve, and report a failed execve). A NOTIFY on
one of them would make the process wait for an answer to its own call: forever while
it still holds the listener fd. Acceptance: such a profile gives a clear error (exit
2, naming the rule) within 5 seconds, never a hang; NOTIFY elsewhere works as before.

Oracles, none of them ocishim's output:
- the list of post-load syscalls is written out below from the contract, and checked
  against what the kernel reports through strace for every path (listener or not,
  execve failing or not, --rootfs);
- NOTIFY on a syscall the loader does not make is answered by a real agent in this
  test (SECCOMP_IOCTL_NOTIF_RECV/SEND on the fd it receives), and the command sees the
  agent's answer;
- syscall numbers come from the shared table, not from ocishim's copy of it.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from . import bundles
from .conftest import PROFILES, REPO, run_ocishim, shared_table_x86_64

pytestmark = pytest.mark.kernel

# The contract, written out again: what the loader calls after the filter is in place.
WITH_LISTENER = ("sendmsg", "close", "setitimer", "execve", "write", "exit_group")
WITHOUT_LISTENER = ("execve", "write", "exit_group")
DEADLINE = 5.0  # seconds, from the acceptance

# linux/seccomp.h: _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp).
NOTIF_SIZE, RESP_SIZE = 80, 24
IOCTL_NOTIF_RECV = (3 << 30) | (NOTIF_SIZE << 16) | (ord("!") << 8) | 0
IOCTL_NOTIF_SEND = (3 << 30) | (RESP_SIZE << 16) | (ord("!") << 8) | 1
NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, then seccomp_data: nr, arch, ip, args
RESP = struct.Struct("=QqiI")  # id, val, error, flags
assert NOTIF.size == NOTIF_SIZE and RESP.size == RESP_SIZE


@pytest.fixture(autouse=True)
def _needs_x86_64_root() -> None:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"the expectations are x86_64 Linux facts, not {platform.system()} {platform.machine()}")
    if not Path("/proc/sys/kernel/seccomp/actions_avail").exists():
        pytest.skip("the kernel has no seccomp filter support (CONFIG_SECCOMP_FILTER)")
    if "user_notif" not in Path("/proc/sys/kernel/seccomp/actions_avail").read_text().split():
        pytest.skip("the kernel has no SECCOMP_RET_USER_NOTIF (Linux < 5.0)")


# --- a real agent -----------------------------------------------------------------------

@dataclass
class Agent:
    """A seccomp agent on a unix socket: takes the listener fd, answers each notification
    with ERRNO(errno_answer), or never answers when errno_answer is None."""

    path: str
    errno_answer: int | None = errno.EPERM
    states: list[dict] = field(default_factory=list)
    notifications: list[tuple[int, int, int]] = field(default_factory=list)  # (pid, nr, arch)
    connections: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(8)
        self._stop = threading.Event()
        self._fds: list[int] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                ready = select.select([self._server, *self._fds], [], [], 0.1)[0]
                for item in ready:
                    if item is self._server:
                        self._accept()
                    else:
                        self._answer(item)
        except Exception as exc:  # reported by close(), so a broken agent fails the test
            self.errors.append(repr(exc))

    def _accept(self) -> None:
        conn, _ = self._server.accept()
        self.connections += 1
        with conn:
            conn.settimeout(30)
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
        self._fds.extend(fds)
        if msg:  # empty: the process ended before sending (see the watchdog test)
            self.states.append(json.loads(msg))

    def _answer(self, fd: int) -> None:
        import fcntl

        if self.errno_answer is None:
            return
        buf = bytearray(NOTIF_SIZE)
        try:
            fcntl.ioctl(fd, IOCTL_NOTIF_RECV, buf, True)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # the target died before we read it
                return
            raise
        nid, pid, _, nr, arch, *_ = NOTIF.unpack(buf)
        self.notifications.append((pid, nr, arch))
        resp = bytearray(RESP.pack(nid, 0, -self.errno_answer, 0))
        try:
            fcntl.ioctl(fd, IOCTL_NOTIF_SEND, resp, True)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()
        for fd in self._fds:
            os.close(fd)
        assert not self._thread.is_alive(), "the agent thread did not stop"
        assert not self.errors, self.errors


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    # Short: a unix socket path has at most 107 bytes, pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="ocishim-agent-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(agent_dir: Path) -> Iterator[Agent]:
    a = Agent(str(agent_dir / "agent.sock"))
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def silent_agent(agent_dir: Path) -> Iterator[Agent]:
    a = Agent(str(agent_dir / "silent.sock"), errno_answer=None)
    try:
        yield a
    finally:
        a.close()


# --- profiles ------------------------------------------------------------------------

def _docker_with_notify(names: list[str], listener: str | None, args: list[dict] | None = None) -> dict:
    """Docker's default profile with `names` moved from its rules to one NOTIFY rule, last."""
    profile = json.loads((PROFILES / "docker-default.json").read_text())
    for rule in profile["syscalls"]:
        if "names" in rule:
            rule["names"] = [n for n in rule["names"] if n not in names]
    profile["syscalls"] = [r for r in profile["syscalls"] if r.get("names") or r.get("name")]
    rule: dict = {"names": names, "action": "SCMP_ACT_NOTIFY"}
    if args:
        rule["args"] = args
    profile["syscalls"].append(rule)
    if listener is not None:
        profile["listenerPath"] = listener
    return profile


def _write(directory: Path, profile: dict) -> Path:
    path = directory / "profile.json"
    path.write_text(json.dumps(profile))
    return path


def _refused(proc: subprocess.CompletedProcess[str], where: str, name: str) -> None:
    """Exit 2 with one message naming the rule's JSON path and the syscall; CMD never ran."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert f"{where}: NOTIFY on {name} " in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert proc.stdout == "", proc.stdout


def _exec(args: list[str]) -> subprocess.CompletedProcess[str]:
    """ocishim exec, with the acceptance deadline: a hang raises TimeoutExpired (a failure)."""
    start = time.monotonic()
    proc = run_ocishim(["exec", *args], timeout=DEADLINE)
    assert time.monotonic() - start < DEADLINE
    return proc


@pytest.fixture(scope="module")
def busybox_root() -> Iterator[Path]:
    if not bundles.busybox_is_static():
        pytest.skip("/bin/busybox is missing or not static (make test installs busybox-static)")
    if os.geteuid() != 0:
        pytest.skip("ocishim exec --rootfs chroots: needs root")
    root = Path(tempfile.mkdtemp(prefix="ocishim-exec-root-"))
    try:
        yield bundles.busybox_rootfs(root / "rootfs")
    finally:
        shutil.rmtree(root, ignore_errors=True)


ECHO = ["/bin/sh", "-c", "echo ran"]


# --- 1. NOTIFY on each post-load syscall: refused, quickly -----------------------------

@pytest.mark.parametrize("name", WITH_LISTENER)
def test_notify_on_post_load_syscall_with_listener(name, agent, agent_dir, profiles_dir):
    index = len(_docker_with_notify([name], agent.path)["syscalls"]) - 1
    profile = _write(agent_dir, _docker_with_notify([name], agent.path))
    proc = _exec([str(profile), "--", *ECHO])
    _refused(proc, f"syscalls[{index}].names[0]", name)
    # Refused before anything was loaded or sent.
    assert agent.connections == 0


@pytest.mark.parametrize("name", WITH_LISTENER)
def test_notify_on_post_load_syscall_with_rootfs(name, agent, agent_dir, busybox_root, profiles_dir):
    index = len(_docker_with_notify([name], agent.path)["syscalls"]) - 1
    profile = _write(agent_dir, _docker_with_notify([name], agent.path))
    proc = _exec(["--rootfs", str(busybox_root), str(profile), "--", *ECHO])
    _refused(proc, f"syscalls[{index}].names[0]", name)
    assert agent.connections == 0


@pytest.mark.parametrize("name", WITHOUT_LISTENER)
def test_notify_on_post_load_syscall_without_listener(name, agent_dir, profiles_dir):
    profile_json = _docker_with_notify([name], None)
    profile = _write(agent_dir, profile_json)
    proc = _exec([str(profile), "--", *ECHO])
    _refused(proc, f"syscalls[{len(profile_json['syscalls']) - 1}].names[0]", name)


def test_notify_for_some_arguments_is_refused(agent, agent_dir, profiles_dir):
    """write(2, ...) only: the loader writes its error report to fd 2."""
    profile_json = _docker_with_notify(["write"], agent.path,
                                       [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}])
    proc = _exec([str(_write(agent_dir, profile_json)), "--", *ECHO])
    _refused(proc, f"syscalls[{len(profile_json['syscalls']) - 1}].names[0]", "write")
    assert "for some arguments" in proc.stderr


def test_notify_default_action_is_refused(agent, agent_dir):
    """No rule names the syscall: the message points at defaultAction, in a config.json."""
    config = {"ociVersion": "1.0.2", "process": {"args": ["/bin/true"], "cwd": "/"},
              "root": {"path": "rootfs"},
              "linux": {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": agent.path,
                                    "architectures": ["SCMP_ARCH_X86_64"],
                                    "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}}}
    path = agent_dir / "config.json"
    path.write_text(json.dumps(config))
    # --enosys off: no stub, so the default answers every post-load call NOTIFY.
    proc = _exec(["--enosys", "off", str(path), "--", *ECHO])
    _refused(proc, "linux.seccomp.defaultAction", "sendmsg")
    # With the stub (the default mode), unnamed syscalls get ENOSYS instead: the handoff
    # could not happen either, and that is refused as clearly.
    proc = _exec([str(path), "--", *ECHO])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("ocishim: linux.seccomp.defaultAction: the filter answers "
                                  "ERRNO(ENOSYS) to sendmsg "), proc.stderr
    assert agent.connections == 0


@pytest.mark.parametrize("name", WITH_LISTENER[:3])
def test_denied_handoff_call_is_refused(name, agent, agent_dir, profiles_dir):
    """The listener handoff needs sendmsg, close and setitimer to work: a profile that
    denies one would leave the process filtered, holding the fd, unable to report."""
    profile_json = _docker_with_notify(["mkdir"], agent.path)
    for rule in profile_json["syscalls"]:
        if "names" in rule:
            rule["names"] = [n for n in rule["names"] if n != name]
    profile_json["syscalls"] = [r for r in profile_json["syscalls"] if r.get("names")]
    profile_json["syscalls"].append({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})
    proc = _exec([str(_write(agent_dir, profile_json)), "--", *ECHO])
    assert proc.returncode == 2, proc.stderr
    where = f"syscalls[{len(profile_json['syscalls']) - 1}].names[0]"
    assert proc.stderr.startswith(f"ocishim: {where}: the filter answers ERRNO(EACCES) to {name} "), proc.stderr
    assert proc.stdout == "" and agent.connections == 0


def test_alias_name_points_at_its_rule(agent, agent_dir):
    """A rule on a second name in a config.json: the path names that entry."""
    config = {"ociVersion": "1.0.2", "process": {"args": ["/bin/true"], "cwd": "/"},
              "root": {"path": "rootfs"},
              "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.path,
                                    "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_LOG"},
                                                 {"names": ["mkdir", "close"],
                                                  "action": "SCMP_ACT_NOTIFY"}]}}}
    path = agent_dir / "config.json"
    path.write_text(json.dumps(config))
    _refused(_exec([str(path), "--", *ECHO]), "linux.seccomp.syscalls[1].names[1]", "close")


# --- 2. NOTIFY elsewhere works as before ------------------------------------------------

def test_notify_on_mkdir_reaches_the_agent(agent, agent_dir, profiles_dir):
    table = shared_table_x86_64()
    target = agent_dir / "made-by-mkdir"
    profile = _write(agent_dir, _docker_with_notify(["mkdir", "mkdirat"], agent.path))
    proc = _exec([str(profile), "--", "/bin/mkdir", str(target)])
    # The agent answered ERRNO(EPERM): mkdir reports it, and nothing was made.
    assert proc.returncode == 1, proc.stderr
    assert "Operation not permitted" in proc.stderr, proc.stderr
    assert not target.exists()
    assert agent.connections == 1
    (state,) = agent.states
    assert state["fds"] == ["seccompFd"]
    # The process ocishim handed over is the one that called mkdir: execve keeps the pid.
    assert [pid for pid, _, _ in agent.notifications] == [state["pid"]]
    audit_x86_64 = 0xC000003E
    assert [(nr, arch) for _, nr, arch in agent.notifications] in (
        [(table["mkdir"][1], audit_x86_64)], [(table["mkdirat"][1], audit_x86_64)])


def test_notify_on_mkdir_with_rootfs(agent, agent_dir, busybox_root, profiles_dir):
    """listenerPath is a host path, as with runc: the socket is outside the rootfs."""
    profile = _write(agent_dir, _docker_with_notify(["mkdir", "mkdirat"], agent.path))
    proc = _exec(["--rootfs", str(busybox_root), str(profile), "--", "/bin/busybox", "mkdir", "/made"])
    assert proc.returncode == 1, proc.stderr
    assert "Operation not permitted" in proc.stderr, proc.stderr
    assert not (busybox_root / "made").exists()
    assert len(agent.notifications) == 1 and agent.connections == 1


def test_missing_listener_socket_is_a_clear_error(agent_dir, profiles_dir):
    missing = agent_dir / "nobody.sock"
    profile = _write(agent_dir, _docker_with_notify(["mkdir"], str(missing)))
    proc = _exec([str(profile), "--", *ECHO])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (f"ocishim: listenerPath: cannot connect to {missing}: "
                                   "No such file or directory"), proc.stderr
    assert proc.stdout == ""


def test_agent_that_never_reads_does_not_block_the_handoff(silent_agent, agent_dir, profiles_dir):
    """The agent takes the fd and never answers; nothing the loader does waits on it."""
    profile = _write(agent_dir, _docker_with_notify(["mkdir"], silent_agent.path))
    proc = _exec([str(profile), "--", *ECHO])
    assert (proc.returncode, proc.stdout) == (0, "ran\n"), proc.stderr


# --- 3. the list above is what the kernel sees ----------------------------------------

def _post_load_syscalls(args: list[str]) -> tuple[list[str], int]:
    """The syscalls of the loading process after seccomp(2) returned, up to the first
    successful execve (strace -f), and ocishim's exit code."""
    if shutil.which("strace") is None:
        pytest.skip("strace not found (make test installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "strace.log"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run(["strace", "-f", "-qq", "-o", str(log), sys.executable, "-m", "ocishim",
                               "exec", *args], env=env, capture_output=True, text=True, timeout=60)
        lines = log.read_text().splitlines()
    load = [i for i, line in enumerate(lines) if "seccomp(SECCOMP_SET_MODE_FILTER" in line and "{len=" in line]
    assert len(load) == 1, (proc.stderr, [lines[i] for i in load])
    assert "= -1" not in lines[load[0]], lines[load[0]]
    pid = lines[load[0]].split()[0]
    calls = []
    for line in lines[load[0] + 1:]:
        who, rest = line.split(None, 1)
        if who != pid:
            continue
        calls.append(rest.split("(", 1)[0])
        if rest.startswith("execve(") and "= -1" not in rest:
            break
    return calls, proc.returncode


@pytest.fixture
def not_executable(agent_dir: Path) -> Path:
    """An executable file the kernel cannot run (ENOEXEC): the execve failure path."""
    path = agent_dir / "garbage"
    path.write_bytes(b"\x00\x01 not a program\n")
    path.chmod(0o755)
    return path


def test_strace_with_listener(agent, agent_dir, profiles_dir):
    profile = _write(agent_dir, _docker_with_notify(["mkdir"], agent.path))
    calls, rc = _post_load_syscalls([str(profile), "--", "/bin/true"])
    assert rc == 0
    assert calls == ["sendmsg", "close", "close", "setitimer", "execve"], calls
    assert set(calls) <= set(WITH_LISTENER)


def test_strace_with_listener_and_rootfs(agent, agent_dir, busybox_root, profiles_dir):
    profile = _write(agent_dir, _docker_with_notify(["mkdir"], agent.path))
    calls, rc = _post_load_syscalls(["--rootfs", str(busybox_root), str(profile), "--", "/bin/true"])
    assert rc == 0
    assert calls == ["sendmsg", "close", "close", "setitimer", "execve"], calls


def test_strace_without_listener(agent_dir, profiles_dir):
    calls, rc = _post_load_syscalls([str(profiles_dir / "docker-default.json"), "--", "/bin/true"])
    assert rc == 0
    assert calls == ["execve"], calls


def test_strace_execve_failure_with_listener(agent, agent_dir, not_executable, profiles_dir):
    profile = _write(agent_dir, _docker_with_notify(["mkdir"], agent.path))
    calls, rc = _post_load_syscalls([str(profile), "--", str(not_executable)])
    assert rc == 1
    assert calls == ["sendmsg", "close", "close", "setitimer", "execve", "write", "exit_group"], calls
    assert set(calls) == set(WITH_LISTENER)


def test_strace_execve_failure_without_listener(agent_dir, not_executable, profiles_dir):
    calls, rc = _post_load_syscalls([str(profiles_dir / "docker-default.json"), "--", str(not_executable)])
    assert rc == 1
    assert calls == ["execve", "write", "exit_group"], calls
    assert set(calls) == set(WITHOUT_LISTENER)


def test_execve_failure_message(agent_dir, not_executable, profiles_dir):
    proc = _exec([str(profiles_dir / "docker-default.json"), "--", str(not_executable)])
    assert proc.returncode == 1
    assert proc.stderr == f"ocishim: {not_executable}: execve failed: Exec format error\n"


# --- 4. the watchdog, for what the check could not foresee ---------------------------

WATCHDOG_CHILD = """
import sys
from ocishim import load
from ocishim.patch import patch_profile
from ocishim.profile import load as load_profile

load.post_load_calls = lambda listener: ()  # pretend the check knew nothing
profile = load_profile(sys.argv[1]).profile
program = patch_profile(profile).program
load.exec_filtered(program, load.FLAG_NEW_LISTENER, ["/bin/true"],
                   listener=load.Listener(profile.listener_path))
"""


@pytest.mark.parametrize("name", ["sendmsg", "close"])
def test_watchdog_ends_a_process_waiting_on_itself(name, silent_agent, agent_dir, profiles_dir):
    """NOTIFY on sendmsg (before the fd has left) or close (after), with the check
    bypassed and an agent that never answers: SIGALRM ends it, it does not hang."""
    profile = _write(agent_dir, _docker_with_notify([name], silent_agent.path))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", WATCHDOG_CHILD, str(profile)], env=env,
                          capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - start
    assert proc.returncode == -signal.SIGALRM, (proc.returncode, proc.stderr)
    # It did wait (so the NOTIFY was hit), and no longer than the watchdog allows.
    assert 4.5 < elapsed < 15, elapsed
    # connect comes before the load; the fd arrives only when sendmsg went through.
    assert silent_agent.connections == 1
    assert len(silent_agent.states) == (1 if name == "close" else 0)
