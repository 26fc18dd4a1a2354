"""One meaning per config (semantics.md rule 11): what is refused, where, and what survives a rewrite.

The oracles are written out here: the exact JSON path of each planted problem, the
number texts as typed in the test, Python's own json module for everything that has
no number text to keep, and real runc's `runc spec` config for "a normal config".
Go's case folding (the reason for the case-twin rule) is restated as the list of
look-alike keys below, not taken from ocishim.profile.spec_fields.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocishim.errors import ProfileError
from ocishim.profile import load, loads
from ocishim.profile import jsontext
from ocishim.profile.parse import decode
from tests import shared_data

REPO = Path(__file__).resolve().parents[2]
PROFILES = shared_data.PROFILES
SHARED_PROFILES = (  # the files of ../shared/data/profiles, named so none can go missing unseen
    "containers-default-common-20250407.json", "containers-default-v0.40.1.json",
    "containers-default.json", "docker-default-20.10.0.json",
    "docker-default-moby-20250528.json", "docker-default.json", "jessfraz-chrome.json",
    "runc-seccomp_syscall_test1.json", "runc-seccompagent-config.json",
    "seccompagent-notify-dangerous.json", "spo-security-profiles-operator.json",
)

MARK = '"@@": 0'  # where a case plants its raw JSON text


def base_config() -> dict[str, Any]:
    """A config.json touching the spec's nested types: process.user, mounts, hooks, maps."""
    return {
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}],
        "hooks": {"prestart": [{"path": "/bin/true"}]},
        "annotations": {"org.example.note": "x"},
        "linux": {
            "resources": {"memory": {"limit": 1000000}, "rdma": {"mlx5_0": {"hcaHandles": 1}}},
            "timeOffsets": {"monotonic": {"secs": 1}},
            "sysctl": {"net.ipv4.ip_forward": "1"},
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                              {"index": 1, "value": 2, "op": "SCMP_CMP_NE"}]},
                    {"names": ["exit_group"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"},
                ],
            },
        },
        "windows": {"network": {"DNSSearchList": ["example.org"]}},
    }


def base_seccomp() -> dict[str, Any]:
    return copy.deepcopy(base_config()["linux"]["seccomp"])


def base_docker() -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "",
             "includes": {}, "excludes": {}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_PTRACE"], "minKernel": "4.8"}},
        ],
    }


BASES = {"config": base_config, "seccomp": base_seccomp, "docker": base_docker}


def planted(base: str, at: tuple, raw: str) -> str:
    """The JSON text of BASES[base]() with `raw` written into the object at path `at`."""
    doc = BASES[base]()
    target = doc
    for step in at:
        target = target[step]
    target["@@"] = 0
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    assert text.count(MARK) == 1
    return text.replace(MARK, raw)


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    where: str  # the exact ProfileError.where
    says: str  # a piece of the message


def dup(id: str, base: str, at: tuple, key: str, value: str, where: str) -> Case:
    return Case(id, planted(base, at, f"{json.dumps(key)}: {value}"), where, f'duplicate key "{key}"')


def twin(id: str, base: str, at: tuple, key: str, field: str, where: str, value: str = "1") -> Case:
    return Case(id, planted(base, at, f"{json.dumps(key)}: {value}"), where, f'field "{field}"')


def const(id: str, base: str, at: tuple, raw: str, name: str, where: str) -> Case:
    return Case(id, planted(base, at, raw), where, f"{name} is not valid JSON")


SECCOMP = ("linux", "seccomp")
RULE0 = (*SECCOMP, "syscalls", 0)
RULE2 = (*SECCOMP, "syscalls", 2)
ARG1 = (*RULE0, "args", 1)

