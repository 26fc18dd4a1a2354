"""Audit mode: the patched program's refusals go to an agent, which answers them unchanged.

Every answer the patched program gives through the profile's default action (ERRNO)
or through the ENOSYS stub becomes SECCOMP_RET_USER_NOTIF, with the errno it stood
for kept in the return's 16 data bits (the kernel ignores them for USER_NOTIF). The
agent (`ocishim/agent/`) gets the audited program in the listener metadata, runs the
notified call through it with the emulator, and answers with that errno. So:

- a rule of the profile (ALLOW, an explicit ERRNO, KILL, TRAP, ...) keeps its own
  return instruction and is never notified. libseccomp refuses a rule whose action
  equals the default (and ocishim's own rule compiler skips it the same way), so every
  `ret` of the default's value in the program is a default answer;
- a default of KILL_*, TRAP (or ERRNO(0), which skips the call and returns 0) is not
  notified: an agent cannot answer with a kill, and a reply of 0 is a success;
  only the stub's ENOSYS is, then;
- when the agent is gone the kernel answers ENOSYS itself: a refusal still.

Auditing cannot weaken a filter as long as the listener fd reaches ocishim's agent
only: the agent never sends SECCOMP_USER_NOTIF_FLAG_CONTINUE and never a success, so
every notified call is refused, as before, with some errno (rule 10 counts any two
ERRNOs equal). listenerPath therefore comes from the administrator (the CLI or the
settings file), never from the container; a profile with a listener of its own
(listenerPath or NOTIFY rules) cannot be audited, since a filter has one listener.
The kernel allows one listener per filter chain (EBUSY otherwise): under audit a
container can no longer load a NEW_LISTENER filter of its own (stricter, not weaker).

Some syscalls keep their plain answer (`PLAIN`): those the loading process makes
after seccomp(2) and before the listener fd has reached the agent. Notified there,
the call would wait for an answer only the agent could give, and the agent can only
get the fd once the call has returned: a deadlock.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Sequence

from . import syscalls
from .actions import ENOSYS, MAX_ERRNO, RET_ACTION_FULL, RET_DATA, RET_ERRNO, RET_USER_NOTIF
from .bpf import emu, reach
from .bpf.asm import Cond, Goto, Item, Label, assemble
from .bpf.insn import BPF_MAXINSNS, JEQ, JMP, K, Insn, decode, encode, ld_abs, ret
from .errors import BpfError, CompileError, ProfileError
from .patch import Patched
from .profile.model import Profile

DEFAULT_SOCKET = "/run/ocishim/agent/agent.sock"
METADATA_PREFIX = "ocishim-audit:1:"


@dataclass(frozen=True)
class PlainCall:
    syscall: str
    why: str


# Per loader: the syscalls that must keep their plain answer, and why.
PLAIN: dict[str, tuple[PlainCall, ...]] = {
    # `ocishim exec` loads the filter itself, then hands the fd over (load.py).
    "exec": (
        PlainCall("sendmsg", "ocishim exec sends the listener fd with it: notified, it would wait "
                             "for an agent that has not got the fd yet"),
        PlainCall("close", "ocishim exec closes the fd and the socket before execve"),
        PlainCall("setitimer", "ocishim exec disarms its watchdog before execve"),
        PlainCall("execve", "ocishim exec promises that nothing of its own waits on an agent "
                            "(load.refuse_self_notify)"),
        PlainCall("write", "ocishim exec reports a failed execve with it"),
        PlainCall("exit_group", "ocishim exec exits with it after a failed execve"),
    ),
    # runc's init writes the fd number to its parent after loading the filter, and
    # only then does the parent send the fd to the agent; runc refuses NOTIFY on write.
    "runc": (
        PlainCall("write", "runc init writes the listener fd's number to its parent after the "
                           "load; the parent sends the fd on only then (runc refuses NOTIFY on "
                           "write for this reason)"),
    ),
    # crun clones a helper before the load that shares the fd table and sends the fd;
    # the container process only waits for the helper, so nothing needs to stay plain.
    "crun": (),
}


@dataclass(frozen=True)
class Audited:
    """An audited program, and what was done to it."""

    program: tuple[Insn, ...]
    notified: tuple[int, ...]  # indices of the returns turned into USER_NOTIF
    plain: tuple[str, ...]  # syscalls kept plain


def refuse_own_listener(profile: Profile, who: str = "--audit") -> None:
    """ProfileError when the profile has a listener of its own: a filter has one listener."""
    if profile.listener_path:
        raise ProfileError(profile.field_path("listenerPath"),
                           f"{who}: the profile sends its listener to an agent of its own; "
                           "a filter has one listener, so it cannot also be audited")
    for rule in profile.syscalls:
        if rule.action == "SCMP_ACT_NOTIFY":
            raise ProfileError(rule.path or "syscalls",
                               f"{who}: the profile has NOTIFY rules for an agent of its own; "
                               "a filter has one listener, so it cannot also be audited")


def notifiable(value: int) -> bool:
    """Whether a refusal can be handed to the agent: an ERRNO the agent can send back."""
    return value & RET_ACTION_FULL == RET_ERRNO and value & RET_DATA != 0


def _enosys_leaf(patched: Patched) -> int | None:
    """Index of the stub's `ret ERRNO(ENOSYS)`: where a call of E(A) ends, by the emulator."""
    for arch in patched.compiled.arches:
        ranges = patched.enosys.get(arch.name, ())
        if ranges:
            end = emu.run(patched.program, arch, ranges[0][0]).trace[-1]
            if end < patched.stub_length and patched.program[end] == ret(RET_ERRNO | ENOSYS):
                return end
    return None


