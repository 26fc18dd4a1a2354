"""deploy/kubernetes: the node installer against a real containerd, and the manifests against the API schemas.

The installer script runs as the DaemonSet runs it, with HOST_ROOT pointing at a
temporary host root whose etc/containerd/config.toml is Debian's own config (plus a
private root, state and socket, which every test containerd here needs). Then a real
containerd starts with the config the installer produced: its CRI plugin must load with
the `ocishim` runtime handler (what a RuntimeClass names), and a container run through
that handler's BinaryName (ctr --runc-binary: this machine has no CRI client, pause
image or CNI) must get ocishim's filter: acct(2) answers ENOSYS, where Docker's and
containerd's default profiles give EPERM (semantics.md). Uninstall must give back the
original config byte for byte and leave no file of ocishim's in the host root.
The launchers run /usr/bin/python3, as on a Debian node: Debian's python3-seccomp.

The manifests are validated with kubernetes-validate (the Kubernetes OpenAPI schemas,
strict: unknown fields are errors) for the oldest and newest Kubernetes versions it
ships that have node.k8s.io/v1 RuntimeClass scheduling. Applying them needs a
cluster, which this machine does not have.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from . import probes
from .bundles import REPO, busybox_rootfs, missing_runtime
from .test_containerd import remove_namespace_cgroups

DEPLOY = REPO / "deploy" / "kubernetes"
SCRIPT = DEPLOY / "ocishim-node-installer.sh"
DEBIAN_CONFIG = Path("/etc/containerd/config.toml")
ENOSYS = 38


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root: file contents, None for directories."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


def _installer(host: Path, action: str) -> subprocess.CompletedProcess[str]:
    ocishim = REPO / ".venv" / "bin" / "ocishim"
    if not ocishim.is_file():
        ocishim = host.parent / "ocishim"
        ocishim.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                           "from ocishim.cli import main\nsys.exit(main())\n")
        ocishim.chmod(0o755)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOST_ROOT": str(host),
           "INSTALL_DIR": str(host / "opt" / "ocishim"), "RUNTIME": "auto", "RESTART": "none",
           "LABEL": "none", "HOST_PYTHON_CHECK": "none", "OCISHIM": str(ocishim),
           "SOURCE": str(REPO / "ocishim")}
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host root with Debian's containerd config, made private (root, state, socket)."""
    if reason := missing_runtime("containerd"):
        pytest.skip(reason)
    if subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True).returncode:
        pytest.skip("Debian's python3-seccomp is not installed (make deps installs it)")
    host = tmp_path / "host"
    (host / "etc" / "containerd").mkdir(parents=True)
    (host / "opt").mkdir()  # every node has it; INSTALL_DIR goes in it
    debian = DEBIAN_CONFIG.read_text() if DEBIAN_CONFIG.is_file() else "version = 2\n"
    head, _, rest = debian.partition("\n")
    assert head.startswith("version"), debian
    text = (f'{head}\nroot = "{tmp_path / "root"}"\nstate = "{tmp_path / "state"}"\n{rest.rstrip()}\n\n'
            f'[grpc]\n  address = "{tmp_path / "c.sock"}"\n')
    (host / "etc" / "containerd" / "config.toml").write_text(text)
    return host


def _containerd(config: Path, base: Path) -> Iterator[subprocess.Popen]:
    log = base / "containerd.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={k: v for k, v in os.environ.items()
                                                               if k not in ("OCISHIM_CONFIG", "OCISHIM_RUNTIME")})
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)  # by its pid: only the daemon this test started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ctr(sock: Path, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctr", "--address", str(sock), "--namespace", namespace, *args],
                          capture_output=True, text=True, timeout=120)


