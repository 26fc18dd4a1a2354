"""Profiles: read and validate a seccomp profile (OCI or Docker format) into a Profile."""

from .model import ArgCond, Profile, Rule
from .parse import Loaded, load, load_object, loads, parse_seccomp, to_oci

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
