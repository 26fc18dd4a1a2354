"""Where one `ocishim run BUNDLE ...` goes, phase by phase (scripts/bench.py runs it).

Started by the install's own Python as `python run_phases.py SPAWNED ARGS...`, where
SPAWNED is time.perf_counter() in the parent just before it started this process (both
read CLOCK_MONOTONIC, so the difference is the interpreter's start). It runs `ocishim run
ARGS` as bin/ocishim does (cli_run.main_run), with a timer around each step of
ocishim.integrations.run, and prints one JSON object: each mark's time in ms since
SPAWNED. The parent adds the process's end.
"""

import sys
import time

START = time.perf_counter()
MARKS: list[tuple[str, float]] = []
SPAWNED = float(sys.argv[1])


def mark(label: str) -> None:
    MARKS.append((label, (time.perf_counter() - SPAWNED) * 1000))


def timed(module: object, name: str) -> None:
    """Mark the start and the end of module.name's calls."""
    inner = getattr(module, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        mark(f"{name} start")
        try:
            return inner(*args, **kwargs)
        finally:
            mark(f"{name} end")

    setattr(module, name, wrapper)


def main() -> int:
    mark("script")
    from ocishim import cli_run
    from ocishim.integrations import run

    for name in ("find_runtime", "read_bundle", "_rewrite_cached", "write_bundle", "_spawn", "_wait",
                 "_remove"):
        timed(run, name)
    status = cli_run.main_run(sys.argv[2:])
    mark("done")
    sys.stdout.flush()
    # JSON by hand: importing json here would be counted as the process's way out.
    print("{" + ", ".join(f'"{label}": {ms!r}' for label, ms in dict(MARKS).items()) + "}",
          file=sys.stderr)
    return status


if __name__ == "__main__":
    import os

    code = main()
    sys.stderr.flush()
    os._exit(code)
