"""ocishim scan on the command line: bad input is one line and exit 2; the JSON parses;
exit 3 exactly when something still breaks after ocishim."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import shared_data

PROFILES = shared_data.PROFILES


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocishim", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def busybox_root(tmp_path) -> Path:
    if not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed (make test installs it)")
    (tmp_path / "bin").mkdir()
    shutil.copy("/bin/busybox", tmp_path / "bin" / "busybox")
    return tmp_path


@pytest.mark.parametrize("args, where", [
    (["/nonexistent-h10"], "ocishim: ROOTFS: /nonexistent-h10: No such file or directory"),
    (["{root}", "--runtime", "youki"], "ocishim: --runtime: must be runc or crun"),
    (["{root}", "--host-libseccomp", "3.0"], "ocishim: --host-libseccomp: unknown libseccomp version"),
    (["{root}", "/nonexistent-profile-h10.json"], "ocishim: /nonexistent-profile-h10.json"),
    (["{root}", "--enosys", "sometimes"], "ocishim: --enosys"),
])
def test_bad_input(busybox_root, args, where):
    proc = _cli("scan", *[a.replace("{root}", str(busybox_root)) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(where) and proc.stderr.count("\n") == 1, proc.stderr


def test_json_and_exit_status(busybox_root, tmp_path):
    if not (PROFILES / "docker-default.json").is_file():
        pytest.skip(f"{PROFILES} is not there (the shared test data)")
    proc = _cli("scan", str(busybox_root), str(PROFILES / "docker-default.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["libc"] == {"name": "glibc", "version": data["libcs"][0]["version"]}
    assert data["machines"] == ["x86_64"]
    assert all(set(f) >= {"arch", "syscall", "function", "before", "after", "breaks_before", "breaks_after"}
               for f in data["findings"])
    # A profile whose default action kills: ENOSYS for nothing it does not name is still
    # ocishim's answer (the stub applies), but a KILL rule on a syscall the libc needs
    # stays: it breaks after ocishim too, and scan says so with exit 3.
    killing = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["getrandom"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    (tmp_path / "kill.json").write_text(json.dumps(killing))
    proc = _cli("scan", str(busybox_root), str(tmp_path / "kill.json"), "--json")
    assert proc.returncode == 3, proc.stderr
    broken = [f for f in json.loads(proc.stdout)["findings"] if f["breaks_after"]]
    assert broken and {f["syscall"] for f in broken} == {"getrandom"}
    assert all(f["after"] == "KILL_PROCESS" for f in broken)


def test_host_libseccomp_changes_before_only(busybox_root):
    """libseccomp 2.4.1 cannot name faccessat2 (5.8): crun drops its rule (EPERM, the
    default errno, breaks faccessat), runc's stub answers ENOSYS above 2.4.1's highest
    number (harmless); after ocishim crun runs ocishim's program (ALLOW, as the profile
    says) and runc still gets ENOSYS from its stub."""
    if not (PROFILES / "docker-default.json").is_file():
        pytest.skip(f"{PROFILES} is not there (the shared test data)")
    answers = {}
    for runtime in ("runc", "crun"):
        proc = _cli("scan", str(busybox_root), str(PROFILES / "docker-default.json"), "--json",
                    "--runtime", runtime, "--host-libseccomp", "2.4.1")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["host_libseccomp"] == "2.4.1" and data["runtime"] == runtime
        (f,) = [f for f in data["findings"] if f["syscall"] == "faccessat2" and f["function"].startswith("faccessat()")]
        answers[runtime] = (f["before"], f["breaks_before"], f["after"], f["breaks_after"])
    assert answers == {"runc": ("ERRNO(ENOSYS)", False, "ERRNO(ENOSYS)", False),
                       "crun": ("ERRNO(EPERM)", True, "ALLOW", False)}


def _elf32_i386() -> bytes:
    """The smallest ELF file pyelftools reads: an ELF32 little-endian header for EM_386
    (3), executable, no program or section headers (ELF spec, figure 1-3)."""
    import struct

    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    return ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0, 0, 0, 0, 52, 0, 0, 0, 0, 0)


def test_a_machine_the_filter_lacks_is_reported(busybox_root, tmp_path):
    (busybox_root / "bin" / "old32").write_bytes(_elf32_i386())
    only64 = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
              "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}
    (tmp_path / "only64.json").write_text(json.dumps(only64))
    proc = _cli("scan", str(busybox_root), str(tmp_path / "only64.json"), "--json")
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert data["machines"] == ["x86_64", "x86"]
    (missing,) = [f for f in data["findings"] if f["arch"] == "x86"]
    # libseccomp's bad-arch action is KILL_THREAD unless the profile says otherwise
    assert (missing["syscall"], missing["breaks_before"], missing["breaks_after"]) == ("*", True, True)
    assert missing["before"] == missing["after"] == "KILL_THREAD"



CONTAINERS_DEFAULT = Path("/usr/share/containers/seccomp.json")


def test_default_profile_away_from_a_checkout(busybox_root, tmp_path_factory):
    """Without PROFILE and with no ../shared beside the package (an installed ocishim),
    scan uses containers-common's default profile, which podman installs, and says so."""
    if not CONTAINERS_DEFAULT.is_file():
        pytest.skip(f"{CONTAINERS_DEFAULT} is not installed (make test installs podman, which brings it)")
    lib = tmp_path_factory.mktemp("installed") / "lib"
    shutil.copytree(Path(__file__).resolve().parents[2] / "ocishim", lib / "ocishim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert not (lib.parent / "shared").exists()  # where ocishim/scan/__init__.py looks first
    proc = subprocess.run([sys.executable, "-m", "ocishim", "scan", str(busybox_root)], capture_output=True,
                          text=True, timeout=120, cwd=lib, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib)})
    assert proc.returncode in (0, 3), proc.stderr
    assert f"profile {CONTAINERS_DEFAULT}; before: plain runc" in proc.stdout, proc.stdout


@pytest.mark.parametrize("args, where", [
    (["/nonexistent-h10"], "ocishim: ROOTFS: /nonexistent-h10: No such file or directory"),
    (["{root}", "--runtime", "youki"], "ocishim: --runtime: must be runc or crun"),
    (["{root}", "--host-libseccomp", "3.0"], "ocishim: --host-libseccomp: unknown libseccomp version"),
    (["{root}", "--enosys", "sometimes"], "ocishim: --enosys"),
    (["{root}"], "ocishim: PROFILE: no default profile here"),
])
def test_mistakes_are_named_before_a_missing_default(busybox_root, monkeypatch, capsys, args, where):
    """On a host with no default profile at all, a wrong ROOTFS or option is still named
    as such: the default is looked for last."""
    from ocishim import scan
    from ocishim.cli import main

    monkeypatch.setattr(scan, "DEFAULT_PROFILES", (busybox_root / "nothing-here.json",))
    assert main(["scan", *[a.replace("{root}", str(busybox_root)) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(where) and err.count("\n") == 1, err
