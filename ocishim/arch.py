"""Architectures: one table mapping OCI names, libseccomp tokens and audit values."""

from __future__ import annotations

from .record import Record


_64BIT = 0x80000000
_LE = 0x40000000
_MIPS_N32 = 0x20000000

X32_SYSCALL_BIT = 0x40000000
ARM_PRIVATE_BASE = 0x0F0000


class Arch(Record):
    """One seccomp architecture.

    `token` is what libseccomp calls the arch (SCMP_ARCH_*); `audit` is the value
    the kernel puts in seccomp_data.arch. They differ only for x32, which shares
    AUDIT_ARCH_X86_64 and is told apart by X32_SYSCALL_BIT in nr.
    """

    # name: lower-case short name, as in ../shared/data/syscalls
    __slots__ = ("name", "token", "audit", "little_endian", "bits")
    name: str
    token: int
    audit: int
    little_endian: bool
    bits: int

    @property
    def oci(self) -> str:
        return "SCMP_ARCH_" + self.name.upper()

    @property
    def audit_name(self) -> str:
        return _AUDIT_NAMES[self.audit]


def _arch(name: str, em: int, flags: int, bits: int, audit: int | None = None) -> Arch:
    token = em | flags
    return Arch(name, token, token if audit is None else audit, bool(flags & _LE), bits)


# Order is the canonical output order everywhere (explain, --json, tests).
ARCHES: tuple[Arch, ...] = (
    _arch("x86_64", 62, _64BIT | _LE, 64),
    _arch("x86", 3, _LE, 32),
    _arch("x32", 62, _LE, 32, audit=62 | _64BIT | _LE),
    _arch("aarch64", 183, _64BIT | _LE, 64),
    _arch("arm", 40, _LE, 32),
    _arch("ppc64le", 21, _64BIT | _LE, 64),
    _arch("ppc64", 21, _64BIT, 64),
    _arch("ppc", 20, 0, 32),
    _arch("s390x", 22, _64BIT, 64),
    _arch("s390", 22, 0, 32),
    _arch("riscv64", 243, _64BIT | _LE, 64),
    _arch("mips", 8, 0, 32),
    _arch("mipsel", 8, _LE, 32),
    _arch("mips64", 8, _64BIT, 64),
    _arch("mipsel64", 8, _64BIT | _LE, 64),
    _arch("mips64n32", 8, _64BIT | _MIPS_N32, 32),
    _arch("mipsel64n32", 8, _64BIT | _LE | _MIPS_N32, 32),
    _arch("parisc", 15, 0, 32),
    _arch("parisc64", 15, _64BIT, 64),
    _arch("loongarch64", 258, _64BIT | _LE, 64),
)

BY_NAME: dict[str, Arch] = {a.name: a for a in ARCHES}
BY_OCI: dict[str, Arch] = {a.oci: a for a in ARCHES}
BY_TOKEN: dict[int, Arch] = {a.token: a for a in ARCHES}

_AUDIT_NAMES: dict[int, str] = {}
for _a in ARCHES:
    _AUDIT_NAMES.setdefault(_a.audit, "AUDIT_ARCH_" + _a.name.upper())
_AUDIT_NAMES[BY_NAME["x86"].audit] = "AUDIT_ARCH_I386"

# Arches sharing one audit value (only x86_64/x32): a filter tells them apart by nr.
BY_AUDIT: dict[int, tuple[Arch, ...]] = {}
for _a in ARCHES:
    BY_AUDIT[_a.audit] = BY_AUDIT.get(_a.audit, ()) + (_a,)


def order(arches) -> tuple[Arch, ...]:
    """Sort arches into the canonical order of ARCHES, dropping duplicates."""
    wanted = {a.name for a in arches}
    return tuple(a for a in ARCHES if a.name in wanted)


def arch_of_nr(audit: int, nr: int) -> Arch | None:
    """Which arch a (seccomp_data.arch, nr) pair belongs to."""
    candidates = BY_AUDIT.get(audit, ())
    if len(candidates) > 1:
        want_x32 = bool(nr & X32_SYSCALL_BIT)
        for a in candidates:
            if (a.name == "x32") == want_x32:
                return a
    return candidates[0] if candidates else None


NR_MAX = 0xFFFFFFFF


def nr_domain(name: str) -> tuple[int, int]:
    """The nr values that belong to an arch under its audit value: x86_64 and x32 split at bit 30."""
    if name == "x86_64":
        return (0, X32_SYSCALL_BIT - 1)
    if name == "x32":
        return (X32_SYSCALL_BIT, NR_MAX)
    return (0, NR_MAX)


# Other spellings of the same arches, so that a name copied from Docker, Go, Debian or
# `uname -m` works wherever the command line takes an ARCH. Canonical names (libseccomp's
# seccomp_arch_resolve_name spelling, the table's) and SCMP_ARCH_* are accepted as well.
# Docker's own keys (nativeToSeccomp: amd64, arm64, mipsle, mipsel64...) are among these.
ALIASES: dict[str, str] = {
    # Go's GOARCH (runtime.GOARCH, as Docker and containerd report the platform)
    "amd64": "x86_64", "386": "x86", "arm64": "aarch64", "loong64": "loongarch64",
    "mipsle": "mipsel", "mips64le": "mipsel64", "mips64p32": "mips64n32",
    "mips64p32le": "mipsel64n32",
    # Debian architecture names (dpkg --print-architecture)
    "i386": "x86", "armhf": "arm", "armel": "arm", "ppc64el": "ppc64le", "powerpc": "ppc",
    "mips64el": "mipsel64", "hppa": "parisc",
    # uname -m spellings the table's names do not cover
    "i486": "x86", "i586": "x86", "i686": "x86", "x86-64": "x86_64",
    "armv5tel": "arm", "armv6l": "arm", "armv7l": "arm", "armv8l": "arm",
}


def lookup(name: str) -> Arch | None:
    """The arch called `name` by libseccomp, the OCI spec (SCMP_ARCH_*), Go, Docker or Debian."""
    key = name.strip().lower()
    if key.startswith("scmp_arch_"):
        return BY_NAME.get(key[len("scmp_arch_"):])
    return BY_NAME.get(key) or BY_NAME.get(ALIASES.get(key, ""))


def spellings() -> tuple[str, ...]:
    """Every name lookup() accepts without the SCMP_ARCH_ prefix, canonical names first."""
    return tuple(BY_NAME) + tuple(ALIASES)
