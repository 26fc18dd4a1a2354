"""Load: one process looping on a refused syscall; the agent sustains at least 20,000
notifications per second on a 2-core machine, every one answered ENOSYS, and the log stays
small (aggregated: one full line, then counts). scripts/bench_audit.py prints the figures
docs/audit.md reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

RATE = 20_000
LOG_LIMIT = 16 * 1024  # bytes for 50,000 notifications of one kind


def test_agent_sustains_the_rate_and_bounds_the_log():
    import bench_audit

    best = None
    for _ in range(3):  # the machine is shared: the best of three runs
        result = bench_audit.measure(50_000)
        assert result["detached"] == [50_000]
        assert result["log_bytes"] < LOG_LIMIT, result
        if best is None or result["notifications_per_s"] > best["notifications_per_s"]:
            best = result
        if best["notifications_per_s"] >= RATE:
            break
    assert best["notifications_per_s"] >= RATE, best
