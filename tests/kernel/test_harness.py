"""The kernel harness itself: markers, and the probe against hand-written filters."""

from __future__ import annotations

import errno

import pytest

from ocishim.actions import (
    MAX_ERRNO, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRACE,
    RET_TRAP, RET_USER_NOTIF,
)
from ocishim.bpf.insn import (
    JEQ, JMP, K, RET, A, Insn, encode, jump, ld_abs, ret, stmt,
)
from ocishim.bpf.markers import (
    MARKER_FIRST, CannotNeutralize, kernel_answer, kernel_view, neutralize,
)

from .harness import (
    Call, HarnessError, RefusedCall, encode_calls, ia32_available, kernel_results, require_kernel,
    run_probe_files,
)

AUDIT_ARCH_I386 = 0x40000003
X32 = 0x40000000
GETPID, EXIT, EXIT_GROUP = 39, 60, 231
GETPID_I386 = 20


def needs_ia32() -> None:
    if reason := ia32_available():
        pytest.skip(reason)


def jeq(k: int, jt: int, jf: int) -> Insn:
    return jump(JMP | JEQ | K, k, jt, jf)


def dispatch(table: dict[int, int], default: int, offset: int = 0) -> list[Insn]:
    """ld [offset]; then for each (value, ret): jeq #value -> ret; finally ret default."""
    prog = [ld_abs(offset)]
    for value, action in table.items():
        prog += [jeq(value, 0, 1), ret(action)]
    return prog + [ret(default)]


# getpid gets errno 5, everything else is ALLOW (rewritten to a marker).
GETPID_ERRNO5 = [ld_abs(0), jeq(GETPID, 0, 1), ret(RET_ERRNO | 5), ret(RET_ALLOW)]


# --- markers, no kernel needed ------------------------------------------------------

def test_neutralize_rewrites_every_return_but_errno():
    prog = [ld_abs(0), jeq(1, 0, 1), ret(RET_ALLOW), jeq(2, 0, 1), ret(RET_KILL_PROCESS),
            jeq(3, 0, 1), ret(RET_ERRNO | 1), jeq(4, 0, 1), ret(RET_ALLOW),
            ret(RET_TRACE | 3)]
    neutral, markers = neutralize(prog)
    assert neutral == (
        prog[0], prog[1], ret(RET_ERRNO | 4000), prog[3], ret(RET_ERRNO | 4001),
        prog[5], ret(RET_ERRNO | 1), prog[7], ret(RET_ERRNO | 4000), ret(RET_ERRNO | 4002))
    assert markers == {4000: RET_ALLOW, 4001: RET_KILL_PROCESS, 4002: RET_TRACE | 3}
    assert neutralize(prog) == (neutral, markers)  # deterministic


def test_markers_skip_errnos_the_program_returns():
    # ERRNO(5000) is applied as 4095 by the kernel, so 4095 is taken too.
    prog = [ld_abs(0), jeq(1, 0, 1), ret(RET_ERRNO | 4000), jeq(2, 0, 1),
            ret(RET_ERRNO | 5000), ret(RET_ALLOW)]
    neutral, markers = neutralize(prog)
    assert markers == {4001: RET_ALLOW}
    assert neutral[-1] == ret(RET_ERRNO | 4001)
    assert neutral[2] == ret(RET_ERRNO | 4000) and neutral[4] == ret(RET_ERRNO | 5000)


def test_markers_run_out():
    n = MAX_ERRNO + 1 - MARKER_FIRST
    many = dispatch({i: RET_TRACE | i for i in range(n - 1)}, RET_ALLOW)
    assert len(neutralize(many)[1]) == n
    with pytest.raises(CannotNeutralize, match="no marker errno left"):
        neutralize(dispatch({i: RET_TRACE | i for i in range(n)}, RET_ALLOW))
    # One errno of the program in the range leaves one marker fewer.
    with pytest.raises(CannotNeutralize):
        neutralize(dispatch({**{i: RET_TRACE | i for i in range(n - 1)},
                             9999: RET_ERRNO | 4050}, RET_ALLOW))


def test_ret_a_cannot_be_neutralized():
    with pytest.raises(ValueError, match="accumulator") as info:
        neutralize([ld_abs(0), jeq(1, 0, 1), ret(RET_ALLOW), stmt(RET | A)])
    assert info.value.where == "insn 3"


