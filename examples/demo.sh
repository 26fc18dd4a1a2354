#!/bin/bash
# A newer image on an older host: Debian trixie (glibc 2.41, bash 5.2) under the
# seccomp profile of a host from before faccessat2 (Linux 5.8).
#
# glibc's faccessat() tries faccessat2 first and falls back only on ENOSYS. The old
# profile does not name faccessat2, so a plain runtime answers EPERM and bash's
# `[ -x /bin/ls ]` is false. Through ocishim the same call gets ENOSYS, glibc falls
# back to faccessat, and the test is true.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OCISHIM=${OCISHIM:-.venv/bin/ocishim}
work=$(mktemp -d /tmp/ocishim-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Debian trixie root file system (debootstrap, cached in .cache/rootfs)"
rootfs=$($PY -c 'from integration.rootfs import debootstrap_rootfs; print(debootstrap_rootfs("trixie"))')
echo "$rootfs: $(chroot "$rootfs" /bin/bash -c 'echo bash $BASH_VERSION; ldd --version | head -1')"

cmd='[ -x /bin/ls ] && echo "[ -x /bin/ls ]: true" || echo "[ -x /bin/ls ]: false"'
$PY examples/make_bundle.py "$work/bundle" "$rootfs" -- /bin/bash -c "$cmd"

say "What the profile answers, before and after ocishim (explain)"
$OCISHIM explain "$work/bundle" --arch x86_64 faccessat2 openat2 close_range | sed -n 1,4p

# crun refuses the hybrid cgroups of this machine kind: it runs in a private mount
# namespace with a cgroup2 mount (see ../shared/design/runtimes.md).
in_ns() { unshare -m sh -c 'mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh "$@"; }

say "Plain crun (no ENOSYS stub): faccessat2 gets EPERM"
(cd "$work/bundle" && in_ns crun --cgroup-manager=disabled run "demo-plain-$$") || true

say "ocishim run --runtime crun: faccessat2 gets ENOSYS, glibc falls back"
in_ns $OCISHIM run --runtime crun --runtime-arg=--cgroup-manager=disabled "$work/bundle"

say "Plain runc: its own stub answers ENOSYS above the largest syscall the profile names"
(cd "$work/bundle" && runc run "demo-runc-$$") || true
echo "(runc's stub covers faccessat2 here only because this old profile names nothing above"
echo " it; with Docker's current profile minus faccessat2 runc answers EPERM too:)"
$PY - "$work/bundle2" "$rootfs" "$cmd" <<'PYEOF'
import json, subprocess, sys
sys.path.insert(0, ".")
from integration.bundles import docker_profile, spec
from pathlib import Path
bundle, rootfs, cmd = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
spec(bundle, rootfs, ["/bin/bash", "-c", cmd], docker_profile(minus=["faccessat2"]))
PYEOF
(cd "$work/bundle2" && runc run "demo-runc2-$$") || true
say "... and through ocishim run --runtime runc (default mode unnamed: every syscall without a rule gets ENOSYS)"
$OCISHIM run --runtime runc "$work/bundle2"
