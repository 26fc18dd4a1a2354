"""The ENOSYS stub, prepended to libseccomp's program P.

Layout of the patched program:

      ld   [4]                      A = arch
      jeq  #AUDIT_1   sec_1  next   one test per arch that has work to do,
      jeq  #AUDIT_2   sec_2  P      in canonical arch order; any other arch -> P
    sec_1:
      ld   [0]                      A = nr
      jge  #lo_m      ...           a weight-balanced tree over the ranges of [0, 2^32):
      jge  #lo_k      ...           each range ends in ENOSYS, P past its nr load, a
                                    rule block, or P's code for one syscall's rules.
    sec_2: ...                      x86_64 and x32 share AUDIT_ARCH_X86_64 and so
                                    one tree: x32 is the upper half (bit 30).
    enosys:
      ret  ERRNO(ENOSYS)
    block_i:                        rules for names the host libseccomp lacks,
      ld   [args...] ...            compiled here; no match -> the default action
      ret  <action>
    P:                              libseccomp's program, unchanged; it starts
      ld   [4] ...                  with its own ld [4], so jumping here is exact.
      ...
      ld   [0]                      <- most calls go on here, with nr in A
      ...
      ld   [args...]                <- a call whose rules read its arguments comes
                                       straight here: the kernel's action cache
                                       cannot answer it, so the filter runs on every
                                       one, and the stub spares it P's tree of tests
                                       on nr (its own tree puts these few ranges a
                                       few tests deep).

Only `ld [0]`, `ld [4]`, `jeq/jge #k`, `ja` and `ret #k` are used outside the rule
blocks, so the kernel's action cache sees through the stub (semantics rule 4).
A conditional jump reaches at most 255 instructions; the assembler turns a longer
one into a `ja`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Mapping

from ..actions import ENOSYS, RET_ERRNO
from ..arch import BY_NAME, Arch
from ..bpf.asm import Cond, Goto, Item, Label, assemble
from ..bpf.insn import (ABS, BPF_MAXINSNS, JA, JEQ, JGE, JGT, JMP, JSET, K, LD, OFF_ARCH, OFF_NR, RET,
                        W, Insn, bpf_class, ld_abs, ret)
from ..compile import Compiled, PendingRule
from ..errors import CompileError
from .enosys import Mode, Version, domain, enosys_ranges
from ..verify.meaning import OnNr
from .repair import repair_block
from .rules import label_factory, rule_block

PASS, ENOSYS_LEAF, DEFAULT_LEAF = "P", "enosys", "default"


@dataclass(frozen=True)
class Patched:
    program: tuple[Insn, ...]
    stub_length: int
    enosys: Mapping[str, tuple[tuple[int, int], ...]]  # E(A) per arch name
    mode: Mode
    emulate: Version | None
    compiled: Compiled
    # Set by patch.check: (arch, nr) ocishim compiled itself because libseccomp's code for
    # them is wrong, and one line per repair or kept stricter answer.
    repaired: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()


def _intervals(arch: Arch, ranges: tuple[tuple[int, int], ...],
               pending_class: Mapping[tuple[str, int], str], whole: bool) -> list[tuple[int, int, str]]:
    """Cover domain(arch) with ranges, each going to ENOSYS, a rule block or P.

    With `whole`, cover all of [0, 2^32): numbers outside the domain (x32 numbers on an
    x86_64-only filter) belong to no arch of the filter and go to P untouched.
    """
    lo, hi = domain(arch.name)
    marks = [(a, b, ENOSYS_LEAF) for a, b in ranges]
    marks += [(nr, nr, cls) for (name, nr), cls in pending_class.items()
              if name == arch.name and not any(a <= nr <= b for a, b in ranges)]
    marks.sort()
    out: list[tuple[int, int, str]] = []

    def push(a: int, b: int, cls: str) -> None:
        if out and out[-1][2] == cls and out[-1][1] == a - 1:
            out[-1] = (out[-1][0], b, cls)
        else:
            out.append((a, b, cls))

    cursor = 0 if whole else lo
    if whole and lo > 0:
        push(0, lo - 1, PASS)
    for a, b, cls in marks:
        if a > cursor:
            push(cursor, a - 1, PASS)
        push(a, b, cls)
        cursor = b + 1
    end = 0xFFFFFFFF if whole else hi
    if cursor <= end:
        push(cursor, end, PASS)
    return out


def entry_after_nr_load(program: tuple[Insn, ...], audit: int) -> int | None:
    """Where program stands, for this arch, right after it loads nr (A = nr, nothing else used).

    libseccomp's programs start with `ld [4]`, tests on the arch, then `ld [0]`. A stub
    that has already loaded nr can jump straight past that prefix: the answer is the
    same and the call costs a few instructions less. None if the prefix is anything else.
    """
    pc, a_is_arch = 0, False
    for _ in range(len(program)):
        if not 0 <= pc < len(program):
            return None
        insn = program[pc]
        if insn.code == LD | W | ABS and insn.k == OFF_ARCH:
            a_is_arch, pc = True, pc + 1
        elif insn.code == LD | W | ABS and insn.k == OFF_NR:
            return pc + 1
        elif insn.code == JMP | JA:
            pc += 1 + insn.k
        elif a_is_arch and insn.code in (JMP | JEQ | K, JMP | JGT | K, JMP | JGE | K, JMP | JSET | K):
            op = insn.code & 0xF0
            taken = {JEQ: audit == insn.k, JGT: audit > insn.k, JGE: audit >= insn.k}.get(op, bool(audit & insn.k))
            pc += 1 + (insn.jt if taken else insn.jf)
        else:
            return None
    return None


def _tree(intervals: list[tuple[int, int, str]], weights: list[int], fresh,
          into_p: str) -> tuple[str, list[Item]]:
    """A weight-balanced jge tree over sorted intervals; returns (entry label, code).

    Each split puts about half the weight on either side, so a range of weight w sits
    about log2(total / w) tests deep. A range's class is the label its leaf jumps to;
    PASS leaves jump to `into_p`.
    """
    sums = [0]
    for w in weights:
        sums.append(sums[-1] + w)

    def node(i: int, j: int) -> tuple[str, list[Item]]:  # intervals[i:j]
        if j - i == 1:
            cls = intervals[i][2]
            return (into_p if cls == PASS else cls), []
        half = (sums[i] + sums[j]) / 2
        m = bisect.bisect_left(sums, half, i + 1, j)  # the first split whose left part has half
        if m > i + 1 and half - sums[m - 1] < sums[m] - half:
            m -= 1
        m = min(max(m, i + 1), j - 1)
        left_label, left = node(i, m)
        right_label, right = node(m, j)
        here = fresh()
        return here, [Label(here), Cond(JMP | JGE | K, intervals[m][0], right_label, left_label)] + left + right

    return node(0, len(intervals))


def _rule_candidates(program: tuple[Insn, ...]) -> list[int]:
    """The operands of P's `jeq #k` that lead to anything but a return: libseccomp's tree
    ends each syscall with `jeq #nr`, so these are the numbers that may have rules on
    their arguments (and some argument values, which _rule_entries sorts out)."""
    found = set()
    for pc, insn in enumerate(program):
        if insn.code == JMP | JEQ | K and pc + 1 + insn.jt < len(program) \
                and program[pc + 1 + insn.jt].code != RET | K:
            found.add(insn.k)
    return sorted(found)


def _rule_entries(program: tuple[Insn, ...], audit: int, entry: int,
                  candidates: list[int]) -> dict[int, int]:
    """nr -> where P's code for the rules on nr starts, for each nr whose answer depends on
    the arguments. The kernel's action cache cannot answer such calls, so the filter runs
    on every one of them; the stub sends them there at once, past P's own tests on nr."""
    out: dict[int, int] = {}
    for nr in candidates:
        pc = _rule_start(program, audit, nr, entry)
        if pc is not None:
            out[nr] = pc
    return out


