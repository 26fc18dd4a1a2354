"""A private dockerd for the integration tests: started, used and stopped by the test.

Nothing of the machine's own Docker is touched: the daemon gets its own --data-root,
--exec-root, --pidfile, socket and daemon.json, and the docker CLI is pointed at that
socket (and at a CLI config directory of its own). The daemon starts its own
containerd (dockerd's managed one, under --exec-root), so it also meets no other
containerd.

How dockerd 20.10 runs on this machine kind (hybrid cgroups, no systemd, no network):
--exec-opt native.cgroupdriver=cgroupfs (there is no systemd to ask),
--bridge=none --iptables=false --ip6tables=false (no networking is needed, and the
tests must not touch the host's firewall), containers run with --network none.

Stopping: the containers left in this daemon are removed, then the daemon gets
SIGTERM by its pid (and SIGKILL if it does not end), then its managed containerd is
stopped by the pid it recorded, if it outlived the daemon, then what both left mounted
under the daemon's directories is unmounted and the directories are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

STARTUP_TIMEOUT = 60
STOP_TIMEOUT = 30
# The Debian package docker.io puts the CLI of the daemon's own version here; another
# docker in PATH (a newer static CLI) works too, through API version negotiation.
PACKAGED_CLI = Path("/usr/bin/docker")


def missing_tools() -> str | None:
    """Why a private dockerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for tool in ("dockerd", "containerd", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} not found (make test installs docker.io)"
    if cli() is None:
        return "the docker CLI is not found (make test installs docker.io)"
    return None


def cli() -> str | None:
    if PACKAGED_CLI.is_file() and os.access(PACKAGED_CLI, os.X_OK):
        return str(PACKAGED_CLI)
    return shutil.which("docker")


@dataclass
class Dockerd:
    base: Path
    log: Path
    process: subprocess.Popen | None = None  # None until started

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    @property
    def data_root(self) -> Path:
        return self.base / "data"

    @property
    def exec_root(self) -> Path:
        # Short on purpose: containerd's socket lives under it (sun_path is 108 bytes).
        return self.base / "x"

    def docker(self, *args: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess[str]:
        """The docker CLI against this daemon only."""
        env = {**os.environ, "DOCKER_CONFIG": str(self.base / "cli")}
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        return subprocess.run([cli() or "docker", "-H", f"unix://{self.socket}", *args],
                              capture_output=True, text=True, timeout=timeout, env=env, **kw)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def start(base: Path, runtimes: Mapping[str, str], env: Mapping[str, str],
          config: Path | None = None) -> Dockerd:
    """dockerd with the given extra runtimes (name -> path) and environment, or with the
    daemon.json `config` as it is; returns once its socket answers `docker version`.
    On failure nothing is left running."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "cli").mkdir(exist_ok=True)
    if config is None:
        config = base / "daemon.json"
        config.write_text(json.dumps({"runtimes": {name: {"path": path} for name, path in runtimes.items()}},
                                     indent=2) + "\n")
    daemon = Dockerd(base, base / "dockerd.log")
    argv = ["dockerd", "--config-file", str(config),
            "--data-root", str(daemon.data_root),
            "--exec-root", str(daemon.exec_root),
            "--pidfile", str(base / "dockerd.pid"),
            "-H", f"unix://{daemon.socket}",
            "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--exec-opt", "native.cgroupdriver=cgroupfs"]
    with open(daemon.log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env), start_new_session=True)
    daemon.process = proc
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"dockerd exited {proc.returncode}:\n{daemon.log_tail()}")
            if daemon.socket.exists() and daemon.docker("version", timeout=20).returncode == 0:
                return daemon
            if time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not answer in {STARTUP_TIMEOUT} s:\n{daemon.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        stop(daemon)
        raise


def _mounts_under(paths: tuple[Path, ...]) -> list[str]:
    """Mount points at or below any of paths, deepest first."""
    prefixes = [str(p.resolve()) for p in paths]
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if any(point == p or point.startswith(p + "/") for p in prefixes):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _containerd_pid(daemon: Dockerd) -> int | None:
    """The managed containerd's pid, as dockerd recorded it, if that process is still ours."""
    pidfile = daemon.exec_root / "containerd" / "containerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # Only the containerd whose config lives under our exec root is ours.
    return pid if any(str(daemon.exec_root).encode() in arg for arg in cmdline) else None


def _end(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after timeout, to one pid."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(daemon: Dockerd) -> None:
    """Remove the daemon's containers, stop it and its containerd by pid, remove its dirs."""
    if daemon.process is None:
        return
    if daemon.process.poll() is None:
        try:
            ids = daemon.docker("ps", "-aq", timeout=60).stdout.split()
            if ids:
                daemon.docker("rm", "--force", *ids, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the daemon is stopped below all the same
    containerd = _containerd_pid(daemon)
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
        try:
            daemon.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
    if containerd is not None and _containerd_pid(daemon) == containerd:
        _end(containerd, STOP_TIMEOUT)
    for point in _mounts_under((daemon.data_root, daemon.exec_root)):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for path in (daemon.data_root, daemon.exec_root):
        if path.exists() and not _mounts_under((path,)):
            shutil.rmtree(path, ignore_errors=True)
