"""Write the two seccomp profiles the demo ships in examples/profiles (committed output).

The demo must run from an installed package, without ../shared, so it carries the
profiles it needs in the OCI form a runtime receives: Docker's default profile
converted the way Docker does it for an amd64 daemon with its default capabilities
(`ocishim convert`), faccessat2 taken out, EPERM as the default errno.

    old-host.json                 Docker 20.10.0's profile on a Linux 5.4 host (before faccessat2)
    docker-minus-faccessat2.json  Docker's current profile (moby/profiles) on Linux 6.18

Both come from ../shared/data/profiles (Apache-2.0, moby/moby and moby/profiles);
tests/test_examples.py checks the committed files equal this script's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocishim.arch import BY_NAME  # noqa: E402
from ocishim.convert import convert_file, dumps  # noqa: E402
from tests import shared_data  # noqa: E402

SHARED = shared_data.PROFILES
OUT = REPO / "examples" / "profiles"
SOURCES = {"old-host.json": ("docker-default-20.10.0.json", (5, 4)),
           "docker-minus-faccessat2.json": ("docker-default.json", (6, 18))}


def profile(source: str, kernel: tuple[int, int]) -> str:
    """The OCI linux.seccomp object, without faccessat2, default errno EPERM, as text."""
    seccomp = convert_file(str(SHARED / source), None, kernel, BY_NAME["x86_64"])
    rules = []
    for rule in seccomp["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "faccessat2"]
        if rule["names"]:
            rules.append(rule)
    seccomp["syscalls"] = rules
    ordered = {"defaultAction": seccomp["defaultAction"], "defaultErrnoRet": 1,
               **{k: v for k, v in seccomp.items() if k not in ("defaultAction", "defaultErrnoRet")}}
    return dumps(ordered)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (source, kernel) in SOURCES.items():
        (OUT / name).write_text(profile(source, kernel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
