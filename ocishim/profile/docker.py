"""Convert a Docker-format profile to the OCI form, the way the Docker daemon does.

Follows moby/profiles seccomp (seccomp.go, seccomp_linux.go, kernel_linux.go) as
described in ../shared/data/profiles/README.md, plus the containers/common
dialect's errno names. In order:

- A profile with an empty defaultAction and no rules means "no seccomp" (None).
- Giving both `architectures` and `archMap` is an error. Otherwise the first
  archMap entry whose `architecture` is the daemon's arch contributes it and its
  `subArchitectures`, in file order; no match leaves `architectures` empty.
  Docker's two arch tables disagree on LoongArch and 32-bit MIPS little-endian
  ("loongarch64" vs "loong64", "mipsel" vs "mipsle"): on those no entry is ever
  expanded. We keep that, since the point is to produce what Docker produces.
- Rules are kept or dropped one at a time, in file order, never merged:
  legacy `name` becomes `names` (both is an error); then excludes (arches, caps,
  minKernel) drop the rule if any matches; then includes drop it unless every
  condition holds. Arches are Docker short names (amd64, arm64, ...), caps exact
  strings, minKernel "major.minor" compared with the kernel's first two numbers.
- containers/common: a non-empty `errno` / `defaultErrno` name wins over the
  numeric errnoRet / defaultErrnoRet, translated with this platform's errno values.

Stricter than Docker, to fail closed: every rule is validated, including rules the
conditions drop, and archMap entries must name known architectures.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from .. import libseccomp
from ..arch import BY_NAME, BY_OCI, Arch
from ..errors import ProfileError, SystemFailure, UsageError
from .model import Profile, Rule
from .parse import (
    build_profile,
    check_arch,
    check_syscall_name,
    get_list,
    get_object,
    get_string,
    get_string_list,
    join,
    parse_rule,
)

# moby oci/caps/defaults.go DefaultCapabilities(), in its order.
DOCKER_DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Arch.name -> the short name Docker derives from the Go build arch of dockerd
# (goToNative). Arches Go cannot build dockerd for, or Docker has no name for
# (x32, mips, parisc, parisc64), get "" as Docker would: no archMap entry and
# no `arches` condition ever matches it.
DOCKER_ARCH_NAMES: dict[str, str] = {
    "x86_64": "amd64",
    "x86": "x86",
    "aarch64": "arm64",
    "arm": "arm",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "ppc": "ppc",
    "s390x": "s390x",
    "s390": "s390",
    "riscv64": "riscv64",
    "mipsel": "mipsel",
    "mips64": "mips64",
    "mipsel64": "mipsel64",
    "mips64n32": "mips64n32",
    "mipsel64n32": "mips3l64n32",  # sic, Docker's spelling
    "loongarch64": "loongarch64",
}

# Short name -> the archMap `architecture` it expands (nativeToSeccomp), keyed
# exactly as Docker keys it; see the module docstring for the two mismatches.
ARCHMAP_KEYS: dict[str, str] = {
    "x86": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32",
    "mipsle": "SCMP_ARCH_MIPSEL",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
}

_KERNEL_VERSION = re.compile(r"([0-9]+)\.([0-9]+)\Z")
_RELEASE = re.compile(r"([0-9]+)\.([0-9]+)")
_ERRNO_NAME = re.compile(r"E[A-Z0-9]+\Z")


def docker_arch_name(arch: Arch) -> str:
    """Docker's short name for an arch ("amd64" for x86_64); "" where Docker has none."""
    return DOCKER_ARCH_NAMES.get(arch.name, "")


def short_arch(arch: str | None) -> str:
    """The Docker short arch name for `arch`: a short name, an Arch name or SCMP_ARCH_*; None is the host."""
    if arch is None:
        return docker_arch_name(libseccomp.native())
    if arch in DOCKER_ARCH_NAMES.values():
        return arch
    if arch in BY_NAME:
        return docker_arch_name(BY_NAME[arch])
    if arch in BY_OCI:
        return docker_arch_name(BY_OCI[arch])
    raise UsageError("arch", f"unknown architecture {arch!r}")


