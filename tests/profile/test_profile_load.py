"""Every real profile in ../shared/data/profiles loads, and converts as the README says."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocishim.actions import ACTIONS, FILTER_FLAGS, OPERATORS
from ocishim.arch import BY_OCI
from ocishim.profile import ArgCond, Loaded, Profile, Rule, load, loads, parse_seccomp, to_oci
from ocishim.profile.docker import DOCKER_DEFAULT_CAPS
from tests import shared_data

PROFILES = shared_data.PROFILES
KERNEL = (6, 18)
KINDS = {
    "docker-default.json": "docker",
    "docker-default-moby-20250528.json": "docker",
    "docker-default-20.10.0.json": "docker",
    "containers-default.json": "docker",
    "containers-default-common-20250407.json": "docker",
    "containers-default-v0.40.1.json": "docker",
    "runc-seccomp_syscall_test1.json": "seccomp",
    "runc-seccompagent-config.json": "config",
    "seccompagent-notify-dangerous.json": "seccomp",
    "spo-security-profiles-operator.json": "docker",
    "jessfraz-chrome.json": "docker",
}
X86_FAMILY = ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")


def raw(name: str) -> dict:
    return json.loads((PROFILES / name).read_text())


def get(name: str, **kw) -> Loaded:
    kw.setdefault("kernel", KERNEL)
    kw.setdefault("arch", "amd64")
    return load(str(PROFILES / name), **kw)


def names_of(profile: Profile) -> set[str]:
    return set(profile.names())


def rule_indexes(profile: Profile) -> list[int]:
    return [int(r.path.removeprefix("syscalls[").removesuffix("]")) for r in profile.syscalls]


def expected_indexes(doc: dict, arch: str, caps, kernel) -> list[int]:
    """Docker's keep/drop decision, recomputed here straight from the README's wording."""
    out = []
    for i, rule in enumerate(doc["syscalls"]):
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        dropped = (
            arch in (exc.get("arches") or [])
            or bool(set(exc.get("caps") or []) & set(caps))
            or ("minKernel" in exc and kernel >= tuple(map(int, exc["minKernel"].split("."))))
            or (bool(inc.get("arches")) and arch not in inc["arches"])
            or not set(inc.get("caps") or []) <= set(caps)
            or ("minKernel" in inc and kernel < tuple(map(int, inc["minKernel"].split("."))))
        )
        if not dropped:
            out.append(i)
    return out


def test_data_is_there(profiles_dir: Path) -> None:
    assert sorted(p.name for p in profiles_dir.glob("*.json")) == sorted(KINDS)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_profile_loads(profiles_dir: Path, name: str) -> None:
    loaded = get(name)
    assert loaded.kind == KINDS[name]
    assert loaded.source == str(profiles_dir / name)
    assert loaded.profile is not None and loaded.profile.syscalls
    assert (loaded.config is not None) == (loaded.kind == "config")
    for rule in loaded.profile.syscalls:
        assert rule.names and rule.action in ACTIONS


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("arch", ["amd64", "arm64", "s390x", "ppc64le", "riscv64", "loongarch64"])
def test_every_profile_loads_on_every_docker_arch(name: str, arch: str) -> None:
    assert get(name, arch=arch).profile is not None


@pytest.mark.parametrize("name", sorted(KINDS))
def test_to_oci_round_trips(name: str) -> None:
    profile = get(name).profile
    again = parse_seccomp(json.loads(json.dumps(to_oci(profile))), profile.path)
    strip = lambda p: [(r.names, r.action, r.errno_ret, r.args) for r in p.syscalls]  # noqa: E731
    assert strip(again) == strip(profile)
    assert again.default_action == profile.default_action
    assert again.default_errno_ret == profile.default_errno_ret
    assert again.architectures == profile.architectures
    assert (again.listener_path, again.listener_metadata) == (
        profile.listener_path, profile.listener_metadata)


@pytest.mark.parametrize("name", [n for n, k in KINDS.items() if k == "docker"])
@pytest.mark.parametrize("arch", ["amd64", "arm64", "s390x", "ppc64le"])
@pytest.mark.parametrize("caps", [DOCKER_DEFAULT_CAPS, ("CAP_SYS_ADMIN",), ()])
@pytest.mark.parametrize("kernel", [(4, 4), (4, 8), (6, 18)])
def test_rule_selection_matches_readme(name: str, arch: str, caps, kernel) -> None:
    profile = get(name, arch=arch, caps=frozenset(caps), kernel=kernel).profile
    assert rule_indexes(profile) == expected_indexes(raw(name), arch, caps, kernel)


def test_docker_default_on_x86_64() -> None:
    doc = raw("docker-default.json")
    profile = get("docker-default.json").profile
    assert profile.default_action == "SCMP_ACT_ERRNO"
    assert profile.default_errno_ret == errno.EPERM
    assert profile.architectures == X86_FAMILY
    # The clone3 ENOSYS rule stays: CAP_SYS_ADMIN is not in Docker's default set.
    clone3 = [r for r in profile.syscalls if r.names == ("clone3",)]
    assert [(r.action, r.errno_ret) for r in clone3] == [("SCMP_ACT_ERRNO", 38)]
    # The big allow list, process_vm_*/ptrace (minKernel 4.8), socket, personality,
    # clone arg0, arch_prctl, modify_ldt, clone3 and chroot survive ...
    kept = {r.path for r in profile.syscalls}
    first = doc["syscalls"][0]["names"]
    assert profile.syscalls[0].names == tuple(first) and profile.syscalls[0].path == "syscalls[0]"
    for names in (["arch_prctl"], ["modify_ldt"], ["chroot"]):
        assert any(list(r.names) == names for r in profile.syscalls)
    assert {"process_vm_readv", "ptrace", "socket", "personality", "clone"} <= names_of(profile)
    assert sum(r.names == ("socket",) for r in profile.syscalls) == 3
    assert sum(r.names == ("personality",) for r in profile.syscalls) == 5
    # ... every other capability-gated rule and every other arch's rule goes.
    for i, rule in enumerate(doc["syscalls"]):
        caps = set((rule.get("includes") or {}).get("caps", []))
        arches = set((rule.get("includes") or {}).get("arches", []))
        if caps - set(DOCKER_DEFAULT_CAPS) or (arches and "amd64" not in arches):
            assert f"syscalls[{i}]" not in kept, rule["names"]
    assert not {"bpf", "mount", "reboot", "s390_runtime_instr", "riscv_flush_icache",
                "arm_fadvise64_64", "swapcontext", "open_by_handle_at"} & names_of(profile)
    # The s390 clone variant (excluded on amd64) is gone, the arg0 one kept.
    clones = [r for r in profile.syscalls if r.names == ("clone",)]
    assert len(clones) == 1 and clones[0].args[0].index == 0
    assert clones[0].args[0] == ArgCond(0, 0x7E020000, 0, "SCMP_CMP_MASKED_EQ")


def test_docker_default_with_cap_sys_admin() -> None:
    profile = get("docker-default.json", caps=frozenset(DOCKER_DEFAULT_CAPS) | {"CAP_SYS_ADMIN"}).profile
    assert not [r for r in profile.syscalls if r.action == "SCMP_ACT_ERRNO"]
    assert any("clone3" in r.names and r.action == "SCMP_ACT_ALLOW" for r in profile.syscalls)
    assert {"mount", "bpf", "unshare"} <= names_of(profile)


def test_min_kernel_rules_dropped_on_old_kernel() -> None:
    old = get("docker-default.json", kernel=(4, 4)).profile
    new = get("docker-default.json", kernel=(4, 8)).profile
    assert "ptrace" not in names_of(old) and "process_vm_readv" not in names_of(old)
    assert "ptrace" in names_of(new)
    assert len(new.syscalls) == len(old.syscalls) + 1
    # 20.10.0: ptrace alone carries minKernel.
    assert "ptrace" not in names_of(get("docker-default-20.10.0.json", kernel=(4, 4)).profile)
    assert "ptrace" in names_of(get("docker-default-20.10.0.json", kernel=(5, 0)).profile)


def test_docker_default_20_10_0_has_no_clone3() -> None:
    for caps in (DOCKER_DEFAULT_CAPS, ("CAP_SYS_ADMIN",)):
        for arch in ("amd64", "arm64", "s390x"):
            profile = get("docker-default-20.10.0.json", caps=frozenset(caps), arch=arch).profile
            assert "clone3" not in names_of(profile)
            assert profile.default_errno_ret is None
            assert {r.action for r in profile.syscalls} == {"SCMP_ACT_ALLOW"}
            assert all(r.errno_ret is None for r in profile.syscalls)


def test_docker_archmap_per_arch() -> None:
    assert get("docker-default.json", arch="arm64").profile.architectures == (
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert get("docker-default.json", arch="s390x").profile.architectures == (
        "SCMP_ARCH_S390X", "SCMP_ARCH_S390")
    assert get("docker-default.json", arch="riscv64").profile.architectures == ("SCMP_ARCH_RISCV64",)
    # No PPC64LE entry in Docker's default: native arch only.
    assert get("docker-default.json", arch="ppc64le").profile.architectures == ()
    # Docker's two tables disagree on LoongArch's name: nothing is expanded.
    assert get("docker-default.json", arch="loongarch64").profile.architectures == ()
    # Arch names other than Docker's short ones are accepted too.
    assert get("docker-default.json", arch="SCMP_ARCH_AARCH64").profile.architectures == (
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert get("docker-default.json", arch="x86_64").profile.architectures == X86_FAMILY


def test_containers_default_errno_names() -> None:
    doc = raw("containers-default.json")
    profile = get("containers-default.json").profile
    assert profile.default_errno_ret == errno.ENOSYS == 38
    assert profile.architectures == X86_FAMILY
    by_path = {r.path: r for r in profile.syscalls}
    for i, rule in enumerate(doc["syscalls"]):
        if rule.get("errno") and f"syscalls[{i}]" in by_path:
            assert by_path[f"syscalls[{i}]"].errno_ret == getattr(errno, rule["errno"])
    einval = [r for r in profile.syscalls if r.errno_ret == errno.EINVAL]
    assert len(einval) == 0  # the netlink-audit EINVAL rule is excluded by CAP_AUDIT_WRITE
    no_audit = get("containers-default.json", caps=frozenset()).profile
    einval = [r for r in no_audit.syscalls if r.errno_ret == errno.EINVAL]
    assert [(r.names, len(r.args)) for r in einval] == [(("socket",), 2)]
    # The leading ERRNO(EPERM) rule of 31 obsolete calls is always there.
    assert profile.syscalls[0].path == "syscalls[0]"
    assert profile.syscalls[0].errno_ret == errno.EPERM and len(profile.syscalls[0].names) == 31


def test_containers_v0_40_1_numeric_errno() -> None:
    profile = get("containers-default-v0.40.1.json", caps=frozenset()).profile
    assert profile.default_errno_ret == 38
    assert {r.errno_ret for r in profile.syscalls if r.action == "SCMP_ACT_ERRNO"} == {1, 22}


def test_jessfraz_chrome_legacy_name() -> None:
    doc = raw("jessfraz-chrome.json")
    profile = get("jessfraz-chrome.json").profile
    assert profile.architectures == ()
    assert [r.names for r in profile.syscalls] == [(r["name"],) for r in doc["syscalls"]]
    assert all(r.args == () for r in profile.syscalls)
    assert len(profile.syscalls) == 306


def test_spo_arch_expansion() -> None:
    assert get("spo-security-profiles-operator.json", arch="ppc64le").profile.architectures == (
        "SCMP_ARCH_PPC64LE", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC")
    assert get("spo-security-profiles-operator.json", arch="amd64").profile.architectures == X86_FAMILY
    assert get("spo-security-profiles-operator.json", arch="riscv64").profile.architectures == ()
    profile = get("spo-security-profiles-operator.json").profile
    assert len(profile.syscalls) == 1 and len(profile.syscalls[0].names) == 72


def test_runc_seccompagent_config() -> None:
    loaded = get("runc-seccompagent-config.json")
    assert loaded.kind == "config"
    assert loaded.config["ociVersion"] == "1.0.2-dev"
    assert loaded.config["process"]["noNewPrivileges"] is True
    profile = loaded.profile
    assert profile.path == "linux.seccomp"
    assert profile.default_action == "SCMP_ACT_ALLOW"
    assert profile.listener_path == "/run/seccomp-agent.socket"
    assert profile.listener_metadata == "foo"
    assert profile.architectures == ("SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64")
    assert [(r.names, r.action, r.path) for r in profile.syscalls] == [
        (("chmod", "fchmod", "fchmodat", "mkdir"), "SCMP_ACT_NOTIFY", "linux.seccomp.syscalls[0]")]


def test_seccompagent_notify_dangerous() -> None:
    profile = get("seccompagent-notify-dangerous.json").profile
    assert profile.listener_metadata == "DEFAULT_ACTION=kill-container\nMIDDLEWARE=falco"
    assert profile.architectures == ("SCMP_ARCH_X86_64",)
    assert len(profile.syscalls[0].names) == 50


def test_runc_syscall_test1() -> None:
    profile = get("runc-seccomp_syscall_test1.json").profile
    assert profile.path == "" and profile.architectures == ()
    assert profile.syscalls[0].path == "syscalls[0]"
    assert [r.errno_ret for r in profile.syscalls if r.action == "SCMP_ACT_ERRNO"] == [55]
    args = {a for r in profile.syscalls for a in r.args}
    assert ArgCond(2, 0xF00, 0, "SCMP_CMP_MASKED_EQ") in args
    assert ArgCond(0, 0x7E020000, 0, "SCMP_CMP_MASKED_EQ") in args


def test_bundle_directory(tmp_path: Path) -> None:
    config = raw("runc-seccompagent-config.json")
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load(str(tmp_path))
    assert loaded.kind == "bundle"
    assert loaded.source == str(tmp_path / "config.json")
    assert loaded.config == config
    assert loaded.profile == get("runc-seccompagent-config.json").profile


@pytest.mark.parametrize("config", [
    {"ociVersion": "1.2.0"},
    {"ociVersion": "1.2.0", "linux": {}},
    {"ociVersion": "1.2.0", "linux": None},
    {"ociVersion": "1.2.0", "linux": {"seccomp": None}},
    {"process": {"args": ["sh"]}, "linux": {"namespaces": []}},
])
def test_config_without_seccomp_means_no_filter(tmp_path: Path, config: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    for loaded in (load(str(tmp_path)), load(str(tmp_path / "config.json"))):
        assert loaded.profile is None and loaded.config == config


def test_docker_profile_without_action_or_rules_means_no_filter() -> None:
    for text in ('{"archMap": []}', '{"defaultAction": "", "syscalls": null, "archMap": null}',
                 '{"defaultAction": "", "syscalls": [], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}'):
        loaded = loads(text, arch="amd64")
        assert loaded.kind == "docker" and loaded.profile is None


def test_unknown_keys_ignored() -> None:
    text = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "x-vendor": {"a": 1}, "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_KILL", "why": "because",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "extra": True}]}]})
    loaded = loads(text)
    assert loaded.kind == "seccomp"
    assert loaded.profile.syscalls == (
        Rule(("read",), "SCMP_ACT_KILL", None, (ArgCond(0, 1, 0, "SCMP_CMP_EQ"),), "syscalls[0]"),)


def test_nulls_are_absent() -> None:
    text = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": None,
                       "architectures": None, "flags": None, "listenerPath": None,
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                     "errnoRet": None, "args": None}]})
    profile = loads(text).profile
    assert profile == Profile("SCMP_ACT_ALLOW", syscalls=(Rule(("read",), "SCMP_ACT_ERRNO", path="syscalls[0]"),))


def test_to_oci_key_order_and_omissions() -> None:
    profile = Profile(
        "SCMP_ACT_ERRNO", 38, ("SCMP_ARCH_X86_64",), ("SECCOMP_FILTER_FLAG_LOG",), "/s", "m",
        (Rule(("read",), "SCMP_ACT_ALLOW", None, (ArgCond(1, 2, 0, "SCMP_CMP_EQ"),
                                                   ArgCond(1, 0xF, 3, "SCMP_CMP_MASKED_EQ"))),
         Rule(("write",), "SCMP_ACT_TRACE", 7)),
    )
    out = to_oci(profile)
    assert list(out) == ["defaultAction", "defaultErrnoRet", "architectures", "flags",
                         "listenerPath", "listenerMetadata", "syscalls"]
    assert out["syscalls"] == [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 2, "op": "SCMP_CMP_EQ"},
                  {"index": 1, "value": 15, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["write"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
    ]
    assert list(out["syscalls"][1]) == ["names", "action", "errnoRet"]
    assert to_oci(Profile("SCMP_ACT_ALLOW")) == {"defaultAction": "SCMP_ACT_ALLOW"}


_names = st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True), min_size=1, max_size=4)
_u64 = st.integers(0, (1 << 64) - 1)
_args = st.builds(ArgCond, st.integers(0, 5), _u64, _u64, st.sampled_from(sorted(OPERATORS)))


@st.composite
def _rule(draw, path: str) -> Rule:
    action = draw(st.sampled_from(sorted(ACTIONS)))
    errno_ret = draw(st.none() | st.integers(0, 4095)) if ACTIONS[action].takes_errno else None
    return Rule(tuple(draw(_names)), action, errno_ret, tuple(draw(st.lists(_args, max_size=3))), path)


@st.composite
def _profile(draw) -> Profile:
    action = draw(st.sampled_from(sorted(ACTIONS)))
    n = draw(st.integers(0, 4))
    return Profile(
        action,
        draw(st.none() | st.integers(0, 4095)) if ACTIONS[action].takes_errno else None,
        tuple(draw(st.lists(st.sampled_from(sorted(BY_OCI)), max_size=3))),
        tuple(draw(st.lists(st.sampled_from(sorted(FILTER_FLAGS)), max_size=2))),
        draw(st.none() | st.text(max_size=8)),
        draw(st.none() | st.text(max_size=8)),
        tuple(draw(_rule(f"linux.seccomp.syscalls[{i}]")) for i in range(n)),
        "linux.seccomp",
    )


@given(_profile())
def test_to_oci_then_parse_is_identity(profile: Profile) -> None:
    """Law: parse_seccomp(to_oci(p)) == p, through JSON text."""
    assert parse_seccomp(json.loads(json.dumps(to_oci(profile))), "linux.seccomp") == profile
