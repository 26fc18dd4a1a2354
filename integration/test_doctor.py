"""`ocishim doctor` on this machine, each line against a measurement (issue 10).

- kernel: `uname -r`;
- libseccomp: its version from libseccomp itself (ctypes, seccomp_version) and from
  dpkg; the names it cannot name asked of it by ctypes on x86_64, x86 and x32, for the
  names of Docker's current profile (12 on Debian 12's 2.5.4) and for the names the
  shared kernel table gives this kernel;
- runtimes: paths from PATH, versions from dpkg, the libseccomp from ldd (and runc's
  own `--version` line, which runc asks its libseccomp for);
- the highest number runc's libseccomp names: runc is run with a profile that allows
  every name of the shared table, its filter is read back from the kernel, and the
  emulator finds where runc's stub starts answering ENOSYS;
- BPF annotation, runc approximate and crun exact: crun and runc are each given the
  same config rewritten by ocishim; crun's loaded bytes (its seccomp.bpf) are the
  annotation's program; runc's read-back filter is not, and answers mseal (allowed by
  Docker's profile, unknown to 2.5.4) otherwise than ocishim's program does;
- cgroup: `stat -f` of /sys/fs/cgroup and /sys/fs/cgroup/unified.
"""

from __future__ import annotations

import base64
import csv
import ctypes
import json
import os
import platform
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from . import bundles
from .conftest import PROFILES, SYSCALLS_CSV, run_ocishim

pytestmark = pytest.mark.runtime

TOKENS = {"x86_64": 0xC000003E, "x86": 0x40000003, "x32": 0x4000003E}
RET_ALLOW = 0x7FFF0000
ENOSYS_RET = 0x50026


@pytest.fixture(scope="module")
def report():
    if platform.machine() != "x86_64":
        pytest.skip(f"the arch tokens here are x86_64's, not {platform.machine()}")
    if not PROFILES.is_dir():
        pytest.skip(f"{PROFILES} is not there (the shared test data)")
    proc = run_ocishim(["doctor", "--json", "--profile", str(PROFILES / "docker-default.json")])
    assert proc.returncode == 0, proc.stderr
    text = run_ocishim(["doctor", "--profile", str(PROFILES / "docker-default.json")])
    assert text.returncode == 0, text.stderr
    return json.loads(proc.stdout), text.stdout


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    return lib


def _cannot_name(lib, name: str, arches=TOKENS) -> bool:
    return all(lib.seccomp_syscall_resolve_name_arch(TOKENS[a], name.encode()) == -1 for a in arches)


def _dpkg_version(package: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                          text=True).stdout


def test_kernel(report):
    data, text = report
    uname = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert data["kernel"] == uname
    assert text.splitlines()[0] == f"kernel {uname}"


