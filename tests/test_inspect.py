"""read_filters against filters a child process loads itself with seccomp(2).

The expected programs are written out here as (code, jt, jf, k) tuples and loaded by
the child with its own ctypes calls, so the oracle is the kernel handing back what the
test gave it, not ocishim's encoder. Each filter answers ALLOW to everything but one
number no kernel has (0xdead0 and up), so the child runs normally under them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ocishim.bpf.insn import Insn
from ocishim.errors import OcishimError, SystemFailure, UsageError
from ocishim.inspect import read_filters

RET_ALLOW = 0x7FFF0000
FIRST = ((0x20, 0, 0, 0), (0x15, 0, 1, 0xDEAD0), (0x06, 0, 0, 0x50001), (0x06, 0, 0, RET_ALLOW))
SECOND = ((0x20, 0, 0, 4), (0x20, 0, 0, 0), (0x15, 0, 1, 0xDEAD1), (0x06, 0, 0, 0x50002),
          (0x15, 0, 1, 0xDEAD2), (0x06, 0, 0, 0x50003), (0x06, 0, 0, RET_ALLOW))

# The child: load the given filters, say "ready", wait for "go", then show that it was
# left alone (not traced, not stopped, no signal) and can still use ptrace itself:
# a grandchild asks to be traced and stops, and the child sees it stop as its tracee.
CHILD = textwrap.dedent(r"""
    import ctypes, os, signal, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    got_signals = []
    for s in (signal.SIGCONT, signal.SIGTRAP, signal.SIGCHLD, signal.SIGUSR1):
        signal.signal(s, lambda n, f: got_signals.append(n))
    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    assert libc.prctl(38, 1, 0, 0, 0) == 0
    keep = []
    for prog in eval(sys.argv[1]):
        raw = b"".join(struct.pack("=HBBI", *i) for i in prog)
        buf = ctypes.create_string_buffer(raw, len(raw))
        keep.append(buf)
        fp = Fprog(len(prog), ctypes.addressof(buf))
        assert libc.syscall(317, 1, 0, ctypes.byref(fp)) == 0, ctypes.get_errno()
    print("ready", flush=True)
    assert sys.stdin.readline() == "go\n"
    tracer = [l.split()[1] for l in open("/proc/self/status") if l.startswith("TracerPid:")][0]
    pid = os.fork()
    if pid == 0:
        libc.ptrace(0, 0, None, None)          # PTRACE_TRACEME
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(7)
    _, status = os.waitpid(pid, os.WUNTRACED)
    stopped = os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
    tracee_of_me = [l.split()[1] for l in open(f"/proc/{pid}/status")
                    if l.startswith("TracerPid:")][0] == str(os.getpid())
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    got_signals = [s for s in got_signals if s != signal.SIGCHLD]
    print(f"tracer={tracer} signals={got_signals} traced-child={stopped and tracee_of_me}", flush=True)