def _notify_returns(patched: Patched) -> tuple[list[Insn], list[int]]:
    program = list(patched.program)
    default = patched.compiled.default_action
    targets = set()
    if notifiable(default):
        targets = {i for i, insn in enumerate(program) if insn == ret(default)}
    leaf = _enosys_leaf(patched)
    if leaf is not None:
        targets.add(leaf)
    for i in targets:
        program[i] = ret(RET_USER_NOTIF | (program[i].k & RET_DATA))
    return program, sorted(targets)


def _plain_prefix(patched: Patched, audited: Sequence[Insn], plain: Sequence[str]) -> tuple[list[Item], bool]:
    """A prefix that answers the plain syscalls as the unaudited program does.

    An answer that does not depend on the arguments is returned directly; otherwise the
    call jumps to a copy of the unaudited program appended after the audited one.
    Returns the items and whether that copy is needed.
    """
    groups: dict[int, list[tuple[int, frozenset[int]]]] = {}
    for arch in patched.compiled.arches:
        for name in plain:
            nr = syscalls.resolve(arch.name, name)
            if nr is None:
                continue
            if not any(a & RET_ACTION_FULL == RET_USER_NOTIF
                       for a in reach.answers(audited, arch, nr) if a != reach.ANY):
                continue
            groups.setdefault(arch.audit, []).append((nr, reach.answers(patched.program, arch, nr)))
    if not groups:
        return [], False
    items: list[Item] = [ld_abs(4)]
    rets: dict[int, str] = {}
    need_copy = False
    for i, (audit, calls) in enumerate(groups.items()):
        here, nxt = f"arch{i}", f"arch{i + 1}" if i + 1 < len(groups) else "audited"
        items += [Cond(JMP | JEQ | K, audit, here, nxt), Label(here), ld_abs(0)]
        for j, (nr, answers) in enumerate(calls):
            if len(answers) == 1 and reach.ANY not in answers:
                (value,) = answers
                target = rets.setdefault(value, f"ret{len(rets)}")
            else:
                target, need_copy = "unaudited", True
            after = f"arch{i}.{j + 1}"
            items += [Cond(JMP | JEQ | K, nr, target, after), Label(after)]
        items.append(Goto("audited"))
        if nxt != "audited":
            items.append(Label(nxt))
    for value, label in rets.items():
        items += [Label(label), ret(value)]
    return items, need_copy


def audit_program(patched: Patched, plain: Sequence[str] = ()) -> Audited:
    """The patched program with its default and ENOSYS-stub answers turned into USER_NOTIF.

    `plain` names syscalls that keep their plain answer (see PLAIN).
    """
    program, targets = _notify_returns(patched)
    items, need_copy = _plain_prefix(patched, program, plain)
    if not items:
        return Audited(tuple(program), tuple(targets), ())
    beyond = {"audited": 0, "unaudited": len(program)}
    prefix = assemble(items, beyond)
    whole = prefix + tuple(program) + (patched.program if need_copy else ())
    if len(whole) > BPF_MAXINSNS:
        raise CompileError("--audit", f"the audited filter needs {len(whole)} instructions "
                                      f"(the kernel takes at most {BPF_MAXINSNS}): keeping "
                                      f"{', '.join(plain)} plain needs a copy of the filter")
    return Audited(whole, tuple(i + len(prefix) for i in targets), tuple(plain))


