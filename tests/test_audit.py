"""Audit mode (ocishim/audit.py) against its contract, written out again here (issue 13):

- a call in E(A) gets USER_NOTIF carrying ENOSYS;
- a call the unaudited program answers with the default action, when that is an ERRNO
  other than 0, gets USER_NOTIF carrying that errno;
- every other answer (rules, KILL/TRAP defaults, ALLOW) is unchanged, and so is every
  answer to a syscall kept plain.
The emulator runs both programs; E(A) comes from the patch, the default from the profile.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocishim import audit, syscalls
from ocishim.actions import RET_ACTION_FULL, RET_DATA, RET_ERRNO, RET_USER_NOTIF, action_value
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.bpf.insn import decode
from ocishim.errors import ProfileError
from ocishim.integrations.config import BPF_ANNOTATION, rewrite
from ocishim.patch import parse_mode, patch_profile
from ocishim.patch.enosys import contains
from ocishim.profile import load, load_object
from tests import shared_data

PROFILES = shared_data.PROFILES
NOTIFY_PROFILES = {"runc-seccompagent-config.json", "seccompagent-notify-dangerous.json"}
ARGS = ((), (40, 1, 0), (0x12345,), (0x10000000, 0, 0), (1, 0xFFFFFFFF, 9), (0x7E020000,))


def expected(profile, patched, arch, nr: int, unaudited: int, plain=frozenset()) -> int:
    """The contract: what the audited program must return where the unaudited one returns this."""
    if (arch.name, nr) in plain:
        return unaudited
    default = action_value(profile.default_action, profile.default_errno_ret)
    notifiable = lambda v: v & RET_ACTION_FULL == RET_ERRNO and v & RET_DATA
    if contains(patched.enosys.get(arch.name, ()), nr) and notifiable(unaudited):
        return RET_USER_NOTIF | (unaudited & RET_DATA)
    if unaudited == default and notifiable(default):
        return RET_USER_NOTIF | (default & RET_DATA)
    return unaudited


def numbers(arch) -> list[int]:
    base = 0x40000000 if arch.name == "x32" else 0
    return [base + n for n in range(0, 600, 3)] + [base + n for n in (435, 439, 462, 470, 1000)]


def _law(profile, mode: str, plain: tuple[str, ...] = ()) -> int:
    patched = patch_profile(profile, parse_mode(mode))
    audited = audit.audit_program(patched, plain)
    plain_nrs = {(a.name, syscalls.resolve(a.name, n)) for a in patched.compiled.arches for n in plain
                 if a.name in syscalls.arches()}
    checked = 0
    for arch in patched.compiled.arches:
        if arch.name not in ("x86_64", "x32", "aarch64", "x86"):
            continue
        for nr in numbers(arch):
            for args in ARGS:
                u = emu.run(patched.program, arch, nr, args).ret
                a = emu.run(audited.program, arch, nr, args).ret
                assert a == expected(profile, patched, arch, nr, u, plain_nrs), \
                    (arch.name, nr, args, hex(u), hex(a))
                checked += 1
    return checked


@pytest.mark.parametrize("name", sorted(p.name for p in PROFILES.glob("*.json")
                                        if p.name not in NOTIFY_PROFILES))
@pytest.mark.parametrize("mode", ["unnamed", "off", "max"])
def test_law_on_shared_profiles(name: str, mode: str):
    loaded = load(str(PROFILES / name))
    assert _law(loaded.profile, mode) > 1000


def _profile(obj: dict):
    return load_object(obj, "test", kind="seccomp").profile


KILL = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["getpid"], "action": "SCMP_ACT_TRAP"}]}
ERRNO0 = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 0, "architectures": ["SCMP_ARCH_X86_64"],
          "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
ARGDEP = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
          "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                       {"names": ["write"], "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}


@pytest.mark.parametrize("obj", [KILL, ERRNO0, ARGDEP], ids=["kill", "errno0", "argdep"])
@pytest.mark.parametrize("plain", [(), tuple(c.syscall for c in audit.PLAIN["exec"])], ids=["all", "exec"])
def test_law_on_written_profiles(obj, plain):
    assert _law(_profile(obj), "unnamed", plain) > 1000


def test_kill_default_is_never_notified_but_the_stub_is():
    profile = _profile(KILL)
    patched = patch_profile(profile)
    program = audit.audit_program(patched).program
    x86 = BY_NAME["x86_64"]
    assert emu.run(program, x86, 169).ret == RET_USER_NOTIF | 38  # reboot: in E(A)
    assert emu.run(program, x86, 39).ret == 0x00030000  # getpid: TRAP rule


def test_errno0_default_is_not_notified():
    program = audit.audit_program(patch_profile(_profile(ERRNO0), parse_mode("off"))).program
    assert not any(i.k & RET_ACTION_FULL == RET_USER_NOTIF for i in program if i.code == 0x06)


def test_plain_write_with_argument_conditions_takes_a_copy():
    profile = _profile(ARGDEP)
    patched = patch_profile(profile, parse_mode("off"))
    audited = audit.audit_program(patched, ("write",))
    assert len(audited.program) > 2 * len(patched.program)  # the unaudited copy is there
    x86 = BY_NAME["x86_64"]
    assert emu.run(audited.program, x86, 1, (1,)).ret == 0x7FFF0000
    assert emu.run(audited.program, x86, 1, (2,)).ret == RET_ERRNO | 1  # plain EPERM, not notified
    assert emu.run(audited.program, x86, 2, ()).ret == RET_USER_NOTIF | 1  # open: notified


def test_metadata_round_trip_and_garbage():
    program = audit.audit_program(patch_profile(_profile(KILL))).program
    text = audit.metadata(program)
    assert audit.from_metadata(text) == program
    for bad in ("", "x", audit.METADATA_PREFIX, audit.METADATA_PREFIX + "!!!",
                audit.METADATA_PREFIX + base64.b64encode(b"not zlib").decode(),
                text[:-8], audit.METADATA_PREFIX + base64.b64encode(__import__("zlib").compress(b"\0" * (1 << 20))).decode()):
        assert audit.from_metadata(bad) is None


def test_answer_reads_the_errno_and_nothing_else():
    program = audit.audit_program(patch_profile(_profile(KILL))).program
    x86 = BY_NAME["x86_64"]
    order = sys.byteorder
    assert audit.answer(program, emu.seccomp_data(x86, 169), order) == 38
    assert audit.answer(program, emu.seccomp_data(x86, 0), order) is None  # read: ALLOW


def test_profile_with_own_listener_is_refused():
    with pytest.raises(ProfileError, match="listenerPath"):
        audit.refuse_own_listener(_profile({**KILL, "listenerPath": "/run/x.sock"}))
    with pytest.raises(ProfileError, match=r"syscalls\[2\]"):
        audit.refuse_own_listener(_profile({**KILL, "syscalls": KILL["syscalls"] + [
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}))


def _config(seccomp: dict) -> dict:
    return {"ociVersion": "1.0.2", "process": {"args": ["sh"]}, "root": {"path": "rootfs"},
            "linux": {"seccomp": copy.deepcopy(seccomp)}}


def test_config_for_crun_and_runc():
    seccomp = {**KILL, "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}
    result = rewrite(_config(seccomp), parse_mode("unnamed"))
    assert "write" in result.enosys_names
    audit.audit_config(result.config, result.patched, result.enosys_names, "/run/h13/agent.sock")
    sc = result.config["linux"]["seccomp"]
    assert sc["listenerPath"] == "/run/h13/agent.sock"
    program = decode(base64.b64decode(result.config["annotations"][BPF_ANNOTATION]))
    assert audit.from_metadata(sc["listenerMetadata"]) == program
    assert audit.audit_program(result.patched).program == program
    # runc: NOTIFY only as a rule, never on write (runc refuses both otherwise).
    notify_rule, write_rule = sc["syscalls"][-2:]
    assert notify_rule["action"] == "SCMP_ACT_NOTIFY" and "write" not in notify_rule["names"]
    assert set(notify_rule["names"]) | {"write"} == set(result.enosys_names)
    assert write_rule == {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert sc["defaultAction"] == "SCMP_ACT_KILL_PROCESS"
    # Each JSON NOTIFY name is in E(A), where the metadata's program answers ENOSYS.
    x86 = BY_NAME["x86_64"]
    for name in notify_rule["names"][:50]:
        nr = syscalls.resolve("x86_64", name)
        if nr is not None:
            assert audit.answer(program, emu.seccomp_data(x86, nr), sys.byteorder) == 38


def test_config_with_own_listener_is_refused():
    seccomp = {**KILL, "listenerPath": "/run/pod-agent.sock"}
    result = rewrite(_config(seccomp), parse_mode("unnamed"))
    with pytest.raises(ProfileError, match="linux.seccomp.listenerPath"):
        audit.audit_config(result.config, result.patched, result.enosys_names, "/run/h13/a.sock")


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocishim", *args], capture_output=True, text=True,
                          input=stdin, timeout=60)


def test_cli_refuses_audit_of_a_profile_with_a_listener(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**KILL, "listenerPath": "/run/x.sock"}))
    for cmd in (["patch", str(path), "--audit"], ["exec", str(path), "--audit", "--", "/bin/true"]):
        proc = _cli(*cmd)
        assert proc.returncode == 2, proc.stderr
        assert "listenerPath" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_patch_audit_matches_the_module(tmp_path):
    out = tmp_path / "f.bpf"
    proc = _cli("patch", str(PROFILES / "docker-default.json"), "--audit", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    expected_program = audit.audit_program(patch_profile(load(str(PROFILES / "docker-default.json")).profile))
    assert decode(out.read_bytes()) == expected_program.program
    assert sum(1 for i in decode(out.read_bytes()) if i.k & RET_ACTION_FULL == RET_USER_NOTIF and i.code == 6) >= 1


# --- the setting and the annotation (hook and wrapper), rule 10 ------------------------

from ocishim.integrations.config import rewrite_for_container  # noqa: E402
from ocishim.integrations.settings import Settings  # noqa: E402

# (settings' audit, ocishim.audit annotation) -> audited, or the refusal's text.
WANTED = [
    ("off", None, False), ("off", "off", False), ("off", "on", "do not allow audit"),
    ("annotation", None, False), ("annotation", "off", False), ("annotation", "on", True),
    ("on", None, True), ("on", "on", True), ("on", "off", "audit every container"),
    ("annotation", "yes", "must be on or off"), ("on", "", "must be on or off"),
]


@pytest.mark.parametrize("setting,annotation,outcome", WANTED)
def test_setting_and_annotation(setting, annotation, outcome):
    config = _config({**KILL})
    if annotation is not None:
        config["annotations"] = {"ocishim.audit": annotation}
    settings = Settings(audit=setting, audit_socket="/run/h13-admin/agent.sock")
    if isinstance(outcome, str):
        with pytest.raises(ProfileError, match="annotations.ocishim.audit") as info:
            rewrite_for_container(config, settings, "config.json")
        assert outcome in str(info.value)
        return
    result = rewrite_for_container(config, settings, "config.json")
    seccomp = result.config["linux"]["seccomp"]
    assert ("listenerPath" in seccomp) == outcome
    program = decode(base64.b64decode(result.config["annotations"][BPF_ANNOTATION]))
    assert any(i.code == 6 and i.k & RET_ACTION_FULL == RET_USER_NOTIF for i in program) == outcome
    if outcome:
        assert seccomp["listenerPath"] == "/run/h13-admin/agent.sock"


def test_annotations_ignored_means_the_annotation_is_not_read():
    config = _config({**KILL})
    config["annotations"] = {"ocishim.audit": "on"}
    result = rewrite_for_container(config, Settings(audit="off", annotations=False), "config.json")
    assert "listenerPath" not in result.config["linux"]["seccomp"]


def test_a_pod_cannot_choose_the_listener():
    """The listener goes to the settings' socket only: a pod's listenerPath is refused, not kept."""
    config = _config({**KILL, "listenerPath": "/run/pod/agent.sock"})
    config["annotations"] = {"ocishim.audit": "on"}
    with pytest.raises(ProfileError, match="listenerPath"):
        rewrite_for_container(config, Settings(audit="annotation"), "config.json")


def test_audit_answers_no_weaker_than_without():
    """Every answer of the audited program is the unaudited one, or USER_NOTIF standing for a
    refusal (an ERRNO): never an ALLOW, LOG or TRACE where there was a refusal."""
    for obj in (KILL, ARGDEP, {**KILL, "defaultAction": "SCMP_ACT_ERRNO"}):
        config = _config(obj)
        plain = rewrite_for_container(copy.deepcopy(config), Settings(), "c")
        audited = rewrite_for_container(copy.deepcopy(config), Settings(audit="on"), "c")
        p = decode(base64.b64decode(plain.config["annotations"][BPF_ANNOTATION]))
        a = decode(base64.b64decode(audited.config["annotations"][BPF_ANNOTATION]))
        x86 = BY_NAME["x86_64"]
        for nr in range(0, 600):
            u, v = emu.run(p, x86, nr).ret, emu.run(a, x86, nr).ret
            assert u == v or (v & RET_ACTION_FULL == RET_USER_NOTIF and u & RET_ACTION_FULL == RET_ERRNO
                              and u & RET_DATA == v & RET_DATA), (nr, hex(u), hex(v))


def test_hook_with_settings(tmp_path):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="h13-settings-") as d:
        settings = Path(d) / "config.json"
        settings.write_text(json.dumps({"audit": "annotation", "audit-socket": "/run/h13/agent.sock",
                                        "log": str(Path(d) / "ocishim.log")}))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OCISHIM_CONFIG": str(settings)}
        config = _config({**KILL})
        config["annotations"] = {"ocishim.audit": "on"}
        proc = subprocess.run([sys.executable, "-m", "ocishim", "hook", "precreate"], input=json.dumps(config),
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["linux"]["seccomp"]["listenerPath"] == "/run/h13/agent.sock"
        settings.write_text(json.dumps({"audit": "maybe", "log": str(Path(d) / "ocishim.log")}))
        proc = subprocess.run([sys.executable, "-m", "ocishim", "hook", "precreate"], input=json.dumps(config),
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2 and proc.stdout == ""


def test_the_filter_cache_never_serves_an_audited_filter(tmp_path):
    """With the hook's cache, a container that asked for audit does not leave an audited
    filter for the next one with the same profile, nor take one from the cache."""
    import tempfile

    from ocishim import filtercache

    with tempfile.TemporaryDirectory(prefix="h13-cache-") as d:
        cache, problem = filtercache.open_cache(os.path.join(d, "cache"))
        assert problem is None and cache is not None
        settings = Settings(audit="annotation")
        for ask in ("on", None, "on", None):
            config = _config({**KILL})
            if ask:
                config["annotations"] = {"ocishim.audit": ask}
            out = filtercache.rewrite_config(config, "config.json", settings, cache)
            assert ("listenerPath" in out.config["linux"]["seccomp"]) == (ask == "on")
            assert not (ask == "on" and out.cached)


def test_cli_patch_config_audit(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_config({**KILL})))
    proc = _cli("patch", str(path), "--audit", "--audit-socket", "/run/h13/a.sock", "--format", "config")
    assert proc.returncode == 0, proc.stderr
    seccomp = json.loads(proc.stdout)["linux"]["seccomp"]
    assert seccomp["listenerPath"] == "/run/h13/a.sock"
    assert seccomp["syscalls"][-1]["action"] in ("SCMP_ACT_NOTIFY", "SCMP_ACT_ERRNO")
    assert any(r["action"] == "SCMP_ACT_NOTIFY" for r in seccomp["syscalls"])
    assert json.loads(path.read_text()) == _config({**KILL})  # the input is not written