REFUSED = [
    # duplicate keys, at several depths and in maps and unknown fields too
    dup("dup-top", "config", (), "ociVersion", '"1.1.0"', "ociVersion"),
    dup("dup-linux", "config", ("linux",), "seccomp", "null", "linux.seccomp"),
    dup("dup-seccomp", "config", SECCOMP, "defaultAction", '"SCMP_ACT_ALLOW"',
        "linux.seccomp.defaultAction"),
    dup("dup-rule-action", "config", RULE2, "action", '"SCMP_ACT_ALLOW"',
        "linux.seccomp.syscalls[2].action"),
    dup("dup-arg-op", "config", ARG1, "op", '"SCMP_CMP_EQ"', "linux.seccomp.syscalls[0].args[1].op"),
    dup("dup-annotation", "config", ("annotations",), "org.example.note", '"y"',
        "annotations.org.example.note"),
    dup("dup-process-user", "config", ("process", "user"), "uid", "1", "process.user.uid"),
    dup("dup-mount", "config", ("mounts", 1), "destination", '"/x"', "mounts[1].destination"),
    dup("dup-bare-seccomp", "seccomp", ("syscalls", 1), "names", '["kill"]', "syscalls[1].names"),
    dup("dup-docker-archmap", "docker", ("archMap", 0), "architecture", '"SCMP_ARCH_X86"',
        "archMap[0].architecture"),
    dup("dup-docker-includes", "docker", ("syscalls", 1, "includes"), "caps", "[]",
        "syscalls[1].includes.caps"),
    Case("dup-unknown-field", planted("config", (), '"x-extra": [0, {"a": 1, "a": 2}]'),
         "x-extra[1].a", 'duplicate key "a"'),
    Case("dup-empty-key", planted("config", ("annotations",), '"": "a", "": "b"'),
         'annotations[""]', 'duplicate key ""'),
    # keys that differ only in case from a spec field (Go reads them as that field)
    twin("twin-top", "config", (), "Process", "process", "Process", value="{}"),
    twin("twin-linux", "config", ("linux",), "Seccomp", "seccomp", "linux.Seccomp", value="{}"),
    twin("twin-seccomp", "config", SECCOMP, "DefaultAction", "defaultAction",
         "linux.seccomp.DefaultAction", value='"SCMP_ACT_ALLOW"'),
    twin("twin-rule", "config", RULE2, "Action", "action", "linux.seccomp.syscalls[2].Action",
         value='"SCMP_ACT_ALLOW"'),
    twin("twin-rule-upper", "config", RULE0, "NAMES", "names", "linux.seccomp.syscalls[0].NAMES",
         value='["ptrace"]'),
    twin("twin-arg", "config", ARG1, "ValueTwo", "valueTwo",
         "linux.seccomp.syscalls[0].args[1].ValueTwo"),
    twin("twin-process-user", "config", ("process", "user"), "UID", "uid", "process.user.UID"),
    twin("twin-mount", "config", ("mounts", 0), "Options", "options", "mounts[0].Options",
         value="[]"),
    twin("twin-hook", "config", ("hooks", "prestart", 0), "PATH", "path", "hooks.prestart[0].PATH",
         value='"/bin/false"'),
    twin("twin-rdma-value", "config", ("linux", "resources", "rdma", "mlx5_0"), "HcaObjects",
         "hcaObjects", "linux.resources.rdma.mlx5_0.HcaObjects"),
    twin("twin-time-offset", "config", ("linux", "timeOffsets", "monotonic"), "Secs", "secs",
         "linux.timeOffsets.monotonic.Secs"),
    twin("twin-windows-network", "config", ("windows", "network"), "dnsSearchList",
         "DNSSearchList", "windows.network.dnsSearchList", value="[]"),
    # Unicode simple folding: U+017F (long s), U+212A (Kelvin), U+0130, U+0131
    twin("twin-long-s", "config", SECCOMP, "\u017fyscalls", "syscalls",
         "linux.seccomp.\u017fyscalls", value="[]"),
    twin("twin-kelvin", "config", ("linux", "resources", "memory"), "\u212aernel", "kernel",
         "linux.resources.memory.\u212aernel"),
    twin("twin-dotted-I", "config", ARG1, "\u0130ndex", "index",
         "linux.seccomp.syscalls[0].args[1].\u0130ndex"),
    twin("twin-dotless-i", "config", SECCOMP, "arch\u0131tectures", "architectures",
         "linux.seccomp.arch\u0131tectures", value="[]"),
    twin("twin-bare-seccomp", "seccomp", (), "ListenerPath", "listenerPath", "ListenerPath",
         value='"/run/agent.sock"'),
    # the Docker and podman formats
    twin("twin-docker-top", "docker", (), "ArchMap", "archMap", "ArchMap", value="[]"),
    twin("twin-docker-archmap", "docker", ("archMap", 0), "SubArchitectures", "subArchitectures",
         "archMap[0].SubArchitectures", value="[]"),
    twin("twin-docker-rule", "docker", ("syscalls", 0), "Excludes", "excludes",
         "syscalls[0].Excludes", value="{}"),
    twin("twin-docker-filter", "docker", ("syscalls", 1, "includes"), "MinKernel", "minKernel",
         "syscalls[1].includes.MinKernel", value='"6.1"'),
    twin("twin-docker-errno", "docker", ("syscalls", 1), "Errno", "errno", "syscalls[1].Errno",
         value='"EPERM"'),
    twin("twin-docker-defaultErrno", "docker", (), "defaulterrno", "defaultErrno", "defaulterrno",
         value='"EPERM"'),
    # NaN and the infinities, wherever they stand
    const("nan-seccomp", "config", SECCOMP, '"listenerMetadata": NaN', "NaN",
          "linux.seccomp.listenerMetadata"),
    const("infinity-rule", "config", RULE2, '"errnoRet": Infinity', "Infinity",
          "linux.seccomp.syscalls[2].errnoRet"),
    const("minus-infinity-arg", "config", ARG1, '"valueTwo": -Infinity', "-Infinity",
          "linux.seccomp.syscalls[0].args[1].valueTwo"),
    const("nan-unknown-field", "config", (), '"x-extra": [1, 2, NaN]', "NaN", "x-extra[2]"),
    const("infinity-docker", "docker", ("syscalls", 0), '"errnoRet": Infinity', "Infinity",
          "syscalls[0].errnoRet"),
    # a lone surrogate escape: Go reads U+FFFD, Python keeps the surrogate
    Case("lone-surrogate", planted("config", ("annotations",), '"org.example.s": "a\\ud800"'),
         "annotations.org.example.s", "surrogate"),
    Case("lone-surrogate-key", planted("config", (), '"x\\udc00": 1'), '["x\\udc00"]', "surrogate"),
    # NUL: crun (C strings) reads "action\u0000x" as "action", Go and Python do not
    Case("nul-in-key", planted("config", RULE2, '"action\\u0000x": "SCMP_ACT_ALLOW"'),
         'linux.seccomp.syscalls[2]["action\\u0000x"]', "NUL"),
    Case("nul-in-value", planted("config", ("process",), '"env": ["PATH=/bin", "A=b\\u0000c"]'),
         "process.env[1]", "NUL"),
]


