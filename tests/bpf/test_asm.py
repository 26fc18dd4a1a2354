"""The assembler: labels, long jumps through `ja`, offsets checked by running the result."""

import pytest

from ocishim.arch import BY_NAME
from ocishim.bpf.asm import Cond, Goto, Label, assemble
from ocishim.bpf.emu import run
from ocishim.bpf.insn import JA, JGE, JMP, K, ld_abs, ret
from ocishim.errors import BpfError

X86_64 = BY_NAME["x86_64"]
NEAR, FAR, FILL = 0x50001, 0x50004, 0x50003


@pytest.mark.parametrize("jt,jf", [("far", "near"), ("near", "far"), ("far", "far2"), ("near", "near2")])
@pytest.mark.parametrize("gap", [0, 254, 255, 256, 300])
def test_each_side_lands_on_its_label(jt, jf, gap):
    # Regression: with one side far, the near side was counted from after the `ja`.
    items = [ld_abs(0), Cond(JMP | JGE | K, 10, jt, jf),
             Label("near"), ret(NEAR), Label("near2"), ret(NEAR + 1), *[ret(FILL)] * gap,
             Label("far"), ret(FAR), Label("far2"), ret(FAR + 1)]
    want = {"near": NEAR, "near2": NEAR + 1, "far": FAR, "far2": FAR + 1}
    prog = assemble(items)
    assert run(prog, X86_64, 50).ret == want[jt]
    assert run(prog, X86_64, 5).ret == want[jf]
    long = any(i.code == JMP | JA for i in prog)
    assert long == ("far" in (jt, jf) and gap + 2 > 255 or "far2" in (jt, jf) and gap + 3 > 255)


def test_labels_beyond_the_end_and_goto():
    prog = assemble([ld_abs(0), Goto("P")], beyond={"P": 1})
    tail = (ret(FILL), ret(NEAR))
    assert run(prog + tail, X86_64, 0).ret == NEAR


def test_backward_and_undefined_jumps_are_errors():
    with pytest.raises(BpfError, match="backward"):
        assemble([Label("top"), ld_abs(0), Goto("top")])
    with pytest.raises(BpfError, match="undefined"):
        assemble([Goto("nowhere")])
