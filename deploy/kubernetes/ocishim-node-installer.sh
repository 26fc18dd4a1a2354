#!/bin/bash
# ocishim-node-installer install|uninstall: what the DaemonSet's container runs on a node.
#
# install: copy the package's Python files and two launchers into INSTALL_DIR on the
# node, keep the runtime's config as it was (once: a reinstall keeps the first copy),
# wire ocishim in with `ocishim install containerd|crio`, restart the runtime through
# the node's systemd, label the node so the RuntimeClass schedules onto it.
# uninstall: unlabel, put the runtime's config back byte for byte (or remove it if
# there was none), restart the runtime, remove INSTALL_DIR.
#
# Environment (the DaemonSet sets these; integration/test_k8s_installer.py points them
# at a temporary host root):
#   HOST_ROOT      where the node's / is mounted (default /host): configs are edited there
#   INSTALL_DIR    ocishim's directory, at the same path in the container and on the node
#                  (a hostPath mounted at its own path), default /opt/ocishim
#   RUNTIME        containerd | crio | auto (default: the one whose config directory exists)
#   RESTART        systemctl (default: nsenter into PID 1's namespaces) | none
#   LABEL          api (default: patch the node through the API server) | none
#   NODE_NAME      the node (the downward API's spec.nodeName)
#   HOST_PYTHON    the node's interpreter for the launchers (default /usr/bin/python3); it
#                  needs Python 3.11+ with Debian's python3-seccomp (or pyseccomp),
#                  pyelftools and psutil: checked on the node unless HOST_PYTHON_CHECK=none
#   SOURCE         the ocishim package to copy (default: the one this image's python3 imports)
set -euo pipefail

HOST_ROOT=${HOST_ROOT:-/host}
INSTALL_DIR=${INSTALL_DIR:-/opt/ocishim}
RUNTIME=${RUNTIME:-auto}
RESTART=${RESTART:-systemctl}
LABEL=${LABEL:-api}
HOST_PYTHON=${HOST_PYTHON:-/usr/bin/python3}
HOST_PYTHON_CHECK=${HOST_PYTHON_CHECK:-chroot}
LABEL_KEY=ocishim.io/runtime
STATE="$INSTALL_DIR/state"

say() { echo "ocishim-node-installer: $*" >&2; }
die() { say "$*"; exit 1; }

runtime() {
	case "$RUNTIME" in
	containerd | crio) echo "$RUNTIME" ;;
	auto)
		if [ -d "$HOST_ROOT/etc/containerd" ]; then echo containerd
		elif [ -d "$HOST_ROOT/etc/crio" ]; then echo crio
		else die "neither $HOST_ROOT/etc/containerd nor $HOST_ROOT/etc/crio exists: set RUNTIME"
		fi ;;
	*) die "RUNTIME must be containerd, crio or auto, not '$RUNTIME'" ;;
	esac
}

config_file() {  # the one file `ocishim install` edits for this runtime
	case "$1" in
	containerd) echo "$HOST_ROOT/etc/containerd/config.toml" ;;
	crio) echo "$HOST_ROOT/etc/crio/crio.conf.d/10-ocishim.conf" ;;
	esac
}

restart() {
	[ "$RESTART" = none ] && return 0
	[ "$RESTART" = systemctl ] || die "RESTART must be systemctl or none, not '$RESTART'"
	# The node's own systemd, from its namespaces (the pod runs with hostPID).
	nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart "$1"
}

label() {  # VALUE: a JSON string, or null to remove the label
	[ "$LABEL" = none ] && return 0
	[ -n "${NODE_NAME:-}" ] || die "NODE_NAME is not set (the DaemonSet takes it from spec.nodeName)"
	local sa=/var/run/secrets/kubernetes.io/serviceaccount
	curl --fail --silent --show-error --cacert "$sa/ca.crt" \
		-H "Authorization: Bearer $(cat "$sa/token")" \
		-H "Content-Type: application/merge-patch+json" -X PATCH \
		--data "{\"metadata\":{\"labels\":{\"$LABEL_KEY\":$1}}}" \
		"https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/api/v1/nodes/${NODE_NAME}" >/dev/null
}

