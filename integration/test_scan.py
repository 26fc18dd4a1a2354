"""`ocishim scan` on root file systems built here, each prediction checked by a real run
(issue 10).

Images: Debian trixie (glibc 2.41) and bookworm (2.36) by debootstrap (integration/
rootfs.py's cache), busybox-static, a static musl binary (musl-gcc), a static Go binary
(CGO_ENABLED=0). Predictions under two profiles, with the contract's expectations:
- Docker 20.10.0's profile has no clone3: glibc >= 2.34's pthread_create breaks before
  (plain runc: EPERM) and not after (ocishim: ENOSYS, glibc falls back to clone);
- Docker's current profile minus faccessat2: glibc >= 2.33's faccessat breaks before,
  so bash's `[ -x /bin/ls ]` is false; with ocishim it is true.
Each is run: the image with plain runc and with `ocishim run --runtime runc`, the same
bundle, the probe bind-mounted into a tmpfs so the cached root file system is never
written. The libc versions are checked against dpkg's status file in the image, the Go
version against `go version FILE`.

The same images as an OCI layout made by umoci (with a second layer deleting a file:
a whiteout) and as `podman save` archives (docker-archive and oci-archive) give the same
libc, machines and findings as the directory they were made from. umoci's trixie
layout and its archive are cached beside the root file systems (.cache/scan).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from . import bundles, probes, rootfs
from .conftest import PROFILES, run_ocishim

pytestmark = pytest.mark.runtime

EPERM = 1
CACHE = rootfs.REPO / ".cache" / "scan"
TIMEOUT = 300
CASES = {
    # name: (profile file, names taken out, command, output when it works, when it breaks,
    #        syscall, function)
    "spawn": ("docker-default-20.10.0.json", (), ("/mnt/probe",),
              "pthread_create 0\nposix_spawn 0\nchild_exit 0\n", f"pthread_create {EPERM}\nposix_spawn {EPERM}\n",
              "clone3", "pthread_create() [x86_64 x86]"),
    "test-x": ("docker-default.json", ("faccessat2",), ("/bin/bash", "-c", "[ -x /bin/ls ] && echo yes || echo no"),
               "yes\n", "no\n", "faccessat2", "faccessat() with any flags"),
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    if platform.machine() != "x86_64":
        pytest.skip(f"the expectations are x86_64's, not {platform.machine()}")
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there (the shared test data)")
    return tmp_path_factory.mktemp("h10-scan")


def _profiles(work: Path, case: str) -> tuple[Path, dict]:
    """(Docker-format file for scan, OCI linux.seccomp for the bundles), converted once
    by ocishim's Docker loader for both."""
    from ocishim.profile import load, to_oci

    name, minus = CASES[case][0], CASES[case][1]
    docker = json.loads((PROFILES / name).read_text())
    for rule in docker["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in minus]
    docker["syscalls"] = [r for r in docker["syscalls"] if r["names"]]
    path = work / f"{case}.json"
    path.write_text(json.dumps(docker))
    return path, to_oci(load(str(path)).profile)


@pytest.fixture(scope="module")
def probe(work) -> Path:
    """spawn_probe linked against libc.so.6, so that in the image it runs on the image's glibc."""
    if reason := probes.missing_tools():
        pytest.skip(reason)
    dest = work / "spawn_probe"
    proc = subprocess.run(["gcc", "-O2", "-o", str(dest), str(probes.SOURCES / "spawn_probe.c")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dest


def _debootstrap(suite: str) -> Path:
    try:
        return rootfs.debootstrap_rootfs(suite)
    except rootfs.RootfsUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module", params=["trixie", "bookworm"])
def debian(request):
    root = _debootstrap(request.param)
    from ocishim.scan import inventory

    return request.param, root, inventory(str(root))


def _run(work: Path, root: Path, probe: Path, seccomp: dict, cmd, ocishim: bool, tag: str) -> str:
    """Run cmd in root (read-only) under seccomp with plain runc or ocishim run --runtime runc."""
    if reason := bundles.missing_runtime("runc"):
        pytest.skip(reason)
    bundle = work / f"bundle-{tag}"
    bundles.spec(bundle, root, list(cmd), seccomp)
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"] += [{"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
                         {"destination": "/mnt/probe", "type": "bind", "source": str(probe),
                          "options": ["bind", "ro"]}]
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"h10-scan-{tag}-{os.getpid()}"
    argv = [str(rootfs.REPO / ".venv" / "bin" / "ocishim"), "run", "--runtime", "runc", "--id", cid, str(bundle)] \
        if ocishim else ["runc", "run", "--bundle", str(bundle), cid]
    if ocishim and not Path(argv[0]).exists():
        argv = ["python3", "-m", "ocishim", *argv[1:]]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT,
                              cwd=str(rootfs.REPO))
    finally:
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
    return proc.stdout


def _finding(report, syscall: str, function: str):
    found = [f for f in report.findings if f.arch == "x86_64" and f.syscall == syscall and f.function == function]
    assert len(found) == 1, [(f.syscall, f.function) for f in report.findings]
    return found[0]


@pytest.mark.parametrize("case", list(CASES))
def test_prediction_against_real_runs(work, probe, debian, case):
    from ocishim.patch import parse_mode
    from ocishim.profile import load
    from ocishim.scan import scan

    suite, root, read = debian
    docker_file, oci = _profiles(work, case)
    _, _, cmd, works, broken, syscall, function = CASES[case]
    report = scan(str(root), load(str(docker_file)).profile, str(docker_file), parse_mode("unnamed"), None,
                  "runc", None, read)
    libc6 = rootfs.package_version(root, "libc6")
    assert report.as_json()["libc"] == {"name": "glibc", "version": re.match(r"\d+\.\d+", libc6).group(0)}
    assert report.as_json()["machines"] == ["x86_64"]
    f = _finding(report, syscall, function)
    # The contract, written out: the syscall has no rule, so plain runc answers the
    # default errno (EPERM) below its stub's start, and ocishim ENOSYS.
    assert (f.before, f.after) == ("ERRNO(EPERM)", "ERRNO(ENOSYS)")
    assert f.breaks_before and not f.breaks_after
    assert not report.breaks_after  # nothing breaks after ocishim: scan exits 0
    before = _run(work, root, probe, oci, cmd, False, f"{suite}-{case}-plain")
    after = _run(work, root, probe, oci, cmd, True, f"{suite}-{case}-ocishim")
    assert (before == broken, after == works) == (f.breaks_before, not f.breaks_after), (before, after)


@pytest.fixture(scope="module")
def trixie_json(work) -> dict:
    """`ocishim scan --json` of trixie under Docker 20.10.0's profile, read once."""
    root = _debootstrap("trixie")
    docker_file, _ = _profiles(work, "spawn")
    proc = run_ocishim(["scan", str(root), str(docker_file), "--json"], timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_json_on_trixie(work, trixie_json):
    root = _debootstrap("trixie")
    docker_file, _ = _profiles(work, "spawn")
    data = trixie_json
    clone3 = [f for f in data["findings"] if f["syscall"] == "clone3" and f["function"].startswith("pthread_create")]
    assert [(f["breaks_before"], f["breaks_after"]) for f in clone3] == [(True, False)]
    text = run_ocishim(["scan", str(root), str(docker_file)], timeout=TIMEOUT)
    assert text.returncode == 0
    assert re.search(r"x86_64\s+clone3\s+ERRNO\(EPERM\) breaks\s+ERRNO\(ENOSYS\)\s+pthread_create", text.stdout)
    assert text.stdout.splitlines()[-1 - sum(1 for f in data["findings"] if f["breaks_before"] or f["breaks_after"])] \
        .endswith(", 0 with ocishim")


# --- static binaries -------------------------------------------------------------------

def _cached_build(name: str, source: str, argv_of, env=None) -> Path:
    """A binary built once per source text, under .cache/scan."""
    key = hashlib.sha256(source.encode() + " ".join(argv_of("X", "Y")).encode()).hexdigest()[:12]
    target = CACHE / f"{name}-{key}"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        src = CACHE / f"{name}-{key}.src{'.go' if name.endswith('go') else '.c'}"
        src.write_text(source)
        tmp = CACHE / f"{name}-{key}.{os.getpid()}.tmp"
        proc = subprocess.run(argv_of(str(src), str(tmp)), capture_output=True, text=True, timeout=TIMEOUT,
                              env={**os.environ, **(env or {})}, cwd=str(CACHE))
        assert proc.returncode == 0, proc.stderr
        os.replace(tmp, target)
    return target


@pytest.fixture(scope="module")
def musl_static() -> Path:
    if shutil.which("musl-gcc") is None:
        pytest.skip("musl-gcc not found (make test installs musl-tools)")
    return _cached_build("hello-musl", '#include <stdio.h>\nint main(void){puts("hi");return 0;}\n',
                         lambda src, out: ["musl-gcc", "-static", "-O2", "-o", out, src])


@pytest.fixture(scope="module")
def go_static() -> Path:
    if shutil.which("go") is None:
        pytest.skip("go not found (make test installs golang-go)")
    return _cached_build("hello-go", 'package main\nimport "fmt"\nfunc main(){ fmt.Println("hi") }\n',
                         lambda src, out: ["go", "build", "-o", out, src],
                         {"CGO_ENABLED": "0", "GOCACHE": str(CACHE / "go-build"), "GOPATH": str(CACHE / "gopath"),
                          "GO111MODULE": "off", "GOFLAGS": "-trimpath"})


def _scan_json(source: Path, profile: str = "docker-default.json") -> dict:
    proc = run_ocishim(["scan", str(source), str(PROFILES / profile), "--json"], timeout=TIMEOUT)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def test_busybox_static(work):
    root = bundles.busybox_rootfs(work / "busybox")
    data = _scan_json(root)
    built = subprocess.run(["dpkg-query", "-W", "-f=${Built-Using}", "busybox-static"], capture_output=True,
                           text=True).stdout
    glibc = tuple(int(x) for x in re.search(r"glibc \(= (\d+)\.(\d+)", built).groups())
    (libc,) = data["libcs"]
    assert (libc["name"], libc["static"], libc["path"]) == ("glibc", True, "/bin/busybox")
    assert (2, 34) <= tuple(int(x) for x in libc["version"].split(".")) <= glibc
    assert data["machines"] == ["x86_64"]


def test_musl_static(work, musl_static):
    root = work / "musl"
    (root / "bin").mkdir(parents=True)
    shutil.copy(musl_static, root / "bin" / "hello")
    data = _scan_json(root)
    assert [(c["name"], c["static"], c["path"]) for c in data["libcs"]] == [("musl", True, "/bin/hello")]
    assert data["libc"] == {"name": "musl", "version": None}
    assert data["machines"] == ["x86_64"]
    # musl's rows under an unknown version: every one of them, on x86_64 (no 32-bit rows)
    assert {f["syscall"] for f in data["findings"]} >= {"faccessat2", "fchmodat2", "statx"}


def test_go_static(work, go_static):
    root = work / "go"
    (root / "bin").mkdir(parents=True)
    shutil.copy(go_static, root / "bin" / "hello")
    data = _scan_json(root)
    says = subprocess.run(["go", "version", str(go_static)], capture_output=True, text=True).stdout
    assert data["go"] == [{"path": "/bin/hello", "version": says.split(": ", 1)[1].strip(), "arch": "x86_64"}]
    assert data["libcs"] == [] and data["libc"] == {"name": None, "version": None}


# --- the same images as an OCI layout (umoci) and podman save archives -------------------

def _umoci_layout(layout: Path, sources: list[Path], delete: list[str] = ()) -> Path:
    """An OCI layout with one layer holding the sources' trees, and a second layer that
    deletes `delete` (umoci writes whiteouts for it)."""
    bundle = layout.with_name(layout.name + "-bundle")
    shutil.rmtree(bundle, ignore_errors=True)
    for argv in (["umoci", "init", "--layout", str(layout)], ["umoci", "new", "--image", f"{layout}:t"],
                 ["umoci", "unpack", "--image", f"{layout}:t", str(bundle)]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
    for src in sources:
        subprocess.run(["cp", "-a", f"{src}/.", str(bundle / "rootfs")], check=True, timeout=TIMEOUT)
    subprocess.run(["umoci", "repack", "--image", f"{layout}:t", str(bundle)], check=True, timeout=TIMEOUT,
                   capture_output=True)
    if delete:
        for rel in delete:
            (bundle / "rootfs" / rel.lstrip("/")).unlink()
        subprocess.run(["umoci", "repack", "--image", f"{layout}:t", str(bundle)], check=True, timeout=TIMEOUT,
                       capture_output=True)
    shutil.rmtree(bundle, ignore_errors=True)
    return layout


def _podman_archives(layout: Path, out_dir: Path) -> dict[str, Path]:
    """docker-archive and oci-archive of the layout's image, by `podman save`."""
    if reason := bundles.missing_runtime("podman"):
        pytest.skip(reason)
    pulled = subprocess.run(["podman", "pull", "-q", f"oci:{layout}:t"], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert pulled.returncode == 0, pulled.stderr
    image = pulled.stdout.strip().splitlines()[-1]
    try:
        out = {}
        for fmt in ("docker-archive", "oci-archive"):
            path = out_dir / f"{layout.name}.{fmt}.tar"
            proc = subprocess.run(["podman", "save", "-q", "--format", fmt, "-o", str(path), image],
                                  capture_output=True, text=True, timeout=TIMEOUT)
            assert proc.returncode == 0, proc.stderr
            out[fmt] = path
        return out
    finally:
        subprocess.run(["podman", "rmi", "--force", image], capture_output=True, timeout=TIMEOUT)


def _same(a: dict, b: dict) -> None:
    for key in ("libc", "machines", "findings", "libcs", "go"):
        assert a[key] == b[key], key


def test_layout_and_archives_with_a_whiteout(work, musl_static, go_static):
    if shutil.which("umoci") is None:
        pytest.skip("umoci not found (make test installs it)")
    tree = bundles.busybox_rootfs(work / "mixed")
    shutil.copy(musl_static, tree / "bin" / "hello-musl")
    shutil.copy(go_static, tree / "bin" / "hello-go")
    layout = _umoci_layout(work / "mixed-layout", [tree], delete=["/bin/hello-musl"])
    (tree / "bin" / "hello-musl").unlink()  # the tree the image stands for
    expected = _scan_json(tree)
    assert "musl" not in {c["name"] for c in expected["libcs"]}
    layout_scan = _scan_json(layout)
    assert layout_scan["source"]["kind"] == "oci-layout"
    _same(layout_scan, expected)
    for fmt, archive in _podman_archives(layout, work).items():
        scanned = _scan_json(archive)
        assert scanned["source"]["kind"] == fmt
        _same(scanned, expected)


def test_trixie_layout_and_archive(work, trixie_json):
    if shutil.which("umoci") is None:
        pytest.skip("umoci not found (make test installs it)")
    root = _debootstrap("trixie")
    marker = (root / rootfs.MARKER).read_text()
    key = hashlib.sha256(marker.encode()).hexdigest()[:12]
    layout = CACHE / f"trixie-layout-{key}"
    if not (layout / "index.json").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = CACHE / f".trixie-layout-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _umoci_layout(tmp, [root])
        os.replace(tmp, layout)
    archive = CACHE / f"trixie-{key}.docker-archive.tar"
    if not archive.exists():
        # podman names the image after the path, and a path with .cache is no valid name.
        (work / "trixie-layout").symlink_to(layout)
        made = _podman_archives(work / "trixie-layout", work)["docker-archive"]
        shutil.move(str(made), str(archive))
    docker_file, _ = _profiles(work, "spawn")
    expected = trixie_json
    for source in (layout, archive):
        _same(_scan_json(source, str(docker_file)), expected)
