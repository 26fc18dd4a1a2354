# Two commands: `make demo` and `make test`. Each installs what it needs
# (Debian packages, then a virtualenv with the Python dependencies).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
PROFILES := $(SHARED)/data/profiles

# What the tests and the demo run: the real runtimes (docker.io for dockerd), a compiler
# for the probe programs, the tools that build test root file systems, and what runc's
# own seccomp bats tests need (bats, and Go with runc's Debian build dependencies for
# their helper programs: integration/runc_bats.py).
DEBS := python3-venv gcc libc6-dev libseccomp2 crun runc podman containerd docker.io strace \
        busybox-static debootstrap systemd \
        bats jq xz-utils dpkg-dev golang-go libseccomp-dev pkgconf \
        golang-github-containerd-console-dev golang-github-urfave-cli-dev \
        golang-github-cyphar-filepath-securejoin-dev golang-github-opencontainers-specs-dev \
        golang-github-seccomp-libseccomp-golang-dev golang-github-sirupsen-logrus-dev \
        golang-golang-x-sys-dev \
        python3-seccomp python3-pyelftools python3-psutil \
        musl-tools umoci binutils \
        $(DEB_BUILD_DEBS)
# What `make deb` builds with (integration/test_deb.py builds and installs the package).
DEB_BUILD_DEBS := debhelper dh-python python3-all python3-setuptools python3-wheel \
        pybuild-plugin-pyproject dpkg-dev fakeroot lintian groff-base man-db bash-completion

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps venv test demo bench table clean deb install uninstall

all: test

deps: .cache/debs.stamp

.cache/debs.stamp: Makefile
	@mkdir -p .cache
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

venv: $(VENV)/.stamp

$(VENV)/.stamp: setup.cfg pyproject.toml .cache/debs.stamp
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# The tests take their expected values from the shared contract data, which they read
# from ../shared beside this checkout, or from SHARED=DIR (tests/shared_data.py); without
# it they cannot run, and say so once.
test: deps venv
	@[ -f "$(SHARED)/data/syscalls/syscalls.csv" ] || { echo "make test: $(abspath $(SHARED))/data is not there: the tests read the shared syscall facts and profiles from it (a checkout elsewhere: make test SHARED=DIR)" >&2; exit 2; }
	OCISHIM_SHARED="$(abspath $(SHARED))" $(PY) -m pytest -q -ra tests integration

# Regenerate the syscall table from $(SHARED)/data/syscalls (the output is committed).
table: venv
	OCISHIM_SHARED="$(abspath $(SHARED))" $(PY) scripts/gen_syscall_table.py

demo: deps venv
	@bash examples/demo.sh

bench: deps venv
	OCISHIM_SHARED="$(abspath $(SHARED))" $(PY) scripts/bench.py

# The Debian package, dist/ocishim_VERSION_all.deb, built with debhelper and dh-python from
# a copy of this checkout; lintian must report no errors. Installs its build dependencies.
deb:
	@missing=$$(for p in $(DEB_BUILD_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@scripts/build_deb.sh

# Other distributions: make install PREFIX=/opt/ocishim [DESTDIR=...] [INSTALL_PYTHON=...]
# (the launchers run INSTALL_PYTHON with the distribution's libseccomp binding).
PREFIX ?= /usr/local
INSTALL_PYTHON ?= /usr/bin/python3
install:
	@scripts/install_prefix.sh install "$(DESTDIR)" "$(PREFIX)" "$(INSTALL_PYTHON)"

uninstall:
	@scripts/install_prefix.sh uninstall "$(DESTDIR)" "$(PREFIX)" "$(INSTALL_PYTHON)"

clean:
	rm -rf $(VENV) .cache .pytest_cache .hypothesis
