#!/bin/bash
# make deb: build dist/ocishim_VERSION_all.deb with dpkg-buildpackage (debhelper, dh-python)
# from a copy of this checkout's files, so that the build leaves nothing in the tree
# and nothing beside it (dpkg-buildpackage writes its results into the parent directory).
# Then lintian, which must report no errors.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = //p' setup.cfg)
work=.cache/deb
src="$work/ocishim-$version"
rm -rf "$work"
mkdir -p "$src" dist
# Tracked files and new ones not ignored: a fresh clone builds the same package.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
	[ -e "$f" ] && cp -a --parents "$f" "$src/"
done
# The system Python only: a python3 earlier in PATH (pyenv, a venv) is not what the
# package runs with, and lacks the Debian build modules.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
(cd "$src" && dpkg-buildpackage -us -uc -b --no-sign >../build.log 2>&1) || {
	tail -40 "$work/build.log" >&2
	exit 1
}
deb="ocishim_${version}_all.deb"
mv -f "$work/$deb" "dist/$deb"
lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "dist/$deb"
echo "dist/$deb"
