"""Shared test setup: import ocishim from this checkout, installed or not."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Property tests draw the same examples on every run: CI is reproducible, and a run
# that passed here passes there. (libseccomp 2.5.4 can loop forever on some rule
# combinations, see the closing notes; a random draw could hit one.)
from hypothesis import settings as _settings  # noqa: E402

_settings.register_profile("ocishim", derandomize=True, deadline=None, print_blob=True)
_settings.load_profile("ocishim")
