"""The kernel's constant-action evaluator, rule by rule (kernel/seccomp.c seccomp_is_const_allow)."""

from ocishim.actions import RET_ALLOW, RET_ERRNO, RET_LOG
from ocishim.arch import BY_NAME
from ocishim.bpf.cache import always_allowed, is_const_allow
from ocishim.bpf.insn import ALU, AND, JEQ, JGT, JMP, JSET, K, X, Insn, ja, ld_abs, ret

X86_64 = BY_NAME["x86_64"]
AUDIT = X86_64.audit


def test_nr_and_arch_paths():
    prog = (ld_abs(4), Insn(JMP | JEQ | K, 0, 2, AUDIT), ld_abs(0),
            Insn(JMP | JGT | K, 0, 1, 10), ret(RET_ERRNO | 1), ret(RET_ALLOW))
    assert always_allowed(prog, X86_64, range(20)) == frozenset(range(11))
    assert not is_const_allow(prog, 0x40000003, 1)  # another arch takes the ERRNO path


def test_argument_load_is_not_constant():
    prog = (ld_abs(0), Insn(JMP | JEQ | K, 0, 2, 41), ld_abs(16), ret(RET_ALLOW), ret(RET_ALLOW))
    assert not is_const_allow(prog, AUDIT, 41)
    assert is_const_allow(prog, AUDIT, 40)


def test_only_allow_counts_and_only_known_instructions():
    assert not is_const_allow((ret(RET_LOG),), AUDIT, 0)
    # jset and and #k are understood; a jump on X is not
    prog = (ld_abs(0), Insn(ALU | AND | K, 0, 0, 0xFF), Insn(JMP | JSET | K, 0, 1, 1),
            ret(RET_ERRNO | 1), ret(RET_ALLOW))
    assert always_allowed(prog, X86_64, [2, 3, 0x102, 0x103]) == {2, 0x102}
    assert not is_const_allow((ld_abs(0), Insn(JMP | JEQ | X, 0, 0, 0), ret(RET_ALLOW)), AUDIT, 0)
    assert is_const_allow((ja(1), ret(0), ret(RET_ALLOW)), AUDIT, 0)
