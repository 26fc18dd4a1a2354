"""`ocishim install`: wire ocishim into one engine's configuration, and nothing else.

    podman-hook  the hooks.d file that runs `ocishim hook precreate` (its own file)
    containerd   a runtime `ocishim` (runc v2 shim, BinaryName ocishim-runtime) in config.toml
    docker       a runtime `ocishim` in daemon.json, runtimeArgs naming the settings file
    crio         a drop-in /etc/crio/crio.conf.d/10-ocishim.conf with runtime `ocishim`

The paths written into an engine's config are absolute and exist: an engine runs
them later, from another working directory and PATH, and a wrong one shows only then
(podman even skips a hook whose path is missing, silently). So ocishim names itself by
the path it was started from, never by a PATH lookup, and a relative or missing
--ocishim, wrapper or settings file is refused before anything is written.

The engine's file is edited as text where a rewrite would lose the administrator's
comments (TOML): ocishim's part sits between two marker lines, replaced on the next
install. A file that already defines the runtime outside the markers is refused
rather than guessed at. Before a change the old file is copied to FILE.ocishim.bak;
the new one replaces it atomically (files.write_atomically: no symlink followed).
`--dry-run` prints the unified diff and writes nothing. Restarting the engine is left
to the administrator (or the Kubernetes installer), since that is not a config edit.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .errors import SystemFailure, UsageError

ENGINES = ("podman-hook", "containerd", "docker", "crio")
DEFAULT_FILES = {
    "podman-hook": "/etc/containers/oci/hooks.d",  # a directory: the hook file goes in it
    "containerd": "/etc/containerd/config.toml",
    "docker": "/etc/docker/daemon.json",
    "crio": "/etc/crio/crio.conf.d/10-ocishim.conf",
}
BACKUP_SUFFIX = ".ocishim.bak"
BEGIN = "# BEGIN ocishim install (ocishim replaces this block on the next install)"
END = "# END ocishim install"
SETTINGS_FLAG = "--ocishim-config"  # the wrapper's own flag: integrations/wrapper.py
# containerd's CRI plugin, by config version: where its runtimes table lives.
_CRI_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}


@dataclass(frozen=True)
class Request:
    """What to install: the engine, its config file, the paths to write into it."""

    engine: str
    target: str  # the engine's config file (for podman-hook: the hooks directory)
    ocishim: str  # absolute path of ocishim
    wrapper: str  # absolute path of ocishim-runtime
    settings: str | None  # ocishim's settings file, or None for the default
    name: str  # the runtime's name in the engine ("ocishim")


@dataclass(frozen=True)
class Change:
    """The file to write and its old and new text (old None: the file does not exist)."""

    path: str
    old: str | None
    new: str

    def diff(self) -> str:
        """A unified diff, old to new, as `diff -u` prints it."""
        before = (self.old or "").splitlines(keepends=True)
        lines = difflib.unified_diff(before, self.new.splitlines(keepends=True),
                                     self.path if self.old is not None else "/dev/null", self.path)
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                       for line in lines)


def own_path() -> str:
    """The absolute path this ocishim was started from (the console script), not PATH's."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) != "ocishim":
        raise UsageError("--ocishim", f"cannot tell this ocishim's own path (started as {argv0!r}): "
                                      "give its absolute path")
    return os.path.abspath(argv0)


def executable(path: str, what: str) -> str:
    """path, refused unless absolute and an executable regular file."""
    if not os.path.isabs(path):
        raise UsageError(what, f"{path!r} is relative: the engine runs it from elsewhere; "
                               "give an absolute path")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(what, f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK):
        raise UsageError(what, f"{path}: not an executable file")
    return path


def settings_file(path: str) -> str:
    """path, refused unless absolute, present, trusted and valid (what the hook will read)."""
    from .integrations.settings import load_settings

    if not os.path.isabs(path):
        raise UsageError("--config", f"{path!r} is relative: give an absolute path")
    if not os.path.isfile(path):
        # The hook and the wrapper would take a missing file for the defaults: a typo
        # here would silently install another mode than the one meant.
        raise UsageError("--config", f"{path}: no such settings file")
    load_settings(path)  # untrusted or malformed: refused now, not at the first container
    return path


