"""`ocishim scan ROOTFS [PROFILE]`: will this image break under this profile, on this
host, and will ocishim fix it?

tree.py unpacks the image (directory, OCI layout, docker/podman archive, whiteouts
included); elf.py reads each ELF file; facts.py maps the libcs and Go runtimes found to
the syscalls they need ENOSYS for; findings.py answers each before and after ocishim.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..patch import Mode, Version
from ..profile.model import Profile
from . import elf, facts
from .findings import Answers, Finding, find, missing_arches
from .tree import open_source, source_mode

# Without PROFILE: Docker's default profile, beside a development checkout
# (../shared/data/profiles) or where an administrator put it; else the default profile of
# podman and CRI-O, which containers-common installs (golang-github-containers-common on
# Debian, a dependency of podman).
DEFAULT_PROFILES = (Path(__file__).resolve().parents[3] / "shared" / "data" / "profiles" / "docker-default.json",
                    Path("/usr/share/ocishim/docker-default.json"),
                    Path("/usr/share/containers/seccomp.json"))


@dataclass(frozen=True)
class Libc:
    name: str  # glibc, musl
    version: tuple[int, ...] | None
    arch: str | None
    path: str
    static: bool = False
    floor: bool = False  # version is a lower bound (a static glibc, from its tunables)

    def text(self) -> str:
        v = ".".join(map(str, self.version)) if self.version else "version unknown"
        return f"{self.name} {'>= ' if self.floor else ''}{v}"


@dataclass
class Inventory:
    """What the image holds: libcs, Go binaries, machines."""

    libcs: list[Libc] = field(default_factory=list)
    go: list[tuple[str, str, str | None]] = field(default_factory=list)  # (path, version, arch)
    machines: list[str] = field(default_factory=list)
    elf_files: int = 0
    warnings: list[str] = field(default_factory=list)

    def main_libc(self) -> Libc | None:
        dynamic = [c for c in self.libcs if not c.static]
        return (dynamic or self.libcs or [None])[0]


def inventory(source: str) -> tuple[Inventory, str]:
    """Read every ELF file of the image; (inventory, kind of source)."""
    inv = Inventory()
    with open_source(source) as tree:
        for image_path, local in tree.elf_files():
            inv.elf_files += 1
            try:
                f = elf.read(image_path, local)
            except elf.NotReadable as exc:
                inv.warnings.append(f"skipped {exc}")
                continue
            if f.arch and f.arch not in inv.machines:
                inv.machines.append(f.arch)
            if f.glibc_defines:
                inv.libcs.append(Libc("glibc", f.glibc_defines, f.arch, image_path))
            if f.musl_version:
                inv.libcs.append(Libc("musl", f.musl_version, f.arch, image_path))
            if f.go_version:
                inv.go.append((image_path, f.go_version, f.arch))
            if f.static_libc and not f.musl_version:
                name, floor = f.static_libc
                inv.libcs.append(Libc(name, floor, f.arch, image_path, static=True, floor=name == "glibc"))
        kind = tree.kind
    return inv, kind


@dataclass
class Report:
    source: str
    kind: str
    profile: str
    runtime: str
    host_libseccomp: str | None
    inventory: Inventory
    findings: list[Finding]

    @property
    def breaks_after(self) -> bool:
        return any(f.breaks_after for f in self.findings)

    def as_json(self) -> dict:
        main = self.inventory.main_libc()
        return {
            "libc": {"name": main.name if main else None,
                     "version": ".".join(map(str, main.version)) if main and main.version else None},
            "machines": list(self.inventory.machines),
            "findings": [f.as_json() for f in self.findings],
            "libcs": [{"name": c.name, "version": ".".join(map(str, c.version)) if c.version else None,
                       "arch": c.arch, "path": c.path, "static": c.static, "floor": c.floor}
                      for c in self.inventory.libcs],
            "go": [{"path": p, "version": v, "arch": a} for p, v, a in self.inventory.go],
            "source": {"path": self.source, "kind": self.kind}, "profile": self.profile,
            "runtime": self.runtime, "host_libseccomp": self.host_libseccomp,
            "warnings": list(self.inventory.warnings),
        }


def _rows(inv: Inventory) -> list[tuple[str, str, facts.Row]]:
    out = []
    seen = set()
    for c in sorted(inv.libcs, key=lambda c: c.static):  # a shared libc names the version exactly
        key = (c.name, c.version, c.arch)
        if key in seen or c.arch is None:
            continue
        seen.add(key)
        out += [(c.arch, c.text(), row) for row in facts.applicable(c.name, c.version, c.arch)]
    for _, version, arch in inv.go:
        v = facts.go_version(version)
        if arch is not None and (version, arch) not in seen:
            seen.add((version, arch))
            out += [(arch, version, row) for row in facts.applicable("go", v, arch)]
    return out


def scan(source: str, profile: Profile, profile_name: str, mode: Mode, emulate: Version | None,
         runtime: str = "runc", host_libseccomp: str | None = None,
         read: tuple[Inventory, str] | None = None) -> Report:
    """The report for one image under one profile; `read` reuses inventory(source)."""
    inv, kind = read or inventory(source)
    answers = Answers(profile, mode, emulate, runtime, host_libseccomp)
    found = missing_arches(inv.machines, answers) + find(_rows(inv), answers)
    return Report(source, kind, profile_name, runtime, host_libseccomp, inv, found)


def default_profile() -> str:
    for path in DEFAULT_PROFILES:
        if path.is_file():
            return str(path)
    raise UsageError("PROFILE", "no default profile here (neither Docker's default profile nor "
                                "containers-common's /usr/share/containers/seccomp.json is installed): "
                                "give PROFILE")


def report_text(r: Report) -> str:
    inv = r.inventory
    lines = [f"{r.source} ({r.kind}): {inv.elf_files} ELF files; machines: {' '.join(inv.machines) or 'none'}"]
    libcs = sorted({f"{c.text()}{' (static)' if c.static else ''}" for c in inv.libcs})
    lines.append(f"libc: {', '.join(libcs) if libcs else 'none found'}")
    if inv.go:
        lines.append("Go: " + ", ".join(sorted({f"{v} ({p})" for p, v, _ in inv.go})))
    host = f"libseccomp {r.host_libseccomp}" if r.host_libseccomp else "this host's libseccomp"
    lines.append(f"profile {r.profile}; before: plain {r.runtime} with {host}; after: ocishim")
    for w in inv.warnings:
        lines.append(f"warning: {w}")
    shown = [f for f in r.findings if f.breaks_before or f.breaks_after or f.before != f.after]
    if not r.findings:
        lines.append("no syscall this image needs ENOSYS for")
    if shown:
        lines.append(f"{'arch':<8} {'syscall':<18} {'before':<22} {'after':<22} function")
    for f in shown:
        before = f.before + (" breaks" if f.breaks_before else "")
        after = f.after + (" breaks" if f.breaks_after else "")
        lines.append(f"{f.arch:<8} {f.syscall:<18} {before:<22} {after:<22} {f.function} ({f.runtime})")
    n_before = sum(f.breaks_before for f in r.findings)
    n_after = sum(f.breaks_after for f in r.findings)
    if len(shown) < len(r.findings):
        lines.append(f"{len(r.findings) - len(shown)} more answer alike before and after, and break "
                     "nothing (--json lists them)")
    lines.append(f"{n_before} break(s) with plain {r.runtime}, {n_after} with ocishim")
    for f in r.findings:
        if f.breaks_before or f.breaks_after:
            lines.append(f"  {f.syscall}: {f.if_eperm}")
    return "\n".join(lines) + "\n"


def cmd_scan(args, load_profile, mode_of) -> int:
    """`ocishim scan`; exit 0 nothing breaks after ocishim, 3 something does.

    The arguments are checked in the order they are given (ROOTFS, the options) before a
    default PROFILE is looked for, so that a mistake is named as such wherever that is."""
    source_mode(args.rootfs)
    if args.runtime not in ("runc", "crun"):
        raise UsageError("--runtime", f"must be runc or crun, not {args.runtime!r}")
    host = None
    if args.host_libseccomp:
        from ..hostlib import parse_version

        host = parse_version(args.host_libseccomp)
    mode, emulate = mode_of(args)
    if args.profile is None:
        args.profile = default_profile()
    profile = load_profile(args)
    report = scan(args.rootfs, profile, args.profile, mode, emulate, args.runtime, host)
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report_text(report))
    return 3 if report.breaks_after else 0
