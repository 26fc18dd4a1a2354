"""libseccomp's own account of a filter: its PFC export ("pseudo filter code"), read and run.

seccomp_export_pfc(3) prints the rule tree libseccomp built (src/db.c) before it turns
it into BPF (src/gen_bpf.c). Running that text on a call gives a third opinion beside
the profile's meaning and the BPF program, and tells where a libseccomp bug sits:

- PFC differs from the meaning: the tree is already wrong (a merge bug in the database);
- PFC agrees with the meaning but the BPF does not: the BPF generator is wrong.

The PFC text is read as written: statements run in order; `if (test)` runs its block
when the test holds and its `else` block otherwise; an `action` ends the run; a block
that ends without an action goes on with the statement after its `if`; the end of the
text is reached only through the default action libseccomp prints last.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Sequence

import pyseccomp

from ocishim.actions import (RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG,
                             RET_TRACE, RET_TRAP, RET_USER_NOTIF)

U32 = 0xFFFFFFFF

_TEST = re.compile(r"^\$(?P<what>arch|syscall|a(?P<i>\d)(?:\.(?P<half>hi32|lo32))?)"
                   r"(?: & (?P<mask>0x[0-9a-f]+|\d+))? (?P<op>==|>=|>) (?P<k>0x[0-9a-f]+|\d+)$")
_ACTIONS = {"ALLOW": RET_ALLOW, "KILL": RET_KILL_THREAD, "KILL_PROCESS": RET_KILL_PROCESS,
            "TRAP": RET_TRAP, "LOG": RET_LOG, "NOTIFY": RET_USER_NOTIF}


@dataclass
class Node:
    text: str  # "if (...)", "else" or "action ...;"
    body: list["Node"] = field(default_factory=list)


def pfc_text(flt: pyseccomp.SyscallFilter) -> str:
    """The filter's PFC export."""
    fd = os.memfd_create("ocishim-pfc", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as f:
        flt.export_pfc(f)
        f.seek(0)
        return f.read().decode()


def parse(text: str) -> list[Node]:
    """The statements of a PFC export, nested by their two-space indentation."""
    root: list[Node] = []
    stack: list[tuple[int, list[Node]]] = [(-1, root)]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        while stack[-1][0] >= depth:
            stack.pop()
        node = Node(stripped)
        stack[-1][1].append(node)
        stack.append((depth, node.body))
    return root


def _action(text: str) -> int:
    word = text.removeprefix("action ").rstrip(";")
    if m := re.fullmatch(r"ERRNO\((\d+)\)", word):
        return RET_ERRNO | int(m.group(1))
    if m := re.fullmatch(r"TRACE\((\d+)\)", word):
        return RET_TRACE | int(m.group(1))
    return _ACTIONS[word]


def _holds(test: str, audit: int, nr: int, args: Sequence[int]) -> bool:
    m = _TEST.match(test)
    if not m:
        raise ValueError(f"a PFC test this reader does not know: {test!r}")
    if m["what"] == "arch":
        v = audit
    elif m["what"] == "syscall":
        v = nr
    else:
        arg = args[int(m["i"])]
        v = arg >> 32 & U32 if m["half"] == "hi32" else arg & U32
    if m["mask"]:
        v &= int(m["mask"], 0)
    k = int(m["k"], 0)
    return {"==": v == k, ">=": v >= k, ">": v > k}[m["op"]]


def _run(nodes: list[Node], audit: int, nr: int, args: Sequence[int]) -> int | None:
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node.text.startswith("action "):
            return _action(node.text)
        if not (node.text.startswith("if (") and node.text.endswith(")")):
            raise ValueError(f"unexpected PFC statement {node.text!r}")
        has_else = i + 1 < len(nodes) and nodes[i + 1].text == "else"
        if _holds(node.text[4:-1], audit, nr, args):
            branch: list[Node] = node.body
        else:
            branch = nodes[i + 1].body if has_else else []
        got = _run(branch, audit, nr, args)
        if got is not None:
            return got
        i += 2 if has_else else 1
    return None


def arch_section(text: str, arch_name: str) -> str:
    """The part of the PFC text for one arch (x86_64 and x32 share an audit value, so the
    `$arch` test alone cannot tell their sections apart; the comment above each does)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("# filter for arch ") or line.startswith("# invalid architecture"):
            inside = line.startswith(f"# filter for arch {arch_name} (")
        elif inside:
            out.append(line)
    if not out:
        raise ValueError(f"the PFC text has no section for {arch_name}")
    return "\n".join(out)


def answer(text: str, arch_name: str, nr: int, args: Sequence[int]) -> int:
    """What the PFC text says for one call on arch_name (args as the arch passes them)."""
    full = tuple(args) + (0,) * (6 - len(args))
    section = parse(arch_section(text, arch_name))
    if len(section) != 1 or not section[0].text.startswith("if ($arch == "):
        raise ValueError(f"unexpected PFC section for {arch_name}")
    got = _run(section[0].body, 0, nr, full)
    if got is None:
        raise ValueError("the PFC text ends without an action")
    return got


def profile_pfc(profile, native) -> str:
    """libseccomp's PFC for a profile whose rules name syscalls libseccomp knows, built as
    runc builds the filter (a rule repeating an argument index is one rule per condition).

    Only for rule sets known not to make libseccomp loop (it runs in this process)."""
    from ocishim import libseccomp
    from ocishim.actions import OPERATORS, action_value
    from ocishim.compile import filter_arches, rule_conditions

    flt = pyseccomp.SyscallFilter(action_value(profile.default_action, profile.default_errno_ret))
    host = libseccomp.native()
    wanted = filter_arches(profile, native)
    if host not in wanted:
        flt.remove_arch(host.token)
    for arch in wanted:
        if arch != host:
            flt.add_arch(arch.token)
    for rule in profile.syscalls:
        for name in rule.names:
            nr = libseccomp.resolve_name(host, name)
            for conds in rule_conditions(rule.args):
                flt.add_rule(action_value(rule.action, rule.errno_ret), nr,
                             *[pyseccomp.Arg(c.index, OPERATORS[c.op], c.value, c.value_two) for c in conds])
    return pfc_text(flt)
