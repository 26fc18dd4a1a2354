"""The podman/buildah `precreate` hook: config.json on stdin, rewritten config on stdout.

podman runs the hook before it creates the container, in the bundle directory, and
drops its stderr: every decision and refusal is logged (integrations/log.py), and a
refusal also prints one line naming where the reason was logged, on podman's own
stderr (log.tell_caller). A non-zero exit stops the container, which is what any
failure here must do.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

from ..errors import OcishimError, ProfileError
from .log import log, tell_caller
from .settings import Settings, load_settings

HOOKS_D_NAME = "ocishim-precreate.json"


def refuse(settings: Settings, exc: BaseException, exit_code: int) -> int:
    """Log why the container is not created, and tell the caller where that is logged."""
    reason = str(exc) if isinstance(exc, OcishimError) else f"internal error: {type(exc).__name__}: {exc}"
    where = log(settings, "error", f"precreate: {reason}; the container is not created", stderr=False)
    short = reason if len(reason) <= 300 else reason[:300] + "..."
    place = f"logged to {where}" if where.kind in ("journal", "syslog", "file") else "not logged"
    tell_caller(f"ocishim: {short} (the container is not created; {place}; `ocishim log` shows it)")
    return exit_code


def precreate(stdin: IO[str], stdout: IO[str], settings: Settings | None = None) -> int:
    """Read a config, write it patched; returns the exit code."""
    from .. import filtercache
    from ..profile.document import MAX_PROFILE_BYTES, decode

    settings = settings or Settings()
    try:
        if stdin is None:  # started with fd 0 closed
            raise ProfileError("stdin", "closed: the hook reads config.json on stdin")
        # Bytes from the real stdin (decode checks UTF-8 strictly), at most one past the
        # size limit: an endless stream is refused, not read whole.
        text = stdin.read(MAX_PROFILE_BYTES + 1)
        if len(text) > MAX_PROFILE_BYTES:
            raise ProfileError("stdin", f"larger than the {MAX_PROFILE_BYTES >> 20} MiB limit")
        config = decode(text, "stdin")
        if isinstance(text, bytes):
            text = text.decode("utf-8")  # valid: decode() checked it
        if not isinstance(config, dict):
            raise ProfileError("stdin", "the config must be a JSON object")
        cache, problem = filtercache.open_cache(filtercache.location(settings))
        if problem:
            log(settings, "warning", f"precreate: {problem}", stderr=False)
        result = filtercache.rewrite_config(config, "stdin", settings, cache)
        for warning in result.filter.warnings if result.filter else ():
            log(settings, "warning", f"precreate: {warning}", stderr=False)
        for note in result.filter.notes if result.filter else ():
            log(settings, "info", f"precreate: {note}", stderr=False)
    except OcishimError as exc:
        return refuse(settings, exc, exc.exit_code)
    except Exception as exc:  # a bug must still stop the container and leave a trace
        return refuse(settings, exc, 1)
    if result.config is None:
        log(settings, "info", "precreate: the config has no linux.seccomp: no filter, left unchanged",
            stderr=False)
        stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    done = result.filter
    log(settings, "info", f"precreate: patched (--enosys {done.mode}"
        + (f", emulate {done.emulate[0]}.{done.emulate[1]}" if done.emulate else "")
        + f"): {done.instructions} instructions, "
        f"JSON rule with {done.enosys_names} names"
        + (" (compiled-filter cache)" if result.cached else ""), stderr=False)
    stdout.write(filtercache.config_text(result))
    return 0


def hooks_d_entry(ocishim_path: str, config_path: str | None = None) -> dict:
    """The hooks.d file (schema 1.0.0) that runs `ocishim hook precreate` for every container."""
    hook: dict = {"path": ocishim_path, "args": ["ocishim", "hook", "precreate"]}
    if config_path:
        hook["env"] = [f"OCISHIM_CONFIG={config_path}"]
    return {"version": "1.0.0", "hook": hook, "when": {"always": True}, "stages": ["precreate"]}


def run_precreate() -> int:
    """`ocishim hook precreate` from the command line (bin/ocishim calls it before the
    CLI's parser is built): the libseccomp check every command makes, by ctypes
    (filtercache), so that a compiled-filter cache hit imports no binding at all."""
    from ..filtercache import require_libseccomp

    try:
        require_libseccomp()
    except OcishimError as exc:
        print(f"ocishim: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # no libseccomp at all, as the binding's import would fail
        print(f"ocishim: libseccomp: cannot load: {exc}", file=sys.stderr)
        return 1
    return main_precreate()


def main_precreate() -> int:
    try:
        settings = load_settings()
    except OcishimError as exc:
        # The settings cannot say where to log: the default places (journal, syslog, file).
        return refuse(Settings(), exc, exc.exit_code)
    return precreate(sys.stdin.buffer if sys.stdin is not None else None, sys.stdout, settings)
