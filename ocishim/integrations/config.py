"""Rewrite a config.json so that any runtime applies the patched filter.

Two things go into the config, both derived from the same patched program:
- crun's `run.oci.seccomp_bpf_data` annotation: the patched program itself, base64.
  crun loads it as it is and still reads `flags` and `listenerPath` from
  linux.seccomp, which therefore stays. ocishim owns this annotation: any value
  already there is replaced (it may come from a pod and be weaker than the profile).
- the portable rewrite, for runc and others: one rule appended to linux.seccomp,
  ERRNO(ENOSYS) for every name of E(A) in ocishim's table (the runtime's libseccomp
  may know names the one loaded here does not; runtimes skip names they cannot resolve).

The rewrite is idempotent without trusting anything in the config: a last rule of the
shape ocishim appends counts as ocishim's only when the patch of the config without it
appends exactly that rule again and answers nowhere less strictly; then the config
comes out as it went in. Otherwise it stays, as a rule of the profile. (Earlier versions trusted an
`ocishim.enosys-rule` annotation to find it; a pod can set that, so it is ignored.)
"""

from __future__ import annotations

import binascii
import bisect
import copy
from typing import TYPE_CHECKING, Any

from ..record import Record
from .. import libseccomp, syscalls
from ..actions import action_value, strictness
from ..bpf.insn import encode
from ..compile import MULTIPLEXED
from ..errors import ProfileError
from ..patch import Mode, Version, patch_profile
from ..patch.enosys import contains, stub_applies
from ..profile import jsontext, load_object
from ..profile.model import Profile
from .settings import Settings, for_container

if TYPE_CHECKING:
    from ..patch import Patched

BPF_ANNOTATION = "run.oci.seccomp_bpf_data"
ENOSYS = 38


class Rewrite(Record):
    # config: None: the config asks for no filter, leave it alone
    # enosys_names: the portable rule's names
    # uncovered: (arch, nr) in E(A) a JSON rule cannot reach
    __slots__ = ("config", "patched", "enosys_names", "uncovered")
    _defaults = {"enosys_names": (), "uncovered": ()}
    config: dict[str, Any] | None
    patched: Patched | None
    enosys_names: tuple[str, ...]
    uncovered: tuple[tuple[str, int], ...]


def _our_rule(names: list[str]) -> dict[str, Any]:
    return {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}


def _strict_for_json_readers(seccomp: dict[str, Any], profile: Profile, patched: Patched) -> None:
    """Where ocishim repaired libseccomp (patch.check), a runtime that compiles the JSON with
    its own libseccomp would load the wrong code again. For those runtimes the syscall's
    rules become one unconditional rule with the strictest action among them and the
    default: never weaker than the profile (rule 10), if coarser. crun takes the exact
    program from the annotation and never reads them.
    """
    from ..verify.meaning import Meaning

    # Every name whose rules land on a repaired number: its aliases, and on arches with
    # socketcall/ipc the socket and IPC names routed there, not only the number's own name.
    meaning = Meaning(profile, patched.compiled.arches)
    arches = {a.name: a for a in patched.compiled.arches}
    names = sorted(set().union(*(meaning.names_on(arches[arch], nr) for arch, nr in patched.repaired)))
    if not names:
        return
    actions = [(profile.default_action, profile.default_errno_ret)]
    rules = seccomp.get("syscalls") or []
    kept = []
    for rule in rules:
        listed = [n for n in rule["names"] if n in names]
        if listed:
            actions.append((rule["action"], rule.get("errnoRet")))
            rest = [n for n in rule["names"] if n not in names]
            if not rest:
                continue
            rule = dict(rule, names=rest)
        kept.append(rule)
    action, errno_ret = max(actions, key=lambda a: strictness(action_value(*a)))
    strict: dict[str, Any] = {"names": names, "action": action}
    if errno_ret is not None:
        strict["errnoRet"] = errno_ret
    seccomp["syscalls"] = kept + [strict]