def test_cases_are_distinct() -> None:
    assert len(REFUSED) >= 40
    assert len({c.id for c in REFUSED}) == len(REFUSED)


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_load_refuses_at_the_path(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(case.text, encoding="utf-8")
    with pytest.raises(ProfileError) as e:
        load(str(path), arch="amd64", kernel=(6, 1))
    assert e.value.where == case.where, e.value
    assert case.says in e.value.message, e.value
    assert e.value.exit_code == 2


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_cli_exits_2_naming_the_path(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(case.text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "ocishim", "explain", str(path)], cwd=REPO,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{case.where}: " in proc.stderr, proc.stderr


def test_case_twin_names_what_go_would_read() -> None:
    text = planted("config", RULE2, '"Action": "SCMP_ACT_ALLOW"')
    with pytest.raises(ProfileError) as e:
        loads(text)
    assert str(e.value) == (
        'linux.seccomp.syscalls[2].Action: key "Action" differs only in case from the field '
        '"action": Go decoders (runc, containerd, Docker) read it as "action", crun and ocishim '
        'do not; write "action"')


def test_look_alike_key_is_shown_escaped() -> None:
    text = planted("config", SECCOMP, '"\u017fyscalls": []')
    with pytest.raises(ProfileError) as e:
        loads(text)
    assert 'key "\\u017fyscalls"' in e.value.message


def test_dotted_json_path_for_odd_keys() -> None:
    """Keys a dotted path cannot show (spaces, brackets, control characters) are quoted."""
    text = planted("config", (), '"x y": {"a": 1, "a": 1}')
    with pytest.raises(ProfileError) as e:
        loads(text)
    assert e.value.where == '["x y"].a'


# --- accepted: maps have free keys, unknown fields are not checked --------------------

def test_map_keys_of_any_case_are_accepted() -> None:
    doc = base_config()
    doc["annotations"].update({"Run.OCI.Seccomp_BPF_Data": "", "ANNOTATIONS": "a",
                               "\u017f": "b", "Org.Example.Note": "c"})
    doc["linux"]["sysctl"]["Net.IPv4.IP_Forward"] = "1"
    doc["linux"]["resources"]["unified"] = {"Memory.Max": "max", "memory.max": "max"}
    doc["linux"]["resources"]["rdma"]["MLX5_0"] = {"hcaHandles": 2}
    doc["linux"]["timeOffsets"]["BOOTTIME"] = {"secs": 2}
    doc["x-extra"] = {"Linux": {"Seccomp": 1}, "ociversion": 2}
    doc["windows"]["credentialSpec"] = {"Linux": 1, "ActiveDirectoryConfig": {"A": 1}}
    loaded = loads(json.dumps(doc))
    assert loaded.kind == "config"
    assert [r.action for r in loaded.profile.syscalls] == [
        "SCMP_ACT_ALLOW", "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"]
    assert loaded.config["annotations"]["\u017f"] == "b"


def test_valid_surrogate_pair_is_accepted() -> None:
    doc = decode('{"a": "\\ud83d\\ude00"}', "<t>")
    assert doc == {"a": "\U0001F600"}


def test_shared_profiles_still_load() -> None:
    assert sorted(p.name for p in PROFILES.glob("*.json")) == sorted(SHARED_PROFILES)
    for name in SHARED_PROFILES:
        loaded = load(str(PROFILES / name), arch="amd64", kernel=(6, 18))
        assert loaded.profile is not None, name
        assert loaded.profile.syscalls, name


def test_runc_spec_config_loads(tmp_path: Path) -> None:
    """runc's own default config.json, as `runc spec` writes it, has one meaning."""
    if shutil.which("runc") is None:
        pytest.skip("runc not found (make test installs it)")
    subprocess.run(["runc", "spec", "--bundle", str(tmp_path)], check=True)
    loaded = load(str(tmp_path))
    assert loaded.kind == "bundle"
    assert loaded.config["ociVersion"] == json.loads((tmp_path / "config.json").read_text())["ociVersion"]


def test_example_bundle_loads(tmp_path: Path) -> None:
    """The bundle examples/make_bundle.py writes (Docker 20.10.0's profile in a runc spec)."""
    if shutil.which("runc") is None:
        pytest.skip("runc not found (make test installs it)")
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, str(REPO / "examples" / "make_bundle.py"), str(bundle),
                    str(tmp_path / "rootfs"), "--", "sh"], check=True, cwd=REPO)
    loaded = load(str(bundle))
    assert loaded.profile is not None and len(loaded.profile.syscalls) > 10


