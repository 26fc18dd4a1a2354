"""Rewrite a config.json so that any runtime applies the patched filter.

Two things go into the config, both derived from the same patched program:
- crun's `run.oci.seccomp_bpf_data` annotation: the patched program itself, base64.
  crun loads it as it is and still reads `flags` and `listenerPath` from
  linux.seccomp, which therefore stays. ocishim owns this annotation: any value
  already there is replaced (it may come from a pod and be weaker than the profile).
- the portable rewrite, for runc and others: one rule appended to linux.seccomp,
  ERRNO(ENOSYS) for the names of E(A) that the host libseccomp knows.

The rewrite is idempotent: the appended rule is recorded in the `ocishim.enosys-rule`
annotation and taken out again before a config is patched a second time. Taking an
ERRNO rule out can never let a call through, because that is only done when the
default action refuses calls too.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from typing import Any

from .. import libseccomp, syscalls
from ..bpf.insn import encode
from ..errors import ProfileError
from ..patch import Mode, Patched, Version, patch_profile
from ..patch.enosys import contains, stub_applies
from ..profile import load_object

BPF_ANNOTATION = "run.oci.seccomp_bpf_data"
RULE_ANNOTATION = "ocishim.enosys-rule"
ENOSYS = 38


@dataclass(frozen=True)
class Rewrite:
    config: dict[str, Any] | None  # None: the config asks for no filter, leave it alone
    patched: Patched | None
    enosys_names: tuple[str, ...] = ()  # the portable rule's names
    uncovered: tuple[tuple[str, int], ...] = ()  # (arch, nr) in E(A) a JSON rule cannot reach


def _our_rule(names: list[str]) -> dict[str, Any]:
    return {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}


def strip_previous(config: dict[str, Any]) -> dict[str, Any]:
    """The config as it was before ocishim appended its rule (a copy; the input is kept)."""
    config = copy.deepcopy(config)
    annotations = config.get("annotations")
    if not isinstance(annotations, dict) or RULE_ANNOTATION not in annotations:
        return config
    marker = annotations.pop(RULE_ANNOTATION)
    rules = (((config.get("linux") or {}).get("seccomp") or {}).get("syscalls"))
    try:
        info = json.loads(marker)
        index, names = info["index"], info["names"]
    except (TypeError, ValueError, KeyError):
        raise ProfileError(f"annotations.{RULE_ANNOTATION}", "not what ocishim writes") from None
    if isinstance(rules, list) and isinstance(index, int) and 0 <= index < len(rules) \
            and rules[index] == _our_rule(names):
        del rules[index]
    return config


def portable_names(patched: Patched, named: set[str]) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """Names for the JSON ERRNO(ENOSYS) rule, and the (arch, nr) of E(A) it cannot cover.

    A name goes in only if the host libseccomp knows it and it is in E(A) on every arch
    of the filter that has it: the rule applies to all arches at once.
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
        ok = name not in named and libseccomp.knows(arches[0], name)
        for arch in arches:
            nr = syscalls.resolve(arch.name, name)
            if nr is not None and not contains(patched.enosys.get(arch.name, ()), nr):
                ok = False
        if ok:
            chosen.append(name)
    chosen_set = set(chosen)
    for arch in arches:
        for a, b in patched.enosys.get(arch.name, ()):
            # Report table numbers a JSON rule cannot reach; unknown numbers above the
            # table are covered by runc's own stub (above its maximum) or by nothing.
            for nr in syscalls.numbers(arch.name):
                if a <= nr <= b and syscalls.name(arch.name, nr) not in chosen_set:
                    uncovered.append((arch.name, nr))
    return tuple(chosen), tuple(uncovered)


def rewrite(config: dict[str, Any], mode: Mode, emulate: Version | None = None,
            source: str = "config.json", unknown_fail: bool = False) -> Rewrite:
    """The config with the patched filter for every runtime; fails closed on any error."""
    if not isinstance(config, dict):
        raise ProfileError(source, "config.json must be a JSON object")
    config = strip_previous(config)
    loaded = load_object(config, source, kind="config")
    if loaded.profile is None:
        return Rewrite(None, None)
    patched = patch_profile(loaded.profile, mode, emulate, unknown_fail=unknown_fail)
    annotations = config.get("annotations")
    if annotations is None:
        annotations = config["annotations"] = {}
    if not isinstance(annotations, dict):
        raise ProfileError("annotations", "must be an object of strings")
    annotations[BPF_ANNOTATION] = base64.b64encode(encode(patched.program)).decode()

    names, uncovered = portable_names(patched, set(loaded.profile.names()))
    seccomp = config["linux"]["seccomp"]
    if names and stub_applies(patched.compiled.default_action, emulate):
        rules = seccomp.get("syscalls")
        if rules is None:
            rules = seccomp["syscalls"] = []
        rules.append(_our_rule(list(names)))
        annotations[RULE_ANNOTATION] = json.dumps({"index": len(rules) - 1, "names": list(names)},
                                                  separators=(",", ":"))
    return Rewrite(config, patched, names, uncovered)


def dumps(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"
