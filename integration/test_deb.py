"""The Debian package on this machine: `make deb`, `apt-get install ./dist/ocishim_*.deb`, purge.

Installed, it must work with Debian's python3-seccomp and no venv (every command runs
with `env -i`, PATH=/usr/bin:/bin), give man pages that name every option the parser
has, bash completion, the wrapper's pass-through, and the README's snippets as written:
podman with the packaged hooks directory, Docker's daemon.json runtime, ctr's
--runc-binary. `ocishim install podman-hook` run by its absolute path with an empty
PATH writes a hook podman runs. Then `apt-get purge` must leave no file behind.

What a container answers is the contract's (semantics.md), not ocishim's: acct(2)
(163 on x86_64) has no rule in Docker's or containerd's default profile without
CAP_SYS_PACCT, so with ocishim in the default mode it gets ENOSYS, without it EPERM.

The machine is put back whatever happens: the package is purged in a finally, and the
two files ocishim writes while running (/var/log/ocishim.log, /var/cache/ocishim) are
saved before and restored after, so other tests (which use .venv/bin, never /usr/bin)
see what they saw before. Skipped when an ocishim package is already installed: the
test would remove the administrator's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from . import dockerd, probes
from .bundles import REPO, busybox_rootfs, docker_profile, missing_runtime
from .test_containerd import start_containerd, stop_containerd

pytestmark = pytest.mark.runtime

VERSION = re.search(r"^version = (\S+)$", (REPO / "setup.cfg").read_text(), re.M).group(1)
DEB = REPO / "dist" / f"ocishim_{VERSION}_all.deb"
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
EPERM, ENOSYS = 1, 38
ROOTS = ("/etc", "/usr", "/var/log", "/var/cache", "/var/lib/dpkg/info")
RUNTIME_FILES = (Path("/var/log/ocishim.log"), Path("/var/cache/ocishim"))
APT = ["apt-get", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300"]


def _ours_on_disk() -> set[str]:
    """Every path under ROOTS whose name mentions ocishim."""
    found = subprocess.run(["find", *ROOTS, "-xdev", "-name", "*ocishim*"], capture_output=True,
                           text=True, timeout=120).stdout.split("\n")
    return {p for p in found if p}


def sh(*argv: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=kw.pop("timeout", 300),
                          env=CLEAN_ENV if env is None else env, cwd=kw.pop("cwd", "/"), **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[Path]:
    """The package built from this checkout and installed; purged afterwards."""
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    if platform.machine() != "x86_64":
        pytest.skip("the probes are x86_64 programs")
    if sh("dpkg-query", "-W", "-f=${Status}", "ocishim").stdout.startswith("install ok"):
        pytest.skip("an ocishim package is already installed here; purging it would remove the administrator's")
    work = tmp_path_factory.mktemp("h12-deb")
    saved = work / "saved"
    saved.mkdir()
    for path in RUNTIME_FILES:
        if path.exists():
            shutil.move(str(path), saved / path.name)
    before = _ours_on_disk()
    try:
        built = subprocess.run(["make", "-s", "deb"], cwd=REPO, capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stdout + built.stderr
        assert DEB.is_file()
        done = subprocess.run([*APT, "install", f"./dist/{DEB.name}"], cwd=REPO, capture_output=True,
                              text=True, timeout=600, env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})
        assert done.returncode == 0, done.stdout + done.stderr
        yield work
    finally:
        purged = subprocess.run([*APT, "purge", "ocishim"], capture_output=True, text=True, timeout=600,
                                env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})
        left = sorted(_ours_on_disk() - before)
        for path in RUNTIME_FILES:
            if (saved / path.name).exists():
                if path.is_dir():
                    shutil.rmtree(path)
                shutil.move(str(saved / path.name), path)
        assert purged.returncode == 0, purged.stdout + purged.stderr
        assert left == [], f"apt-get purge left: {left}"


def test_commands_work_with_debians_binding_and_no_venv(installed) -> None:
    assert Path("/usr/bin/ocishim").read_text().startswith("#! /usr/bin/python3") or \
        Path("/usr/bin/ocishim").read_text().startswith("#!/usr/bin/python3")
    assert sh("/usr/bin/python3", "-c", "import pyseccomp").returncode != 0  # Debian's module only
    binding = sh("/usr/bin/python3", "-c", "from ocishim import libseccomp; print(libseccomp.binding.__name__)")
    assert binding.stdout.strip() == "seccomp", binding.stderr
    v = sh("/usr/bin/ocishim", "--version")
    assert v.returncode == 0, v.stderr
    assert v.stdout.splitlines()[0] == f"ocishim {VERSION}"
    assert re.search(r"^libseccomp 2\.\d+\.\d+ \(/\S+libseccomp\.so", v.stdout, re.M), v.stdout
    features = sh("/usr/bin/ocishim-runtime", "features")
    runc = sh("runc", "features")
    assert features.returncode == 0 and features.stdout == runc.stdout  # pass-through, byte for byte
    listed = sh("dpkg-query", "-L", "ocishim").stdout.split("\n")
    assert "/usr/bin/ocishim" in listed and "/usr/bin/ocishim-runtime" in listed
    assert not any(p.startswith("/usr/local") for p in listed)  # /usr/local stays the admin's
    conffiles = sh("dpkg-query", "-W", "-f=${Conffiles}", "ocishim").stdout
    assert "/etc/ocishim/config.json" in conffiles


def test_man_pages_name_every_option(installed) -> None:
    import sys

    sys.path.insert(0, str(REPO))
    from ocishim.cli import build_parser

    assert sh("man", "-w", "ocishim").stdout.strip() == "/usr/share/man/man1/ocishim.1.gz"
    assert sh("man", "-w", "8", "ocishim-runtime").stdout.strip() == "/usr/share/man/man8/ocishim-runtime.8.gz"
    page = gzip.decompress(Path("/usr/share/man/man1/ocishim.1.gz").read_bytes()).decode().replace("\\-", "-")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = 0
    for command, sp in sub.choices.items():
        assert f'.SS "{command}"' in page, command
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue  # every command's -h, named once at the top
            for option in action.option_strings:
                assert option in page, (command, option)
                names += 1
    assert names > 40 and "-h, --help" in page
    runtime_page = gzip.decompress(Path("/usr/share/man/man8/ocishim-runtime.8.gz").read_bytes()).decode()
    assert "--ocishim-config" in runtime_page.replace("\\-", "-")
    rendered = sh("man", "-P", "cat", "ocishim", env={**CLEAN_ENV, "MANWIDTH": "80"})
    assert rendered.returncode == 0 and "ENOSYS" in rendered.stdout


def test_bash_completion(installed) -> None:
    script = ('source /usr/share/bash-completion/bash_completion; '
              '_completion_loader ocishim; complete -p ocishim; '
              'COMP_WORDS=(ocishim ins); COMP_CWORD=1; _ocishim; echo "[${COMPREPLY[*]}]"; '
              'COMP_WORDS=(ocishim install ""); COMP_CWORD=2; _ocishim; echo "[${COMPREPLY[*]}]"')
    out = sh("bash", "-c", script)
    assert out.returncode == 0, out.stderr
    assert "-F _ocishim ocishim" in out.stdout
    assert "[inspect install]" in out.stdout or "[install]" in out.stdout
    assert "[podman-hook containerd docker crio]" in out.stdout


@pytest.fixture(scope="module")
def rootfs(installed) -> Path:
    probe = probes.build("syscall_probe")
    root = busybox_rootfs(installed / "rootfs", [probe])
    (root / "bin" / "syscall_probe").symlink_to(probe.name)
    return root


def _acct(proc: subprocess.CompletedProcess[str]) -> int:
    """The errno the probe printed for acct."""
    fields = proc.stdout.split()
    assert proc.returncode == 0 and fields[:1] == ["acct"], proc.stdout + proc.stderr
    return int(fields[1])


def _podman(hooks: Path, rootfs: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    name = f"h12-deb-{uuid.uuid4().hex[:10]}"
    try:
        return sh("podman", "--hooks-dir", str(hooks), "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                  "run", "--rm", "--name", name, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                  "--security-opt", f"seccomp={profile}",
                  "--rootfs", str(rootfs), "/bin/syscall_probe", "acct=163:1",
                  env={**CLEAN_ENV, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    finally:
        sh("podman", "rm", "--force", "--ignore", name, env={**CLEAN_ENV, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def test_podman_packaged_hook_and_installed_hook(installed, rootfs) -> None:
    if reason := missing_runtime("podman"):
        pytest.skip(reason)
    profile = installed / "profile.json"  # Docker's default, EPERM default: acct has no rule
    profile.write_text(json.dumps(docker_profile()))
    empty = installed / "no-hooks"
    empty.mkdir()
    # The README: podman --hooks-dir /usr/share/ocishim/hooks.d run ...
    assert _acct(_podman(Path("/usr/share/ocishim/hooks.d"), rootfs, profile)) == ENOSYS
    assert _acct(_podman(empty, rootfs, profile)) == EPERM
    # ocishim install by its absolute path with an empty PATH: a hook podman runs.
    hooks = installed / "hooks.d"
    done = sh("/usr/bin/ocishim", "install", "podman-hook", "--dir", str(hooks), env={"PATH": ""})
    assert done.returncode == 0, done.stderr
    assert json.loads((hooks / "ocishim-precreate.json").read_text())["hook"]["path"] == "/usr/bin/ocishim"
    assert _acct(_podman(hooks, rootfs, profile)) == ENOSYS


def test_docker_snippet(installed, rootfs) -> None:
    if reason := dockerd.missing_tools():
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k not in ("OCISHIM_CONFIG", "OCISHIM_RUNTIME")}
    daemon = dockerd.start(installed / "dockerd", {"ocishim": "/usr/bin/ocishim-runtime"}, env)
    try:
        assert json.loads((installed / "dockerd" / "daemon.json").read_text()) == \
            json.loads((REPO / "examples" / "docker" / "daemon.json").read_text())
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        try:
            imported = daemon.docker("import", "-", "h12-deb/probe:latest", stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=120)
        assert imported.returncode == 0, imported.stderr
        run = daemon.docker("run", "--rm", "--network", "none", "--runtime", "ocishim",
                            "h12-deb/probe:latest", "/bin/syscall_probe", "acct=163:1", stdin=subprocess.DEVNULL)
        assert _acct(run) == ENOSYS, daemon.log_tail()
    finally:
        dockerd.stop(daemon)


def test_ctr_snippet(installed, rootfs) -> None:
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k not in ("OCISHIM_CONFIG", "OCISHIM_RUNTIME")}
    daemon = start_containerd(installed / "containerd", "", env)
    try:
        run = daemon.ctr("run", "--rm", "--runc-binary", "/usr/bin/ocishim-runtime", "--seccomp",
                         "--rootfs", str(rootfs), f"h12-deb-{uuid.uuid4().hex[:8]}",
                         "/bin/syscall_probe", "acct=163:1")
        assert _acct(run) == ENOSYS
    finally:
        stop_containerd(daemon)


def test_demo_runs_from_the_installed_examples(installed) -> None:
    """/usr/share/doc/ocishim/examples/demo.sh with the installed ocishim and no ../shared."""
    trixie = REPO / ".cache" / "rootfs" / "trixie"
    if not (trixie / "bin" / "bash").exists():
        pytest.skip("no cached trixie rootfs (.cache/rootfs/trixie: integration/rootfs.py builds it)")
    for tool in ("crun", "runc", "unshare"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    demo = Path("/usr/share/doc/ocishim/examples/demo.sh")
    assert (demo.parent / "profiles" / "old-host.json").is_file()
    proc = sh("bash", str(demo), env={**CLEAN_ENV, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ROOTFS": str(trixie)},
              cwd=str(installed))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers = re.findall(r"^\[ -x /bin/ls \]: (true|false)$", proc.stdout, re.M)
    # plain crun, ocishim with crun, plain runc (old profile), plain runc (current), ocishim with runc
    assert answers == ["false", "true", "true", "false", "true"], proc.stdout