def test_libseccomp_version(report):
    data, _ = report

    class V(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_version.restype = ctypes.POINTER(V)
    v = lib.seccomp_version().contents
    assert data["libseccomp"]["version"] == f"{v.major}.{v.minor}.{v.micro}"
    # Debian's package version starts with the upstream one (2.5.4-1+deb12u1).
    assert _dpkg_version("libseccomp2").startswith(data["libseccomp"]["version"] + "-")
    lib.seccomp_api_get.restype = ctypes.c_uint
    assert data["libseccomp"]["api"] == lib.seccomp_api_get()


def test_the_names_of_dockers_profile_it_cannot_name(report, lib):
    data, text = report
    docker = json.loads((PROFILES / "docker-default.json").read_text())
    names = sorted({n for rule in docker["syscalls"] for n in rule["names"]})
    expected = [n for n in names if _cannot_name(lib, n)]
    assert data["profile"]["unknown"] == expected
    if data["libseccomp"]["version"] == "2.5.4":
        assert len(expected) == 12  # the acceptance figure for Debian 12
    assert f"{len(expected)} of its {len(names)} names unknown to it: {' '.join(expected)}" in text


def test_the_names_this_kernel_has_that_it_cannot_name(report, lib):
    data, _ = report
    release = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout
    kernel = tuple(int(x) for x in release.split(".")[:2])
    has: dict[str, set[str]] = {a: set() for a in TOKENS}
    with open(SYSCALLS_CSV, newline="") as f:
        for row in csv.DictReader(f):
            if row["arch"] in TOKENS and tuple(int(x) for x in row["since"].split(".")) <= kernel \
                    and not row["until"]:
                has[row["arch"]].add(row["name"])
    for arch in TOKENS:
        expected = sorted(n for n in has[arch] if _cannot_name(lib, n, [arch]))
        assert data["libseccomp"]["unknown_by_arch"][arch] == expected
    # Docker's x86 names among them: all of the 12 but riscv_hwprobe, which x86 lacks.
    docker_unknown = set(data["profile"]["unknown"])
    assert docker_unknown - set(data["libseccomp"]["unknown"]) <= {"riscv_hwprobe"}


def _runtime(data, name):
    found = [r for r in data["runtimes"] if r["name"] == name]
    if not found:
        pytest.skip(f"{name} not found (make test installs it)")
    return found[0]


def _ldd_libseccomp(path: str) -> str:
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    line = next(line for line in out.splitlines() if "libseccomp" in line)
    return os.path.realpath(line.split("=>")[1].split()[0])


@pytest.mark.parametrize("name, package", [("runc", "runc"), ("crun", "crun")])
def test_runtime_binary_facts(report, name, package):
    data, text = report
    r = _runtime(data, name)
    assert r["path"] == os.path.realpath(shutil.which(name))
    assert _dpkg_version(package).startswith(r["version"].split("+")[0])
    assert r["libseccomp"]["how"] == "linked"
    assert r["libseccomp"]["path"] == _ldd_libseccomp(r["path"])
    # the library file's own version, as its name and dpkg give it
    assert r["libseccomp"]["path"].endswith(".so." + r["libseccomp"]["version"])
    if name == "runc":  # runc asks its libseccomp at run time and prints the answer
        runc_says = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout
        assert f"libseccomp: {r['libseccomp']['version']}" in runc_says.splitlines()
    assert f"{name} {r['version']} ({r['path']})" in text


def test_cgroup_mode(report):
    data, text = report

    def fstype(path: str) -> str:
        return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True).stdout.strip()

    top = fstype("/sys/fs/cgroup")
    if top == "cgroup2fs":
        expected = "unified"
    elif os.path.isdir("/sys/fs/cgroup/unified") and fstype("/sys/fs/cgroup/unified") == "cgroup2fs":
        expected = "hybrid"
    else:
        expected = "legacy"
    assert data["cgroup"] == expected
    assert f"cgroup {expected}" in text.splitlines()


def test_hook_and_wrapper_as_found_on_disk(report):
    data, _ = report
    hook_files = [p for d in ("/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d")
                  for p in sorted(Path(d).glob("*.json")) if "ocishim" in p.read_text(errors="replace")]
    assert data["hook"]["wired"] == bool(hook_files)
    assert data["wrapper"]["path"] == shutil.which("ocishim-runtime")


# --- measured with real containers ------------------------------------------------------

@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if reason := bundles.missing_runtime("runc"):
        pytest.skip(reason)
    return bundles.busybox_rootfs(tmp_path_factory.mktemp("h10-doctor") / "rootfs")


def _read_back_runc(bundle: Path, cid: str):
    """Start the bundle with runc (it sleeps), read its filter back, remove it."""
    from ocishim.inspect import read_filters

    proc = subprocess.Popen(["runc", "run", "--bundle", str(bundle), cid], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(["runc", "state", cid], capture_output=True, text=True)
            if state.returncode == 0 and json.loads(state.stdout)["status"] == "running":
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "runc did not start the container"
            time.sleep(0.05)
        (program,) = read_filters(json.loads(state.stdout)["pid"])
        return program
    finally:
        subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True)
        proc.wait(timeout=30)
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)


