"""Static C probe programs for the integration tests, compiled once and cached.

A probe is built with `gcc -static` so that it runs the same under any root and
brings its own glibc (the host's, 2.36 on Debian 12: new enough to try clone3 first).
The cached binary's name carries a hash of the source and the flags: a change to
either builds a new one, and parallel runs never see half a binary.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCES = HERE / "probe"
CACHE = REPO / ".cache" / "probes"
CFLAGS: tuple[str, ...] = ("-static", "-O2", "-Wall", "-Wextra", "-Werror")


class BuildError(RuntimeError):
    """The compiler refused a probe: a bug in the probe, not a reason to skip."""


def missing_tools() -> str | None:
    """Why probes cannot be built here, or None."""
    if shutil.which("gcc") is None:
        return "gcc not found (install gcc and libc6-dev)"
    return None


def build(name: str, extra_flags: Sequence[str] = ()) -> Path:
    """The binary of probe/NAME.c, rebuilt when the source or the flags change."""
    source = SOURCES / f"{name}.c"
    flags = (*CFLAGS, *extra_flags)
    key = hashlib.sha256(source.read_bytes() + "\0".join(flags).encode()).hexdigest()[:16]
    target = CACHE / f"{name}-{key}"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    proc = subprocess.run(["gcc", *flags, "-o", str(tmp), str(source)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        if "cannot find -lc" in proc.stderr:
            raise BuildError(f"no static glibc (libc6-dev) to link {source.name}:\n{proc.stderr}")
        raise BuildError(f"compiling {source.name} failed:\n{proc.stderr}")
    os.replace(tmp, target)
    for stale in CACHE.glob(f"{name}-" + "?" * len(key)):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target