def answer(program: Sequence[Insn], data: bytes, byteorder: str) -> int | None:
    """The errno to send for a notified call (seccomp_data bytes), or None.

    None when the program does not answer this call with USER_NOTIF: the notification
    came from elsewhere (another program than the metadata's); the agent then answers
    ENOSYS, the kernel's own answer without an agent.
    """
    value = emu.run_data(program, data, byteorder).ret
    if value & RET_ACTION_FULL != RET_USER_NOTIF or not value & RET_DATA:
        return None
    return min(value & RET_DATA, MAX_ERRNO)


def metadata(program: Sequence[Insn]) -> str:
    """listenerMetadata for the agent: the audited program, compressed, in base64."""
    return METADATA_PREFIX + base64.b64encode(zlib.compress(encode(program), 9)).decode()


def from_metadata(text: str, limit: int = 1 << 16) -> tuple[Insn, ...] | None:
    """The program listenerMetadata carries, or None when it is not ocishim's or is broken."""
    if not isinstance(text, str) or not text.startswith(METADATA_PREFIX):
        return None
    try:
        raw = base64.b64decode(text[len(METADATA_PREFIX):], validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, limit)
        if inflater.unconsumed_tail or not inflater.eof:
            return None
        program = decode(data, "host")
    except (binascii.Error, zlib.error, ValueError, BpfError):
        return None
    if not 0 < len(program) <= BPF_MAXINSNS:
        return None
    return program



def audit_config(config: dict, patched: Patched, enosys_names: Sequence[str], socket: str) -> None:
    """Turn a config rewritten by integrations.config into an audited one, in place.

    crun: the annotation's program audited (nothing kept plain, PLAIN["crun"]), and
    listenerPath so that crun creates the listener and sends it. runc, which takes no
    BPF and refuses NOTIFY as the default action and on write: ocishim's appended
    ERRNO(ENOSYS) rule becomes NOTIFY, write keeping ERRNO(ENOSYS) in a rule of its own;
    runc's default answers stay plain. enosys_names: the names of that appended rule
    (Rewrite.enosys_names; empty when none was appended). listenerMetadata carries the audited program
    for the agent; the JSON rule's names are all in E(A), where that program answers
    ENOSYS, so one metadata serves both runtimes.
    """
    import base64 as _b64

    from .bpf.insn import encode as _encode
    from .integrations.config import BPF_ANNOTATION

    seccomp = config["linux"]["seccomp"]
    for key in ("listenerPath", "listenerMetadata"):
        if key in seccomp:
            raise ProfileError(f"linux.seccomp.{key}", "--audit: the profile sends its listener to an "
                               "agent of its own; a filter has one listener, so it cannot also be audited")
    rules = seccomp.get("syscalls") or []
    ours = list(enosys_names) or None
    for i, rule in enumerate(rules[:-1] if ours is not None else rules):
        if isinstance(rule, dict) and rule.get("action") == "SCMP_ACT_NOTIFY":
            raise ProfileError(f"linux.seccomp.syscalls[{i}].action", "--audit: the profile has NOTIFY "
                               "rules for an agent of its own; a filter has one listener")
    audited = audit_program(patched, [c.syscall for c in PLAIN["crun"]])
    config["annotations"][BPF_ANNOTATION] = _b64.b64encode(_encode(audited.program)).decode()
    seccomp["listenerPath"] = socket
    seccomp["listenerMetadata"] = metadata(audited.program)
    if ours is not None:
        plain = [c.syscall for c in PLAIN["runc"]]
        notified = [n for n in ours if n not in plain]
        kept = [n for n in ours if n in plain]
        rules[-1] = {"names": notified, "action": "SCMP_ACT_NOTIFY"}
        if kept:
            rules.append({"names": kept, "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
        if not notified:
            del rules[-2 if kept else -1]