def _rule_start(program: tuple[Insn, ...], audit: int, nr: int, pc: int) -> int | None:
    """Where P, run from pc with nr in A on a call (audit, nr), first does anything but load
    and test the arch and nr: there P stands, for this call, exactly as if run from its
    start. None if that is a return (an answer the kernel's cache knows without arguments)
    or an instruction that reads an A the stub does not hold (the arch)."""
    a_is_nr = True
    while 0 <= pc < len(program):
        insn = program[pc]
        code = insn.code
        if code == LD | W | ABS and insn.k in (OFF_NR, OFF_ARCH):
            a_is_nr, pc = insn.k == OFF_NR, pc + 1
        elif code == JMP | JA:
            pc += 1 + insn.k
        elif code in (JMP | JEQ | K, JMP | JGT | K, JMP | JGE | K, JMP | JSET | K):
            a, op = (nr if a_is_nr else audit), code & 0xF0
            taken = {JEQ: a == insn.k, JGT: a > insn.k, JGE: a >= insn.k}.get(op, bool(a & insn.k))
            pc += 1 + (insn.jt if taken else insn.jf)
        elif code == RET | K or not (a_is_nr or bpf_class(code) == LD):
            return None
        else:
            return pc
    return None


def _weights(intervals: list[tuple[int, int, str]], hot: set[str]) -> list[int]:
    """How much each range's depth in the stub's tree matters.

    The kernel's action cache answers most calls without running the filter at all; a
    call whose rules read the arguments runs it every time. So the ranges that go
    straight into such rules weigh as much together as all the others, one each:
    they sit a few tests deep, and the others about one test deeper than in a tree
    balanced by count.
    """
    hits = [i for i, (_, _, cls) in enumerate(intervals) if cls in hot]
    weights = [1] * len(intervals)
    for i in hits:
        weights[i] = max(1, (len(intervals) - len(hits)) // len(hits))
    return weights


def _check_size(stub: int, program: int) -> None:
    """Rule 6: the kernel takes at most BPF_MAXINSNS instructions, stub and program together."""
    total = stub + program
    if total > BPF_MAXINSNS:
        raise CompileError("linux.seccomp", f"the filter needs {total} instructions "
                           f"({stub} stub + {program} libseccomp); "
                           f"the kernel takes at most {BPF_MAXINSNS}")


def build(compiled: Compiled, mode: Mode, emulate: Version | None = None,
          repairs: Mapping[tuple[str, int], OnNr] | None = None) -> Patched:
    """Prepend the stub for mode to compiled.program; check the 4096-instruction limit.

    repairs: (arch, nr) whose rules ocishim compiles itself from the profile's meaning
    (patch.repair), because libseccomp's code for them is wrong (patch.check).
    """
    repairs = repairs or {}
    enosys = {a.name: enosys_ranges(a.name, compiled.named.get(a.name, frozenset()), mode,
                                    compiled.default_action, emulate)
              for a in compiled.arches}
    fresh = label_factory("L")

    by_target: dict[tuple[str, int], list[PendingRule]] = {}
    for rule in compiled.pending:
        if (rule.arch, rule.nr) not in repairs:
            by_target.setdefault((rule.arch, rule.nr), []).append(rule)
    groups: dict[int, list[Arch]] = {}
    for arch in compiled.arches:
        groups.setdefault(arch.audit, []).append(arch)
    if not compiled.pending and not repairs and not any(enosys.values()):
        # Rules 1 and 2: nothing to answer otherwise than P, so no stub at all. Where there
        # is a stub, every arch gets its section: jumping past P's own arch tests and
        # into its rule code costs a call less than P's way there.
        _check_size(0, len(compiled.program))
        return Patched(compiled.program, 0, enosys, mode, emulate, compiled)
    sections: list[tuple[int, list[Item]]] = []
    beyond = {PASS: 0}
    candidates = _rule_candidates(compiled.program)
    block_code: list[Item] = []
    needs_default = False  # some block answers the default itself (it holds an alias's rules)
    for audit, arches in groups.items():
        # Calls that go on to P skip P's own arch test and nr load when it has them.
        into_p = PASS
        entry_in_p = entry_after_nr_load(compiled.program, audit)
        if entry_in_p is not None:
            into_p = f"P@{audit:#x}"
            beyond[into_p] = entry_in_p
        # One rule block per distinct list of rules on this audit value; numbers with
        # the same rules share it. No match goes on into P, as on a name libseccomp knows.
        blocks: dict[tuple, str] = {}
        pending_class: dict[tuple[str, int], str] = {}
        # A block leaves an argument in A: load nr again before going into P past its nr load.
        reload = f"{into_p}.nr"
        needs_reload = False
        for (arch_name, nr), rules in by_target.items():
            arch = BY_NAME[arch_name]
            if arch not in arches:
                continue
            key = (arch_name, tuple((r.action, r.args, r.alias) for r in rules))
            if key not in blocks:
                blocks[key] = label = fresh()
                # With an alias libseccomp knows, P holds some of these rules too: the block
                # has them all and answers the default itself.
                miss = DEFAULT_LEAF if any(r.alias for r in rules) else \
                    (reload if into_p != PASS else PASS)
                needs_default |= miss == DEFAULT_LEAF
                needs_reload |= miss == reload
                block_code += rule_block(arch, [r.rule for r in rules], compiled.default_action,
                                         label, miss, rules[0].path)
            pending_class[(arch_name, nr)] = blocks[key]
        for (arch_name, nr), on in sorted(repairs.items()):
            arch = BY_NAME[arch_name]
            if arch in arches:
                pending_class[(arch_name, nr)] = label = fresh()
                block_code += repair_block(arch, on, compiled.default_action, label)
        if needs_reload:
            block_code += [Label(reload), ld_abs(0), Goto(into_p)]
        if entry_in_p is None and not any(BY_NAME[a] in arches for a, _ in pending_class) \
                and not any(enosys[arch.name] for arch in arches):
            continue  # P as it is, arch test and all
        # Calls whose answer depends on their arguments go straight to their rules in P.
        hot: set[str] = set()
        if entry_in_p is not None:
            for nr, pc in _rule_entries(compiled.program, audit, entry_in_p, candidates).items():
                for arch in arches:
                    lo, hi = domain(arch.name)
                    if lo <= nr <= hi and (arch.name, nr) not in pending_class:
                        pending_class[(arch.name, nr)] = label = f"P+{pc}"
                        beyond[label] = pc
                        hot.add(label)
        # One tree for the audit value: x86_64 and x32 share it (x32 is the upper half).
        if len(arches) == 1:
            intervals = _intervals(arches[0], enosys[arches[0].name], pending_class, whole=True)
        else:
            intervals = sorted(iv for arch in arches
                               for iv in _intervals(arch, enosys[arch.name], pending_class, whole=False))
        entry, code = _tree(intervals, _weights(intervals, hot), fresh, into_p)
        body: list[Item] = [ld_abs(0)]
        body += code if code else [Goto(entry)]
        sections.append((audit, body))
    if not sections:
        _check_size(0, len(compiled.program))
        return Patched(compiled.program, 0, enosys, mode, emulate, compiled)

    items: list[Item] = [ld_abs(4)]
    labels = [fresh() for _ in sections]
    for i, (audit, _) in enumerate(sections):
        nxt = fresh() if i + 1 < len(sections) else PASS
        items.append(Cond(JMP | JEQ | K, audit, labels[i], nxt))
        if nxt != PASS:
            items.append(Label(nxt))
    for label, (_, body) in zip(labels, sections):
        items += [Label(label)] + body
    if any(enosys.values()):
        items += [Label(ENOSYS_LEAF), ret(RET_ERRNO | ENOSYS)]
    items += block_code
    if needs_default:
        items += [Label(DEFAULT_LEAF), ret(compiled.default_action)]
    stub = assemble(items, beyond)
    _check_size(len(stub), len(compiled.program))
    return Patched(stub + compiled.program, len(stub), enosys, mode, emulate, compiled)
