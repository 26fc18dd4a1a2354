"""Shared paths for the profile tests; makes the repo importable under a bare `pytest`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import shared_data

REPO = Path(__file__).resolve().parents[2]
PROFILES = shared_data.PROFILES

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture
def profiles_dir() -> Path:
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there")
    return PROFILES
