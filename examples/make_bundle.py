#!/usr/bin/env python3
"""Write an OCI bundle that runs CMD in ROOTFS under an old host's seccomp profile.

The profile is profiles/old-host.json beside this file: Docker 20.10.0's default
(converted the way Docker does it for an amd64 daemon with its default capabilities)
with faccessat2 taken out and EPERM as the default errno, what a host whose profile
predates faccessat2 hands a container. PROFILE=FILE takes another linux.seccomp object.
Needs only Python and runc (for `runc spec`): it runs from an installed package too.

    python3 examples/make_bundle.py BUNDLE_DIR ROOTFS -- CMD [ARG...]
"""

import json
import os
import subprocess
import sys
from pathlib import Path

PROFILE = Path(__file__).resolve().parent / "profiles" / "old-host.json"


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    bundle, rootfs, cmd = Path(args[0]), Path(args[1]), args[3:]
    seccomp = json.loads(Path(os.environ.get("PROFILE") or PROFILE).read_text())
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
