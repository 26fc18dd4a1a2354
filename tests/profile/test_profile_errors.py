"""Malformed profiles: each fails with a ProfileError naming the bad field, through load() and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import pytest

from ocishim.errors import ProfileError
from ocishim.profile import load
from ocishim.profile import parse as parse_module

REPO = Path(__file__).resolve().parents[2]
BIG = 50 * 1024 * 1024

# What a case writes: JSON text, raw bytes, or a function that sets up files
# under tmp_path and returns the PROFILE argument.
Content = Union[str, bytes, Callable[[Path], Path]]


@dataclass(frozen=True)
class Case:
    id: str
    content: Content
    where: str  # must be in the error's `where` and in the CLI's stderr


def seccomp(**top) -> str:
    doc = {"defaultAction": "SCMP_ACT_ERRNO",
           "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    doc.update(top)
    return json.dumps({k: v for k, v in doc.items() if v is not ...})


def rule(at: int = 0, **fields) -> str:
    """A profile whose rule `at` has `fields` (... removes a field); earlier rules are fine."""
    bad = {"names": ["read"], "action": "SCMP_ACT_ALLOW"}
    bad.update(fields)
    bad = {k: v for k, v in bad.items() if v is not ...}
    good = [{"names": [f"call{i}"], "action": "SCMP_ACT_ALLOW"} for i in range(at)]
    return seccomp(syscalls=[*good, bad])


def arg(at: int = 0, **fields) -> str:
    """A profile whose rule `at` has one argument condition with `fields`."""
    a = {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}
    a.update(fields)
    return rule(at, args=[{k: v for k, v in a.items() if v is not ...}])


def config(linux) -> str:
    return json.dumps({"ociVersion": "1.2.0", "process": {"args": ["sh"]}, "linux": linux})


def docker(**rule_fields) -> str:
    r = {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": ""}
    r.update(rule_fields)
    return json.dumps({"defaultAction": "SCMP_ACT_ERRNO",
                       "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}],
                       "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW"},
                                    {k: v for k, v in r.items() if v is not ...}]})


def docker_top(**top) -> str:
    doc = {"defaultAction": "SCMP_ACT_ERRNO",
           "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}}]}
    doc.update(top)
    return json.dumps(doc)


def big_file(tmp: Path) -> Path:
    path = tmp / "profile.json"
    with open(path, "wb") as f:
        f.write(b'{"defaultAction": "SCMP_ACT_ALLOW", "padding": "')
        f.write(b"a" * BIG)
        f.write(b'"}')
    return path


def bundle_without_config(tmp: Path) -> Path:
    bundle = tmp / "bundle-dir"
    bundle.mkdir()
    (bundle / "rootfs").mkdir()
    return bundle


def bundle_with_bad_config(tmp: Path) -> Path:
    bundle = tmp / "bundle-dir"
    bundle.mkdir()
    (bundle / "config.json").write_text(config({"seccomp": {"defaultAction": "SCMP_ACT_NOPE"}}))
    return bundle


def missing_file(tmp: Path) -> Path:
    return tmp / "no-such-profile.json"


CASES = [
    # top-level fields, wrong types and values
    Case("defaultAction-missing", seccomp(defaultAction=...), "defaultAction"),
    Case("defaultAction-null", seccomp(defaultAction=None), "defaultAction"),
    Case("defaultAction-number", seccomp(defaultAction=2), "defaultAction"),
    Case("defaultAction-unknown", seccomp(defaultAction="SCMP_ACT_FOO"), "defaultAction"),
    Case("defaultErrnoRet-string", seccomp(defaultErrnoRet="1"), "defaultErrnoRet"),
    Case("defaultErrnoRet-negative", seccomp(defaultErrnoRet=-1), "defaultErrnoRet"),
    Case("defaultErrnoRet-4096", seccomp(defaultErrnoRet=4096), "defaultErrnoRet"),
    Case("defaultErrnoRet-on-allow", seccomp(defaultAction="SCMP_ACT_ALLOW", defaultErrnoRet=1),
         "defaultErrnoRet"),
    Case("defaultErrnoRet-on-kill", seccomp(defaultAction="SCMP_ACT_KILL", defaultErrnoRet=0),
         "defaultErrnoRet"),
    Case("architectures-string", seccomp(architectures="SCMP_ARCH_X86_64"), "architectures"),
    Case("architectures-unknown", seccomp(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]),
         "architectures[1]"),
    Case("architectures-item-number", seccomp(architectures=[3]), "architectures[0]"),
    Case("flags-object", seccomp(flags={}), "flags"),
    Case("flags-unknown", seccomp(flags=["SECCOMP_FILTER_FLAG_FOO"]), "flags[0]"),
    Case("flags-item-bool", seccomp(flags=[True]), "flags[0]"),
    Case("listenerPath-number", seccomp(listenerPath=5), "listenerPath"),
    Case("listenerMetadata-array", seccomp(listenerMetadata=[]), "listenerMetadata"),
    Case("syscalls-object", seccomp(syscalls={}), "syscalls"),
    Case("syscalls-item-string", seccomp(syscalls=["read"]), "syscalls[0]"),
    # rules
    Case("names-missing", rule(2, names=...), "syscalls[2].names"),
    Case("names-null", rule(names=None), "syscalls[0].names"),
    Case("names-string", rule(names="read"), "syscalls[0].names"),
    Case("names-empty", rule(1, names=[]), "syscalls[1].names"),
    Case("name-empty-string", rule(names=["read", ""]), "syscalls[0].names[1]"),
    Case("name-number", rule(names=[0]), "syscalls[0].names[0]"),
    Case("name-bad-charset", rule(names=["Read(2)"]), "syscalls[0].names[0]"),
    Case("action-missing", rule(1, action=...), "syscalls[1].action"),
    Case("action-unknown", rule(action="SCMP_ACT_PERMIT"), "syscalls[0].action"),
    Case("action-list", rule(action=["SCMP_ACT_ALLOW"]), "syscalls[0].action"),
    Case("errnoRet-on-allow", rule(errnoRet=1), "syscalls[0].errnoRet"),
    Case("errnoRet-on-notify", rule(action="SCMP_ACT_NOTIFY", errnoRet=0), "syscalls[0].errnoRet"),
    Case("errnoRet-4096", rule(3, action="SCMP_ACT_ERRNO", errnoRet=4096), "syscalls[3].errnoRet"),
    Case("errnoRet-negative", rule(action="SCMP_ACT_ERRNO", errnoRet=-1), "syscalls[0].errnoRet"),
    Case("errnoRet-bool", rule(action="SCMP_ACT_ERRNO", errnoRet=True), "syscalls[0].errnoRet"),
    Case("errnoRet-float", rule(action="SCMP_ACT_ERRNO", errnoRet=1.0), "syscalls[0].errnoRet"),
    Case("errnoRet-string", rule(action="SCMP_ACT_ERRNO", errnoRet="EPERM"), "syscalls[0].errnoRet"),
    # arguments
    Case("args-object", rule(args={}), "syscalls[0].args"),
    Case("args-item-number", rule(args=[1]), "syscalls[0].args[0]"),
    Case("args-index-6", arg(index=6), "syscalls[0].args[0].index"),
    Case("args-index-negative", arg(index=-1), "syscalls[0].args[0].index"),
    Case("args-index-bool", arg(index=False), "syscalls[0].args[0].index"),
    Case("args-index-string", arg(index="0"), "syscalls[0].args[0].index"),
    Case("args-index-missing", arg(index=...), "syscalls[0].args[0].index"),
    Case("args-value-missing", arg(value=...), "syscalls[0].args[0].value"),
    Case("args-value-negative", arg(value=-1), "syscalls[0].args[0].value"),
    Case("args-value-2**64", arg(value=2**64), "syscalls[0].args[0].value"),
    Case("args-value-bool", arg(value=True), "syscalls[0].args[0].value"),
    Case("args-value-float", arg(value=0.5), "syscalls[0].args[0].value"),
    Case("args-valueTwo-string", arg(valueTwo="0"), "syscalls[0].args[0].valueTwo"),
    Case("args-op-missing", arg(op=...), "syscalls[0].args[0].op"),
    Case("args-op-unknown", arg(3, op="SCMP_CMP_FOO"), "syscalls[3].args[0].op"),
    Case("args-op-number", arg(op=4), "syscalls[0].args[0].op"),
    # the file itself
    Case("json-invalid", '{"defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": [}', "profile.json"),
    Case("json-truncated", '{"defaultAction": ', "profile.json"),
    Case("json-empty", "", "profile.json"),
    Case("json-nan", '{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": NaN}', "defaultErrnoRet"),
    Case("json-too-deep", "[" * 100000 + "]" * 100000, "profile.json"),
    Case("json-long-integer", '{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": ' + "9" * 5000 + "}",
         "profile.json"),
    Case("top-level-array", '[{"defaultAction": "SCMP_ACT_ALLOW"}]', "profile.json"),
    Case("top-level-string", '"SCMP_ACT_ALLOW"', "profile.json"),
    Case("top-level-null", "null", "profile.json"),
    Case("non-utf8", b'{"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "\xff\xfe"}',
         "profile.json"),
    Case("utf8-bom", b'\xef\xbb\xbf{"defaultAction": "SCMP_ACT_ALLOW"}', "profile.json"),
    Case("file-50MB", big_file, "profile.json"),
    Case("file-missing", missing_file, "no-such-profile.json"),
    Case("bundle-without-config", bundle_without_config, "bundle-dir"),
    # config.json
    Case("config-linux-array", config([]), "linux"),
    Case("config-seccomp-string", config({"seccomp": "default"}), "linux.seccomp"),
    Case("config-seccomp-array", config({"seccomp": []}), "linux.seccomp"),
    Case("config-nested-op", config({"seccomp": json.loads(arg(3, op="SCMP_CMP_FOO"))}),
         "linux.seccomp.syscalls[3].args[0].op"),
    Case("config-bundle-bad-action", bundle_with_bad_config, "linux.seccomp.defaultAction"),
    # Docker format
    Case("docker-name-and-names", docker(name="read"), "syscalls[1].name"),
    Case("docker-name-number", docker(names=..., name=7), "syscalls[1].name"),
    Case("docker-name-charset", docker(names=..., name="READ"), "syscalls[1].name"),
    Case("docker-architectures-and-archMap", docker_top(
        architectures=["SCMP_ARCH_X86_64"],
        archMap=[{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}]), "archMap"),
    Case("docker-archMap-object", docker_top(archMap={}), "archMap"),
    Case("docker-archMap-unknown", docker_top(archMap=[{"architecture": "SCMP_ARCH_Z80"}]),
         "archMap[0].architecture"),
    Case("docker-archMap-missing-arch", docker_top(archMap=[{"subArchitectures": []}]),
         "archMap[0].architecture"),
    Case("docker-subArchitectures-string", docker_top(
        archMap=[{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": "SCMP_ARCH_X86"}]),
        "archMap[0].subArchitectures"),
    Case("docker-minKernel-one-part", docker(includes={"minKernel": "4"}), "syscalls[1].includes.minKernel"),
    Case("docker-minKernel-three-parts", docker(includes={"minKernel": "4.8.1"}),
         "syscalls[1].includes.minKernel"),
    Case("docker-minKernel-0.0", docker(includes={"minKernel": "0.0"}), "syscalls[1].includes.minKernel"),
    Case("docker-minKernel-256", docker(excludes={"minKernel": "256.1"}), "syscalls[1].excludes.minKernel"),
    Case("docker-minKernel-number", docker(includes={"minKernel": 4.8}), "syscalls[1].includes.minKernel"),
    Case("docker-minKernel-sign", docker(includes={"minKernel": "+4.8"}), "syscalls[1].includes.minKernel"),
    Case("docker-includes-array", docker(includes=[]), "syscalls[1].includes"),
    Case("docker-includes-caps-string", docker(includes={"caps": "CAP_SYS_ADMIN"}),
         "syscalls[1].includes.caps"),
    Case("docker-excludes-arches-item", docker(excludes={"arches": [64]}), "syscalls[1].excludes.arches[0]"),
    Case("docker-comment-number", docker(comment=1), "syscalls[1].comment"),
    Case("docker-errno-unknown", docker(action="SCMP_ACT_ERRNO", errno="EFOO"), "syscalls[1].errno"),
    Case("docker-errno-lowercase", docker(action="SCMP_ACT_ERRNO", errno="eperm"), "syscalls[1].errno"),
    Case("docker-errno-number", docker(action="SCMP_ACT_ERRNO", errno=1), "syscalls[1].errno"),
    Case("docker-errno-on-allow", docker(errno="EPERM"), "syscalls[1].errno"),
    Case("docker-defaultErrno-unknown", docker_top(defaultErrno="ENOTANERRNO"), "defaultErrno"),
    Case("docker-op-unknown", docker(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]),
         "syscalls[1].args[0].op"),
    Case("docker-action-unknown", docker(action="SCMP_ACT_FOO", includes={"arches": ["s390x"]}),
         "syscalls[1].action"),
    Case("docker-defaultAction-empty-with-rules", docker_top(defaultAction=""), "defaultAction"),
]


def materialise(case: Case, tmp_path: Path) -> Path:
    if callable(case.content):
        return case.content(tmp_path)
    path = tmp_path / "profile.json"
    data = case.content.encode() if isinstance(case.content, str) else case.content
    path.write_bytes(data)
    return path


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_load_rejects(case: Case, tmp_path: Path) -> None:
    path = materialise(case, tmp_path)
    start = time.monotonic()
    with pytest.raises(ProfileError) as e:
        load(str(path), arch="amd64", kernel=(6, 1))
    assert time.monotonic() - start < 5
    assert case.where in e.value.where, (e.value.where, e.value.message)
    assert e.value.message
    assert e.value.exit_code == 2


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_rejects(case: Case, tmp_path: Path) -> None:
    path = materialise(case, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "ocishim", "explain", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode == 2, output
    assert case.where in proc.stderr, proc.stderr


def test_json_paths_are_exact(tmp_path: Path) -> None:
    """The example of design/semantics.md, word for word."""
    path = tmp_path / "config.json"
    path.write_text(config({"seccomp": json.loads(arg(3, op="SCMP_CMP_FOO"))}))
    with pytest.raises(ProfileError) as e:
        load(str(path))
    assert str(e.value) == 'linux.seccomp.syscalls[3].args[0].op: unknown operator "SCMP_CMP_FOO"'


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": [}')
    with pytest.raises(ProfileError) as e:
        load(str(path))
    assert e.value.where == str(path)
    assert "line 2 column 16" in e.value.message


def test_big_file_is_not_read(tmp_path: Path, monkeypatch) -> None:
    path = big_file(tmp_path)

    def no_json(*a, **k):
        raise AssertionError("the file was parsed")
    monkeypatch.setattr(parse_module.json, "loads", no_json)
    monkeypatch.setattr(parse_module.os, "read", no_json)
    with pytest.raises(ProfileError) as e:
        load(str(path))
    assert "16 MiB" in e.value.message


def test_big_input_from_a_pipe_is_cut_off(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as f:
            try:
                for _ in range(20):
                    f.write(b" " * (1 << 20))
            except BrokenPipeError:
                pass
    t = threading.Thread(target=writer)
    t.start()
    try:
        with pytest.raises(ProfileError) as e:
            load(str(fifo))
        assert "16 MiB" in e.value.message
    finally:
        t.join(timeout=10)


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    path = tmp_path / "profile.json"
    path.write_text(seccomp())
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running with privileges that ignore file modes")
    with pytest.raises(ProfileError) as e:
        load(str(path))
    assert e.value.where == str(path)
