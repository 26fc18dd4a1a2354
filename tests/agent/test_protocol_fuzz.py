"""The agent socket under garbage: random bytes, truncated messages, wrong fd counts, fds
that are not listeners, peers that close at once or never finish, 1,000 connections.
Afterwards the agent still runs, has written no traceback, holds no fd it was sent, and
still answers a real listener."""

from __future__ import annotations

import json
import os
import random
import socket
import time

import pytest

from ocishim import audit, syscalls
from ocishim.patch import patch_profile
from ocishim.profile import load_object

from . import helpers

pytestmark = pytest.mark.kernel
VALID = {"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": 1, "metadata": "",
         "state": {"ociVersion": "1.0.2", "id": "h13-fuzz", "status": "creating", "pid": 1, "bundle": "/"}}


def _fds(agent_pid: int) -> int:
    return len(os.listdir(f"/proc/{agent_pid}/fd"))


def _send(path: str, data: bytes, fds: list[int], close: bool = True) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    deadline = time.monotonic() + 10
    while True:  # a full backlog answers EAGAIN on a unix socket: the agent is busy, retry
        try:
            s.connect(path)
            break
        except BlockingIOError:
            assert time.monotonic() < deadline, "the agent stopped accepting"
            time.sleep(0.001)
    try:
        if fds:
            s.sendmsg([data or b" "], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        b"".join(fd.to_bytes(4, "little") for fd in fds))])
        elif data:
            s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    if close:
        s.close()
        return None
    return s


def _garbage(rng: random.Random, i: int) -> tuple[bytes, int, bool]:
    """(bytes, how many fds, close at once) for connection i."""
    valid = json.dumps(VALID).encode()
    kind = i % 10
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 3000)), 0, True
    if kind == 1:
        return valid, 0, True  # missing fd
    if kind == 2:
        return valid, 2, True  # one fd named, two sent
    if kind == 3:
        return valid, 1, True  # a pipe, not a listener
    if kind == 4:
        return valid[:rng.randrange(1, len(valid))], 1, True  # truncated
    if kind == 5:
        return b"", 0, True  # a peer that closes at once
    if kind == 6:
        return valid, 20, True  # more fds than the agent takes
    if kind == 7:
        return json.dumps({**VALID, "fds": "seccompFd"}).encode(), 1, True
    if kind == 8:
        return b"[" * 50_000, 0, True  # deep nesting
    return json.dumps({**VALID, "state": []}).encode(), 1, True


def _settled_fds(pid: int) -> int:
    """The agent's fd count once it has stopped opening its own (socket, log, epoll,
    worker threads): the same for half a second, within 10 s. On a loaded machine a
    fixed pause is too short, and a count taken mid-start-up looks like a leak later."""
    deadline = time.monotonic() + 10
    seen = [_fds(pid)]
    while time.monotonic() < deadline:
        time.sleep(0.1)
        seen.append(_fds(pid))
        if len(seen) >= 6 and len(set(seen[-6:])) == 1:
            break
    return seen[-1]


def test_fuzz_leaves_the_agent_serving():
    rng = random.Random(13)
    agent = helpers.start_agent()
    try:
        before = _settled_fds(agent.proc.pid)
        r, w = os.pipe()
        try:
            held = []
            for i in range(1000):
                data, nfds, close = _garbage(rng, i)
                sock = _send(agent.socket, data, [r] * nfds if nfds <= 1 else [r, w] * (nfds // 2), close)
                if sock is not None:
                    held.append(sock)
            # Peers that connect, send half a message and stay: cut off by the agent's timeout.
            for _ in range(5):
                held.append(_send(agent.socket, json.dumps(VALID).encode()[:20], [], close=False))
        finally:
            os.close(r)
            os.close(w)
        deadline = time.monotonic() + 15
        while _fds(agent.proc.pid) > before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert agent.proc.poll() is None, "the agent died"
        assert _fds(agent.proc.pid) <= before, "the agent keeps fds it was sent"
        for s in held:
            s.close()

        # It still answers a real listener.
        profile = load_object({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
                              "test", kind="seccomp").profile
        audited = audit.audit_program(patch_profile(profile, "off"))
        neutral, _ = helpers.neutralize_audited(audited.program)
        nr = syscalls.resolve("x86_64", "getppid")
        got = helpers.results(helpers.run_probe(agent.socket, neutral, [(nr, ())] * 3,
                                                audit.metadata(audited.program), "h13-after-fuzz", 30))
        assert [text for _, text in got] == ["1", "1", "1"]
        agent.stop()
        lines = agent.lines()
        stderr = agent.proc.stderr.read()
    finally:
        helpers.cleanup(agent)
    assert "Traceback" not in stderr and not stderr.strip(), stderr
    refused = [l for l in lines if l["event"] == "refused-message"]
    assert refused, "no refusal was logged"
    assert any(l["event"] == "attached" and l["container"] == "h13-after-fuzz" for l in lines)
    reasons = " ".join(l["reason"] for l in refused)
    for part in ("not a seccomp listener", "came with the message", "not a JSON"):
        assert part in reasons
