"""libseccomp 2.5.4 bugs found by scripts/hunt_libseccomp.py, each as the smallest rule set.

Shared by tests/verify/test_libseccomp_bugs.py (the checker reports each, the kernel and
libseccomp's own PFC export confirm) and integration/test_libseccomp_bug_witness.py
(`ocishim run` gives the profile's answer for each witness).

Every rule set is on personality (x86_64 135, i386 136, x32 0x40000087): a call that
only sets a process's own execution domain when it does run. The actions are ERRNO
(EACCES 13, EINVAL 22) and the default ALLOW, so a witness that gets through runs a
harmless call and one that is refused does nothing.

`means` is the profile written out again here from the rules (semantics.md rule 12 and
libseccomp's documented behaviour: rules on one syscall are OR'd, a rule's conditions
are ANDed, a 32-bit arch compares the low word only); it never comes from ocishim. It
returns None where two rules with different actions both hold: libseccomp documents no
order there and the test leaves those points alone.

`witnesses` were found by hand while minimising, and `lib_says` is libseccomp's answer
there, measured on the kernel (for the new bugs ALLOW, where the rules refuse); the
tests check them on the kernel without the checker.

PINNED holds the two bugs tests/patch/test_rules.py pins, in a form a container can run:
the first inside Docker's default profile in the integration test (its default is
ERRNO), the second with its actions turned around (ERRNO rules, ALLOW default), where
libseccomp's program is weaker instead of stricter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ocishim.actions import RET_ALLOW, RET_ERRNO

EACCES, EINVAL = 13, 22
ALLOW, ERR_EACCES, ERR_EINVAL = RET_ALLOW, RET_ERRNO | EACCES, RET_ERRNO | EINVAL
U32 = 0xFFFFFFFF
PERSONALITY = {"x86_64": 135, "x86": 136, "x32": 0x40000000 | 135}


def _rule(errno: int, *conds: tuple) -> dict:
    return {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno,
            "args": [{"index": i, "value": v, "valueTwo": v2, "op": f"SCMP_CMP_{op}"} for i, op, v, v2 in conds]}


def _seccomp(arches: tuple[str, ...], *rules: dict) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", *(f"SCMP_ARCH_{a.upper()}" for a in arches)],
            "syscalls": list(rules)}


def _low(arch: str, args) -> tuple[int, ...]:
    """The arguments as the arch's filter sees them: 32-bit arches compare the low word."""
    return tuple(a & U32 for a in args) if arch in ("x86", "x32") else tuple(args)


def _one_of(*hits: tuple[bool, int]) -> int | None:
    """The action of the rules that hold (ALLOW when none), None when two actions hold."""
    actions = {action for holds, action in hits if holds}
    if len(actions) > 1:
        return None
    return actions.pop() if actions else ALLOW


@dataclass(frozen=True)
class Bug:
    name: str
    why: str
    seccomp: dict  # linux.seccomp, native arch x86_64
    means: Callable[[str, tuple[int, ...]], int | None]  # (arch, args) -> the profile's answer
    witnesses: tuple[tuple[str, tuple[int, ...]], ...]  # (arch, args) where libseccomp departs
    lib_says: int = ALLOW  # libseccomp's answer at the witnesses
    # libseccomp's own PFC export already shows the departure: its rule tree is wrong
    # (src/db.c), not only the BPF generated from it (src/gen_bpf.c)
    tree_wrong: bool = False


def _gt_or_ne_and_ne(arch, args):
    a0, _, a2 = _low(arch, args)[:3]
    return ERR_EACCES if a0 > 0 or (a0 != 0 and a2 != 0) else ALLOW


def _lt_or_le_and_ne(arch, args):
    _, a1, a2 = _low(arch, args)[:3]
    return ERR_EACCES if a1 < 2 or (a2 <= 0 and a1 != 0) else ALLOW


def _never_true_condition(arch, args):
    _, a1, a2 = _low(arch, args)[:3]
    return _one_of((a1 > 0, ERR_EACCES), (a2 < 0 and a1 <= 1, ERR_EINVAL))


def _or_of_64bit_ranges(arch, args):
    a2 = _low(arch, args)[2]
    return ERR_EACCES if a2 < 10 or a2 > 2**32 + 10 else RET_ERRNO | 1


def _or_with_ne_32bit(arch, args):
    a0, a1 = _low(arch, args)[:2]
    return ERR_EACCES if (a0 != 1 and a1 == 0) or a0 == 0 else ALLOW


def _gt_or_masked_and_le_32bit(arch, args):
    a0, a1 = _low(arch, args)[:2]
    return ERR_EACCES if a1 > 0 or (a0 & 1 == 0 and a1 <= 0) else ALLOW


def _two_pairs_sharing_a0(arch, args):
    a0, a1, a2 = _low(arch, args)[:3]
    return ERR_EACCES if (a0 > 0 and a1 > 0) or (a0 >= 3 and a2 >= 0) else ALLOW


