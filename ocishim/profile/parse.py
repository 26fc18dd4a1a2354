"""Read a profile from a file and validate it into a Profile.

PROFILE may be a bundle directory, a config.json, a bare `linux.seccomp` object or
a Docker-format profile; `load` tells them apart by content. Every problem is a
ProfileError whose `where` is the JSON path of the offending field (or the file
for problems with the file itself), so nothing invalid gets past this module.

Null counts as absent for optional fields, as it does for the Go decoders of
runc, crun's callers and Docker; unknown keys are ignored, as the runtime spec
requires. A document that readers could take in two ways (duplicate keys, keys
that differ only in case from a spec field, NaN) is refused: see `decode` and
`check_fields`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from typing import Any

from ..actions import ACTIONS, FILTER_FLAGS, MAX_ERRNO, OPERATORS
from ..arch import BY_OCI
from ..errors import ProfileError
from ..record import Record
from . import jsontext, spec_fields
from .document import (MAX_NESTING, MAX_PROFILE_BYTES, check_fields, decode,  # noqa: F401
                       join, key_path, quote, read_json)
from .model import ArgCond, Profile, Rule

MAX_ARG_INDEX = 5
MAX_UINT64 = (1 << 64) - 1
MAX_SYSCALL_NAME = 64

KINDS = ("bundle", "config", "seccomp", "docker")

_SYSCALL_NAME = re.compile(r"[a-z0-9_]+\Z")
# A config.json is recognised by any of these top-level keys.
_CONFIG_KEYS = ("ociVersion", "linux", "process")
# Keys that only the Docker format (and the containers/common dialect) has.
_DOCKER_TOP_KEYS = ("archMap", "defaultErrno")
_DOCKER_RULE_KEYS = ("name", "comment", "includes", "excludes", "errno")


class Loaded(Record):
    """What `load` found. `profile` is None when the input asks for no filter."""

    __slots__ = ("profile", "kind", "config", "source")
    profile: Profile | None
    kind: str  # one of KINDS
    config: dict | None  # the whole config.json for "bundle" and "config"
    source: str  # the file read, or the name given to `loads`


# ---------------------------------------------------------------- JSON helpers

def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown)}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_error(path: str, expected: str, value: Any) -> ProfileError:
    """The error for a JSON value of the wrong type: names what was expected and what came."""
    return ProfileError(path, f"expected {expected}, got {_describe(value)}")


def get_object(value: Any, path: str) -> dict:
    """`value` if it is a JSON object, else a ProfileError at `path`."""
    if not isinstance(value, dict):
        raise type_error(path, "an object", value)
    return value


def get_string(value: Any, path: str) -> str:
    """`value` if it is a JSON string, else a ProfileError at `path`."""
    if not isinstance(value, str):
        raise type_error(path, "a string", value)
    return value


def get_list(value: Any, path: str, *, null_ok: bool = True) -> list:
    """A JSON array; null is an empty one unless the field is required."""
    if value is None and null_ok:
        return []
    if not isinstance(value, list):
        raise type_error(path, "an array", value)
    return value


def get_uint(value: Any, path: str, maximum: int = MAX_UINT64) -> int:
    """An integer in 0..maximum. Booleans, floats and -0 are not unsigned integers here, as in Go."""
    if isinstance(value, (bool, jsontext.JsonInt)) or not isinstance(value, int):
        raise type_error(path, "an unsigned integer", value)
    if not 0 <= value <= maximum:
        raise ProfileError(path, f"{value} is out of range 0..{maximum}")
    return value


def get_string_list(value: Any, path: str) -> list[str]:
    """An array of strings (null is empty)."""
    items = get_list(value, path)
    for i, item in enumerate(items):
        get_string(item, f"{path}[{i}]")
    return items


def check_syscall_name(value: Any, path: str) -> str:
    """A syscall name: a non-empty string of [a-z0-9_]."""
    name = get_string(value, path)
    if not name:
        raise ProfileError(path, "empty syscall name")
    if len(name) > MAX_SYSCALL_NAME or not _SYSCALL_NAME.match(name):
        raise ProfileError(path, f"invalid syscall name {json.dumps(name)} (expected [a-z0-9_]+)")
    return name


def check_arch(value: Any, path: str) -> str:
    """An OCI architecture name that arch.BY_OCI knows."""
    name = get_string(value, path)
    if name not in BY_OCI:
        raise ProfileError(path, f"unknown architecture {json.dumps(name)}")
    return name


# ---------------------------------------------------------------- validation

def _field(obj: Mapping, path: str, key: str, keys: Mapping[str, str]) -> tuple[Any, str]:
    """The value of an OCI field and the path to report it under.

    `keys` renames fields whose value came from another source key (the Docker
    converter turns `errno` into errnoRet, for instance), so errors point there.
    """
    return obj.get(key), join(path, keys.get(key, key))


def _action(value: Any, path: str) -> str:
    if value is None:
        raise ProfileError(path, "required field is missing")
    name = get_string(value, path)
    if name not in ACTIONS:
        raise ProfileError(path, f"unknown action {json.dumps(name)}")
    return name


def _errno_ret(value: Any, path: str, action: str) -> int | None:
    if value is None:
        return None
    number = get_uint(value, path, MAX_ERRNO)
    if not ACTIONS[action].takes_errno:
        raise ProfileError(
            path, f"{action} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"
        )
    return number


def parse_arg(obj: Any, path: str) -> ArgCond:
    """Validate one `args[]` entry."""
    obj = get_object(obj, path)
    for key in ("index", "value", "op"):
        if obj.get(key) is None:
            raise ProfileError(join(path, key), "required field is missing")
    index = get_uint(obj["index"], join(path, "index"), MAX_ARG_INDEX)
    value = get_uint(obj["value"], join(path, "value"))
    value_two = obj.get("valueTwo")
    value_two = 0 if value_two is None else get_uint(value_two, join(path, "valueTwo"))
    op = get_string(obj["op"], join(path, "op"))
    if op not in OPERATORS:
        raise ProfileError(join(path, "op"), f"unknown operator {json.dumps(op)}")
    return ArgCond(index=index, value=value, value_two=value_two, op=op)


def parse_rule(obj: Any, path: str, keys: Mapping[str, str] | None = None) -> Rule:
    """Validate one `syscalls[]` entry; `path` is its JSON path, kept in Rule.path."""
    keys = keys or {}
    obj = get_object(obj, path)
    names_value, names_path = _field(obj, path, "names", keys)
    if names_value is None:
        raise ProfileError(names_path, "required field is missing")
    names = get_list(names_value, names_path, null_ok=False)
    if not names:
        raise ProfileError(names_path, "empty list of syscall names")
    checked = tuple(check_syscall_name(n, f"{names_path}[{i}]") for i, n in enumerate(names))
    action_value, action_path = _field(obj, path, "action", keys)
    action = _action(action_value, action_path)
    errno_value, errno_path = _field(obj, path, "errnoRet", keys)
    errno_ret = _errno_ret(errno_value, errno_path, action)
    args_value, args_path = _field(obj, path, "args", keys)
    args = tuple(
        parse_arg(a, f"{args_path}[{i}]") for i, a in enumerate(get_list(args_value, args_path))
    )
    return Rule(names=checked, action=action, errno_ret=errno_ret, args=args, path=path)


def parse_rules(value: Any, path: str) -> tuple[Rule, ...]:
    """Validate a `syscalls` array (null is empty)."""
    return tuple(parse_rule(r, f"{path}[{i}]") for i, r in enumerate(get_list(value, path)))


def build_profile(
    obj: Any,
    path: str,
    *,
    rules: tuple[Rule, ...] | None = None,
    keys: Mapping[str, str] | None = None,
) -> Profile:
    """Validate the top-level fields of a linux.seccomp object.

    `rules`, when given, are already validated and replace obj["syscalls"] (the
    Docker converter passes the rules that survived its conditions).
    """
    keys = keys or {}
    obj = get_object(obj, path or "(top level)")
    value, where = _field(obj, path, "defaultAction", keys)
    default_action = _action(value, where)
    value, where = _field(obj, path, "defaultErrnoRet", keys)
    default_errno_ret = _errno_ret(value, where, default_action)

    value, where = _field(obj, path, "architectures", keys)
    architectures = tuple(
        check_arch(a, f"{where}[{i}]") for i, a in enumerate(get_list(value, where))
    )
    value, where = _field(obj, path, "flags", keys)
    flags = []
    for i, flag in enumerate(get_list(value, where)):
        flag = get_string(flag, f"{where}[{i}]")
        if flag not in FILTER_FLAGS:
            raise ProfileError(f"{where}[{i}]", f"unknown flag {json.dumps(flag)}")
        flags.append(flag)

    optional: dict[str, str | None] = {}
    for key in ("listenerPath", "listenerMetadata"):
        value, where = _field(obj, path, key, keys)
        optional[key] = None if value is None else get_string(value, where)

    if rules is None:
        rules = parse_rules(obj.get("syscalls"), join(path, "syscalls"))
    return Profile(
        default_action=default_action,
        default_errno_ret=default_errno_ret,
        architectures=architectures,
        flags=tuple(flags),
        listener_path=optional["listenerPath"],
        listener_metadata=optional["listenerMetadata"],
        syscalls=rules,
        path=path,
    )


def parse_seccomp(obj: Any, path: str) -> Profile:
    """Validate a linux.seccomp object found at JSON path `path` ("" for a bare file)."""
    return build_profile(obj, path)


# ---------------------------------------------------------------- serialisation

def to_oci(profile: Profile) -> dict:
    """The OCI linux.seccomp object for a Profile, fields in the runtime spec's order.

    Absent optional fields are left out, and so is a zero valueTwo (the spec's Go
    types mark it omitempty), so the output parses back to an equal Profile.
    """
    out: dict[str, Any] = {"defaultAction": profile.default_action}
    if profile.default_errno_ret is not None:
        out["defaultErrnoRet"] = profile.default_errno_ret
    if profile.architectures:
        out["architectures"] = list(profile.architectures)
    if profile.flags:
        out["flags"] = list(profile.flags)
    if profile.listener_path is not None:
        out["listenerPath"] = profile.listener_path
    if profile.listener_metadata is not None:
        out["listenerMetadata"] = profile.listener_metadata
    if profile.syscalls:
        out["syscalls"] = [_rule_to_oci(rule) for rule in profile.syscalls]
    return out


def _rule_to_oci(rule: Rule) -> dict:
    out: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
    if rule.errno_ret is not None:
        out["errnoRet"] = rule.errno_ret
    if rule.args:
        args = []
        for arg in rule.args:
            entry: dict[str, Any] = {"index": arg.index, "value": arg.value}
            if arg.value_two:
                entry["valueTwo"] = arg.value_two
            entry["op"] = arg.op
            args.append(entry)
        out["args"] = args
    return out


def detect(obj: dict) -> str:
    """Which kind of input a top-level JSON object is: config, docker or seccomp.

    A config is also recognised by keys Go would read as its fields ("Linux"), so that
    it is checked as a config and refused for them.
    """
    folded = {spec_fields.go_fold(k) for k in obj}
    if any(spec_fields.go_fold(k) in folded for k in _CONFIG_KEYS):
        return "config"
    if any(k in obj for k in _DOCKER_TOP_KEYS):
        return "docker"
    rules = obj.get("syscalls")
    if isinstance(rules, list):
        for rule in rules:
            if isinstance(rule, dict) and any(k in rule for k in _DOCKER_RULE_KEYS):
                return "docker"
    return "seccomp"


def _config_profile(config: dict) -> Profile | None:
    linux = config.get("linux")
    if linux is None:
        return None
    linux = get_object(linux, "linux")
    seccomp = linux.get("seccomp")
    if seccomp is None:
        return None
    get_object(seccomp, "linux.seccomp")
    return parse_seccomp(seccomp, "linux.seccomp")


def load_object(
    obj: Any,
    source: str = "<input>",
    *,
    kind: str | None = None,
    caps: frozenset[str] | None = None,
    kernel: tuple[int, int] | None = None,
    arch: str | None = None,
) -> Loaded:
    """Validate already-decoded JSON; `kind` forces the interpretation (else detected).

    caps, kernel and arch only matter for a Docker-format profile (see docker.convert).
    """
    if not isinstance(obj, dict):
        raise ProfileError(source, f"expected a JSON object at the top level, got {_describe(obj)}")
    kind = kind or detect(obj)
    if kind not in spec_fields.BY_KIND:
        raise ValueError(f"unknown kind {kind!r}")
    check_fields(obj, spec_fields.BY_KIND[kind])
    if kind in ("bundle", "config"):
        return Loaded(_config_profile(obj), kind, obj, source)
    if kind == "docker":
        from .docker import convert

        return Loaded(convert(obj, caps=caps, kernel=kernel, arch=arch), kind, None, source)
    if kind == "seccomp":
        return Loaded(parse_seccomp(obj, ""), kind, None, source)
    raise ValueError(f"unknown kind {kind!r}")


def loads(
    data: bytes | str,
    source: str = "<input>",
    *,
    caps: frozenset[str] | None = None,
    kernel: tuple[int, int] | None = None,
    arch: str | None = None,
) -> Loaded:
    """Like `load`, from JSON text (a config.json on stdin, for instance)."""
    return load_object(decode(data, source), source, caps=caps, kernel=kernel, arch=arch)


def load(
    path: str,
    *,
    caps: frozenset[str] | None = None,
    kernel: tuple[int, int] | None = None,
    arch: str | None = None,
) -> Loaded:
    """Read PROFILE: a bundle directory, a config.json, a linux.seccomp object or a Docker profile.

    caps (the container's bounding set), kernel (major, minor) and arch (Docker's
    short arch name) only matter for a Docker-format profile; they default to
    Docker's default capabilities, the running kernel and the host arch.
    """
    path = os.fspath(path)
    kind = None
    source = path
    if os.path.isdir(path):
        source = os.path.join(path, "config.json")
        if not os.path.lexists(source):
            raise ProfileError(path, "bundle directory has no config.json")
        kind = "bundle"
    obj = read_json(source)
    return load_object(obj, source, kind=kind, caps=caps, kernel=kernel, arch=arch)
