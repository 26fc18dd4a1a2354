"""`ocishim convert`: a Docker-format profile as the OCI `linux.seccomp` object Docker builds.

ctr (`--seccomp-profile`), runc and crun read only the OCI form; Docker, Podman and
CRI-O convert their profiles themselves when they build config.json. This writes what
they would write, so the same profile can be given to the plain runtimes: the rules
that survive the profile's includes/excludes for one capability set, kernel and arch,
archMap expanded for that arch, errno names (containers/common) as numbers, and the
fields in the order and with the omissions of the runtime spec's Go types.

The conversion itself is ocishim.profile.docker's, the one every other command uses.
"""

from __future__ import annotations

import json
from typing import Any

from .arch import Arch
from .errors import UsageError
from .profile import to_oci
from .profile.parse import load_object, read_json


def convert_file(path: str, caps: frozenset[str] | None, kernel: tuple[int, int] | None,
                 arch: Arch | None) -> dict[str, Any]:
    """The OCI linux.seccomp object for the Docker-format profile in path.

    Every profile file is read as Docker reads one (a plain linux.seccomp object is a
    Docker profile without extensions); a config.json is refused, it is already OCI.
    """
    obj = read_json(path)
    if isinstance(obj, dict) and any(k in obj for k in ("ociVersion", "linux", "process")):
        raise UsageError(path, "is a config.json, already in the OCI form: convert takes a "
                               "Docker-format profile")
    loaded = load_object(obj, path, kind="docker", caps=caps, kernel=kernel,
                         arch=arch.name if arch is not None else None)
    if loaded.profile is None:
        raise UsageError(path, "means no seccomp filter (empty defaultAction and no rules): "
                               "Docker runs such a container unconfined; nothing to convert")
    return to_oci(loaded.profile)


def dumps(seccomp: dict[str, Any]) -> str:
    """The object as written: two-space indent, keys in the spec's order, a final newline."""
    return json.dumps(seccomp, indent=2, ensure_ascii=False) + "\n"
