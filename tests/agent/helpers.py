"""A real `ocishim agent` in a subprocess, and the notify probe that hands it a listener.

The probe (notify_probe.c) loads a neutralized copy of an audited filter: every return
that is not ERRNO or USER_NOTIF becomes ERRNO(marker), so nothing a call asks for runs;
the USER_NOTIF returns stay and go to the agent. Each wait has a bound.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ocishim.actions import RET_ACTION_FULL, RET_USER_NOTIF
from ocishim.bpf.insn import RET, Insn, bpf_class, encode
from ocishim.bpf.markers import neutralize

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "notify_probe.c"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
_CALL = struct.Struct("=8Q")
ROOT = HERE.parents[1]


def probe_binary() -> Path:
    """The compiled probe, cached by the hash of its source."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    cache = ROOT / ".cache" / f"h13-notify-probe-{os.getuid()}"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"notify_probe-{key}"
    if not target.exists():
        gcc = shutil.which("gcc")
        assert gcc, "gcc is needed (Makefile DEBS)"
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(SOURCE)], check=True)
        os.replace(tmp, target)
    return target


def neutralize_audited(program: Sequence[Insn]) -> tuple[tuple[Insn, ...], dict[int, int]]:
    """neutralize(), with the USER_NOTIF returns put back: the agent answers those."""
    neutral, markers = neutralize(program)
    out = [orig if bpf_class(orig.code) == RET and orig.k & RET_ACTION_FULL == RET_USER_NOTIF else new
           for orig, new in zip(program, neutral)]
    return tuple(out), markers


@dataclass
class Agent:
    proc: subprocess.Popen
    socket: str
    log: Path
    directory: str

    def lines(self) -> list[dict]:
        text = self.log.read_text() if self.log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_agent(tag: str = "h13", extra: Sequence[str] = ()) -> Agent:
    """`ocishim agent --json` on a socket in a fresh 0700 directory; returns once it listens."""
    directory = tempfile.mkdtemp(prefix=f"{tag}-agent-")
    sock = os.path.join(directory, "run", "agent.sock")
    log = Path(directory) / "agent.log"
    proc = subprocess.Popen([sys.executable, "-m", "ocishim", "agent", "--socket", sock, "--json",
                             "--log", str(log), *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"the agent did not start: {err}")
        time.sleep(0.02)
    return Agent(proc, sock, log, directory)


def cleanup(agent: Agent) -> None:
    agent.stop()
    shutil.rmtree(agent.directory, ignore_errors=True)


def run_probe(agent_socket: str, program: Sequence[Insn], calls: Sequence[tuple[int, Sequence[int]]],
              metadata: str, container: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The probe's run: program must hold only ERRNO and USER_NOTIF returns."""
    with tempfile.TemporaryDirectory(prefix="h13-probe-") as d:
        paths = [os.path.join(d, n) for n in ("filter.bpf", "calls.bin", "metadata")]
        Path(paths[0]).write_bytes(encode(program))
        Path(paths[1]).write_bytes(b"".join(_CALL.pack(nr, *(list(args) + [0] * (6 - len(args))), 0)
                                            for nr, args in calls))
        Path(paths[2]).write_text(metadata)
        return subprocess.run([str(probe_binary()), agent_socket, *paths, container, str(timeout)],
                              capture_output=True, text=True, timeout=timeout + 30)


def results(proc: subprocess.CompletedProcess) -> list[tuple[int, str]]:
    """(nr, errno text or 'okN') per call, from the probe's output."""
    assert proc.returncode == 0, f"probe exit {proc.returncode}: {proc.stderr}"
    return [(int(line.split()[0]), line.split()[1]) for line in proc.stdout.splitlines()]


def durations(proc: subprocess.CompletedProcess) -> list[int]:
    """Each call's duration in ns, as the probe measured it in the child."""
    return [int(line.split()[2]) for line in proc.stdout.splitlines()]
