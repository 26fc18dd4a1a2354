"""Root file systems of real distributions for the integration tests, built once.

`debootstrap_rootfs("trixie")` returns <repo>/.cache/rootfs/trixie, building it with
`debootstrap --variant=minbase` when it is not there. The build goes into a temporary
directory next to it and is renamed into place only when complete, under a file lock,
so parallel test runs wait for one build instead of racing or seeing half a tree.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "rootfs"
MIRROR = "http://deb.debian.org/debian"
MARKER = ".ocishim-rootfs.json"  # written last: its presence means the tree is complete
BUILD_TIMEOUT = 1200


class RootfsUnavailable(RuntimeError):
    """The rootfs cannot be built here (no root, no debootstrap, no mirror): skip, with this reason."""


class RootfsBuildFailed(RuntimeError):
    """debootstrap ran and failed although the mirror answered: a real failure."""


def missing_tools() -> str | None:
    """Why debootstrap cannot run here, or None."""
    if os.geteuid() != 0:
        return "building a rootfs with debootstrap needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap not found (apt-get install debootstrap)"
    return None


def mirror_unreachable(suite: str, mirror: str = MIRROR, timeout: float = 20) -> str | None:
    """Why the mirror cannot serve `suite`, or None when its Release file downloads."""
    url = f"{mirror}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read(1)
    except (urllib.error.URLError, OSError) as exc:
        return f"the Debian mirror is unreachable ({url}: {getattr(exc, 'reason', exc)})"
    return None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock on path (created, with its directory) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first (from /proc/self/mountinfo)."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a (partial) rootfs, never following a mount that a failed debootstrap left."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if left := _mounts_under(path):
        raise RootfsBuildFailed(f"cannot remove {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


def is_complete(root: Path) -> bool:
    return (root / MARKER).is_file()


def debootstrap_rootfs(suite: str, mirror: str = MIRROR) -> Path:
    """A minbase rootfs of Debian `suite`, from the cache or built now (about 20-60 s).

    Raises RootfsUnavailable when it cannot be built here, RootfsBuildFailed when
    debootstrap fails with the mirror reachable.
    """
    target = CACHE / suite
    if is_complete(target):
        return target
    if reason := missing_tools():
        raise RootfsUnavailable(reason)
    CACHE.mkdir(parents=True, exist_ok=True)
    with locked(CACHE / f"{suite}.lock"):
        if is_complete(target):  # another run built it while we waited
            return target
        if reason := mirror_unreachable(suite, mirror):
            raise RootfsUnavailable(reason)
        # Under the lock, any temporary tree is what a killed run left behind.
        for stale in CACHE.glob(f".{suite}.tmp-*"):
            _remove_tree(stale)
        _remove_tree(target)  # a tree without the marker is incomplete
        tmp = CACHE / f".{suite}.tmp-{os.getpid()}"
        started = time.monotonic()
        try:
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(tmp), mirror],
                capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if proc.returncode != 0:
                log = tmp / "debootstrap" / "debootstrap.log"
                detail = log.read_text(errors="replace")[-4000:] if log.is_file() else proc.stderr[-4000:]
                raise RootfsBuildFailed(f"debootstrap {suite} exited with {proc.returncode}:\n{detail}")
            (tmp / MARKER).write_text(json.dumps({
                "suite": suite, "mirror": mirror, "variant": "minbase",
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started, 1),
            }) + "\n")
            os.rename(tmp, target)
        except BaseException:
            _remove_tree(tmp)
            raise
    return target


def package_version(root: Path, package: str) -> str | None:
    """The version of an installed Debian package in root, read from dpkg's status file."""
    status = root / "var" / "lib" / "dpkg" / "status"
    for stanza in status.read_text(errors="replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line.startswith(" "))
        if fields.get("Package") == package and fields.get("Status", "").endswith(" installed"):
            return fields.get("Version")
    return None