def _enosys_from(program, arch: str, low: int, high: int) -> int:
    """The smallest n in [low, high] from which every number answers ERRNO(ENOSYS)."""
    from ocishim.arch import BY_NAME
    from ocishim.bpf import emu

    n = high
    while n >= low and emu.run(program, BY_NAME[arch], n).ret == ENOSYS_RET:
        n -= 1
    return n + 1


def test_runc_max_nr_and_annotation_measured(report, rootfs, tmp_path):
    """Every name of the shared table allowed: runc's stub starts right above the highest
    number its libseccomp names. The config also carries crun's annotation with a
    program that would answer everything ENOSYS: runc must not load it."""
    data, text = report
    runc = _runtime(data, "runc")
    with open(SYSCALLS_CSV, newline="") as f:
        names = sorted({row["name"] for row in csv.DictReader(f) if row["arch"] in TOKENS})
    seccomp = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
               "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    bundles.spec(tmp_path, rootfs, ["sleep", "30"], seccomp)
    config = json.loads((tmp_path / "config.json").read_text())
    foreign = bytes.fromhex("0600000026000500")  # ret ERRNO(ENOSYS)
    config["annotations"] = {"run.oci.seccomp_bpf_data": base64.b64encode(foreign).decode()}
    (tmp_path / "config.json").write_text(json.dumps(config))
    program = _read_back_runc(tmp_path, f"h10-doctor-{uuid.uuid4().hex[:8]}")
    assert len(program) > 1  # not the annotation's one instruction
    measured = {"x86_64": _enosys_from(program, "x86_64", 0, 2000) - 1,
                "x86": _enosys_from(program, "x86", 0, 2000) - 1,
                "x32": _enosys_from(program, "x32", 0x40000000, 0x40000000 + 2000) - 1}
    assert runc["max_nr"] == measured
    assert runc["bpf_annotation"] is False
    assert "takes crun's BPF annotation (run.oci.seccomp_bpf_data): no" in text
    crun = [r for r in data["runtimes"] if r["name"] == "crun"]
    if crun and crun[0]["libseccomp"]["path"] == runc["libseccomp"]["path"]:
        assert crun[0]["max_nr"] == measured  # the same library file


def test_runc_is_approximate_measured(report, rootfs, tmp_path):
    """runc given ocishim's rewrite of Docker's profile: mseal, which the profile allows
    and 2.5.4 cannot name, answers otherwise than in ocishim's exact program."""
    from ocishim.arch import BY_NAME
    from ocishim.bpf import emu
    from ocishim.bpf.insn import decode

    data, text = report
    runc = _runtime(data, "runc")
    bundles.spec(tmp_path, rootfs, ["sleep", "30"], bundles.docker_profile())
    patched = tmp_path / "patched.json"
    assert run_ocishim(["patch", str(tmp_path), "--format", "config", "-o", str(patched)]).returncode == 0
    os.replace(patched, tmp_path / "config.json")
    config = json.loads((tmp_path / "config.json").read_text())
    exact = decode(base64.b64decode(config["annotations"]["run.oci.seccomp_bpf_data"]))
    program = _read_back_runc(tmp_path, f"h10-doctor-{uuid.uuid4().hex[:8]}")
    x86_64 = BY_NAME["x86_64"]
    mseal = 462  # x86_64, the shared table
    lost = emu.run(program, x86_64, mseal).ret != emu.run(exact, x86_64, mseal).ret
    assert emu.run(exact, x86_64, mseal).ret == RET_ALLOW
    assert lost == (runc["verdict"] == "approximate")
    assert "verdict: approximate" in text


