"""Docker: the mode for one runtime entry, set through daemon.json's runtimeArgs, with a real dockerd.

Docker 20.10 has no per-container annotations and passes no environment to a runtime,
but it puts a runtime entry's `runtimeArgs` in front of runc's arguments. So
`ocishim install docker --config FILE --name NAME` writes
`{"path": ".../ocishim-runtime", "runtimeArgs": ["--ocishim-config=FILE"]}` and the
wrapper reads its settings from FILE. Here a private dockerd gets three entries written
by `ocishim install docker` (max, unnamed, and one whose settings file is then deleted),
and a static probe makes acct(2) in a busybox image under Docker's built-in profile.

Expected answers, from the contract (semantics.md) and not from ocishim: acct has no
rule in Docker's default profile without CAP_SYS_PACCT and its number (163 on x86_64)
is below the highest number the profile names, so `max` keeps the profile's EPERM,
`unnamed` answers ENOSYS, and plain runc EPERM. A missing settings file stops the
container with a message naming the flag, never runs it with the defaults.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from . import dockerd, probes
from .bundles import busybox_rootfs

REPO = Path(__file__).resolve().parents[1]
IMAGE = "h12-docker-settings/probe:latest"
EPERM, ENOSYS = 1, 38


def _executable(base: Path, name: str, module: str) -> Path:
    """The venv's console script (what make test installs), else one for this checkout."""
    venv = REPO / ".venv" / "bin" / name
    if venv.is_file() and os.access(venv, os.X_OK):
        return venv
    script = base / "bin" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                      f"from {module} import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return script


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[tuple[dockerd.Dockerd, Path]]:
    if reason := dockerd.missing_tools():
        pytest.skip(reason)
    if platform.machine() != "x86_64":
        pytest.skip("the expected answers name x86_64's acct (163)")
    base = tmp_path_factory.mktemp("h12-docker")
    ocishim = _executable(base, "ocishim", "ocishim.cli")
    _executable(base, "ocishim-runtime", "ocishim.runtime")
    log = base / "ocishim.log"
    config = base / "daemon.json"
    for name, settings in (("h12-max", {"enosys": "max"}), ("h12-unnamed", {}), ("h12-gone", {})):
        path = base / f"{name}.json"
        path.write_text(json.dumps({**settings, "log": str(log)}))
        proc = subprocess.run([str(ocishim), "install", "docker", "--file", str(config), "--name", name,
                               "--config", str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    (base / "h12-gone.json").unlink()
    written = json.loads(config.read_text())["runtimes"]
    assert written["h12-max"]["runtimeArgs"] == [f"--ocishim-config={base / 'h12-max.json'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("OCISHIM_CONFIG", "OCISHIM_RUNTIME")}
    daemon = dockerd.start(base / "dockerd", {}, env, config=config)
    try:
        probe = probes.build("syscall_probe")  # copied under its cached name
        rootfs = busybox_rootfs(base / "rootfs", [probe])
        (rootfs / "bin" / "syscall_probe").symlink_to(probe.name)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        try:
            imported = daemon.docker("import", "-", IMAGE, stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            assert tar.wait(timeout=120) == 0
        assert imported.returncode == 0, imported.stderr
        yield daemon, log
    finally:
        dockerd.stop(daemon)


def _acct(daemon: dockerd.Dockerd, runtime: str) -> subprocess.CompletedProcess[str]:
    return daemon.docker("run", "--rm", "--network", "none", "--name", f"h12-{uuid.uuid4().hex[:10]}",
                         "--runtime", runtime, IMAGE, "/bin/syscall_probe", "acct=163:1",
                         stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("runtime, errno", [("h12-max", EPERM), ("h12-unnamed", ENOSYS), ("runc", EPERM)])
def test_runtime_args_choose_the_settings_file(daemon, runtime: str, errno: int) -> None:
    docker, log = daemon
    proc = _acct(docker, runtime)
    assert proc.returncode == 0, proc.stderr + docker.log_tail()
    assert proc.stdout.split() == ["acct", str(errno)]
    if runtime != "runc":
        mode = "max" if runtime == "h12-max" else "unnamed"
        assert f"(--enosys {mode})" in log.read_text()


def test_a_missing_settings_file_stops_the_container(daemon) -> None:
    docker, _ = daemon
    proc = _acct(docker, "h12-gone")
    assert proc.returncode != 0
    assert "--ocishim-config" in proc.stderr and "h12-gone.json" in proc.stderr, proc.stderr
    assert "acct" not in proc.stdout
