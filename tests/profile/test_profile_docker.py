"""Docker-format conversion: the rules of moby/profiles seccomp and the containers/common dialect."""

from __future__ import annotations

import errno
import json

import pytest

from ocishim.arch import ARCHES, BY_NAME
from ocishim.libseccomp import native as host
from ocishim.errors import ProfileError, UsageError
from ocishim.profile import loads
from ocishim.profile import docker
from ocishim.profile.docker import DOCKER_DEFAULT_CAPS, convert, docker_arch_name


def rule(names=("read",), **kw) -> dict:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **kw}


def conv(rules, arch="amd64", caps=DOCKER_DEFAULT_CAPS, kernel=(6, 1), **top):
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules, **top}
    return convert(json.loads(json.dumps(doc)), arch=arch, caps=frozenset(caps), kernel=kernel)


def kept(rules, **kw) -> list[str]:
    return [r.path for r in conv(rules, **kw).syscalls]


def test_default_caps_are_mobys() -> None:
    # moby oci/caps/defaults.go DefaultCapabilities(), checked against the source.
    assert DOCKER_DEFAULT_CAPS == (
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    )


@pytest.mark.parametrize("name, short", [
    ("x86_64", "amd64"), ("x86", "x86"), ("aarch64", "arm64"), ("arm", "arm"),
    ("ppc64le", "ppc64le"), ("s390x", "s390x"), ("riscv64", "riscv64"),
    ("mipsel64n32", "mips3l64n32"), ("loongarch64", "loongarch64"),
    ("x32", ""), ("parisc", ""),
])
def test_docker_arch_name(name: str, short: str) -> None:
    assert docker_arch_name(BY_NAME[name]) == short


def test_every_arch_has_a_docker_name_entry_or_none() -> None:
    for a in ARCHES:
        assert isinstance(docker_arch_name(a), str)


def test_defaults_are_host_arch_docker_caps_running_kernel() -> None:
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "archMap": [
        {"architecture": a.oci, "subArchitectures": []} for a in ARCHES if a.name != "x32"],
        "syscalls": [rule(["chroot"], includes={"caps": ["CAP_SYS_CHROOT"]}),
                     rule(["mount"], includes={"caps": ["CAP_SYS_ADMIN"]}),
                     rule(["ptrace"], includes={"minKernel": "%d.%d" % docker.running_kernel()}),
                     rule(["futex"], includes={"minKernel": "255.255"})]}
    profile = convert(doc)
    assert profile == convert(doc, arch=docker_arch_name(host()), caps=frozenset(DOCKER_DEFAULT_CAPS),
                              kernel=docker.running_kernel())
    assert [r.names for r in profile.syscalls] == [("chroot",), ("ptrace",)]


def test_kernel_read_only_when_a_rule_needs_it(monkeypatch) -> None:
    def broken():
        raise AssertionError("kernel version read")
    monkeypatch.setattr(docker, "running_kernel", broken)
    assert len(conv([rule(), rule(includes={"caps": []})], kernel=None).syscalls) == 2
    with pytest.raises(AssertionError):
        conv([rule(includes={"minKernel": "4.8"})], kernel=None)


def test_running_kernel_parses_release(monkeypatch) -> None:
    class U:
        release = "5.15.0-91-generic"
    monkeypatch.setattr(docker.os, "uname", lambda: U)
    assert docker.running_kernel() == (5, 15)


def test_unknown_arch_param() -> None:
    with pytest.raises(UsageError):
        conv([rule()], arch="vax")


def test_conditions_in_dockers_order() -> None:
    rules = [
        rule(["a"]),
        rule(["b"], includes={"arches": ["arm64"]}),
        rule(["c"], excludes={"arches": ["amd64"]}),
        rule(["d"], includes={"caps": ["CAP_KILL", "CAP_SYS_ADMIN"]}),  # all are needed
        rule(["e"], excludes={"caps": ["CAP_SYS_ADMIN", "CAP_KILL"]}),  # any one drops
        rule(["f"], includes={"caps": ["CAP_KILL"]}, excludes={"caps": ["CAP_KILL"]}),
        rule(["g"], includes={"minKernel": "6.1"}),
        rule(["h"], excludes={"minKernel": "6.1"}),
        rule(["i"], includes={"minKernel": "6.2"}),
        rule(["j"], excludes={"minKernel": "6.2"}),
        rule(["k"], includes={"arches": ["amd64", "x32"]}, excludes={"arches": ["s390x"]}),
        rule(["l"], includes={}, excludes={}, args=None, comment=""),
        rule(["m"], includes=None, excludes=None),
    ]
    assert kept(rules, caps=["CAP_KILL"]) == [
        "syscalls[0]", "syscalls[6]", "syscalls[9]", "syscalls[10]", "syscalls[11]", "syscalls[12]"]
    assert kept(rules, arch="arm64", caps=["CAP_KILL", "CAP_SYS_ADMIN"], kernel=(5, 4)) == [
        "syscalls[0]", "syscalls[1]", "syscalls[2]", "syscalls[3]", "syscalls[7]", "syscalls[9]",
        "syscalls[11]", "syscalls[12]"]


