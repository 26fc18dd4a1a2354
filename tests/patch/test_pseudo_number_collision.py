"""libseccomp 2.5.4 gives sys_debug_setcontext and switch_endian one pseudo number, -10191
(seccomp/libseccomp#125). A runtime on an x86_64 host adds a rule by the host's number,
and libseccomp carries it to a ppc arch by the host's name for -10191: switch_endian. So
a profile allowing sys_debug_setcontext gets, in a ppc64le filter built here, 363
(switch_endian) allowed and 256 (sys_debug_setcontext) refused.

semantics.md: never weaker than the profile, and libseccomp's stricter answers are kept
(rule 10; patch.check). What containers get from ocishim is therefore EPERM on both: 363
repaired (the profile does not allow switch_endian), 256 kept with a note (libseccomp
refuses what the profile allows: stricter). The answers are written out here from the
profile and from libseccomp#125, and the emulator gives the program's.
"""

from __future__ import annotations

import pytest

from ocishim import libseccomp
from ocishim.actions import RET_ALLOW, RET_ERRNO
from ocishim.arch import BY_NAME
from ocishim.bpf import emu
from ocishim.compile import compile_profile
from ocishim.patch import patch_profile
from ocishim.profile.parse import parse_seccomp

EPERM_RET = RET_ERRNO | 1
SYS_DEBUG_SETCONTEXT, SWITCH_ENDIAN = 256, 363  # ppc64le, the project's table

pytestmark = pytest.mark.skipif(
    libseccomp.version() != (2, 5, 4) or libseccomp.native().name != "x86_64",
    reason="libseccomp 2.5.4's shared pseudo number, as a filter for another arch built on x86_64")


def _profile():
    return parse_seccomp({"defaultAction": "SCMP_ACT_ERRNO",
                          "syscalls": [{"names": ["sys_debug_setcontext"], "action": "SCMP_ACT_ALLOW"}]},
                         "linux.seccomp")


@pytest.mark.parametrize("arch", ["ppc64le", "ppc64"])
def test_libseccomp_puts_the_rule_on_switch_endian(arch):
    program = compile_profile(_profile(), BY_NAME[arch]).program
    assert emu.run(program, BY_NAME[arch], SWITCH_ENDIAN).ret == RET_ALLOW
    assert emu.run(program, BY_NAME[arch], SYS_DEBUG_SETCONTEXT).ret == EPERM_RET


@pytest.mark.parametrize("arch", ["ppc64le", "ppc64"])
def test_the_checked_build_repairs_switch_endian_and_keeps_the_stricter_answer(arch):
    patched = patch_profile(_profile(), "unnamed", native=BY_NAME[arch])
    assert patched.repaired == ((arch, SWITCH_ENDIAN),)
    assert emu.run(patched.program, BY_NAME[arch], SWITCH_ENDIAN).ret == EPERM_RET
    assert emu.run(patched.program, BY_NAME[arch], SYS_DEBUG_SETCONTEXT).ret == EPERM_RET
    assert [n.split(":")[0] for n in patched.notes] == ["kept", "repaired"]
    assert f"sys_debug_setcontext({SYS_DEBUG_SETCONTEXT})" in patched.notes[0]
    assert f"switch_endian({SWITCH_ENDIAN})" in patched.notes[1]
