"""Where the shared contract data lies, for every test and script that reads it.

The tests take their expected values from ../shared beside this checkout (syscall facts,
real profiles, libseccomp and libc tables, the design documents), never from ocishim.
A checkout elsewhere names it in $OCISHIM_SHARED (`make test SHARED=DIR` sets it).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCISHIM_SHARED") or REPO.parent / "shared")
DATA = SHARED / "data"
DESIGN = SHARED / "design"
PROFILES = DATA / "profiles"
SYSCALLS_CSV = DATA / "syscalls" / "syscalls.csv"
MULTIPLEXED_CSV = DATA / "libseccomp" / "multiplexed.csv"
KNOWN_CSV = DATA / "libseccomp" / "known.csv"
FALLBACKS_CSV = DATA / "libc" / "fallbacks.csv"