""")


def _insns(prog) -> tuple[Insn, ...]:
    return tuple(Insn(*i) for i in prog)


def _start(filters) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", CHILD, repr(filters)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([child.stdout], [], [], 20)
    assert ready and child.stdout.readline() == "ready\n"
    return child


def _finish(child: subprocess.Popen) -> str:
    child.stdin.write("go\n")
    child.stdin.flush()
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 0
    return out.strip()


@pytest.fixture
def children():
    started: list[subprocess.Popen] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
            child.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_reads_back_each_filter_first_loaded_first_and_leaves_the_child_unharmed(children):
    child = _start([FIRST, SECOND])
    children.append(child)
    filters = read_filters(child.pid)
    assert filters == [_insns(FIRST), _insns(SECOND)]
    assert _state(child.pid) in "SR"  # running or sleeping on stdin, not stopped (T/t)
    # Twice in a row gives the same, so the first left nothing attached.
    assert read_filters(child.pid) == filters
    assert _finish(child) == "tracer=0 signals=[] traced-child=True"


def test_a_process_without_a_filter_has_none(children):
    child = _start([])
    children.append(child)
    assert read_filters(child.pid) == []
    assert _finish(child) == "tracer=0 signals=[] traced-child=True"


def test_a_traced_process_is_a_clear_error_without_waiting(children):
    child = _start([FIRST])
    children.append(child)
    tracer = subprocess.Popen(["strace", "-qq", "-e", "trace=none", "-p", str(child.pid)],
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while _tracer_of(child.pid) != str(tracer.pid):
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        start = time.monotonic()
        with pytest.raises(SystemFailure) as caught:
            read_filters(child.pid)
        assert time.monotonic() - start < 1
        assert f"already traced by pid {tracer.pid}" in str(caught.value)
    finally:
        tracer.send_signal(signal.SIGINT)  # strace detaches on SIGINT
        tracer.wait(timeout=10)
    assert read_filters(child.pid) == [_insns(FIRST)]
    assert _finish(child) == "tracer=0 signals=[] traced-child=True"


def _tracer_of(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return [line.split()[1] for line in f if line.startswith("TracerPid:")][0]


def test_a_stopped_process_stays_stopped(children):
    child = _start([SECOND])
    children.append(child)
    os.kill(child.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while _state(child.pid) != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert read_filters(child.pid) == [_insns(SECOND)]
    time.sleep(0.05)
    assert _state(child.pid) == "T"
    os.kill(child.pid, signal.SIGCONT)
    # SIGCONT is the test's own signal, seen by the child's handler: count it out.
    assert _finish(child).startswith("tracer=0 signals=[")


@pytest.mark.parametrize("pid, kind", [(0, UsageError), (-5, UsageError), (os.getpid(), UsageError),
                                       (2**22 + 12345, UsageError)])
def test_bad_pids(pid, kind):
    with pytest.raises(kind):
        read_filters(pid)
    assert issubclass(kind, OcishimError)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ocishim", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("target, message", [
    ("h10-no-such-container", "ocishim: CONTAINER-ID: no container 'h10-no-such-container'"),
    (str(2**22 + 12345), f"ocishim: PID: no process {2**22 + 12345}"),
])
def test_cli_bad_target(target, message):
    proc = _cli("inspect", target, "--json")
    assert proc.returncode == 2
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""


def test_cli_json_of_a_traced_process_is_exit_1(children):
    child = _start([FIRST])
    children.append(child)
    proc = _cli("inspect", str(child.pid), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {"pid": child.pid, "filters": [
        {"index": 0, "length": len(FIRST), "stub": None, "enosys": {}, "matches": [], "match_kind": []}],
        "processes": [child.pid]}
    tracer = subprocess.Popen(["strace", "-qq", "-e", "trace=none", "-p", str(child.pid)],
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while _tracer_of(child.pid) != str(tracer.pid):
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        proc = _cli("inspect", str(child.pid))
        assert proc.returncode == 1
        assert proc.stderr == f"ocishim: pid {child.pid}: already traced by pid {tracer.pid} (a debugger, " \
                              "strace, or the process itself): a second tracer is refused by the kernel\n"
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=10)
    assert _finish(child) == "tracer=0 signals=[] traced-child=True"


def test_cli_disasm_is_the_listing_of_the_bytes_loaded(children, tmp_path):
    import struct

    child = _start([FIRST, SECOND])
    children.append(child)
    proc = _cli("inspect", str(child.pid), "--disasm")
    assert proc.returncode == 0, proc.stderr
    for prog in (FIRST, SECOND):
        raw = tmp_path / "prog.bpf"
        raw.write_bytes(b"".join(struct.pack("=HBBI", *i) for i in prog))
        listing = _cli("disasm", str(raw)).stdout
        assert "\n".join("  " + line for line in listing.splitlines()) in proc.stdout
    assert _finish(child) == "tracer=0 signals=[] traced-child=True"


def test_state_dir_lookup_and_a_bad_bundle_config(children, tmp_path):
    """A container found by id under --root (runc's state.json: init_process_pid and the
    bundle label), whose bundle config.json is broken: the filters are still shown, and
    the config's error is named instead of a comparison."""
    child = _start([FIRST])
    children.append(child)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(
        {"ociVersion": "1.0.2", "linux": {"seccomp": {"defaultAction": "SCMP_ACT_BOGUS"}}}))
    state = tmp_path / "root" / "h10-fake"
    state.mkdir(parents=True)
    (state / "state.json").write_text(json.dumps(
        {"id": "h10-fake", "init_process_pid": child.pid, "config": {"labels": [f"bundle={bundle}"]}}))
    proc = _cli("inspect", "h10-fa", "--root", str(tmp_path / "root"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pid"] == child.pid and report["filters"][0]["length"] == len(FIRST)
    assert report["config_error"] == 'linux.seccomp.defaultAction: unknown action "SCMP_ACT_BOGUS"'
    # by pid, the same container is found through its state
    text = _cli("inspect", str(child.pid), "--root", str(tmp_path / "root"))
    assert f"pid {child.pid}: container h10-fake ({state}/state.json)" in text.stdout
    assert _finish(child) == "tracer=0 signals=[] traced-child=True"