def test_min_kernel_compares_major_then_minor() -> None:
    rules = [rule(includes={"minKernel": "4.8"})]
    assert kept(rules, kernel=(4, 8)) == ["syscalls[0]"]
    assert kept(rules, kernel=(5, 0)) == ["syscalls[0]"]
    assert kept(rules, kernel=(4, 7)) == []
    assert kept(rules, kernel=(3, 19)) == []
    assert kept([rule(includes={"minKernel": "04.08"})], kernel=(4, 8)) == ["syscalls[0]"]
    # Docker decodes "" as a set-but-zero version: every kernel is at least that.
    assert kept([rule(includes={"minKernel": ""})], kernel=(2, 6)) == ["syscalls[0]"]
    assert kept([rule(excludes={"minKernel": ""})], kernel=(2, 6)) == []


def test_rules_are_never_merged_or_reordered() -> None:
    rules = [rule(["write"]), rule(["read"]), rule(["read"]), rule(["read"], action="SCMP_ACT_KILL")]
    profile = conv(rules)
    assert [(r.names, r.action, r.path) for r in profile.syscalls] == [
        (("write",), "SCMP_ACT_ALLOW", "syscalls[0]"), (("read",), "SCMP_ACT_ALLOW", "syscalls[1]"),
        (("read",), "SCMP_ACT_ALLOW", "syscalls[2]"), (("read",), "SCMP_ACT_KILL", "syscalls[3]")]


def test_legacy_name() -> None:
    assert conv([{"name": "read", "action": "SCMP_ACT_ALLOW"}]).syscalls[0].names == ("read",)
    # An empty name is no name; an empty names list does not conflict.
    assert conv([{"name": "", "names": ["a"], "action": "SCMP_ACT_ALLOW"}]).syscalls[0].names == ("a",)
    assert conv([{"name": "b", "names": [], "action": "SCMP_ACT_ALLOW"}]).syscalls[0].names == ("b",)
    with pytest.raises(ProfileError) as e:
        conv([rule(), {"name": "b", "names": ["c"], "action": "SCMP_ACT_ALLOW"}])
    assert e.value.where == "syscalls[1].name"


def test_architectures_or_archmap() -> None:
    archmap = [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
               {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
               {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X32"]}]
    assert conv([rule()], archMap=archmap).architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86")
    assert conv([rule()], archMap=archmap, arch="s390x").architectures == ()
    # Kept as written, whatever the daemon's arch.
    assert conv([rule()], architectures=["SCMP_ARCH_PPC"], arch="amd64").architectures == ("SCMP_ARCH_PPC",)
    # Empty on one side is not "both".
    assert conv([rule()], archMap=archmap, architectures=[]).architectures == (
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X86")
    assert conv([rule()], archMap=[], architectures=["SCMP_ARCH_X86"]).architectures == ("SCMP_ARCH_X86",)
    with pytest.raises(ProfileError) as e:
        conv([rule()], archMap=archmap, architectures=["SCMP_ARCH_X86"])
    assert e.value.where == "archMap"


def test_mipsel_is_never_expanded_as_in_docker() -> None:
    archmap = [{"architecture": "SCMP_ARCH_MIPSEL", "subArchitectures": None}]
    assert conv([rule()], archMap=archmap, arch="mipsel").architectures == ()
    archmap = [{"architecture": "SCMP_ARCH_MIPSEL64N32", "subArchitectures": ["SCMP_ARCH_MIPSEL"]}]
    assert conv([rule()], archMap=archmap, arch="mipsel64n32").architectures == (
        "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_MIPSEL")


def test_errno_names_win() -> None:
    profile = conv([rule(action="SCMP_ACT_ERRNO", errnoRet=1, errno="ENOSYS"),
                    rule(action="SCMP_ACT_ERRNO", errnoRet=22, errno=""),
                    rule(action="SCMP_ACT_ERRNO", errno="EINVAL")],
                   defaultErrnoRet=1, defaultErrno="ENOSYS")
    assert profile.default_errno_ret == errno.ENOSYS
    assert [r.errno_ret for r in profile.syscalls] == [errno.ENOSYS, 22, errno.EINVAL]
    assert conv([rule()], defaultErrnoRet=5, defaultErrno="").default_errno_ret == 5


def test_errors_in_converted_rules_name_the_original_rule() -> None:
    rules = [rule(), rule(excludes={"arches": ["amd64"]}),
             rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}])]
    with pytest.raises(ProfileError) as e:
        conv(rules)
    assert e.value.where == "syscalls[2].args[0].op"
    assert e.value.message == 'unknown operator "SCMP_CMP_FOO"'
    with pytest.raises(ProfileError) as e:
        conv([rule(), rule(errno="EPERM")])
    assert e.value.where == "syscalls[1].errno"


def test_dropped_rules_are_validated_too() -> None:
    # Docker would skip it; we fail closed rather than depend on the build host.
    with pytest.raises(ProfileError) as e:
        conv([rule(), rule(action="SCMP_ACT_FOO", includes={"arches": ["s390x"]})])
    assert e.value.where == "syscalls[1].action"


@pytest.mark.parametrize("text, kind", [
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_LOG"}]}',
     "seccomp"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_LOG", '
     '"comment": "x"}]}', "docker"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "action": "SCMP_ACT_LOG"}]}',
     "docker"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_LOG", '
     '"includes": {}}]}', "docker"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO", '
     '"errno": "EPERM"}]}', "docker"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS"}', "docker"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "archMap": null}', "docker"),
    ('{"ociVersion": "1.0.0", "archMap": []}', "config"),
])
def test_detection(text: str, kind: str) -> None:
    assert loads(text, arch="amd64").kind == kind
