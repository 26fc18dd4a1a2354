"""What an ELF file says about the syscalls it will make: machine, libc, Go.

Read with pyelftools, one file at a time:
- the machine (e_machine, class, byte order, MIPS ABI flags) as the filter's arch name;
- static or dynamic (PT_INTERP, DT_NEEDED);
- glibc's version from libc.so.6's version definitions (the highest GLIBC_2.N it
  defines), musl's from its loader (ld-musl-ARCH.so.1 carries the version it prints);
- a static glibc from the tunables compiled in (each names the release that added it:
  a lower bound), a static musl from the message table only musl has;
- Go: the version recorded in .go.buildinfo (Go 1.18 and later put it inline).
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError, ELFParseError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection

# e_machine -> arch by (class, little endian); MIPS is told apart by its ABI flags below.
_MACHINES = {
    "EM_X86_64": {(64, True): "x86_64", (32, True): "x32"},
    "EM_386": {(32, True): "x86"},
    "EM_AARCH64": {(64, True): "aarch64"},
    "EM_ARM": {(32, True): "arm"},
    "EM_PPC64": {(64, True): "ppc64le", (64, False): "ppc64"},
    "EM_PPC": {(32, False): "ppc"},
    "EM_S390": {(64, False): "s390x", (32, False): "s390"},
    "EM_RISCV": {(64, True): "riscv64"},
    "EM_LOONGARCH": {(64, True): "loongarch64"}, 258: {(64, True): "loongarch64"},
    "EM_68K": {(32, False): "m68k"},
    "EM_SH": {(32, True): "sh", (32, False): "sheb"},
    "EM_PARISC": {(32, False): "parisc", (64, False): "parisc64"},
}
EF_MIPS_ABI2 = 0x20  # n32

# Tunables a static glibc carries, and the release that added each (glibc NEWS).
GLIBC_TUNABLES = (
    ("glibc.malloc.tcache_count", (2, 26)), ("glibc.cpu.x86_ibt", (2, 28)),
    ("glibc.malloc.mxfast", (2, 30)), ("glibc.rtld.nns", (2, 33)), ("glibc.mem.tagging", (2, 33)),
    ("glibc.pthread.stack_cache_size", (2, 34)), ("glibc.pthread.rseq", (2, 35)),
    ("glibc.rtld.dynamic_sort", (2, 35)), ("glibc.malloc.hugetlb", (2, 35)),
    ("glibc.pthread.stack_hugetlb", (2, 38)), ("glibc.mem.decorate_maps", (2, 39)),
    ("glibc.cpu.x86_memset_non_temporal_threshold", (2, 40)), ("glibc.rtld.execstack", (2, 41)),
)
MUSL_MARKER = b"No error information"  # musl's strerror for unknown errors; glibc says "Unknown error"
MUSL_SYMBOLS = frozenset({"__init_libc", "libc_start_main_stage2"})  # musl's start-up, src/env
_GO_MAGIC = b"\xff Go buildinf:"
_MUSL_VERSION = re.compile(rb"\x00(1\.[0-9]\.[0-9]{1,2})\x00")
_GLIBC_VERSION = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?$")

Version = tuple[int, ...]


@dataclass(frozen=True)
class ElfFacts:
    path: str
    arch: str | None
    interpreter: str | None
    needed: tuple[str, ...]
    glibc_defines: Version | None  # this file is a glibc libc.so: the newest GLIBC_ version
    musl_version: Version | None  # this file is musl's loader/libc and names its version
    static_libc: tuple[str, Version | None] | None  # ("glibc", floor) or ("musl", None)
    go_version: str | None

    @property
    def static(self) -> bool:
        return self.interpreter is None and not self.needed


class NotReadable(Exception):
    """A file with the ELF magic that pyelftools cannot read: skipped with a warning."""


def read(image_path: str, local_path: str) -> ElfFacts:
    """The facts of one ELF file (local_path is where its bytes are on this machine)."""
    try:
        # Never follow a symlink or block on a FIFO swapped in since the tree was read.
        fd = os.open(local_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotReadable(f"{image_path}: not a regular file")
        with os.fdopen(fd, "rb") as f:
            elf = ELFFile(f)
            arch = _arch(elf)
            interpreter, needed = _dynamic(elf)
            glibc = _glibc_defines(elf) if "libc.so" in image_path.rsplit("/", 1)[-1] else None
            # Only a Go binary has the buildinfo magic: look for it in the bytes before
            # parsing every section header (most of the time of a scan).
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                go = _go_version(elf) if m.find(_GO_MAGIC) >= 0 else None
            name = image_path.rsplit("/", 1)[-1]
            is_musl = name.startswith("ld-musl-") or name.startswith("libc.musl-")
            is_static = interpreter is None and not needed and go is None
            data = b""
            symbols: frozenset[str] = frozenset()
            if is_musl or is_static:  # only these need the bytes searched
                symbols = _symbols(elf) if is_static else symbols
                f.seek(0)
                data = f.read()
    except (ELFError, ELFParseError, OSError, ValueError, KeyError, IndexError, struct.error) as exc:
        raise NotReadable(f"{image_path}: {exc}") from None
    musl = None
    if is_musl:
        m = _MUSL_VERSION.search(data)
        musl = tuple(int(x) for x in m.group(1).split(b".")) if m else None
    static_libc = _static_libc(data, symbols) if is_static else None
    return ElfFacts(image_path, arch, interpreter, needed, glibc, musl, static_libc, go)


def _arch(elf: ELFFile) -> str | None:
    machine = elf["e_machine"]
    bits, little = elf.elfclass, elf.little_endian
    if machine == "EM_MIPS":
        if bits == 32:
            return "mipsel" if little else "mips"
        n32 = bool(elf["e_flags"] & EF_MIPS_ABI2)
        return ("mipsel64n32" if n32 else "mipsel64") if little else ("mips64n32" if n32 else "mips64")
    return _MACHINES.get(machine, {}).get((bits, little))


def _dynamic(elf: ELFFile) -> tuple[str | None, tuple[str, ...]]:
    """PT_INTERP and the DT_NEEDED entries, from the program headers (what the loader
    reads; cheaper than the section headers)."""
    interpreter = None
    needed: list[str] = []
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_INTERP":
            interpreter = segment.get_interp_name()
        elif isinstance(segment, DynamicSegment):
            needed += [tag.needed for tag in segment.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
    return interpreter, tuple(needed)


def _glibc_defines(elf: ELFFile) -> Version | None:
    """The newest GLIBC_x.y a libc.so defines (its version definitions, .gnu.version_d)."""
    best = None
    for section in elf.iter_sections():
        if isinstance(section, GNUVerDefSection):
            for _, aux in section.iter_versions():
                for entry in aux:
                    m = _GLIBC_VERSION.match(entry.name)
                    if m:
                        v = (int(m.group(1)), int(m.group(2)))
                        best = v if best is None or v > best else best
    return best


def _go_version(elf: ELFFile) -> str | None:
    """The Go version in .go.buildinfo (Go 1.18+: inline, after a 32-byte header)."""
    section = elf.get_section_by_name(".go.buildinfo")
    if section is None:
        return None
    data = section.data()
    if not data.startswith(_GO_MAGIC) or len(data) < 33:
        return None
    if data[15] & 0x2:  # inline strings: a varint length, then the bytes
        length, pos, shift = 0, 32, 0
        while pos < len(data):
            byte = data[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            shift += 7
            if not byte & 0x80:
                break
        text = data[pos:pos + length].decode("utf-8", "replace")
        return text if text.startswith("go") else None
    m = re.search(rb"go1\.\d+(?:\.\d+)?", data)
    return m.group(0).decode() if m else "go (version unknown)"


def _symbols(elf: ELFFile) -> frozenset[str]:
    """The names in .symtab (absent from stripped binaries)."""
    table = elf.get_section_by_name(".symtab")
    if table is None or not hasattr(table, "iter_symbols"):
        return frozenset()
    return frozenset(sym.name for sym in table.iter_symbols() if sym.name in MUSL_SYMBOLS)


def _static_libc(data: bytes, symbols: frozenset[str]) -> tuple[str, Version | None] | None:
    """A static binary's libc: glibc with a version floor from its tunables, or musl (by
    its start-up symbols, or its strerror text when stripped)."""
    found = [v for name, v in GLIBC_TUNABLES if name.encode() + b"\x00" in data]
    if found or b"GLIBC_TUNABLES" in data:
        return ("glibc", max(found) if found else None)
    if symbols or MUSL_MARKER in data:
        return ("musl", None)
    return None