def _previous_rule(config: dict[str, Any]) -> list[str] | None:
    """The names of a last rule shaped like the one ocishim appends, or None."""
    linux = config.get("linux")
    seccomp = linux.get("seccomp") if isinstance(linux, dict) else None
    rules = seccomp.get("syscalls") if isinstance(seccomp, dict) else None
    if not isinstance(rules, list) or not rules:
        return None
    last = rules[-1]
    if not isinstance(last, dict) or set(last) != {"names", "action", "errnoRet"}:
        return None
    names = last["names"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        return None
    if last != _our_rule(names) or type(last["errnoRet"]) is not int:
        return None
    return names


def _without_last_rule(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    del config["linux"]["seccomp"]["syscalls"][-1]
    return config


def portable_names(patched: Patched, named: set[str]) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """Names for the JSON ERRNO(ENOSYS) rule, and the (arch, nr) of E(A) it cannot cover.

    A name goes in when it is in E(A) on every arch of the filter that has it (the rule
    applies to all arches at once), whether the libseccomp loaded here knows it or not:
    the runtime's may (static runc builds carry their own). Left out: names whose number
    the libseccomp here puts elsewhere than the table does, where the rule could land on
    another syscall, and socket and IPC names where libseccomp would also put the rule on
    socketcall or ipc (an ERRNO there could be weaker than a KILL or TRAP default).
    """
    arches = [a for a in patched.compiled.arches if a.name in syscalls.arches()]
    candidates: dict[str, None] = {}
    uncovered: list[tuple[str, int]] = []
    for arch in arches:
        ranges = patched.enosys.get(arch.name, ())
        for name, nr in sorted(syscalls.names(arch.name).items(), key=lambda kv: (kv[1], kv[0])):
            if contains(ranges, nr):
                candidates.setdefault(name, None)
    # A named syscall keeps its own rule in JSON (libseccomp refuses two rules for one
    # call); with --emulate-kernel only the BPF annotation can answer ENOSYS for it.
    chosen = []
    for name in candidates:
        ok = name not in named
        if name in MULTIPLEXED and any(libseccomp.resolve_name(a, name) < -1
                                       for a in arches if a in libseccomp.supported_arches()):
            ok = False
        for arch in arches:
            nr = syscalls.resolve(arch.name, name)
            if nr is not None and not contains(patched.enosys.get(arch.name, ()), nr):
                ok = False
            theirs = libseccomp.resolve_name(arch, name) if arch in libseccomp.supported_arches() else -1
            if theirs >= 0 and theirs != nr:
                ok = False
        if ok:
            chosen.append(name)
    chosen_set = set(chosen)
    for arch in arches:
        numbers = syscalls.numbers(arch.name)  # sorted
        for a, b in patched.enosys.get(arch.name, ()):
            # Report table numbers a JSON rule cannot reach; unknown numbers above the
            # table are covered by runc's own stub (above its maximum) or by nothing.
            for nr in numbers[bisect.bisect_left(numbers, a):bisect.bisect_right(numbers, b)]:
                if syscalls.name(arch.name, nr) not in chosen_set:
                    uncovered.append((arch.name, nr))
    return tuple(chosen), tuple(uncovered)


def rewrite(config: dict[str, Any], mode: Mode, emulate: Version | None = None,
            source: str = "config.json", unknown_fail: bool | str = False) -> Rewrite:
    """The config with the patched filter for every runtime; fails closed on any error."""
    if not isinstance(config, dict):
        raise ProfileError(source, "config.json must be a JSON object")
    previous = _previous_rule(config)
    kept = _rewrite(copy.deepcopy(config), mode, emulate, source, unknown_fail)
    if previous is not None and kept.patched is not None:
        stripped = _rewrite(_without_last_rule(config), mode, emulate, source, unknown_fail)
        # The patch of the config without it appends this very rule again, and nothing
        # answers less strictly: the config comes out as it went in (re-patching is stable),
        # and no rule of the profile is removed or changed.
        from ..patch.compare import weakenings

        if previous == list(stripped.enosys_names) and \
                not weakenings(stripped.patched, kept.patched):
            return stripped
    return kept


def _rewrite(config: dict[str, Any], mode: Mode, emulate: Version | None, source: str,
             unknown_fail: bool | str) -> Rewrite:
    loaded = load_object(config, source, kind="config")
    if loaded.profile is None:
        return Rewrite(None, None)
    patched = patch_profile(loaded.profile, mode, emulate, unknown_fail=unknown_fail)
    annotations = config.get("annotations")
    if annotations is None:
        annotations = config["annotations"] = {}
    if not isinstance(annotations, dict):
        raise ProfileError("annotations", "must be an object of strings")
    # base64.b64encode without the base64 module's import: the same standard alphabet
    annotations[BPF_ANNOTATION] = binascii.b2a_base64(encode(patched.program), newline=False).decode()

    names, uncovered = portable_names(patched, set(loaded.profile.names()))
    seccomp = config["linux"]["seccomp"]
    if patched.repaired:
        _strict_for_json_readers(seccomp, loaded.profile, patched)
    if names and stub_applies(patched.compiled.default_action, emulate):
        rules = seccomp.get("syscalls")
        if rules is None:
            rules = seccomp["syscalls"] = []
        rules.append(_our_rule(list(names)))
    else:
        names = ()
    return Rewrite(config, patched, names, uncovered)


def rewrite_for_container(config: dict[str, Any], settings: Settings, source: str) -> Rewrite:
    """rewrite() with the administrator's settings and the container's annotations (rule 10).

    The annotations count only where the result is nowhere weaker than the settings alone
    give; otherwise no container, and the message names the annotation. When the settings
    alone refuse the config, so does every annotation. Audit mode comes last, on the
    result, where the settings and ocishim.audit ask for it (settings.audit_wanted): it changes
    no answer, and the listener goes only to the settings' agent socket.
    """
    from .settings import audit_wanted

    audited = audit_wanted(settings, config)  # before anything changes config's annotations
    result = _for_container(config, settings, source)
    if audited and result.config is not None:
        from ..audit import audit_config

        audit_config(result.config, result.patched, result.enosys_names, settings.audit_socket)
    return result


def _for_container(config: dict[str, Any], settings: Settings, source: str) -> Rewrite:
    chosen, changed = for_container(settings, config)
    by_setting = "the setting unknown-syscall=fail"
    base = rewrite(config, settings.mode, settings.emulate, source,
                   settings.unknown_fail and by_setting)
    if not changed or base.config is None:
        return base
    by_annotation = "annotations.ocishim.unknown-syscall" in changed
    result = rewrite(config, chosen.mode, chosen.emulate, source, chosen.unknown_fail and (
        "annotations.ocishim.unknown-syscall=fail" if by_annotation else by_setting))
    from ..patch.compare import weakenings

    found = weakenings(result.patched, base.patched)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ProfileError(", ".join(changed), f"refused: weaker than the administrator's settings: "
                                               f"{found[0]}{more}")
    return result


def dumps(config: dict[str, Any]) -> str:
    """The config as JSON text; numbers keep the text they were read with (rule 11)."""
    return jsontext.dumps(config)