def running_kernel() -> tuple[int, int]:
    """(major, minor) of the running kernel, from the first two numbers of uname's release."""
    release = os.uname().release
    m = _RELEASE.match(release)
    if not m:
        raise SystemFailure("uname", f"cannot parse kernel release {release!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class Conditions:
    """One `includes` or `excludes` object; min_kernel None when not given."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


def parse_min_kernel(value: Any, path: str) -> tuple[int, int] | None:
    """Docker's KernelVersion: "major.minor", each 0..255, not "0.0".

    An empty string decodes to a set-but-zero version in Docker, which every kernel
    satisfies; we keep that.
    """
    if value is None:
        return None
    text = get_string(value, path)
    if text == "":
        return (0, 0)
    m = _KERNEL_VERSION.match(text)
    if not m or int(m.group(1)) > 255 or int(m.group(2)) > 255:
        raise ProfileError(path, f'invalid kernel version "{text}": expected "<major>.<minor>", each 0..255')
    version = (int(m.group(1)), int(m.group(2)))
    if version == (0, 0):
        raise ProfileError(path, f'invalid kernel version "{text}": cannot be 0.0')
    return version


def parse_conditions(value: Any, path: str) -> Conditions:
    """An `includes` or `excludes` object; null and {} are "no condition"."""
    if value is None:
        return Conditions()
    obj = get_object(value, path)
    return Conditions(
        caps=tuple(get_string_list(obj.get("caps"), join(path, "caps"))),
        arches=tuple(get_string_list(obj.get("arches"), join(path, "arches"))),
        min_kernel=parse_min_kernel(obj.get("minKernel"), join(path, "minKernel")),
    )


def errno_number(value: Any, path: str) -> int | None:
    """A containers/common errno name ("EPERM") as a number; None for absent or empty."""
    if value is None:
        return None
    name = get_string(value, path)
    if name == "":
        return None
    number = getattr(_errno, name, None) if _ERRNO_NAME.match(name) else None
    if not isinstance(number, int):
        raise ProfileError(path, f'unknown errno name "{name}"')
    return number


def _archmap(value: Any) -> list[tuple[str, list[str]]]:
    entries = []
    for i, entry in enumerate(get_list(value, "archMap")):
        path = f"archMap[{i}]"
        entry = get_object(entry, path)
        if entry.get("architecture") is None:
            raise ProfileError(join(path, "architecture"), "required field is missing")
        arch = check_arch(entry["architecture"], join(path, "architecture"))
        subs_path = join(path, "subArchitectures")
        subs = [check_arch(s, f"{subs_path}[{j}]")
                for j, s in enumerate(get_list(entry.get("subArchitectures"), subs_path))]
        entries.append((arch, subs))
    return entries


def _rule(raw: Any, path: str) -> tuple[Rule, Conditions, Conditions]:
    """One Docker rule as an OCI Rule plus its includes and excludes."""
    obj = get_object(raw, path)
    oci = dict(obj)
    keys: dict[str, str] = {}
    comment = obj.get("comment")
    if comment is not None:
        get_string(comment, join(path, "comment"))
    name = obj.get("name")
    if name is not None and get_string(name, join(path, "name")) != "":
        if get_list(obj.get("names"), join(path, "names")):
            raise ProfileError(join(path, "name"), 'both "name" and "names" are given; use one')
        oci["names"] = [check_syscall_name(name, join(path, "name"))]
    number = errno_number(obj.get("errno"), join(path, "errno"))
    if number is not None:
        oci["errnoRet"] = number
        keys["errnoRet"] = "errno"
    includes = parse_conditions(obj.get("includes"), join(path, "includes"))
    excludes = parse_conditions(obj.get("excludes"), join(path, "excludes"))
    return parse_rule(oci, path, keys), includes, excludes


def _keep(
    inc: Conditions, exc: Conditions, arch: str, caps: frozenset[str],
    kernel: Callable[[], tuple[int, int]],
) -> bool:
    """Docker's order: excludes arches, caps, minKernel; then includes the same."""
    if exc.arches and arch in exc.arches:
        return False
    if any(c in caps for c in exc.caps):
        return False
    if exc.min_kernel is not None and kernel() >= exc.min_kernel:
        return False
    if inc.arches and arch not in inc.arches:
        return False
    if any(c not in caps for c in inc.caps):
        return False
    if inc.min_kernel is not None and kernel() < inc.min_kernel:
        return False
    return True


def convert(
    obj: Any,
    *,
    caps: frozenset[str] | None = None,
    kernel: tuple[int, int] | None = None,
    arch: str | None = None,
) -> Profile | None:
    """The OCI Profile Docker would hand the runtime; None when the profile means no seccomp.

    caps: the container's bounding set (default DOCKER_DEFAULT_CAPS); kernel: (major,
    minor) (default the running kernel, read only if a rule uses minKernel); arch:
    the daemon's arch (default the host's).
    """
    obj = get_object(obj, "(top level)")
    short = short_arch(arch)
    caps = frozenset(DOCKER_DEFAULT_CAPS if caps is None else caps)
    known_kernel: list[tuple[int, int]] = [] if kernel is None else [tuple(kernel)]

    def kernel_version() -> tuple[int, int]:
        if not known_kernel:
            known_kernel.append(running_kernel())
        return known_kernel[0]

    raw_rules = get_list(obj.get("syscalls"), "syscalls")
    if obj.get("defaultAction") in (None, "") and not raw_rules:
        return None

    top = dict(obj)
    keys: dict[str, str] = {}
    archmap = _archmap(obj.get("archMap"))
    if archmap:
        if get_list(obj.get("architectures"), "architectures"):
            raise ProfileError("archMap", 'both "architectures" and "archMap" are given; use one')
        wanted = ARCHMAP_KEYS.get(short)
        expanded: list[str] = []
        for main, subs in archmap:
            if main == wanted:
                expanded = [main, *subs]
                break
        top["architectures"] = expanded
    default_errno = errno_number(obj.get("defaultErrno"), "defaultErrno")
    if default_errno is not None:
        top["defaultErrnoRet"] = default_errno
        keys["defaultErrnoRet"] = "defaultErrno"

    kept = []
    for i, raw in enumerate(raw_rules):
        rule, includes, excludes = _rule(raw, f"syscalls[{i}]")
        if _keep(includes, excludes, short, caps, kernel_version):
            kept.append(rule)
    return build_profile(top, "", rules=tuple(kept), keys=keys)
