"""The tests find the shared contract data beside the checkout, or where $OCISHIM_SHARED
and `make test SHARED=DIR` say; a Makefile without it stops with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHERE = "from tests import shared_data; print(shared_data.PROFILES)"


def _where(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OCISHIM_SHARED"}
    proc = subprocess.run([sys.executable, "-c", WHERE], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def test_beside_the_checkout_by_default():
    assert _where() == str(REPO.parent / "shared" / "data" / "profiles")


def test_the_environment_names_another_place(tmp_path):
    assert _where(OCISHIM_SHARED=str(tmp_path)) == str(tmp_path / "data" / "profiles")


def test_make_test_stops_at_once_without_it(tmp_path):
    """`make test SHARED=DIR` with nothing there: one line naming DIR, exit 2, no pytest run.
    (deps and venv are already made here, so make goes straight to the check.)"""
    proc = subprocess.run(["make", "-s", "test", f"SHARED={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("make test:")]
    assert len(lines) == 1 and f"{tmp_path}/data is not there" in lines[0], proc.stderr
    assert "passed" not in proc.stdout and "Traceback" not in proc.stderr


def test_make_test_hands_the_place_to_the_tests(tmp_path):
    """`make test SHARED=DIR` runs pytest with $OCISHIM_SHARED naming DIR (make -n prints
    the commands it would run)."""
    proc = subprocess.run(["make", "-n", "test", f"SHARED={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    runs = [line for line in proc.stdout.splitlines() if "-m pytest" in line]
    assert runs == [f'OCISHIM_SHARED="{tmp_path}" .venv/bin/python -m pytest -q -ra tests integration'], proc.stdout