# --- the existing limits still hold ------------------------------------------------

def test_depth_limit_still_an_error() -> None:
    with pytest.raises(ProfileError) as e:
        decode("[" * 100000 + "]" * 100000, "deep.json")
    assert e.value.where == "deep.json"
    assert "nested too deeply" in e.value.message


def test_size_limit_still_an_error() -> None:
    with pytest.raises(ProfileError) as e:
        decode(b" " * (16 * 1024 * 1024 + 1), "big.json")
    assert "16 MiB" in e.value.message


def test_depth_accepted_by_json_is_searched_without_recursion() -> None:
    """A problem under the deepest nesting json accepts is still found, at its path."""
    depth = 0
    for depth in (900, 700, 500):
        text = "[" * depth + '{"a": 1, "a": 2}' + "]" * depth
        try:
            json.loads(text)
        except RecursionError:
            continue
        break
    with pytest.raises(ProfileError) as e:
        decode(text, "deep.json")
    assert e.value.where == "[0]" * depth + ".a"


# --- integers stay integers; floats are refused where an integer is required --------

def test_floats_and_minus_zero_are_not_integers() -> None:
    for raw, shown in (("1e0", "1e0"), ("1.0", "1.0"), ("-0", "-0")):
        text = planted("config", RULE2, f'"errnoRet": {raw}')
        with pytest.raises(ProfileError) as e:
            loads(text)
        assert e.value.where == "linux.seccomp.syscalls[2].errnoRet"
        assert e.value.message == f"expected an unsigned integer, got number {shown}"


