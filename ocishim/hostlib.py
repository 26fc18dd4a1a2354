"""What plain runc and crun do on a host with a given libseccomp: `--host-libseccomp VERSION`.

Neither runtime can use a rule for a name its libseccomp cannot resolve: crun and runc
both resolve each name on the native arch and skip it when that fails (crun unless
run.oci.seccomp_fail_unknown_syscall), and libseccomp puts a rule on another arch only
where it knows the name there. runc then prepends its stub: ERRNO(ENOSYS) for every
number above the highest one its libseccomp resolves among the profile's names, per
arch (libcontainer/seccomp/patchbpf), unless the default action lets calls through or
is ERRNO(ENOSYS) already. Everything else follows the profile's rules exactly, as
libseccomp compiles them; ocishim's program with `--enosys off` has exactly those rules
(names the local libseccomp lacks compiled by ocishim, rule 12), so it answers for every
kept rule and the default action answers the rest.

Which release knows which name comes from ../shared/data/libseccomp/known.csv, shipped
as hostlib_data.py (scripts/gen_hostlib_table.py).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Mapping

from . import libseccomp, syscalls
from .actions import ENOSYS, RET_ALLOW, RET_ERRNO, RET_LOG, RET_TRACE, describe
from .arch import Arch
from .errors import UsageError
from .profile.model import Profile

RUNTIMES = ("runc", "crun")


@functools.cache
def _table() -> tuple[tuple[str, ...], dict[tuple[str, str], tuple[int, int]]]:
    from .hostlib_data import KNOWN, VERSIONS

    known: dict[tuple[str, str], tuple[int, int]] = {}
    for line in KNOWN.splitlines():
        arch, name, nr, mask = line.split(",")
        known[(arch, name)] = (int(nr), int(mask, 16))
    return VERSIONS, known


def versions() -> tuple[str, ...]:
    return _table()[0]


def parse_version(text: str, flag: str = "--host-libseccomp") -> str:
    """A release of known.csv: `2.5.4`, `v2.5.4`, or a Debian build such as `2.5.4-debian12`."""
    wanted = text.strip().removeprefix("v")
    if wanted not in versions():
        raise UsageError(flag, f"unknown libseccomp version {text!r} (known: {', '.join(versions())})")
    return wanted


def resolves(version: str, arch: str, name: str) -> int | None:
    """The number release `version` gives name on arch, or None when it cannot name it.

    known.csv leaves out socket and IPC names that libseccomp turns into pseudo numbers
    (it routes their rules to socketcall/ipc): those count as known where the local
    libseccomp treats them so too.
    """
    versions_, known = _table()
    entry = known.get((arch, name))
    if entry is not None and entry[1] >> versions_.index(version) & 1:
        return entry[0]
    local = _local_arch(arch)
    if local is not None and libseccomp.resolve_name(local, name) < -1:
        return syscalls.resolve(arch, name)
    return None


def _local_arch(name: str) -> Arch | None:
    from .arch import BY_NAME

    arch = BY_NAME.get(name)
    return arch if arch is not None and arch in libseccomp.supported_arches() else None


Resolver = Callable[[str, str], "int | None"]


def resolver(version: str | None) -> Resolver:
    """(arch name, syscall name) -> number, for release `version` of known.csv, or for
    the libseccomp ocishim loads (None)."""
    if version is not None:
        return functools.partial(resolves, version)

    def local(arch: str, name: str) -> int | None:
        found = _local_arch(arch)
        if found is None:
            return None
        nr = libseccomp.resolve_name(found, name)
        if nr < -1:  # a pseudo number: known, routed to socketcall/ipc
            return syscalls.resolve(arch, name)
        return nr if nr >= 0 else None
    return local


def _as_resolver(version: "str | Resolver") -> Resolver:
    return resolver(version) if isinstance(version, str) else version


def dropped(names: Iterable[str], version: "str | Resolver", arch: Arch, native: Arch) -> frozenset[str]:
    """The names a runtime with this libseccomp skips on arch: it resolves each name on the
    native arch first, and libseccomp adds the rule only where it knows the name."""
    resolve = _as_resolver(version)
    return frozenset(n for n in names if resolve(native.name, n) is None or resolve(arch.name, n) is None)


def runc_max(names: Iterable[str], version: "str | Resolver", arch: Arch) -> int | None:
    """The highest number this libseccomp resolves on arch among the names: runc's stub
    answers ENOSYS above it."""
    resolve = _as_resolver(version)
    numbers = [nr for n in names if (nr := resolve(arch.name, n)) is not None]
    return max(numbers, default=None)


def runc_stub_applies(default_action: int) -> bool:
    """runc adds no stub when the default lets calls through or is ENOSYS already."""
    permissive = default_action & 0xFFFF0000 in (RET_ALLOW, RET_LOG, RET_TRACE)
    return not permissive and default_action != RET_ERRNO | ENOSYS


def plain_answer(runtime: str, names: frozenset[str], exact: str, default_action: int,
                 version: "str | Resolver", arch: Arch, native: Arch, nr: int, name: str | None) -> str:
    """What plain `runtime` answers for (arch, nr) given a profile listing `names`.

    exact is the answer of the profile's rules as libseccomp compiles them (ocishim's
    `off` program): it stands wherever the runtime keeps the rule.
    """
    if runtime == "runc" and runc_stub_applies(default_action):
        top = runc_max(names, version, arch)
        if top is not None and nr > top:
            return describe(RET_ERRNO | ENOSYS)
    if name is not None and name in names and name in dropped((name,), version, arch, native):
        return describe(default_action)
    return exact


def plain_answers(profile: Profile, off, arches: Iterable[Arch], version: str,
                  only: Mapping[str, Iterable[tuple[str | None, int]]] | None = None
                  ) -> dict[tuple[str, str, int], str]:
    """(runtime, arch, nr) -> answer, for every table syscall of arches (or only the
    (name, nr) pairs given per arch). off: the profile patched with `--enosys off`."""
    from .explain import answer

    native = libseccomp.native()
    default = off.compiled.default_action
    names = frozenset(n for rule in profile.syscalls for n in rule.names)
    resolve = resolver(version)
    out: dict[tuple[str, str, int], str] = {}
    for arch in arches:
        if arch.name not in syscalls.arches():
            continue
        pairs = only.get(arch.name, ()) if only is not None else list(syscalls.names(arch.name).items())
        for name, nr in pairs:
            exact, _ = answer(off.program, arch, nr)
            for runtime in RUNTIMES:
                out[(runtime, arch.name, nr)] = plain_answer(runtime, names, exact, default, resolve,
                                                             arch, native, nr, name)
    return out


def annotate(entries, profile: Profile, version: str) -> list:
    """explain's entries with what plain runc and crun answer on a host with `version`."""
    from dataclasses import replace

    from .arch import BY_NAME
    from .patch import patch_profile

    off = patch_profile(profile, "off")
    only: dict[str, list[tuple[str | None, int]]] = {}
    for e in entries:
        only.setdefault(e.arch, []).append((e.name, e.nr))
    answers = plain_answers(profile, off, [BY_NAME[a] for a in only], version, only)
    return [replace(e, plain=tuple((rt, answers[(rt, e.arch, e.nr)]) for rt in RUNTIMES
                                   if (rt, e.arch, e.nr) in answers)) for e in entries]
