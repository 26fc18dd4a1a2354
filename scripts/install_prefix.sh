#!/bin/bash
# make install PREFIX=... [DESTDIR=...] [INSTALL_PYTHON=...]: ocishim for distributions
# without the Debian package. The Python package goes into PREFIX/lib/ocishim (a private
# directory: nothing is written into the system Python's site-packages, which Debian and
# others manage), two small launchers into PREFIX/bin, the man pages, the bash completion
# and the podman hook (naming PREFIX/bin/ocishim) into PREFIX/share. The launchers run
# INSTALL_PYTHON, which must find the distribution's libseccomp binding (seccomp or
# pyseccomp), pyelftools and psutil. `make uninstall` removes exactly these files.
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1 destdir=$2 prefix=$3 python=$4
case "$prefix" in /*) ;; *) echo "PREFIX must be absolute: $prefix" >&2; exit 2 ;; esac
root="$destdir$prefix"
lib="$root/lib/ocishim"
files=(bin/ocishim bin/ocishim-runtime share/man/man1/ocishim.1 share/man/man8/ocishim-runtime.8
       share/bash-completion/completions/ocishim share/ocishim/hooks.d/ocishim-precreate.json)
if [ "$action" = uninstall ]; then
	for f in "${files[@]}"; do rm -f "$root/$f"; done
	rm -rf "$lib"
	rmdir "$root/share/ocishim/hooks.d" "$root/share/ocishim" 2>/dev/null || true
	exit 0
fi
install -d "$lib" "$root/bin" "$root/share/man/man1" "$root/share/man/man8" \
	"$root/share/bash-completion/completions" "$root/share/ocishim/hooks.d"
rm -rf "$lib/ocishim"
# The package's files as git knows them (new files included), without byte code.
git ls-files -z --cached --others --exclude-standard ocishim | while IFS= read -r -d '' f; do
	[ -f "$f" ] && install -D -m 0644 "$f" "$lib/$f"
done
launcher() {  # NAME FLAGS: bin/NAME with this Python and the private package directory
	{
		printf '#!%s %s\nimport sys\nsys.path.insert(0, %s)\n' "$python" "$2" "'$prefix/lib/ocishim'"
		tail -n +2 "bin/$1"
	} > "$root/bin/$1"
	chmod 0755 "$root/bin/$1"
}
# Without site (-IS, one word: the kernel hands a #! line's flags over as one argument):
# the hook (once per container) and a pass-through (four of containerd's five calls per
# container) need only this package and the binding on the site directories' paths;
# every other command runs site's set-up itself (ocishim/startup.py).
launcher ocishim -IS
launcher ocishim-runtime -IS
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$python" scripts/gen_man.py "$gen"
install -m 0644 "$gen/ocishim.1" "$root/share/man/man1/ocishim.1"
install -m 0644 "$gen/ocishim-runtime.8" "$root/share/man/man8/ocishim-runtime.8"
install -m 0644 "$gen/ocishim.bash-completion" "$root/share/bash-completion/completions/ocishim"
"$python" -c 'import json, sys; sys.path.insert(0, "."); from ocishim.integrations.hook import hooks_d_entry; print(json.dumps(hooks_d_entry(sys.argv[1]), indent=2))' \
	"$prefix/bin/ocishim" > "$root/share/ocishim/hooks.d/ocishim-precreate.json"
echo "installed into $root"
