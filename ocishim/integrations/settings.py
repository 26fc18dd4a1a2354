"""Settings for the hook and the runtime wrapper: a system file, then per-container annotations.

/etc/ocishim/config.json (or $OCISHIM_CONFIG), every key optional:
    {"enosys": "unnamed", "emulate-kernel": "5.10", "unknown-syscall": "warn",
     "log": "syslog" | "/var/log/ocishim.log", "runtime": "/usr/bin/runc"}
Annotations override the mode per container: ocishim.enosys, ocishim.emulate-kernel,
ocishim.unknown-syscall. None of them can weaken a filter: they only choose which
refused calls answer ENOSYS instead of the profile's errno.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

from ..errors import ProfileError, UsageError
from ..patch import Mode, Version, parse_kernel, parse_mode

DEFAULT_PATH = "/etc/ocishim/config.json"
ANNOTATION_PREFIX = "ocishim."
_KEYS = ("enosys", "emulate-kernel", "unknown-syscall", "log", "runtime")


@dataclass(frozen=True)
class Settings:
    mode: Mode = Mode("unnamed")
    emulate: Version | None = None
    unknown_fail: bool = False
    log: str = "syslog"
    runtime: str | None = None


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
            settings = replace(settings, mode=parse_mode(value))
        elif key == "emulate-kernel":
            settings = replace(settings, emulate=parse_kernel(value, field))
        elif key == "unknown-syscall":
            if value not in ("warn", "fail"):
                raise UsageError(field, "must be warn or fail")
            settings = replace(settings, unknown_fail=value == "fail")
        elif key == "log" and not where.startswith("annotations"):
            settings = replace(settings, log=value)
        elif key == "runtime" and not where.startswith("annotations"):
            settings = replace(settings, runtime=value)
    return settings


def load_settings(path: str | None = None) -> Settings:
    """The system settings; a missing file means the defaults."""
    path = path or os.environ.get("OCISHIM_CONFIG") or DEFAULT_PATH
    try:
        with open(path) as f:
            values = json.load(f)
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as exc:
        raise UsageError(path, f"cannot read settings: {exc}") from None
    if not isinstance(values, dict):
        raise UsageError(path, "settings must be a JSON object")
    return _apply(Settings(), values, f"{path}: ")


def for_container(settings: Settings, config: Mapping[str, Any]) -> Settings:
    """Settings with the container's ocishim.* annotations applied."""
    annotations = config.get("annotations") if isinstance(config, Mapping) else None
    if annotations is None:
        return settings
    if not isinstance(annotations, Mapping):
        raise ProfileError("annotations", "must be an object of strings")
    ours = {k[len(ANNOTATION_PREFIX):]: v for k, v in annotations.items()
            if isinstance(k, str) and k.startswith(ANNOTATION_PREFIX)
            and k[len(ANNOTATION_PREFIX):] in ("enosys", "emulate-kernel", "unknown-syscall")}
    return _apply(settings, ours, "annotations.ocishim.")


def log(settings: Settings, level: str, message: str, stderr: bool = True) -> None:
    """Log where podman and runtimes do not drop it: syslog/journal, or a file.

    stderr=False when stderr is the container's (the wrapper's create/run): the line
    is then dropped if neither syslog nor the file takes it.
    """
    line = f"ocishim[{os.getpid()}]: {level}: {message}"
    if settings.log == "syslog":
        priority = {"error": 3, "warning": 4, "info": 6}.get(level, 6)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect("/dev/log")
                s.send(f"<{8 + priority}>{line}".encode())  # facility user
            return
        except OSError:
            pass  # no syslog daemon: nowhere better to go than stderr
        if stderr:
            print(line, file=sys.stderr)
        return
    try:
        with open(settings.log, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {line}\n")
    except OSError:
        if stderr:
            print(line, file=sys.stderr)
