#!/usr/bin/env python3
"""Write an OCI bundle that runs CMD in ROOTFS under an old host's seccomp profile.

The profile is Docker 20.10.0's default (converted the way Docker does it for an
amd64 daemon with its default capabilities) with faccessat2 taken out and EPERM as
the default errno: what a host whose profile predates faccessat2 hands a container.

    python examples/make_bundle.py BUNDLE_DIR ROOTFS -- CMD [ARG...]
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocishim.profile import load, to_oci  # noqa: E402

PROFILE = REPO.parent / "shared/data/profiles/docker-default-20.10.0.json"


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    bundle, rootfs, cmd = Path(args[0]), Path(args[1]), args[3:]
    seccomp = to_oci(load(str(PROFILE), arch="amd64").profile)
    for rule in seccomp["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "faccessat2"]
    seccomp["syscalls"] = [r for r in seccomp["syscalls"] if r["names"]]
    seccomp["defaultErrnoRet"] = 1
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").unlink(missing_ok=True)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = cmd
    config["root"] = {"path": os.path.abspath(rootfs), "readonly": True}
    config["linux"]["seccomp"] = seccomp
    (bundle / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
