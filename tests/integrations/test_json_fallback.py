"""Where ocishim repairs libseccomp (patch.check), JSON readers (runc) get every rule that
lands on the repaired number as one unconditional rule with the strictest action among
them and the default (integrations.config._strict_for_json_readers): never weaker.

The repaired numbers are set on a real build here (as patch.check would set them for a
libseccomp bug there); the names expected are written out from the profile."""

from __future__ import annotations

import dataclasses

from ocishim import syscalls
from ocishim.integrations import config as cfg
from ocishim.patch import patch_profile
from ocishim.profile import load_object

SECCOMP = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
           "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
           "syscalls": [{"names": ["socket", "read"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}]},
                        {"names": ["bind"], "action": "SCMP_ACT_TRAP"},
                        {"names": ["write"], "action": "SCMP_ACT_ALLOW"}]}


def _fallback(repaired):
    profile = load_object({"ociVersion": "1.0.2", "linux": {"seccomp": SECCOMP}}, "config.json",
                          kind="config").profile
    patched = dataclasses.replace(patch_profile(profile), repaired=repaired)
    seccomp = {"syscalls": [dict(r) for r in SECCOMP["syscalls"]]}
    cfg._strict_for_json_readers(seccomp, profile, patched)
    return seccomp["syscalls"]


def test_a_repaired_multiplexer_takes_every_name_routed_there():
    # x86 socketcall carries the rules of socket and bind: both go, whatever their arch
    rules = _fallback((("x86", syscalls.resolve("x86", "socketcall")),))
    assert rules == [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}]},
                     {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["bind", "socket"], "action": "SCMP_ACT_TRAP"}]


def test_a_repaired_syscall_keeps_the_default_when_that_is_strictest():
    rules = _fallback((("x86_64", syscalls.resolve("x86_64", "socket")),))
    assert rules[-1] == {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    assert {"names": ["bind"], "action": "SCMP_ACT_TRAP"} in rules