def _masked_eq_x32(arch, args):
    a0, _, a2 = _low(arch, args)[:3]
    return ERR_EACCES if (a0 != 0 and a2 == 0) or a0 & 1 == 0 else ALLOW


def _two_le_64bit(arch, args):
    a0 = _low(arch, args)[0]
    return ERR_EINVAL if a0 <= 0 or a0 <= 2**32 + 10 else ALLOW


PINNED: dict[str, Bug] = {b.name: b for b in (
    Bug("pinned-or-of-64bit-ranges",
        "x86_64: a2 < 10 OR a2 > 0x1_0000000a -> EACCES, default EPERM: a2 = 10 gets EACCES",
        {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [_rule(EACCES, (2, "LT", 10, 0), (2, "GT", 2**32 + 10, 0))]},
        _or_of_64bit_ranges, (("x86_64", (0, 0, 10)),), ERR_EACCES),
    Bug("pinned-or-with-ne-32bit",
        "i386: a0 != 1 AND a1 == 0, OR a0 == 0, one action: a0 = 0, a1 = 1 gets ALLOW",
        _seccomp(("x86",), _rule(EACCES, (0, "NE", 1, 0), (1, "EQ", 0, 0)), _rule(EACCES, (0, "EQ", 0, 0))),
        _or_with_ne_32bit, (("x86", (0, 1, 0)),)),
)}

BUGS: dict[str, Bug] = {b.name: b for b in (
    Bug("gt-or-ne-and-ne-32bit",
        "i386: a0 > 0, OR a0 != 0 AND a2 != 0, one action: a0 = 1 gets ALLOW",
        _seccomp(("x86",), _rule(EACCES, (0, "GT", 0, 0)), _rule(EACCES, (0, "NE", 0, 0), (2, "NE", 0, 0))),
        _gt_or_ne_and_ne, (("x86", (1, 0, 0)),)),
    Bug("lt-or-le-and-ne-32bit",
        "i386: a1 < 2, OR a2 <= 0 AND a1 != 0, one action: a1 = 1, a2 = 2 gets ALLOW",
        _seccomp(("x86",), _rule(EACCES, (1, "LT", 2, 0)), _rule(EACCES, (2, "LE", 0, 0), (1, "NE", 0, 0))),
        _lt_or_le_and_ne, (("x86", (0, 1, 2)),)),
    Bug("never-true-condition-hides-a-rule",
        "x86_64: a1 > 0 -> EACCES beside a2 < 0 AND a1 <= 1 -> EINVAL (never holds): "
        "a1 = 1 gets ALLOW, and a1 = 0, a2 = 2^32 gets EACCES",
        _seccomp((), _rule(EACCES, (1, "GT", 0, 0)), _rule(EINVAL, (2, "LT", 0, 0), (1, "LE", 1, 0))),
        _never_true_condition, (("x86_64", (0, 1, 0)),)),
    Bug("masked-eq-beside-ne-and-eq-x32",
        "x32: a0 != 0 AND a2 == 0, OR a0 & 1 == 0, one action: a0 = 2, a2 = 1 gets ALLOW",
        _seccomp(("x32",), _rule(EACCES, (0, "NE", 0, 0), (2, "EQ", 0, 0)), _rule(EACCES, (0, "MASKED_EQ", 1, 0))),
        _masked_eq_x32, (("x32", (2, 0, 1)),)),
    # libseccomp's rule tree (its PFC export) is already wrong in these two.
    Bug("gt-or-masked-and-le-32bit",
        "i386: a1 > 0, OR a0 & 1 == 0 AND a1 <= 0, one action: the second rule is lost, "
        "a0 = 0, a1 = 0 gets ALLOW",
        _seccomp(("x86",), _rule(EACCES, (1, "GT", 0, 0)), _rule(EACCES, (0, "MASKED_EQ", 1, 0), (1, "LE", 0, 0))),
        _gt_or_masked_and_le_32bit, (("x86", (0, 0, 0)),), tree_wrong=True),
    Bug("two-pairs-sharing-a0",
        "x86_64: a0 > 0 AND a1 > 0, OR a0 >= 3 AND a2 >= 0, one action: a0 = 1, a1 = 0 gets "
        "EACCES (the tree hangs a2's test under a0 > 0): stricter than the rules",
        _seccomp((), _rule(EACCES, (0, "GT", 0, 0), (1, "GT", 0, 0)), _rule(EACCES, (0, "GE", 3, 0), (2, "GE", 0, 0))),
        _two_pairs_sharing_a0, (("x86_64", (1, 0, 0)),), ERR_EACCES, tree_wrong=True),
    # A variant of the first pinned bug (two range rules on one 64-bit argument whose
    # value has its high word set), with two rules instead of one rule split in two.
    Bug("two-le-64bit",
        "x86_64: a0 <= 0 OR a0 <= 0x1_0000000a, one action: a0 = 10 gets ALLOW",
        _seccomp((), _rule(EINVAL, (0, "LE", 0, 0)), _rule(EINVAL, (0, "LE", 2**32 + 10, 0))),
        _two_le_64bit, (("x86_64", (10, 0, 0)),)),
)}
