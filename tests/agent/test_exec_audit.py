"""`ocishim exec --audit`: the listener goes to the agent over the listenerPath protocol; the
command runs as without audit and the agent logs what the filter refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import shared_data

from . import helpers

pytestmark = pytest.mark.kernel
PROFILE = str(shared_data.PROFILES / "docker-default.json")


def _exec(tmp_path, *audit: str) -> subprocess.CompletedProcess:
    profile = json.loads(open(PROFILE).read())
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "faccessat2"]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    return subprocess.run([sys.executable, "-m", "ocishim", "exec", str(path), *audit, "--",
                           "/bin/bash", "-c", "[ -x /bin/ls ] && echo executable; exit 7"],
                          capture_output=True, text=True, timeout=60)


def test_exec_audit(tmp_path):
    plain = _exec(tmp_path)
    agent = helpers.start_agent()
    try:
        audited = _exec(tmp_path, "--audit", "--audit-socket", agent.socket)
        agent.stop()
        lines = agent.lines()
    finally:
        helpers.cleanup(agent)
    assert (plain.returncode, plain.stdout) == (7, "executable\n"), plain.stderr
    assert (audited.returncode, audited.stdout, audited.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    notified = [l for l in lines if l["event"] == "notified"]
    assert [(l["syscall"], l["answer"], l["exe"]) for l in notified if l["syscall"] == "faccessat2"] == \
        [("faccessat2", "ENOSYS", "/usr/bin/bash")]
    assert all(l["arch"] == "x86_64" and len(l["args"]) == 6 for l in notified)