def read_text(path: str) -> str | None:
    """The engine's file as text, None when it does not exist; symlinks and others refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(path, "not a regular file (a symlink, directory or device): "
                               "ocishim edits only a regular file in place")
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 22)
    except OSError as exc:
        raise SystemFailure(path, f"cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(path, "not UTF-8 text") from None


# ---------------------------------------------------------------- one function per engine

def podman_hook(req: Request) -> Change:
    from .integrations.hook import HOOKS_D_NAME, hooks_d_entry

    path = os.path.join(req.target, HOOKS_D_NAME)
    new = json.dumps(hooks_d_entry(req.ocishim, req.settings), indent=2) + "\n"
    return Change(path, read_text(path), new)


def docker(req: Request) -> Change:
    """daemon.json with runtimes[name] set; every other key kept, in its order."""
    old = read_text(req.target)
    config: dict[str, Any] = {}
    if old is not None and old.strip():
        config = _json_object(old, req.target)
    runtimes = config.get("runtimes", {})
    if not isinstance(runtimes, dict):
        raise UsageError(f"{req.target}: runtimes", "must be an object")
    entry: dict[str, Any] = {"path": req.wrapper}
    if req.settings:
        entry["runtimeArgs"] = [f"{SETTINGS_FLAG}={req.settings}"]
    config["runtimes"] = {**runtimes, req.name: entry}
    return Change(req.target, old, json.dumps(config, indent=2) + "\n")


def _json_object(text: str, path: str) -> dict[str, Any]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise UsageError(path, f"duplicate key {key!r}: dockerd would refuse it")
            seen[key] = value
        return seen

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except ValueError as exc:
        raise UsageError(path, f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(path, "must be a JSON object")
    return value


def containerd(req: Request) -> Change:
    """config.toml with ocishim's block for runtime `name` (and runc's, where the file has none)."""
    import tomllib

    old = read_text(req.target)
    body = _without_block(old or "", req.target)
    try:
        parsed = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(req.target, f"not valid TOML: {exc}") from None
    version = parsed.get("version", 1 if body.strip() else 2)
    if version not in _CRI_PLUGIN:
        raise UsageError(f"{req.target}: version", f"unknown containerd config version {version!r}")
    plugin = _CRI_PLUGIN[version]
    runtimes = _dig(parsed, ["plugins", plugin, "containerd", "runtimes"])
    if req.name in runtimes:
        raise UsageError(req.target, f"already defines runtime {req.name!r} outside ocishim's block: "
                                     "remove it, or choose another --name")
    table = f'plugins."{plugin}".containerd.runtimes'
    lines = [BEGIN]
    if not body.strip():
        lines.append(f"version = {version}")
    if "runc" not in runtimes:
        # A runtimes table in the file replaces containerd's built-in one: without runc
        # listed again, default_runtime_name "runc" names nothing and CRI does not load.
        lines += [f"[{table}.runc]", '  runtime_type = "io.containerd.runc.v2"']
    lines += [f"[{table}.{_toml_key(req.name)}]", '  runtime_type = "io.containerd.runc.v2"',
              f"  [{table}.{_toml_key(req.name)}.options]",
              f"    BinaryName = {json.dumps(req.wrapper)}", END]
    new = _append(body, "\n".join(lines) + "\n")
    try:
        check = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(req.target, f"cannot add a runtime table to this file's layout ({exc}); "
                                     "add it by hand (README: containerd)") from None
    added = _dig(check, ["plugins", plugin, "containerd", "runtimes", req.name, "options"])
    if added.get("BinaryName") != req.wrapper:
        raise UsageError(req.target, "the runtime table did not land where containerd reads it; "
                                     "add it by hand (README: containerd)")
    return Change(req.target, old, new)


def crio(req: Request) -> Change:
    """CRI-O's drop-in file: runtime `name` with ocishim-runtime as its runtime_path."""
    old = read_text(req.target)
    name = _toml_key(req.name)
    new = (f"# Written by `ocishim install crio`. CRI-O reads every file in crio.conf.d.\n"
           f"[crio.runtime.runtimes.{name}]\n"
           f"runtime_path = {json.dumps(req.wrapper)}\n"
           f'runtime_type = "oci"\n'
           f'runtime_root = "/run/runc"\n')
    return Change(req.target, old, new)


_BUILD: dict[str, Callable[[Request], Change]] = {
    "podman-hook": podman_hook, "containerd": containerd, "docker": docker, "crio": crio}


def _toml_key(name: str) -> str:
    """A bare TOML key, or a quoted one."""
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else json.dumps(name)


def _dig(obj: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    for key in keys:
        value = obj.get(key, {})
        obj = value if isinstance(value, dict) else {}
    return obj


def _without_block(text: str, path: str) -> str:
    """text without ocishim's block (and the blank line put before it)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == END]
    if not starts and not ends:
        return text
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise UsageError(path, "ocishim's marker lines are not one BEGIN ... END pair: "
                               "fix the file by hand")
    first = starts[0]
    if first > 0 and lines[first - 1].strip() == "":
        first -= 1
    return "".join(lines[:first] + lines[ends[0] + 1:])


def _append(body: str, block: str) -> str:
    if not body:
        return block
    return body + ("" if body.endswith("\n") else "\n") + "\n" + block


# ---------------------------------------------------------------- the command

def plan(engine: str, target: str | None, ocishim: str | None, wrapper: str | None,
         settings: str | None, name: str) -> Change:
    """Check the paths and build the change; nothing is written."""
    if engine not in _BUILD:
        raise UsageError("install", f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    if not name or any(c in name for c in "\n\r\"\\") or len(name) > 64:
        raise UsageError("--name", f"not a usable runtime name: {name!r}")
    target = target or DEFAULT_FILES[engine]
    if not os.path.isabs(target):
        raise UsageError("--file", f"{target!r} is relative: give an absolute path")
    ocishim = executable(ocishim or own_path(), "--ocishim")
    wrapper = executable(wrapper or os.path.join(os.path.dirname(ocishim), "ocishim-runtime"),
                         "--wrapper")
    if settings is not None:
        settings = settings_file(settings)
        if engine in ("containerd", "crio"):
            raise UsageError("--config", f"{engine} passes no arguments to a runtime: the wrapper "
                                         "reads /etc/ocishim/config.json there (or $OCISHIM_CONFIG "
                                         f"in {engine}'s environment)")
    return _BUILD[engine](Request(engine, target, ocishim, wrapper, settings, name))


def apply(change: Change) -> str | None:
    """Back up the old file, then write the new one atomically; returns the backup's path."""
    from .files import write_atomically

    if change.old == change.new:
        return None
    directory = os.path.dirname(change.path)
    backup = None
    try:
        os.makedirs(directory, exist_ok=True)
        if change.old is not None:
            backup = change.path + BACKUP_SUFFIX
            write_atomically(backup, change.old.encode())
            mode = stat.S_IMODE(os.lstat(change.path).st_mode)
            os.chmod(backup, mode, follow_symlinks=False)
        write_atomically(change.path, change.new.encode())  # a new file gets 0644
    except OSError as exc:
        raise SystemFailure(exc.filename or change.path, f"cannot write: {exc.strerror}") from None
    return backup