def test_integers_are_ints() -> None:
    doc = decode('{"a": 7, "b": 12345678901234567890123, "c": [0, -5]}', "<t>")
    assert [type(doc["a"]), type(doc["b"])] == [int, int]
    assert doc == {"a": 7, "b": 12345678901234567890123, "c": [0, -5]}


# --- numbers survive a rewrite ------------------------------------------------------

NUMBER_TEXTS = ["1e999", "0.1", "1E5", "-0.0", "1.50", "12345678901234567890123", "-0",
                "1e-7", "2.5E+10", "-1e-999", "0.30000000000000004", "100"]
UNICODE = ["h\u00e9llo", "\u2603 \U0001F600", "line\u2028sep", "tab\tquote\"back\\slash",
           "\u017f\u212a", "\u001f\u007f"]


def odd_config_text() -> str:
    doc = base_config()
    doc["@@"] = 0
    doc["x-unicode"] = UNICODE
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    return text.replace(MARK, '"x-extra": [' + ", ".join(NUMBER_TEXTS) + "]")


def x_extra_texts(text: str) -> list[str]:
    """The number tokens of the "x-extra" array, cut out of the JSON text with a regex."""
    m = re.search(r'"x-extra": \[([^\]]*)\]', text)
    assert m, text
    return [t.strip() for t in m.group(1).split(",")]


def test_numbers_and_strings_survive_decode_and_dumps() -> None:
    text = odd_config_text()
    assert x_extra_texts(text) == NUMBER_TEXTS
    out = jsontext.dumps(decode(text, "<t>"))
    assert x_extra_texts(out) == NUMBER_TEXTS
    assert out.endswith("}\n")
    again = json.loads(out)  # Python's own reader as the oracle for the rest
    assert again["x-unicode"] == UNICODE
    reference = json.loads(text)
    del again["x-extra"], reference["x-extra"]
    assert again == reference
    assert list(again) == list(reference)  # key order kept
    out.encode("utf-8")  # valid UTF-8


def test_dumps_equals_json_dumps_where_nothing_needs_keeping() -> None:
    """Without float text to keep, the output is json.dumps(indent=2, ensure_ascii=False)."""
    docs = [json.loads((PROFILES / name).read_text()) for name in SHARED_PROFILES]
    docs += [{}, [], {"a": []}, {"a": {}}, [[[]]], "s", 1, None, True, 0.5, {"k": [1, {"x": None}]}]
    for doc in docs:
        assert jsontext.dumps(doc) == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def test_dumps_refuses_what_json_cannot_hold() -> None:
    for bad in (float("nan"), float("inf"), {1: "a"}, {"a": object()}):
        with pytest.raises((ValueError, TypeError)):
            jsontext.dumps(bad)


def test_copies_keep_the_text() -> None:
    """config.rewrite deep-copies the config before it edits it."""
    doc = decode('{"a": [1e999, 1.50, -0]}', "<t>")
    assert jsontext.dumps(copy.deepcopy(doc)) == '{\n  "a": [\n    1e999,\n    1.50,\n    -0\n  ]\n}\n'


def test_patch_format_config_keeps_the_text(tmp_path: Path) -> None:
    """`ocishim patch --format config` rewrites the config but leaves x-extra's text as written."""
    path = tmp_path / "config.json"
    path.write_text(odd_config_text(), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "ocishim", "patch", "--format", "config", str(path)],
                          cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert x_extra_texts(proc.stdout) == NUMBER_TEXTS
    out = json.loads(proc.stdout)
    assert out["x-unicode"] == UNICODE
    assert "run.oci.seccomp_bpf_data" in out["annotations"]


# --- the law: decode then dumps writes what json.dumps writes for the same values ---

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_decode_dumps_is_json_dumps(value: Any) -> None:
    """Python's json writes floats with repr, so its text is what decode keeps: the two agree."""
    text = json.dumps(value)
    assert jsontext.dumps(decode(text, "<t>")) == json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    assert jsontext.dumps(value) == json.dumps(value, indent=2, ensure_ascii=False) + "\n"
