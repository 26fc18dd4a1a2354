"""The socketcall/ipc numbers a profile's names make libseccomp write rules on, from the
shared libseccomp facts (../shared/data/libseccomp/multiplexed.csv), not from ocishim.

semantics.md v2: those numbers are named(A) too, so no stub answers ENOSYS there.
"""

from __future__ import annotations

import csv
import functools
from typing import Iterable

from tests import shared_data

CSV = shared_data.MULTIPLEXED_CSV


@functools.cache
def _rows(version: str) -> dict[tuple[str, str], int]:
    """(arch, name) -> the multiplexer number a rule on name is put on, for libseccomp version."""
    out = {}
    with open(CSV, newline="") as f:
        for row in csv.DictReader(f):
            if row["version"] == version and row["mux_nr_arg0"]:
                out[(row["arch"], row["name"])] = int(row["mux_nr_arg0"].split(":")[0])
    return out


def host_version() -> str:
    from ocishim import libseccomp

    v = ".".join(map(str, libseccomp.version()))
    return f"{v}-debian12" if v == "2.5.4" else v


def multiplexers(arch: str, names: Iterable[str]) -> set[int]:
    """The socketcall/ipc numbers on arch that rules on these names reach."""
    rows = _rows(host_version())
    return {rows[(arch, n)] for n in names if (arch, n) in rows}
