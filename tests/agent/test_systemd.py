"""The systemd units in examples/systemd: the socket is where the settings point by default,
root-only, and the agent serves a socket handed over by socket activation
(systemd-socket-activate, the same LISTEN_FDS protocol systemd uses)."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ocishim import audit, syscalls
from ocishim.integrations.settings import Settings
from ocishim.patch import patch_profile
from ocishim.profile import load_object

from . import helpers

UNITS = Path(__file__).resolve().parents[2] / "examples" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def test_units_agree_with_the_defaults():
    socket = _unit("ocishim-agent.socket")["Socket"]
    assert socket["ListenStream"] == audit.DEFAULT_SOCKET == Settings().audit_socket
    assert socket["SocketMode"] == "0600" and socket["DirectoryMode"] == "0700"
    service = _unit("ocishim-agent.service")["Service"]
    assert "--json" in service["ExecStart"] and audit.DEFAULT_SOCKET in service["ExecStart"]


@pytest.mark.kernel
def test_socket_activation():
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate not found (package systemd)")
    d = tempfile.mkdtemp(prefix="h13-activate-")
    sock, log = os.path.join(d, "agent.sock"), Path(d) / "agent.log"
    proc = subprocess.Popen([tool, "-l", sock, sys.executable, "-m", "ocishim", "agent", "--json",
                             "--log", str(log)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        profile = load_object({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
                              "test", kind="seccomp").profile
        audited = audit.audit_program(patch_profile(profile, "off"))
        neutral, _ = helpers.neutralize_audited(audited.program)
        nr = syscalls.resolve("x86_64", "getppid")
        got = helpers.results(helpers.run_probe(sock, neutral, [(nr, ())], audit.metadata(audited.program),
                                                "h13-activated", 60))
        assert got == [(nr, "1")]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        lines = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
        shutil.rmtree(d, ignore_errors=True)
    assert any(l["event"] == "started" and l["socket"] == "(socket activation)" for l in lines)
