"""The compiled-filter cache with a real runtime: `ocishim run --runtime runc` and
`ocishim-runtime create` under runc take what a valid entry holds, and nothing from a
damaged one.

The oracle is the kernel, through runc: a planted entry (a real entry whose cached
linux.seccomp answers mkdir with ERRNO(99), checksummed again from the entry format
written out here) makes busybox's mkdir fail with EADDRNOTAVAIL ("Cannot assign
requested address"); the profile as written lets mkdir reach the read-only root file
system (EROFS). One flipped bit in the entry, and the container sees EROFS again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .bundles import REPO, busybox_rootfs, docker_profile, missing_runtime, spec

pytestmark = pytest.mark.runtime

MAGIC = b"ocishim-filter-cache 1\n"
WRAPPER = "import sys; from ocishim.runtime import main; sys.exit(main())"
PLANTED = "Cannot assign requested address"  # strerror(99)
PLAIN = "Read-only file system"


@pytest.fixture
def work(tmp_path) -> Path:
    if reason := missing_runtime("runc"):
        pytest.skip(reason)
    busybox_rootfs(tmp_path / "rootfs")
    # A copy of the package: keys follow every source file, and others edit the checkout.
    shutil.copytree(REPO / "ocishim", tmp_path / "src" / "ocishim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    return tmp_path


def _env(work: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCISHIM_") and k != "PYTHONPATH"}
    return {**base, "PYTHONPATH": str(work / "src"), "OCISHIM_CACHE": str(work / "cache")}


def _run(work: Path, name: str) -> str:
    """`ocishim run --runtime runc` of `mkdir /tmp/x` (root read-only); the container's stderr."""
    bundle = work / name
    spec(bundle, work / "rootfs", ["/bin/busybox", "mkdir", "/tmp/x"], docker_profile())
    proc = subprocess.run([sys.executable, "-m", "ocishim", "run", "--runtime", "runc",
                           "--id", f"h11-cache-{name}-{os.getpid()}", str(bundle)],
                          capture_output=True, text=True, env=_env(work), timeout=120)
    assert proc.returncode == 1, proc  # mkdir failed, one way or the other
    return proc.stderr


def _plant(entry: Path) -> None:
    """mkdir and mkdirat answer ERRNO(99) in the entry's linux.seccomp; checksums redone."""
    key, _, program_sum, payload = entry.read_bytes()[len(MAGIC):].split(b"\n", 3)
    value = json.loads(payload)
    seccomp = json.loads(value["seccomp"])
    for rule in seccomp["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in ("mkdir", "mkdirat")]
    seccomp["syscalls"] = [r for r in seccomp["syscalls"] if r["names"]]
    seccomp["syscalls"].insert(0, {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                   "errnoRet": 99})
    value["seccomp"] = json.dumps(seccomp, indent=2) + "\n"
    body = json.dumps(value, sort_keys=True).encode()
    entry.write_bytes(b"".join((MAGIC, key, b"\n", hashlib.sha256(body).hexdigest().encode(), b"\n",
                                program_sum, b"\n", body)))


def test_run_takes_a_valid_entry_and_never_a_damaged_one(work):
    assert PLAIN in _run(work, "cold")
    (entry,) = [p for p in (work / "cache").iterdir()]
    _plant(entry)
    assert PLANTED in _run(work, "planted")  # the control: a hit reaches the runtime
    data = bytearray(entry.read_bytes())
    data[-100] ^= 0x04
    entry.write_bytes(bytes(data))
    assert PLAIN in _run(work, "flipped")
    assert PLANTED.encode() not in entry.read_bytes() and b"mkdirat" in entry.read_bytes()  # rebuilt


def test_wrapper_create_hit_writes_the_cold_config(work):
    """`ocishim-runtime create` twice on the same bundle content (runc creates, then the
    container is deleted): the second rewrite comes from the cache, byte for byte."""
    settings = work / "settings.json"
    settings.write_text(json.dumps({"cache": str(work / "cache"), "log": str(work / "ocishim.log")}))
    settings.chmod(0o644)
    env = {**_env(work), "OCISHIM_CONFIG": str(settings), "OCISHIM_RUNTIME": "runc"}
    env.pop("OCISHIM_CACHE")  # the settings choose
    config = spec(work / "bundle", work / "rootfs", ["/bin/true"], docker_profile())
    original = config.read_bytes()
    written = []
    for i in range(2):
        config.write_bytes(original)
        cid = f"h11-cache-create-{os.getpid()}-{i}"
        try:
            # Not through pipes: the created container holds its stdio open until deleted.
            with open(work / "create.out", "w+") as out:
                proc = subprocess.run([sys.executable, "-c", WRAPPER, "create", "--bundle",
                                       str(work / "bundle"), cid], stdout=out, stderr=out,
                                      env=env, timeout=120, stdin=subprocess.DEVNULL)
            assert proc.returncode == 0, (work / "create.out").read_text()
            state = subprocess.run(["runc", "state", cid], capture_output=True, text=True, check=True)
            assert json.loads(state.stdout)["status"] == "created"
        finally:
            subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
        written.append(config.read_bytes())
    assert written[0] == written[1] != original
    done = [line for line in (work / "ocishim.log").read_text().splitlines() if "create: patched" in line]
    assert [line.endswith("(compiled-filter cache)") for line in done] == [False, True]
