"""OCI bundles for the runtime tests: a busybox-static rootfs, a config, a profile.

Nothing here is a mock: bundles are what `runc spec` writes, edited like a user
would, and the rootfs holds the real busybox-static binary plus static probes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
PROFILES = shared_data.PROFILES
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "echo", "cat", "sleep", "true", "false", "id", "test", "[")


def missing_runtime(name: str) -> str | None:
    """Why a runtime test cannot run here, or None."""
    if os.geteuid() != 0:
        return "real containers need root"
    if shutil.which(name) is None:
        return f"{name} not found (make test installs it)"
    return None


def busybox_is_static() -> bool:
    out = subprocess.run(["file", "-L", str(BUSYBOX)], capture_output=True, text=True).stdout \
        if shutil.which("file") else ""
    return "statically linked" in out or not out


def busybox_rootfs(dest: Path, extra: Iterable[Path] = ()) -> Path:
    """A rootfs with busybox-static and its applets in /bin, plus extra static binaries."""
    if not BUSYBOX.exists():
        raise FileNotFoundError("/bin/busybox missing: apt-get install busybox-static")
    bin_dir = dest / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    for applet in APPLETS:
        link = bin_dir / applet
        if not link.exists():
            link.symlink_to("busybox")
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (dest / d).mkdir(exist_ok=True)
    for path in extra:
        shutil.copy2(path, bin_dir / Path(path).name)
    return dest


def spec(bundle: Path, rootfs: Path, args: Sequence[str],
         seccomp: dict[str, Any] | None) -> Path:
    """bundle/config.json from `runc spec`, running args in rootfs with this linux.seccomp."""
    bundle.mkdir(parents=True, exist_ok=True)
    config_path = bundle / "config.json"
    if config_path.exists():
        config_path.unlink()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = list(args)
    config["root"] = {"path": os.path.relpath(rootfs, bundle), "readonly": True}
    config["linux"].pop("seccomp", None)
    if seccomp is not None:
        config["linux"]["seccomp"] = seccomp
    config_path.write_text(json.dumps(config, indent=2))
    return config_path


def docker_profile(minus: Iterable[str] = (), default_errno: int | None = 1) -> dict[str, Any]:
    """Docker's default profile in OCI form for an amd64 host with Docker's default caps,
    with some names taken out, as a runtime receives it (converted by ocishim's own
    Docker converter, which the profile tests check against Docker's rules)."""
    from ocishim.profile import load, to_oci

    profile = to_oci(load(str(PROFILES / "docker-default.json"), kernel=(6, 18), arch="amd64").profile)
    drop = set(minus)
    rules = []
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in drop]
        if rule["names"]:
            rules.append(rule)
    profile["syscalls"] = rules
    if default_errno is not None:
        profile["defaultErrnoRet"] = default_errno
    return profile


def container_id(prefix: str = "ocishim-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def crun_prefix() -> list[str]:
    """How crun runs on this machine kind: cgroups here are hybrid, which crun refuses,
    so it runs in a private mount namespace with a cgroup2 mount (runtimes.md)."""
    return ["unshare", "-m", "sh", "-c",
            'mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup && exec "$@"', "sh"]


CRUN_ARGS = ("--cgroup-manager=disabled",)
