"""`ocishim agent --summary LOG`: per container, which syscalls were refused, how often, and
which of them ENOSYS would fix (libc falls back on ENOSYS but not on the errno sent)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, TextIO

from ..errors import UsageError


@dataclass
class Row:
    container: str
    arch: str
    syscall: str
    answer: str
    count: int = 0
    enosys_would_fix: bool = False


def tally(lines: Iterable[str], source: str) -> list[Row]:
    """Rows from a JSON-lines log: each notified call counted once (`notified` + `repeated`)."""
    rows: dict[tuple, Row] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(source, f"line {number}: not JSON (the agent writes JSON with --json)") from None
        if not isinstance(record, dict) or record.get("event") not in ("notified", "repeated"):
            continue
        key = tuple(str(record.get(k)) for k in ("container", "arch", "syscall", "answer"))
        row = rows.setdefault(key, Row(*key))
        row.count += 1 if record["event"] == "notified" else int(record.get("count") or 0)
        row.enosys_would_fix |= bool(record.get("enosys_would_fix"))
    return sorted(rows.values(), key=lambda r: (r.container, -r.count, r.syscall))


def print_table(rows: list[Row], out: TextIO) -> None:
    """The table: per container, syscall, answer, count, and whether ENOSYS would fix it."""
    if not rows:
        out.write("no refused syscalls in the log\n")
        return
    current = None
    for r in rows:
        if r.container != current:
            current = r.container
            out.write(f"container {r.container}\n")
            out.write(f"  {'syscall':<24} {'arch':<8} {'answer':<10} {'count':>10}  ENOSYS would fix\n")
        out.write(f"  {r.syscall:<24} {r.arch:<8} {r.answer:<10} {r.count:>10}  "
                  f"{'yes' if r.enosys_would_fix else ''}\n")
