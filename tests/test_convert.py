"""`ocishim convert` against the conversion rules of Docker and containers/common, written out again.

The oracle below follows ../shared/data/profiles/README.md ("How Docker turns a
Docker-format profile into the OCI form" and "The containers/common dialect") on the
raw JSON, independently of ocishim.profile.docker: rules kept or dropped one at a time
in file order, excludes then includes, archMap expanded for the engine's arch, errno
names (containers/common only) winning over numbers, and the output shaped by the
runtime spec's Go types (field order, omitempty: no zero valueTwo, no empty args).
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocishim import cli
from tests import shared_data

REPO = Path(__file__).resolve().parents[1]
PROFILES = shared_data.PROFILES

# moby oci/caps/defaults.go DefaultCapabilities().
DOCKER_DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                       "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                       "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
# uname -m -> (Docker's short name, the archMap key Docker looks for, containers/common's key).
ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64", "SCMP_ARCH_AARCH64"),
    "s390x": ("s390x", "SCMP_ARCH_S390X", "SCMP_ARCH_S390X"),
}
# Docker-format profiles (and plain linux.seccomp objects, which Docker reads the same way).
NAMES = ["docker-default.json", "docker-default-moby-20250528.json", "docker-default-20.10.0.json",
         "containers-default.json", "containers-default-common-20250407.json",
         "containers-default-v0.40.1.json", "spo-security-profiles-operator.json",
         "jessfraz-chrome.json", "runc-seccomp_syscall_test1.json",
         "seccompagent-notify-dangerous.json"]


def _every_cap_named() -> list[str]:
    """Docker's defaults plus every capability any shared profile's conditions name."""
    caps = set(DOCKER_DEFAULT_CAPS)
    for name in NAMES:
        for rule in json.loads((PROFILES / name).read_text()).get("syscalls") or []:
            for cond in ("includes", "excludes"):
                caps |= set((rule.get(cond) or {}).get("caps") or [])
    return sorted(caps)


def _kept(rule: dict, short: str, caps: set[str], kernel: tuple[int, int], dialect: str) -> bool:
    exc, inc = rule.get("excludes") or {}, rule.get("includes") or {}
    version = (lambda text: tuple(int(x) for x in text.split(".")))
    if short in (exc.get("arches") or []):
        return False
    if any(c in caps for c in exc.get("caps") or []):
        return False
    if dialect == "docker" and exc.get("minKernel") and kernel >= version(exc["minKernel"]):
        return False
    if inc.get("arches") and short not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or []):
        return False
    if dialect == "docker" and inc.get("minKernel") and kernel < version(inc["minKernel"]):
        return False
    return True


def _go_rule(rule: dict, dialect: str) -> dict:
    names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
    out: dict[str, Any] = {"names": names, "action": rule["action"]}
    errno_ret = rule.get("errnoRet")
    if dialect == "containers" and rule.get("errno"):
        errno_ret = getattr(errno, rule["errno"])
    if errno_ret is not None:
        out["errnoRet"] = errno_ret
    if rule.get("args"):
        out["args"] = []
        for a in rule["args"]:
            arg = {"index": a["index"], "value": a["value"]}
            if a.get("valueTwo"):
                arg["valueTwo"] = a["valueTwo"]
            arg["op"] = a["op"]
            out["args"].append(arg)
    return out


def expected(profile: dict, machine: str, caps: set[str], kernel: tuple[int, int], dialect: str) -> dict:
    """What Docker (dialect "docker") or containers/common ("containers") put in linux.seccomp."""
    short, docker_key, containers_key = ARCHES[machine]
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    default_errno = profile.get("defaultErrnoRet")
    if dialect == "containers" and profile.get("defaultErrno"):
        default_errno = getattr(errno, profile["defaultErrno"])
    if default_errno is not None:
        out["defaultErrnoRet"] = default_errno
    arches = list(profile.get("architectures") or [])
    key = docker_key if dialect == "docker" else containers_key
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == key:
            arches = [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    if arches:
        out["architectures"] = arches
    for field in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(field):
            out[field] = profile[field]
    rules = [_go_rule(r, dialect) for r in profile.get("syscalls") or []
             if _kept(r, short, caps, kernel, dialect)]
    if rules:
        out["syscalls"] = rules
    return out


def _convert(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["convert", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", NAMES)
def test_convert_equals_docker_and_containers_rules(capsys, name: str) -> None:
    profile = json.loads((PROFILES / name).read_text())
    dialect = "containers" if name.startswith("containers-") else "docker"
    cap_sets = {"default": set(DOCKER_DEFAULT_CAPS), "all named": set(_every_cap_named()),
                "default + SYS_ADMIN, SYS_PTRACE": set(DOCKER_DEFAULT_CAPS) | {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"},
                "none": set()}
    checked = 0
    for machine in ARCHES:
        for label, caps in cap_sets.items():
            for kernel in ((6, 1), (4, 4)):
                argv = [str(PROFILES / name), "--arch", machine, "--kernel", "%d.%d" % kernel]
                if label != "default":  # the default set must be what --caps leaves out
                    argv += ["--caps", ",".join(sorted(caps))]
                code, out, err = _convert(capsys, *argv)
                assert code == 0, err
                want = expected(profile, machine, caps, kernel, dialect)
                # Same keys in the same order, the same values: compare the serialisations.
                assert json.dumps(json.loads(out)) == json.dumps(want), (machine, label, kernel)
                if dialect == "containers":  # on these arches the dialects agree for its files
                    assert want == expected(profile, machine, caps, kernel, "docker")
                checked += 1
    assert checked == 3 * 4 * 2


def test_conditions_matter_in_the_data() -> None:
    """The cases above differ where the rules say they must (a guard against a vacuous oracle)."""
    p = json.loads((PROFILES / "docker-default.json").read_text())
    base = expected(p, "x86_64", set(DOCKER_DEFAULT_CAPS), (6, 1), "docker")
    assert base["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert expected(p, "s390x", set(DOCKER_DEFAULT_CAPS), (6, 1), "docker") != base
    assert expected(p, "x86_64", set(_every_cap_named()), (6, 1), "docker") != base
    assert expected(p, "x86_64", set(DOCKER_DEFAULT_CAPS), (4, 4), "docker") != base
    c = json.loads((PROFILES / "containers-default.json").read_text())
    assert expected(c, "x86_64", set(), (6, 1), "containers")["defaultErrnoRet"] == errno.ENOSYS


def test_default_kernel_is_the_running_one(capsys) -> None:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert m
    running = (int(m.group(1)), int(m.group(2)))
    profile = json.loads((PROFILES / "docker-default.json").read_text())
    code, out, err = _convert(capsys, str(PROFILES / "docker-default.json"), "--arch", "amd64")
    assert code == 0, err
    assert json.loads(out) == expected(profile, "x86_64", set(DOCKER_DEFAULT_CAPS), running, "docker")


def test_output_bytes_and_file(tmp_path: Path, capsys) -> None:
    """Deterministic bytes: two-space JSON, spec order, one final newline; -o writes the same."""
    src = tmp_path / "p.json"
    src.write_text('{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64",'
                   '"subArchitectures":["SCMP_ARCH_X86"]}],"syscalls":[{"name":"read","action":'
                   '"SCMP_ACT_ALLOW","comment":"c","args":[{"op":"SCMP_CMP_EQ","valueTwo":0,"value":1,'
                   '"index":0}]},{"names":["reboot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":'
                   '["CAP_SYS_BOOT"]}}]}')
    code, out, err = _convert(capsys, str(src), "--arch", "x86_64")
    assert code == 0, err
    assert out == ('{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "architectures": [\n'
                   '    "SCMP_ARCH_X86_64",\n    "SCMP_ARCH_X86"\n  ],\n  "syscalls": [\n    {\n'
                   '      "names": [\n        "read"\n      ],\n      "action": "SCMP_ACT_ALLOW",\n'
                   '      "args": [\n        {\n          "index": 0,\n          "value": 1,\n'
                   '          "op": "SCMP_CMP_EQ"\n        }\n      ]\n    }\n  ]\n}\n')
    dest = tmp_path / "out.json"
    assert _convert(capsys, str(src), "--arch", "x86_64", "-o", str(dest))[0] == 0
    assert dest.read_text() == out


@pytest.mark.parametrize("argv, where", [
    (["{p}", "--arch", "vax"], "--arch"),
    (["{p}", "--kernel", "six"], "--kernel"),
    (["/nonexistent/profile.json"], "/nonexistent/profile.json"),
    (["{config}"], "config.json"),
    (["{empty}"], "empty.json"),
    (["{bad}"], "syscalls[0].excludes.minKernel"),
    (["{p}", "-o", "{link}"], "link.json"),
])
def test_bad_input_exit_2_one_line(tmp_path: Path, argv: list[str], where: str) -> None:
    (tmp_path / "config.json").write_text('{"ociVersion": "1.0.2", "linux": {}}')
    (tmp_path / "empty.json").write_text('{"defaultAction": ""}')
    (tmp_path / "bad.json").write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": '
                                       '["read"], "action": "SCMP_ACT_ALLOW", "excludes": '
                                       '{"minKernel": "4"}}]}')
    target = tmp_path / "victim"
    target.write_text("keep")
    (tmp_path / "link.json").symlink_to(target)
    paths = {"p": str(PROFILES / "docker-default.json"), "config": str(tmp_path / "config.json"),
             "empty": str(tmp_path / "empty.json"), "bad": str(tmp_path / "bad.json"),
             "link": str(tmp_path / "link.json")}
    proc = subprocess.run([sys.executable, "-m", "ocishim", "convert", *[a.format(**paths) for a in argv]],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and where in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert target.read_text() == "keep"
