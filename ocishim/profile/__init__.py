"""Profiles: read and validate a seccomp profile (OCI or Docker format) into a Profile.

The names below load on first use: a container start that only reads and writes JSON
(profile.document, profile.jsontext) does not pay for the validator and the model.
"""

from __future__ import annotations

__all__ = [
    "ArgCond",
    "Loaded",
    "Profile",
    "Rule",
    "load",
    "load_object",
    "loads",
    "parse_seccomp",
    "to_oci",
]

_FROM_MODEL = ("ArgCond", "Profile", "Rule")


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _FROM_MODEL:
        from . import model as source
    else:
        from . import parse as source
    value = getattr(source, name)
    globals()[name] = value
    return value