copy_package() {
	local source=${SOURCE:-$(python3 -c 'import ocishim, os; print(os.path.dirname(ocishim.__file__))')}
	[ -f "$source/cli.py" ] || die "no ocishim package at $source"
	if [ "$HOST_PYTHON_CHECK" = chroot ]; then
		chroot "$HOST_ROOT" "$HOST_PYTHON" -c 'import sys
assert sys.version_info >= (3, 11), sys.version
try:
    import pyseccomp
except ImportError:
    import seccomp
import elftools, psutil' || die "the node's $HOST_PYTHON lacks Python 3.11+ with python3-seccomp, python3-pyelftools and python3-psutil"
	fi
	mkdir -p "$INSTALL_DIR/bin" "$INSTALL_DIR/lib" "$STATE"
	rm -rf "$INSTALL_DIR/lib/ocishim.new"
	mkdir "$INSTALL_DIR/lib/ocishim.new"
	cp -r "$source" "$INSTALL_DIR/lib/ocishim.new/ocishim"
	find "$INSTALL_DIR/lib/ocishim.new" -name __pycache__ -prune -exec rm -rf {} +
	rm -rf "$INSTALL_DIR/lib/ocishim"
	mv "$INSTALL_DIR/lib/ocishim.new" "$INSTALL_DIR/lib/ocishim"
	local name module
	# -IS (one word: the kernel hands a #! line's flags over as one argument): the hook and
	# a pass-through skip site's .pth files and sitecustomize (ocishim/startup.py).
	for name in ocishim ocishim-runtime; do
		module=ocishim.cli
		[ "$name" = ocishim-runtime ] && module=ocishim.runtime
		printf '#!%s -IS\nimport sys\nsys.path.insert(0, %s)\nfrom %s import main\nsys.exit(main())\n' \
			"$HOST_PYTHON" "'$INSTALL_DIR/lib/ocishim'" "$module" > "$INSTALL_DIR/bin/$name.new"
		chmod 0755 "$INSTALL_DIR/bin/$name.new"
		mv -f "$INSTALL_DIR/bin/$name.new" "$INSTALL_DIR/bin/$name"
	done
}

save_original() {  # FILE: kept once, so that a second install cannot lose the original
	local file=$1 saved="$STATE/original"
	[ -e "$saved" ] || [ -e "$saved.absent" ] && return 0
	if [ -e "$file" ]; then
		cp -p "$file" "$saved.tmp" && mv "$saved.tmp" "$saved"
	else
		touch "$saved.absent"
	fi
}

restore_original() {
	local file=$1 saved="$STATE/original"
	if [ -e "$saved" ]; then
		cp -p "$saved" "$file.ocishim-restore" && mv -f "$file.ocishim-restore" "$file"
	elif [ -e "$saved.absent" ]; then
		rm -f "$file"
	else
		say "no saved original of $file: left as it is"
	fi
	rm -f "$file.ocishim.bak"  # ocishim install's own backup
}

install() {
	local rt file
	rt=$(runtime)
	file=$(config_file "$rt")
	copy_package
	save_original "$file"
	echo "$rt" > "$STATE/runtime"
	"${OCISHIM:-/usr/bin/ocishim}" install "$rt" --file "$file" \
		--ocishim "$INSTALL_DIR/bin/ocishim" --wrapper "$INSTALL_DIR/bin/ocishim-runtime"
	restart "$rt"
	label '"installed"'
	say "installed for $rt: runtime handler ocishim, $INSTALL_DIR/bin/ocishim-runtime"
}

uninstall() {
	local rt file
	[ -e "$STATE/runtime" ] || { say "nothing installed in $INSTALL_DIR"; label null; return 0; }
	rt=$(cat "$STATE/runtime")
	file=$(config_file "$rt")
	label null
	restore_original "$file"
	restart "$rt"
	rm -rf "$INSTALL_DIR/bin" "$INSTALL_DIR/lib" "$STATE"
	rmdir "$INSTALL_DIR" 2>/dev/null || true
	say "uninstalled from $rt"
}

case "${1:-}" in
install) install ;;
uninstall) uninstall ;;
*) echo "usage: ocishim-node-installer install|uninstall" >&2; exit 2 ;;
esac
