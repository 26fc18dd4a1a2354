"""Settings for the hook and the runtime wrapper: a system file, then per-container annotations.

/etc/ocishim/config.json (or $OCISHIM_CONFIG), every key optional:
    {"enosys": "unnamed", "emulate-kernel": "5.10", "unknown-syscall": "warn",
     "annotations": "use" | "ignore",
     "log": "auto" | "journal" | "syslog" | "/var/log/ocishim.log", "runtime": "/usr/bin/runc",
     "cache": "/var/cache/ocishim" | "off", "audit": "off" | "on" | "annotation",
     "audit-socket": "/run/ocishim/agent/agent.sock"}
The file is the administrator's and is trusted. Annotations come with the container
(from a pod spec) and are not: ocishim.enosys, ocishim.emulate-kernel and
ocishim.unknown-syscall may choose another mode per container only where the result
is nowhere weaker than the settings alone give (integrations/config.py checks that,
rule 10 of semantics.md), and "annotations": "ignore" turns them off.
"""

from __future__ import annotations

import os

from ..errors import ProfileError, UsageError
from ..modes import Mode, Version, parse_kernel, parse_mode
from ..record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

DEFAULT_PATH = "/etc/ocishim/config.json"
DEFAULT_CACHE = "/var/cache/ocishim"  # the same as filtercache.DEFAULT_DIR (a test checks)
ANNOTATION_PREFIX = "ocishim."
_KEYS = ("enosys", "emulate-kernel", "unknown-syscall", "annotations", "log", "runtime", "cache",
         "audit", "audit-socket")
ANNOTATION_KEYS = ("enosys", "emulate-kernel", "unknown-syscall")


class Settings(Record):
    """The settings file's values (every field has a default); `replace` changes some."""

    __slots__ = ("mode", "emulate", "unknown_fail", "log", "runtime", "annotations", "cache",
                 "audit", "audit_socket")
    _defaults = {
        "mode": Mode("unnamed"),
        "emulate": None,
        "unknown_fail": False,
        "log": "auto",  # the journal, else syslog, else /var/log/ocishim.log (integrations/log.py)
        "runtime": None,
        "annotations": True,  # False: the container's ocishim.* annotations are ignored
        "cache": None,  # the compiled-filter cache: a directory or "off"; None: off
        "audit": "off",  # "on": every container; "annotation": those with ocishim.audit=on
        "audit_socket": "/run/ocishim/agent/agent.sock",  # the agent's socket, the listenerPath
    }
    mode: Mode
    emulate: Version | None
    unknown_fail: bool
    log: str
    runtime: str | None
    annotations: bool
    cache: str | None
    audit: str
    audit_socket: str


def _apply(settings: Settings, values: Mapping[str, Any], where: str) -> Settings:
    for key, value in values.items():
        field = f"{where}{key}"
        if key not in _KEYS:
            if where.startswith("annotations"):
                continue  # other ocishim.* annotations are not ours to judge
            raise UsageError(field, f"unknown setting (known: {', '.join(_KEYS)})")
        if value is None:
            continue
        if not isinstance(value, str):
            raise UsageError(field, "must be a string")
        if key == "enosys":
            try:
                settings = settings.replace(mode=parse_mode(value))
            except UsageError as exc:
                raise UsageError(field, exc.message) from None
        elif key == "emulate-kernel":
            settings = settings.replace(emulate=parse_kernel(value, field))
        elif key == "unknown-syscall":
            if value not in ("warn", "fail"):
                raise UsageError(field, "must be warn or fail")
            settings = settings.replace(unknown_fail=value == "fail")
        elif key == "annotations" and not where.startswith("annotations"):
            if value not in ("use", "ignore"):
                raise UsageError(field, "must be use or ignore")
            settings = settings.replace(annotations=value == "use")
        elif key == "log" and not where.startswith("annotations"):
            settings = settings.replace(log=value)
        elif key == "runtime" and not where.startswith("annotations"):
            settings = settings.replace(runtime=value)
        elif key == "cache" and not where.startswith("annotations"):
            if value != "off" and not value.startswith("/"):
                raise UsageError(field, "must be an absolute directory or off")
            settings = settings.replace(cache=value)
        elif key == "audit" and not where.startswith("annotations"):
            if value not in ("off", "on", "annotation"):
                raise UsageError(field, "must be off, on or annotation")
            settings = settings.replace(audit=value)
        elif key == "audit-socket" and not where.startswith("annotations"):
            if not value.startswith("/"):
                raise UsageError(field, "must be an absolute path")
            settings = settings.replace(audit_socket=value)
    return settings


