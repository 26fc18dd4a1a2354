"""Load on the audit agent: one process looping on a refused syscall, notified to a real
`ocishim agent`. Prints notifications per second, the per-call latency with and without
audit (p50, p99, p99.9) and the log's size. `python scripts/bench_audit.py [N]`.

The looping process is tests/agent/notify_probe.c with a neutralized filter (nothing
runs); the same calls through the unaudited filter give the baseline.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from agent import helpers  # noqa: E402

from ocishim import audit, syscalls  # noqa: E402
from ocishim.bpf.markers import neutralize  # noqa: E402
from ocishim.patch import patch_profile  # noqa: E402
from ocishim.profile import load  # noqa: E402
from tests import shared_data  # noqa: E402


def percentile(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] / 1000


def measure(n: int) -> dict:
    profile = load(str(shared_data.PROFILES / "docker-default.json")).profile
    patched = patch_profile(profile)
    audited = audit.audit_program(patched)
    nr = syscalls.resolve("x86_64", "reboot")  # in E(A): ENOSYS, through the agent
    calls = [(nr, ())] * n
    plain, _ = neutralize(patched.program)
    neutral, _ = helpers.neutralize_audited(audited.program)
    agent = helpers.start_agent("h13-bench")
    try:
        start = time.monotonic()
        run = helpers.run_probe(agent.socket, neutral, calls, audit.metadata(audited.program),
                                "h13-bench", 300)
        wall = time.monotonic() - start
        agent.stop()
        lines = agent.lines()
        size = agent.log.stat().st_size
    finally:
        helpers.cleanup(agent)
    assert {text for _, text in helpers.results(run)} == {"38"}
    times = helpers.durations(run)
    plain_times = _plain_durations(plain, calls)
    return {"calls": n, "wall_s": round(wall, 2),
            "notifications_per_s": round(n / (sum(times) / 1e9)),
            "audited_us": {"p50": percentile(times, .5), "p99": percentile(times, .99),
                           "p999": percentile(times, .999), "mean": statistics.mean(times) / 1000},
            "unaudited_us": {"p50": percentile(plain_times, .5), "p99": percentile(plain_times, .99)},
            "log_bytes": size, "log_lines": len(lines),
            "detached": [l.get("notifications") for l in lines if l["event"] == "detached"]}


def _plain_durations(program, calls) -> list[int]:
    """The same calls through the unaudited filter: no USER_NOTIF, so no agent needed, but the
    probe hands the (idle) listener to an agent all the same."""
    agent = helpers.start_agent("h13-bench-plain")
    try:
        return helpers.durations(helpers.run_probe(agent.socket, program, calls, "", "h13-plain", 120))
    finally:
        helpers.cleanup(agent)


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000), indent=1))