def test_installer_against_a_real_containerd(host: Path, tmp_path: Path) -> None:
    for tool in ("ctr", "containerd-shim-runc-v2", "runc"):
        if reason := missing_runtime(tool):
            pytest.skip(reason)
    config = host / "etc" / "containerd" / "config.toml"
    original, before = config.read_bytes(), _tree(host)

    done = _installer(host, "install")
    assert done.returncode == 0, done.stderr
    wrapper = host / "opt" / "ocishim" / "bin" / "ocishim-runtime"
    assert wrapper.read_text().startswith("#!/usr/bin/python3 -IS\n")
    written = tomllib.loads(config.read_text())
    runtimes = written["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes["ocishim"] == {"runtime_type": "io.containerd.runc.v2", "options": {"BinaryName": str(wrapper)}}
    assert (host / "opt" / "ocishim" / "state" / "original").read_bytes() == original
    # A second install (a restarted pod) changes nothing and keeps the first original.
    assert _installer(host, "install").returncode == 0
    assert tomllib.loads(config.read_text()) == written

    sock, namespace = tmp_path / "c.sock", f"h12-k8s-{uuid.uuid4().hex[:8]}"
    rootfs = busybox_rootfs(tmp_path / "rootfs", [probes.build("syscall_probe")])
    probe = next(p.name for p in (rootfs / "bin").iterdir() if p.name.startswith("syscall_probe"))
    daemon_gen = _containerd(config, tmp_path)
    proc = next(daemon_gen)
    try:
        deadline = time.monotonic() + 30
        while not (sock.exists() and _ctr(sock, namespace, "version").returncode == 0):
            assert proc.poll() is None, (tmp_path / "containerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "containerd did not answer"
            time.sleep(0.1)
        plugins = _ctr(sock, namespace, "plugins", "ls").stdout
        cri = [line.split() for line in plugins.splitlines() if line.split()[:2] == ["io.containerd.grpc.v1", "cri"]]
        assert cri and cri[0][-1] == "ok", plugins
        started = [line for line in (tmp_path / "containerd.log").read_text().splitlines()
                   if "Start cri plugin with config" in line]
        assert started and re.search(r"ocishim:\{Type:io\.containerd\.runc\.v2 .*Options:map\[BinaryName:"
                                     + re.escape(str(wrapper)) + r"\]", started[0]), started[:1]
        handler = re.search(r"ocishim:\{Type:\S+ .*?Options:map\[BinaryName:(\S+?)\]", started[0]).group(1)
        cid = f"h12-k8s-{uuid.uuid4().hex[:8]}"
        run = _ctr(sock, namespace, "run", "--rm", "--runc-binary", handler, "--seccomp",
                   "--rootfs", str(rootfs), cid, f"/bin/{probe}", "acct=163:1")
        assert run.returncode == 0, run.stderr + (tmp_path / "containerd.log").read_text()[-2000:]
        assert run.stdout.split() == ["acct", str(ENOSYS)]
    finally:
        for line in _ctr(sock, namespace, "task", "ls", "-q").stdout.split():
            _ctr(sock, namespace, "task", "kill", "-s", "SIGKILL", line)
            _ctr(sock, namespace, "task", "delete", line)
        for line in _ctr(sock, namespace, "container", "ls", "-q").stdout.split():
            _ctr(sock, namespace, "container", "delete", line)
        next(daemon_gen, None)
        shutil.rmtree(f"/run/containerd/runc/{namespace}", ignore_errors=True)
        remove_namespace_cgroups(namespace)

    done = _installer(host, "uninstall")
    assert done.returncode == 0, done.stderr
    assert config.read_bytes() == original
    after = _tree(host)
    assert after == before, sorted(set(after) ^ set(before))


def test_installer_uninstall_removes_a_config_it_created(tmp_path: Path) -> None:
    """A node whose containerd ran on defaults (no config.toml): uninstall leaves none."""
    host = tmp_path / "host"
    (host / "etc" / "containerd").mkdir(parents=True)
    (host / "opt").mkdir()
    before = _tree(host)
    assert _installer(host, "install").returncode == 0
    assert (host / "etc" / "containerd" / "config.toml").is_file()
    assert _installer(host, "uninstall").returncode == 0
    assert _tree(host) == before


def test_installer_refuses_an_unknown_runtime(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    done = _installer(host, "install")
    assert done.returncode != 0 and "RUNTIME" in done.stderr
    assert list(host.iterdir()) == []


# ---------------------------------------------------------------- the manifests

def _documents() -> list[tuple[str, dict]]:
    import yaml

    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.mark.parametrize("version", ["1.25.0", "1.37.0"])
def test_manifests_against_the_api_schemas(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the venv's test extras")
    docs = _documents()
    assert {d["kind"] for _, d in docs} >= {"DaemonSet", "RuntimeClass", "ServiceAccount", "ClusterRole",
                                           "ClusterRoleBinding", "Job"}
    for name, doc in docs:
        kv.validate(doc, version, strict=True)
    # The check can fail: a misspelt field is an error.
    broken = dict(next(d for _, d in docs if d["kind"] == "RuntimeClass"), handlr="ocishim")
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, version, strict=True)


def test_manifests_agree_with_each_other_and_the_image() -> None:
    docs = dict((d["kind"], d) for _, d in _documents())
    runtimeclass, daemonset = docs["RuntimeClass"], docs["DaemonSet"]
    assert runtimeclass["handler"] == "ocishim"  # the runtime `ocishim install` adds
    script = SCRIPT.read_text()
    key = re.search(r"^LABEL_KEY=(\S+)$", script, re.M).group(1)
    assert runtimeclass["scheduling"]["nodeSelector"] == {key: "installed"}
    assert "label '\"installed\"'" in script
    pod = daemonset["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["hostPID"] is True and container["securityContext"]["privileged"] is True
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["ocishim-node-installer", "uninstall"]
    assert "ocishim-node-installer install" in " ".join(container["command"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    assert volumes["install-dir"] == mounts["install-dir"]  # the same path on the node and inside
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["INSTALL_DIR"] == mounts["install-dir"] and env["HOST_ROOT"] == mounts["host-root"]
    containerfile = (DEPLOY / "Containerfile").read_text()
    assert "COPY deploy/kubernetes/ocishim-node-installer.sh /usr/local/bin/ocishim-node-installer" in containerfile
    assert re.search(r"COPY dist/ocishim_\*_all\.deb", containerfile)
    roles = docs["ClusterRole"]["rules"][0]
    assert roles["resources"] == ["nodes"] and "patch" in roles["verbs"]