def test_kernel_answer_maps_markers_back_and_clamps():
    markers = {4000: RET_ALLOW, 4001: RET_TRAP}
    assert kernel_answer(4000, markers) == RET_ALLOW
    assert kernel_answer(4001, markers) == RET_TRAP
    assert kernel_answer(0, markers) == 0x50000
    assert kernel_answer(errno.EPERM, markers) == 0x50001
    assert kernel_answer(4002, markers) == 0x50FA2
    assert kernel_answer(4095, markers) == 0x50FFF
    for bad in (-1, 4096, 0x7FFF0000):
        with pytest.raises(ValueError):
            kernel_answer(bad, markers)


def test_kernel_view():
    assert kernel_view(RET_ERRNO | 5000) == 0x50FFF
    assert kernel_view(RET_ERRNO | 0xFFFF) == 0x50FFF
    assert kernel_view(RET_ERRNO | 4095) == 0x50FFF
    assert kernel_view(RET_ERRNO | 1) == 0x50001
    assert kernel_view(RET_ALLOW) == RET_ALLOW
    assert kernel_view(RET_TRACE | 5000) == RET_TRACE | 5000


def test_calls_are_refused_before_anything_runs():
    for nr in (335, 336, X32 | 335, X32 | 336):
        with pytest.raises(RefusedCall, match="uretprobe"):
            kernel_results(GETPID_ERRNO5, [Call(GETPID), Call(nr)])
    with pytest.raises(RefusedCall):
        kernel_results(GETPID_ERRNO5, [Call(2**32)])
    with pytest.raises(RefusedCall):
        kernel_results(GETPID_ERRNO5, [Call(GETPID_I386, (2**32,), abi="i386")])
    with pytest.raises(RefusedCall):
        kernel_results(GETPID_ERRNO5, [Call(GETPID, (-1,))])


def test_ret_a_raises_before_running():
    with pytest.raises(ValueError):
        kernel_results([stmt(RET | A)], [Call(GETPID)])


# --- against the kernel -------------------------------------------------------------

@pytest.fixture
def kernel_ok() -> None:
    require_kernel()


def kernel_test(fn):
    """Mark a test as loading filters into the kernel; skipped where that cannot work."""
    return pytest.mark.kernel(pytest.mark.usefixtures("kernel_ok")(fn))


@kernel_test
def test_kernel_answers_what_the_filter_says():
    calls = [Call(EXIT_GROUP), Call(EXIT), Call(GETPID), Call(0), Call(1000),
             Call(X32 | GETPID), Call(GETPID, (1, 2, 3, 4, 5, 6))]
    assert kernel_results(GETPID_ERRNO5, calls) == [
        RET_ALLOW, RET_ALLOW, 0x50005, RET_ALLOW, RET_ALLOW, RET_ALLOW, 0x50005]


@kernel_test
def test_nothing_runs_under_allow_everything():
    # exit_group first: had it run, the child would exit 0 instead of finishing.
    calls = [Call(EXIT_GROUP), Call(EXIT, (3,)), Call(GETPID)]
    assert kernel_results([ret(RET_ALLOW)], calls) == [RET_ALLOW] * 3


@kernel_test
def test_every_action_maps_back():
    table = {0: RET_ALLOW, 1: RET_KILL_PROCESS, 2: RET_KILL_THREAD, 3: RET_TRAP,
             4: RET_TRACE | 7, 5: RET_LOG, 6: RET_USER_NOTIF, 7: 0x00010000,
             8: RET_ERRNO | errno.EPERM, 9: RET_TRACE | 8}
    prog = dispatch(table, RET_ERRNO | errno.ENOSYS)
    calls = [Call(nr) for nr in [*table, 10, 4]]
    assert kernel_results(prog, calls) == [*table.values(), 0x50026, RET_TRACE | 7]


@kernel_test
def test_errno_zero_is_reported_as_errno_0():
    prog = dispatch({GETPID: RET_ERRNO | 0}, RET_ALLOW)
    assert kernel_results(prog, [Call(GETPID), Call(1)]) == [0x50000, RET_ALLOW]


@kernel_test
def test_errno_data_over_max_errno_is_clamped():
    prog = dispatch({1: RET_ERRNO | 5000, 2: RET_ERRNO | 0xFFFF, 3: RET_ERRNO | 4095,
                     4: RET_ERRNO | 4096, 5: RET_ERRNO | 4094}, RET_ALLOW)
    got = kernel_results(prog, [Call(nr) for nr in range(1, 7)])
    assert got == [0x50FFF, 0x50FFF, 0x50FFF, 0x50FFF, 0x50FFE, RET_ALLOW]


@kernel_test
def test_probe_refuses_335_and_336_on_its_own():
    for nr in (335, 336, X32 | 335):
        proc = run_probe_files(encode([ret(RET_ERRNO | 1)]), encode_calls([Call(1), Call(nr)]))
        assert proc.returncode == 2
        assert "uretprobe" in proc.stderr and proc.stdout == ""


