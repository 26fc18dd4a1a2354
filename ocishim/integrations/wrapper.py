"""`ocishim-runtime`: a runc-compatible wrapper for containerd, Docker, CRI-O and Kubernetes.

On `create` and `run` it rewrites the bundle's config.json (temp file + rename, so a
kill leaves the old file or the new one), then execv's the real runtime with the
arguments unchanged. Every other command (state, start, kill, delete, exec, features,
--version, ...) goes to the real runtime untouched, so its output is byte-identical.
During `create` stdio belongs to the container: nothing is printed or read; errors go
to the --log file, as one JSON line when --log-format is json.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import OcishimError, SystemFailure, UsageError
from ..files import write_atomically
from ..profile.parse import read_json
from .config import dumps, rewrite_for_container
from .settings import load_settings, log

# Global flags of runc and crun that take a value; every other global flag is a switch.
VALUE_FLAGS = frozenset({"--log", "--log-format", "--root", "--criu", "--rootless",
                         "--cgroup-manager", "--log-level"})
SWITCH_FLAGS = frozenset({"--debug", "--systemd-cgroup", "--help", "-h", "--version", "-v"})
OWN_FLAG = "--ocishim-runtime"
# Set in the real runtime's environment. Seeing it on entry means the "real runtime"
# started ocishim-runtime again (a script around it, a copy): without this check that
# is an endless exec loop, which argv[0] alone cannot see. Runtimes give a container
# the config's process.env, not their own, so it never reaches a container.
EXEC_MARK = "OCISHIM_RUNTIME_EXEC"
PATCHED_COMMANDS = ("create", "run")
BUNDLE_FLAGS = ("--bundle", "-b")


@dataclass
class Invocation:
    argv: list[str]  # for the real runtime: without --ocishim-runtime
    globals: dict[str, str] = field(default_factory=dict)
    command: str | None = None
    command_index: int = -1
    real_runtime: str | None = None


def parse(argv: Sequence[str]) -> Invocation:
    """Split a runc command line into global flags, the command and its arguments."""
    out: list[str] = []
    inv = Invocation(out)
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name == OWN_FLAG:
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(OWN_FLAG, "needs a path")
                value, i = args[i + 1], i + 1
            inv.real_runtime = value
            i += 1
            continue
        if inv.command is None and arg.startswith("-"):
            if name in VALUE_FLAGS:
                if not eq:
                    if i + 1 >= len(args):
                        raise UsageError(name, "needs a value")
                    out.append(arg)
                    i += 1
                    value = arg = args[i]  # the value is appended below, in place of the flag
                inv.globals[name] = value
            elif name in SWITCH_FLAGS or name.startswith("--"):
                inv.globals[name] = value if eq else "true"
            else:
                raise UsageError(arg, "unknown global flag")
        elif inv.command is None:
            inv.command, inv.command_index = arg, len(out)
        out.append(arg)
        i += 1
    return inv


def bundle_of(inv: Invocation) -> str:
    """The bundle directory of a create/run: --bundle/-b, or the current directory."""
    rest = inv.argv[inv.command_index + 1:]
    for i, arg in enumerate(rest):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name in BUNDLE_FLAGS:
            if eq:
                return value
            if i + 1 < len(rest):
                return rest[i + 1]
            raise UsageError(name, "needs a value")
    return os.getcwd()


def find_real_runtime(inv: Invocation, configured: str | None) -> str:
    """The runtime to exec: --ocishim-runtime, $OCISHIM_RUNTIME, the settings, then runc in PATH."""
    if os.environ.get(EXEC_MARK):
        raise UsageError(OWN_FLAG, f"real runtime {os.environ[EXEC_MARK]} ran ocishim-runtime "
                                   "again: it is ocishim-runtime itself")
    me = {os.path.realpath(sys.argv[0]), os.path.realpath(__file__)}
    choice = inv.real_runtime or os.environ.get("OCISHIM_RUNTIME") or configured
    candidates = [choice] if choice else [
        os.path.join(d, "runc") for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)]
    for path in candidates:
        resolved = path if os.sep in path else shutil.which(path)
        if not resolved or not os.access(resolved, os.X_OK) or os.path.isdir(resolved):
            if choice:
                raise UsageError(OWN_FLAG, f"real runtime {path!r} is not an executable")
            continue
        if os.path.realpath(resolved) in me:
            if choice:
                raise UsageError(OWN_FLAG, f"{path} is ocishim-runtime itself")
            continue
        return resolved
    raise UsageError(OWN_FLAG, "no real runtime: set OCISHIM_RUNTIME, \"runtime\" in the "
                               "settings, or pass --ocishim-runtime PATH")


def patch_bundle(bundle: str, settings) -> str:
    """Rewrite bundle/config.json in place; returns what was done, for the log."""
    path = os.path.join(bundle, "config.json")
    config = read_json(path)
    result = rewrite_for_container(config, settings, path)
    for warning in result.patched.compiled.warnings if result.patched else ():
        log(settings, "warning", f"{path}: {warning}", stderr=False)
    if result.config is None:
        return "no linux.seccomp: no filter, config left unchanged"
    try:
        write_atomically(path, dumps(result.config).encode())
    except OSError as exc:
        raise SystemFailure(path, f"cannot rewrite: {exc.strerror}") from None
    return f"patched {path} (--enosys {result.patched.mode}), {len(result.patched.program)} instructions"


def report(inv: Invocation, message: str) -> None:
    """An error for the runtime's caller: one line in --log (JSON if asked), never stdio."""
    logfile = inv.globals.get("--log")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if inv.globals.get("--log-format") == "json":
        line = json.dumps({"level": "error", "msg": f"ocishim: {message}", "time": now})
    else:
        line = f'time="{now}" level=error msg="ocishim: {message}"'
    if logfile:
        try:
            with open(logfile, "a") as f:
                f.write(line + "\n")
            return
        except OSError:
            pass
    if inv.command not in PATCHED_COMMANDS:
        print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    inv = Invocation(argv)
    try:
        inv = parse(argv)
        settings = load_settings()
        real = find_real_runtime(inv, settings.runtime)
        if inv.command in PATCHED_COMMANDS:
            from .. import libseccomp

            libseccomp.require()
            done = patch_bundle(bundle_of(inv), settings)
            log(settings, "info", f"{inv.command}: {done}", stderr=False)
    except OcishimError as exc:
        report(inv, str(exc))
        return 1
    try:
        os.environ[EXEC_MARK] = real
        os.execv(real, [real] + inv.argv)
    except OSError as exc:
        report(inv, f"cannot exec {real}: {exc.strerror}")
        return 1
    return 1  # not reached