def test_crun_is_exact_measured(report, rootfs, tmp_path):
    """crun given ocishim's rewrite loads the annotation's program byte for byte (its
    seccomp.bpf, the bytes it passed to the kernel)."""
    data, text = report
    crun = _runtime(data, "crun")
    bundles.spec(tmp_path, rootfs, ["sleep", "30"], bundles.docker_profile())
    patched = tmp_path / "patched.json"
    assert run_ocishim(["patch", str(tmp_path), "--format", "config", "-o", str(patched)]).returncode == 0
    config = json.loads(patched.read_text())
    expected = base64.b64decode(config["annotations"]["run.oci.seccomp_bpf_data"])
    cid = f"h10-doctor-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "crun-root"
    argv = [*bundles.crun_prefix(), "crun", "--root", str(root), *bundles.CRUN_ARGS, "run",
            "--bundle", str(tmp_path), "--config", str(patched), cid]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        loaded = root / cid / "seccomp.bpf"
        deadline = time.monotonic() + 30
        while not (loaded.exists() and loaded.stat().st_size == len(expected)):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "crun did not write seccomp.bpf"
            time.sleep(0.05)
        assert loaded.read_bytes() == expected
    finally:
        subprocess.run(["crun", "--root", str(root), "kill", cid, "KILL"], capture_output=True)
        proc.wait(timeout=30)
        subprocess.run([*bundles.crun_prefix(), "crun", "--root", str(root), "delete", "--force", cid],
                       capture_output=True)
    assert crun["bpf_annotation"] is True and crun["verdict"] == "exact"
    assert "verdict: exact" in text


def test_host_libseccomp_of_this_host_predicts_runc_and_crun(report, rootfs, tmp_path):
    """hostlib's answers for this host's libseccomp (Debian 12: 2.5.4-debian12 in
    known.csv) against the filters plain runc and crun really load for Docker's profile,
    on every x86_64 number of the shared table."""
    from ocishim import hostlib
    from ocishim.arch import BY_NAME
    from ocishim.bpf.insn import decode
    from ocishim.explain import answer
    from ocishim.patch import patch_profile
    from ocishim.profile import load_object

    data, _ = report
    if _dpkg_version("libseccomp2") != "2.5.4-1+deb12u1":
        pytest.skip(f"known.csv's 2.5.4-debian12 describes Debian 12's libseccomp2 2.5.4-1+deb12u1, "
                    f"not {_dpkg_version('libseccomp2')}")
    if reason := bundles.missing_runtime("crun"):
        pytest.skip(reason)
    seccomp = bundles.docker_profile()
    bundles.spec(tmp_path, rootfs, ["sleep", "30"], seccomp)
    runc_program = _read_back_runc(tmp_path, f"h10-doctor-{uuid.uuid4().hex[:8]}")
    cid, root = f"h10-doctor-{uuid.uuid4().hex[:8]}", tmp_path / "crun-root"
    proc = subprocess.Popen([*bundles.crun_prefix(), "crun", "--root", str(root), *bundles.CRUN_ARGS, "run",
                             "--bundle", str(tmp_path), cid], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        loaded = root / cid / "seccomp.bpf"
        deadline = time.monotonic() + 30
        while not loaded.exists() or subprocess.run(["crun", "--root", str(root), "state", cid],
                                                    capture_output=True).returncode != 0:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "crun did not start"
            time.sleep(0.05)
        time.sleep(0.2)
        crun_program = decode(loaded.read_bytes())
    finally:
        subprocess.run(["crun", "--root", str(root), "kill", cid, "KILL"], capture_output=True)
        proc.wait(timeout=30)
        subprocess.run([*bundles.crun_prefix(), "crun", "--root", str(root), "delete", "--force", cid],
                       capture_output=True)
    profile = load_object(json.loads((tmp_path / "config.json").read_text()), kind="config").profile
    x86_64 = BY_NAME["x86_64"]
    with open(SYSCALLS_CSV, newline="") as f:
        pairs = [(r["name"], int(r["nr"])) for r in csv.DictReader(f) if r["arch"] == "x86_64"]
    predicted = hostlib.plain_answers(profile, patch_profile(profile, "off"), [x86_64], "2.5.4-debian12",
                                      {"x86_64": pairs})
    differences = []
    for name, nr in pairs:
        for runtime, program in (("runc", runc_program), ("crun", crun_program)):
            real, _ = answer(program, x86_64, nr)
            if predicted[(runtime, "x86_64", nr)] != real:
                differences.append((runtime, name, nr, predicted[(runtime, "x86_64", nr)], real))
    assert differences == []
    assert len(pairs) > 350
