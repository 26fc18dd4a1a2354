"""Shared setup for the integration tests: paths, and running the ocishim CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parents[1]

# No compiled-filter cache unless a test asks for one (integration/test_cache*.py): a hit
# would hide the build a test means to run, and nothing may touch /var/cache/ocishim.
os.environ["OCISHIM_CACHE"] = "off"
PROFILES = shared_data.PROFILES
SYSCALLS_CSV = shared_data.SYSCALLS_CSV

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def shared_table_x86_64() -> dict[str, tuple[tuple[int, int], int]]:
    """name -> (since, nr) on x86_64, read from the shared table, not from ocishim:
    the tests' expectations must not come from the code under test."""
    import csv

    out = {}
    with open(SYSCALLS_CSV, newline="") as f:
        for row in csv.DictReader(f):
            if row["arch"] == "x86_64":
                major, minor = row["since"].split(".")
                out[row["name"]] = ((int(major), int(minor)), int(row["nr"]))
    return out


@pytest.fixture
def profiles_dir() -> Path:
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there (the shared test data)")
    return PROFILES


def run_ocishim(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m ocishim ARGS` from this checkout, output captured as text."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "ocishim", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)