@kernel_test
def test_probe_refuses_a_filter_that_is_not_neutralized():
    for prog in ([ret(RET_ALLOW)], [ld_abs(0), jeq(1, 0, 1), ret(RET_ERRNO | 1), ret(RET_LOG)],
                 [ld_abs(0), stmt(RET | A)]):
        proc = run_probe_files(encode(prog), encode_calls([Call(GETPID)]))
        assert proc.returncode == 2
        assert "only RET #ERRNO(k)" in proc.stderr and proc.stdout == ""


@kernel_test
def test_a_filter_the_kernel_rejects_is_reported():
    # A jump past the end, and a load outside struct seccomp_data.
    for prog in ([jeq(0, 5, 0), ret(RET_ALLOW)], [ld_abs(64), ret(RET_ALLOW)]):
        with pytest.raises(HarnessError, match="refused the filter: Invalid argument"):
            kernel_results(prog, [Call(GETPID)])


@kernel_test
def test_x86_64_args_reach_the_filter():
    # Block i: args[i] == (0xB0+i) << 32 | (0xA0+i) -> ERRNO(100+i).
    prog: list[Insn] = []
    for i in range(6):
        lo, hi = 16 + 8 * i, 20 + 8 * i
        prog += [ld_abs(lo), jeq(0xA0 + i, 0, 3), ld_abs(hi), jeq(0xB0 + i, 0, 1),
                 ret(RET_ERRNO | (100 + i))]
    prog.append(ret(RET_ALLOW))
    calls = []
    for i in range(6):
        args = [0] * 6
        args[i] = (0xB0 + i) << 32 | (0xA0 + i)
        calls.append(Call(1000, tuple(args)))
    calls.append(Call(1000, (0xA0,)))  # high half wrong
    calls.append(Call(1000, (0xFFFFFFFF_FFFFFFFF,) * 6))
    assert kernel_results(prog, calls) == [RET_ERRNO | (100 + i) for i in range(6)] + [
        RET_ALLOW, RET_ALLOW]


@kernel_test
def test_x32_numbers_reach_the_filter_unchanged():
    prog = dispatch({X32 | GETPID: RET_ERRNO | 3, 0xFFFFFFFF: RET_ERRNO | 4}, RET_ALLOW)
    calls = [Call(X32 | GETPID), Call(GETPID), Call(0xFFFFFFFF)]
    assert kernel_results(prog, calls) == [0x50003, RET_ALLOW, 0x50004]


@kernel_test
def test_i386_calls_have_arch_i386():
    needs_ia32()
    prog = dispatch({AUDIT_ARCH_I386: RET_ERRNO | 7}, RET_ALLOW, offset=4)
    calls = [Call(GETPID_I386, abi="i386"), Call(GETPID), Call(X32 | GETPID),
             Call(335, abi="i386")]  # i386 335 is rt_tgsigqueueinfo, filtered as any other
    assert kernel_results(prog, calls) == [0x50007, RET_ALLOW, RET_ALLOW, 0x50007]


@kernel_test
def test_i386_nr_and_args_reach_the_filter():
    needs_ia32()
    # arch i386, nr 20, args[0] (ebx) and args[5] (ebp) as given, high halves 0.
    prog = [ld_abs(4), jeq(AUDIT_ARCH_I386, 0, 9),
            ld_abs(0), jeq(GETPID_I386, 0, 7),
            ld_abs(16), jeq(0x12345678, 0, 5),
            ld_abs(56), jeq(0xCAFEF00D, 0, 3),
            ld_abs(60), jeq(0, 0, 1),
            ret(RET_ERRNO | 9), ret(RET_ALLOW)]
    args = (0x12345678, 2, 3, 4, 5, 0xCAFEF00D)
    calls = [Call(GETPID_I386, args, abi="i386"), Call(GETPID_I386, args[:5], abi="i386"),
             Call(GETPID_I386, args), Call(GETPID, args, abi="i386")]
    assert kernel_results(prog, calls) == [0x50009, RET_ALLOW, RET_ALLOW, RET_ALLOW]


@kernel_test
def test_thousands_of_calls_in_one_run():
    # nr i -> ERRNO(i) for i < 1500, KILL_PROCESS above.
    prog = dispatch({i: RET_ERRNO | i for i in range(1500)}, RET_KILL_PROCESS)
    nrs = [nr for nr in range(1600) if nr not in (335, 336)]
    calls = [Call(nr, (nr,) * 6) for nr in nrs]
    assert kernel_results(prog, calls) == [
        RET_ERRNO | nr if nr < 1500 else RET_KILL_PROCESS for nr in nrs]
