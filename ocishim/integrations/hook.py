"""The podman/buildah `precreate` hook: config.json on stdin, rewritten config on stdout.

podman runs the hook before it creates the container, in the bundle directory, and
drops its stderr: what happens is logged (settings.log). A non-zero exit stops the
container, which is what any failure here must do.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO

from ..errors import OcishimError, ProfileError, SystemFailure
from ..files import write_atomically
from ..profile.parse import decode
from .config import dumps, rewrite_for_container
from .settings import Settings, load_settings, log

HOOKS_D_NAME = "ocishim-precreate.json"


def precreate(stdin: IO[str], stdout: IO[str], settings: Settings | None = None) -> int:
    """Read a config, write it patched; returns the exit code."""
    settings = settings or Settings()
    try:
        text = stdin.read()
        config = decode(text, "stdin")
        if not isinstance(config, dict):
            raise ProfileError("stdin", "the config must be a JSON object")
        result = rewrite_for_container(config, settings, "stdin")
        for warning in result.patched.compiled.warnings if result.patched else ():
            log(settings, "warning", f"precreate: {warning}", stderr=False)
    except OcishimError as exc:
        log(settings, "error", f"precreate: {exc}; the container is not created", stderr=False)
        print(f"ocishim: {exc}", file=sys.stderr)
        return exc.exit_code
    if result.config is None:
        log(settings, "info", "precreate: the config has no linux.seccomp: no filter, left unchanged")
        stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    mode, emulate = result.patched.mode, result.patched.emulate
    log(settings, "info", f"precreate: patched (--enosys {mode}"
        + (f", emulate {emulate[0]}.{emulate[1]}" if emulate else "")
        + f"): {len(result.patched.program)} instructions, "
        f"JSON rule with {len(result.enosys_names)} names")
    stdout.write(dumps(result.config))
    return 0


def hooks_d_entry(ocishim_path: str, config_path: str | None = None) -> dict:
    """The hooks.d file (schema 1.0.0) that runs `ocishim hook precreate` for every container."""
    hook: dict = {"path": ocishim_path, "args": ["ocishim", "hook", "precreate"]}
    if config_path:
        hook["env"] = [f"OCISHIM_CONFIG={config_path}"]
    return {"version": "1.0.0", "hook": hook, "when": {"always": True}, "stages": ["precreate"]}


def install(directory: str, ocishim_path: str, config_path: str | None = None) -> str:
    """Write the hooks.d file into directory (atomically); returns its path."""
    path = os.path.join(directory, HOOKS_D_NAME)
    text = json.dumps(hooks_d_entry(ocishim_path, config_path), indent=2) + "\n"
    try:
        os.makedirs(directory, exist_ok=True)
        write_atomically(path, text.encode())
    except OSError as exc:
        raise SystemFailure(directory, f"cannot install the hook: {exc.strerror}") from None
    return path


def main_precreate() -> int:
    try:
        settings = load_settings()
    except OcishimError as exc:
        print(f"ocishim: {exc}", file=sys.stderr)
        log(Settings(), "error", f"precreate: {exc}", stderr=False)
        return exc.exit_code
    return precreate(sys.stdin, sys.stdout, settings)
