"""The agent killed with SIGKILL mid-run: the audited process keeps going, its pending and
later notified calls get ENOSYS (the kernel's answer without a listener), nothing hangs.
Every wait here has a bound."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from ocishim import audit, syscalls
from ocishim.patch import patch_profile
from ocishim.profile import load_object

from . import helpers

pytestmark = pytest.mark.kernel
EPERM, ENOSYS = 1, 38


def test_sigkill_mid_run_gives_enosys_and_nothing_hangs():
    profile = load_object({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                           "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
                          "test", kind="seccomp").profile
    patched = patch_profile(profile, "off")  # every refusal is the default's EPERM
    audited = audit.audit_program(patched)
    neutral, _ = helpers.neutralize_audited(audited.program)
    getppid = syscalls.resolve("x86_64", "getppid")
    calls = [(getppid, ())] * 200_000
    agent = helpers.start_agent()
    probe = None
    try:
        import tempfile
        from pathlib import Path

        from ocishim.bpf.insn import encode

        with tempfile.TemporaryDirectory(prefix="h13-kill-") as d:
            files = [os.path.join(d, n) for n in ("f", "c", "m")]
            Path(files[0]).write_bytes(encode(neutral))
            Path(files[1]).write_bytes(b"".join(helpers._CALL.pack(nr, 0, 0, 0, 0, 0, 0, 0) for nr, _ in calls))
            Path(files[2]).write_text(audit.metadata(audited.program))
            probe = subprocess.Popen([str(helpers.probe_binary()), agent.socket, *files, "h13-kill", "60"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 20
            while not any(l["event"] == "notified" for l in agent.lines()):
                assert time.monotonic() < deadline, "the agent logged no notification"
                assert probe.poll() is None, probe.stderr.read()
                time.sleep(0.01)
            os.kill(agent.proc.pid, signal.SIGKILL)
            agent.proc.wait(10)
            out, err = probe.communicate(timeout=90)
        assert probe.returncode == 0, err
        answers = [int(line.split()[1]) for line in out.splitlines()]  # "nr errno ns"
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
            probe.wait(10)
        helpers.cleanup(agent)
    assert len(answers) == len(calls)
    assert set(answers) <= {EPERM, ENOSYS}
    first_enosys = answers.index(ENOSYS)
    assert first_enosys > 0, "the agent answered nothing before it was killed"
    assert set(answers[:first_enosys]) == {EPERM} and set(answers[first_enosys:]) == {ENOSYS}
