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

# No compiled-filter cache unless a test asks for one: a hit would hide the build a test
# means to run, and nothing may touch the real /var/cache/ocishim (tests/test_filtercache.py).
import os as _os  # noqa: E402

_os.environ["OCISHIM_CACHE"] = "off"


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _compile_in_this_process():
    """In-process tests compile without a child per compile: a fork copies the page tables
    of this large test process (15 ms or more each, thousands of compiles). The child and
    its limits have their own tests (test_compile_no_hang.py turns it back on), and every
    CLI, hook and wrapper run in a subprocess uses it as shipped."""
    from ocishim import compile as compile_module

    saved = compile_module.ISOLATE
    compile_module.ISOLATE = False
    yield
    compile_module.ISOLATE = saved
