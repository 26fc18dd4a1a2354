#!/bin/bash
# A newer image on an older host: Debian trixie (glibc 2.41, bash 5.2) under the
# seccomp profile of a host from before faccessat2 (Linux 5.8).
#
# glibc's faccessat() tries faccessat2 first and falls back only on ENOSYS. The old
# profile does not name faccessat2, so a plain runtime answers EPERM and bash's
# `[ -x /bin/ls ]` is false. Through ocishim the same call gets ENOSYS, glibc falls
# back to faccessat, and the test is true.
#
# Runs in this checkout (make demo: .venv's ocishim, the tests' cached rootfs) and from
# the installed package (/usr/share/doc/ocishim/examples: ocishim from PATH, a rootfs
# from $ROOTFS or debootstrap). The profiles it needs are in profiles/ beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
work=$(mktemp -d /tmp/ocishim-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ -x "$here/../.venv/bin/ocishim" ] && [ -d "$here/../integration" ]; then
	cd "$here/.."
	OCISHIM=${OCISHIM:-.venv/bin/ocishim}
	say "Debian trixie root file system (debootstrap, cached in .cache/rootfs)"
	rootfs=${ROOTFS:-$(.venv/bin/python -c 'from integration.rootfs import debootstrap_rootfs; print(debootstrap_rootfs("trixie"))')}
else
	OCISHIM=${OCISHIM:-$(command -v ocishim)}
	if [ -z "${ROOTFS:-}" ]; then
		say "Debian trixie root file system (debootstrap into $work/rootfs; set ROOTFS to reuse one)"
		debootstrap --variant=minbase trixie "$work/rootfs" http://deb.debian.org/debian >/dev/null
	fi
	rootfs=${ROOTFS:-$work/rootfs}
fi
echo "$rootfs: $(chroot "$rootfs" /bin/bash -c 'echo bash $BASH_VERSION; ldd --version | head -1')"

cmd='[ -x /bin/ls ] && echo "[ -x /bin/ls ]: true" || echo "[ -x /bin/ls ]: false"'
python3 "$here/make_bundle.py" "$work/bundle" "$rootfs" -- /bin/bash -c "$cmd"

say "What the profile answers, before and after ocishim (explain)"
$OCISHIM explain "$work/bundle" --arch x86_64 faccessat2 openat2 close_range | sed -n 1,4p

# crun refuses the hybrid cgroups of this machine kind: it runs in a private mount
# namespace with a cgroup2 mount.
in_ns() { unshare -m sh -c 'mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh "$@"; }

say "Plain crun (no ENOSYS stub): faccessat2 gets EPERM"
(cd "$work/bundle" && in_ns crun --cgroup-manager=disabled run "demo-plain-$$") || true

say "ocishim run --runtime crun: faccessat2 gets ENOSYS, glibc falls back"
in_ns $OCISHIM run --runtime crun --runtime-arg=--cgroup-manager=disabled "$work/bundle"

say "Plain runc: its own stub answers ENOSYS above the largest syscall the profile names"
(cd "$work/bundle" && runc run "demo-runc-$$") || true
echo "(runc's stub covers faccessat2 here only because this old profile names nothing above"
echo " it; with Docker's current profile minus faccessat2 runc answers EPERM too:)"
PROFILE="$here/profiles/docker-minus-faccessat2.json" \
	python3 "$here/make_bundle.py" "$work/bundle2" "$rootfs" -- /bin/bash -c "$cmd"
(cd "$work/bundle2" && runc run "demo-runc2-$$") || true
say "... and through ocishim run --runtime runc (default mode unnamed: every syscall without a rule gets ENOSYS)"
$OCISHIM run --runtime runc "$work/bundle2"
