"""Which syscalls a libc or Go runtime makes that only ENOSYS lets it fall back from.

The libc rows come from ../shared/data/libc/fallbacks.csv (fallbacks_data.py, generated).
The Go rows are ocishim's own, each with the source read:
- Go 1.24 crypto/rand.Read goes through crypto/internal/sysrand: getrandom(2), and
  /dev/urandom only when getrandom answers ENOSYS; any other error is returned, and
  crypto/rand then aborts the program (src/crypto/internal/sysrand/rand_getrandom.go).
  Go 1.17-1.23 fell back to /dev/urandom on any error (src/crypto/rand/rand_getrandom.go),
  and syscall.Faccessat (faccessat2) falls back on ENOSYS and EPERM alike
  (src/syscall/syscall_linux.go): neither is listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .fallbacks_data import ROWS

# Which errors make the caller fall back. "any" and "if-needed" rows never break on
# EPERM, so they are not findings.
RELEVANT = ("ENOSYS", "ENOSYS+EINVAL", "none")

GO_ROWS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("go", "1.24", "getrandom", "crypto/rand.Read (crypto/internal/sysrand)", "ENOSYS",
     "crypto/rand aborts the program: failed to read random data"),
)

# fallbacks.csv: "32-bit ABIs" are the ABIs with a 32-bit time_t kernel interface.
THIRTY_TWO_BIT = ("x86", "arm", "mips", "mipsel", "ppc", "s390", "m68k", "sh", "sheb")
_ARCH_WORDS = {"x86_64": ("x86_64",), "x86": ("x86",), "arm": ("arm",), "aarch64": ("aarch64",),
               "mips": ("mips",), "mipsel": ("mipsel",), "mips64": ("mips64", "mipsel64"),
               "mipsel64": ("mipsel64",), "ppc": ("ppc",), "ppc64": ("ppc64",), "ppc64le": ("ppc64le",),
               "riscv64": ("riscv64",), "s390": ("s390",), "s390x": ("s390x",),
               "loongarch64": ("loongarch64",), "m68k": ("m68k",), "sh": ("sh", "sheb")}


@dataclass(frozen=True)
class Row:
    runtime: str  # glibc, musl, go
    version: tuple[int, ...]
    syscall: str
    function: str
    fallback_on: str
    if_eperm: str

    def arches(self) -> tuple[str, ...] | None:
        """The arches the row is limited to by its bracket list, or None for all."""
        m = re.search(r"\[([^\]]*)\]", self.function)
        if m is None:
            return None
        text = m.group(1)
        if "every arch" in text:
            return None
        if "32-bit ABIs" in text:
            listed = text.split(":", 1)[1] if ":" in text else ""
            named = _words(listed)
            return named or THIRTY_TWO_BIT
        return _words(text) or None

    def until(self) -> tuple[int, ...] | None:
        """The last release the row holds for, where the text says `(2.33 only`."""
        m = re.search(r"\((\d+)\.(\d+) only", self.function)
        return (int(m.group(1)), int(m.group(2))) if m else None


def _words(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for word in re.split(r"[\s,:/]+", text):
        out += _ARCH_WORDS.get(word, ())
    return tuple(dict.fromkeys(out))


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def rows() -> tuple[Row, ...]:
    return tuple(Row(r[0], parse_version(r[1]), r[2], r[3], r[4], r[5]) for r in ROWS + GO_ROWS)


def applicable(runtime: str, version: tuple[int, ...] | None, arch: str) -> list[Row]:
    """Rows for this libc/runtime at this version (None: unknown, every row) on arch."""
    out = []
    for row in rows():
        if row.runtime != runtime or row.fallback_on not in RELEVANT:
            continue
        if version is not None and row.version > version:
            continue
        if version is not None and row.until() is not None and version > row.until():
            continue
        limited = row.arches()
        if limited is not None and arch not in limited:
            continue
        out.append(row)
    return out


def go_version(text: str) -> tuple[int, ...] | None:
    m = re.match(r"go(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def dedupe(items: Iterable[Row]) -> list[Row]:
    return list(dict.fromkeys(items))