def load_settings(path: str | None = None) -> Settings:
    """The system settings; a missing file means the defaults.

    The file decides which runtime root executes, so, as sudo does with sudoers and ssh
    with its StrictModes, it is refused unless only root could have written it (the
    file and every directory on the way: files.read_trusted).
    """
    from ..files import read_trusted
    from ..profile.jsontext import loads

    path = path or os.environ.get("OCISHIM_CONFIG") or DEFAULT_PATH
    # The default cache belongs to the system's settings; another settings file (a test,
    # a second engine) uses a cache only where it names one.
    defaults = Settings(cache=DEFAULT_CACHE if path == DEFAULT_PATH else "off")
    try:
        values = loads(read_trusted(path, "settings file"))
    except FileNotFoundError:
        return defaults
    except (OSError, ValueError) as exc:
        raise UsageError(path, f"cannot read settings: {exc}") from None
    if not isinstance(values, dict):
        raise UsageError(path, "settings must be a JSON object")
    return _apply(defaults, values, f"{path}: ")


def container_annotations(settings: Settings, config: Mapping[str, Any]) -> dict[str, Any]:
    """The container's ocishim.* choices (key without prefix -> value), none if ignored."""
    annotations = config.get("annotations") if isinstance(config, dict) else None
    if annotations is None or not settings.annotations:
        return {}
    if not isinstance(annotations, dict):
        raise ProfileError("annotations", "must be an object of strings")
    return {k[len(ANNOTATION_PREFIX):]: v for k, v in annotations.items()
            if isinstance(k, str) and k.startswith(ANNOTATION_PREFIX)
            and k[len(ANNOTATION_PREFIX):] in ANNOTATION_KEYS}


def for_container(settings: Settings, config: Mapping[str, Any]) -> tuple[Settings, tuple[str, ...]]:
    """Settings with the container's annotations applied, and the annotations that changed them.

    A bad value is an error naming the annotation, even one equal in effect to the settings:
    the container asked for something ocishim cannot read.
    """
    ours = container_annotations(settings, config)
    for key, value in ours.items():
        if value is not None and not isinstance(value, str):
            raise ProfileError(f"annotations.{ANNOTATION_PREFIX}{key}", "must be a string")
    try:
        chosen = _apply(settings, ours, f"annotations.{ANNOTATION_PREFIX}")
    except UsageError as exc:
        raise ProfileError(exc.where, exc.message) from None
    changed = []
    for key, attr in (("enosys", "mode"), ("emulate-kernel", "emulate"), ("unknown-syscall", "unknown_fail")):
        if key in ours and getattr(chosen, attr) != getattr(settings, attr):
            changed.append(f"annotations.{ANNOTATION_PREFIX}{key}")
    return chosen, tuple(changed)


AUDIT_ANNOTATION = "ocishim.audit"


def audit_wanted(settings: Settings, config: Mapping[str, Any]) -> bool:
    """Whether this container is audited: the settings' "audit", then ocishim.audit (rule 10).

    "on" audits every container and an annotation cannot turn that off (the administrator
    watches); "annotation" audits those that ask with ocishim.audit=on; "off" refuses a
    container that asks. Audit changes no answer, and its listener goes to the settings'
    socket only, so the annotation cannot make a filter weaker; it is refused where the
    administrator did not allow it, so that a pod cannot start talking to the agent.
    With "annotations": "ignore" the annotation is not read.
    """
    annotations = config.get("annotations") if isinstance(config, dict) else None
    value = None
    if settings.annotations and isinstance(annotations, dict):
        value = annotations.get(AUDIT_ANNOTATION)
    where = f"annotations.{AUDIT_ANNOTATION}"
    if value is not None and value not in ("on", "off"):
        raise ProfileError(where, "must be on or off")
    if settings.audit == "on":
        if value == "off":
            raise ProfileError(where, "refused: the administrator's settings audit every container")
        return True
    if value == "on" and settings.audit != "annotation":
        raise ProfileError(where, "refused: the administrator's settings do not allow audit "
                                  "(\"audit\": \"annotation\" does)")
    return value == "on"
