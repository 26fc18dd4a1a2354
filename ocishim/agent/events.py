"""The agent's log: one line per event, aggregated and rate-bounded so that it cannot fill a disk.

A notified call is logged in full (process, syscall, arguments, answer, what the answer
breaks) the first time its key (container, arch, syscall, answer) is seen; later ones
are only counted, and at most one `repeated` line per key and window gives the count. All lines share one token bucket (`rate` per second, `burst` at once); what the
bucket refuses stays counted and appears in a later `repeated` line, or as `suppressed`.
So a container looping on a refused call costs one line per window, and the log grows
by at most `burst + rate * t` lines whatever the containers do.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, TextIO

ENOSYS = 38
WINDOW = 10.0  # seconds between `repeated` lines of a key
RATE = 50.0  # lines per second, on average
BURST = 200  # lines at once
MAX_KEYS = 4096  # per container; further keys are counted under one `other` key
MAX_TEXT = 4096  # cmdline and exe are cut here


@dataclass(frozen=True)
class Fallback:
    libc: str
    version: str
    function: str
    fallback_on: str
    if_eperm: str


@lru_cache(maxsize=1)
def fallbacks() -> dict[str, tuple[Fallback, ...]]:
    """libc's fallbacks per syscall (a copy of ../shared/data/libc/fallbacks.csv)."""
    text = resources.files(__package__).joinpath("fallbacks.csv").read_text()
    table: dict[str, list[Fallback]] = {}
    for row in csv.DictReader(text.splitlines()):
        table.setdefault(row["syscall"], []).append(
            Fallback(row["libc"], row["version"], row["function"], row["fallback_on"], row["if_eperm"]))
    return {k: tuple(v) for k, v in table.items()}


def _rows(syscall: str | None, arch: str | None) -> list[Fallback]:
    """fallbacks.csv's rows for syscall that apply to arch (a bracket of arch names limits a row)."""
    from ..arch import BY_NAME

    out = []
    for f in fallbacks().get(syscall or "", ()):
        bracket = re.search(r"\[([^\]:]*)", f.function)
        named = [w for w in bracket.group(1).split() if w in BY_NAME] if bracket else []
        if not named or arch in named:
            out.append(f)
    return out


def enosys_would_fix(syscall: str | None, err: int, arch: str | None = None) -> bool:
    """Whether libc would fall back where this errno made it give up, had the answer been ENOSYS."""
    return err != ENOSYS and any(f.fallback_on in ("ENOSYS", "ENOSYS+EINVAL")
                                 for f in _rows(syscall, arch))


def breaks(syscall: str | None, err: int, arch: str | None = None) -> list[str]:
    """What this answer breaks in libc, from fallbacks.csv."""
    out = []
    for f in _rows(syscall, arch):
        harmless = f.fallback_on in ("any", "if-needed") or \
            (err == ENOSYS and f.fallback_on in ("ENOSYS", "ENOSYS+EINVAL"))
        if not harmless:
            out.append(f"{f.libc} {f.version} {f.function}: {f.if_eperm}")
    return out


def now_text(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass
class _Count:
    first: dict[str, Any]  # the fields every line of this key repeats
    unreported: int = 0
    total: int = 0
    window_start: float = 0.0


@dataclass
class EventLog:
    """Where lines go (a text stream), in JSON or as text, with the bounds above."""

    out: TextIO
    as_json: bool = True
    rate: float = RATE
    burst: int = BURST
    window: float = WINDOW
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _refilled: float = field(init=False)
    _counts: dict[tuple, _Count] = field(init=False, default_factory=dict)
    _keys: dict[str, int] = field(init=False, default_factory=dict)
    suppressed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._refilled = self.clock()

    def _take(self) -> bool:
        t = self.clock()
        self._tokens = min(self.burst, self._tokens + (t - self._refilled) * self.rate)
        self._refilled = t
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def write(self, record: dict[str, Any], force: bool = False) -> bool:
        """One line, if the bucket allows (or force, for the few lines of a container's life)."""
        if not force and not self._take():
            self.suppressed += 1
            return False
        record = {"time": now_text(), **record}
        if self.as_json:
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=True)
        else:
            line = " ".join(f"{k}={_text(v)}" for k, v in record.items())
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):  # a full disk or a closed stdout must not stop the answers
            self.suppressed += 1
            return False
        return True

    def seen(self, container: str, key: tuple) -> bool:
        """Count one notified call; True when it is to be logged in full now."""
        full_key = (container,) + key
        count = self._counts.get(full_key)
        t = self.clock()
        if count is None:
            if self._keys.get(container, 0) >= MAX_KEYS:
                full_key = (container, "other")
                count = self._counts.get(full_key)
            if count is None:
                self._keys[container] = self._keys.get(container, 0) + 1
                count = self._counts[full_key] = _Count({}, 0, 0, t)
                count.total += 1
                count.unreported += 1
                return True
        count.total += 1
        count.unreported += 1
        return False

    def logged(self, container: str, key: tuple, first: dict[str, Any]) -> None:
        """The full line of key was written: remember its fields, it is reported."""
        count = self._counts.get((container,) + key)
        if count is not None:
            count.first = first
            if self.write(dict(first), force=False):
                count.unreported -= 1

    def flush(self, container: str | None = None, final: bool = False) -> None:
        """`repeated` lines for keys whose window is over (every key of container when final)."""
        t = self.clock()
        for full_key, count in self._counts.items():
            if container is not None and full_key[0] != container:
                continue
            if not count.unreported or (not final and t - count.window_start < self.window):
                continue
            fields = {k: v for k, v in count.first.items()
                      if k in ("container", "arch", "syscall", "nr", "answer", "errno", "enosys_would_fix")}
            fields.setdefault("container", full_key[0])
            if full_key[1:] == ("other",):
                fields["syscall"] = f"(beyond {MAX_KEYS} kinds of call)"
            if self.write({"event": "repeated", **fields, "count": count.unreported,
                           "total": count.total}, force=final):
                count.unreported = 0
                count.window_start = t
        if final and container is not None:
            for full_key in [k for k in self._counts if k[0] == container]:
                del self._counts[full_key]
            self._keys.pop(container, None)
        if self.suppressed and (final or self._tokens >= 1):
            if self.write({"event": "suppressed", "lines": self.suppressed}, force=final):
                self.suppressed = 0


def _text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if (not value or any(c.isspace() for c in value)) else value
    return json.dumps(value, separators=(",", ":"))
