"""`ocishim run BUNDLE`: run a bundle under the patched filter without touching it.

The user's bundle is never written: the patched config.json goes into a private
temporary directory. The bundle keeps the meaning the runtime would give it in place:
- crun reads the patched file through `--config` while `--bundle` stays the user's
  directory, so crun itself resolves every relative path against the bundle, as in
  place (crun chdirs to the bundle, realpath()s root.path, hands bind sources to
  mount(2) as they are, runs hooks there, reports the bundle to hooks).
- runc (and any other runtime) has no such flag and is given the temporary directory
  as its bundle. The paths runc 1.1.5 resolves against its bundle are made absolute
  exactly as runc would resolve them: root.path and the source of every mount with a
  `bind`/`rbind` option (Go's filepath.Join onto os.Getwd(), lexical), the paths of the
  hooks runc itself starts (prestart, createRuntime, poststart, poststop) and
  linux.seccomp.listenerPath (resolved by the kernel from runc's working directory).
  The temporary bundle also holds a symlink to each entry of the original, so that a
  hook's own relative paths and runc's check of linux.namespaces[].path find the same
  files. Left alone: what runc resolves elsewhere (other mounts' sources and namespace
  paths are opened by `runc init` from the rootfs, which is the same directory).
stdio is the container's; SIGINT/SIGTERM/SIGHUP/SIGQUIT are passed on to the runtime,
which passes them to the container; the container is deleted afterwards, and the exit
code is the container's.
"""

from __future__ import annotations

import os
import sys
import posixpath
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import ProfileError, SystemFailure, UsageError
from ..patch import Mode, Version
from ..profile import load
from ..profile.jsontext import dumps

KNOWN_RUNTIMES = ("crun", "runc")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Hooks runc 1.1.5 starts from its own process, whose working directory is the bundle;
# createContainer and startContainer hooks are started by `runc init` instead.
RUNC_PARENT_HOOKS = ("prestart", "createRuntime", "poststart", "poststop")
BIND_OPTIONS = ("bind", "rbind")  # the options that set MS_BIND in runc's specconv
SUN_PATH_MAX = 107  # a unix socket path longer than this cannot be connected to


def find_runtime(name: str) -> str:
    """A runtime by name (crun, runc) or path; a clear error when it is not there."""
    if os.sep in name:
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            raise UsageError("--runtime", f"{name} is not an executable file")
        return name
    path = shutil.which(name)
    if path is None:
        known = ", ".join(KNOWN_RUNTIMES)
        raise UsageError("--runtime", f"runtime {name!r} not found in PATH (known: {known}, or a path)")
    return path


def is_crun(binary: str) -> bool:
    """Whether the runtime is crun (which takes --config), asked by its --version."""
    try:
        out = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, errors="replace", timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False  # then it gets the portable temporary bundle, which any runtime reads
    return out.startswith("crun version")


def bundle_dir(bundle: str) -> str:
    """The directory a runtime would be given as --bundle for BUNDLE (a directory or its config)."""
    if os.path.isdir(bundle):
        return bundle
    return os.path.dirname(bundle) or "."


@dataclass(frozen=True)
class Prepared:
    """The private directory to remove afterwards, and how the runtime is told of the bundle."""

    tmp: str
    run_args: tuple[str, ...]  # what goes between `run` and the container id


def _go_clean(path: str) -> str:
    """Go's filepath.Clean (POSIX normpath, but Go also folds a leading "//")."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def go_getwd(directory: str) -> str:
    """What Go's os.Getwd() (then filepath.Abs) returns in a process whose working
    directory is `directory` and whose environment is ours: $PWD when it names that
    same directory, else the kernel's path, free of symlinks."""
    pwd = os.environ.get("PWD", "")
    if pwd.startswith("/"):
        try:
            if os.path.samestat(os.stat(pwd), os.stat(directory)):
                return _go_clean(pwd)
        except OSError:
            pass  # Go falls back to getcwd(2) as well
    return os.path.realpath(directory, strict=True)


def resolve_like_runc(config: dict[str, Any], directory: str) -> None:
    """Make absolute, in place, the paths runc 1.1.5 resolves against its bundle,
    as runc resolves them (see the module docstring). Values of an unexpected type are
    left alone: the runtime refuses them as it would in place."""
    cwd = go_getwd(directory)
    # The kernel resolves paths relative to runc's working directory: the bundle's
    # symlink-free path followed by the relative path, uncleaned, names the same file.
    physical = os.path.realpath(directory, strict=True)
    root = config.get("root")
    if isinstance(root, dict) and isinstance(root.get("path"), str) and not root["path"].startswith("/"):
        root["path"] = _go_clean(cwd + "/" + root["path"])
    mounts = config.get("mounts")
    for mount in mounts if isinstance(mounts, list) else ():
        if not isinstance(mount, dict):
            continue
        options = mount.get("options")
        if not isinstance(options, list) or not any(o in BIND_OPTIONS for o in options):
            continue
        source = mount.get("source", "")  # Go reads a missing source as "": the bundle itself
        if isinstance(source, str) and not source.startswith("/"):
            mount["source"] = _go_clean(cwd + "/" + source)
    hooks = config.get("hooks")
    for stage in RUNC_PARENT_HOOKS if isinstance(hooks, dict) else ():
        entries = hooks.get(stage)
        for hook in entries if isinstance(entries, list) else ():
            path = hook.get("path") if isinstance(hook, dict) else None
            if isinstance(path, str) and path and not path.startswith("/"):
                hook["path"] = physical + "/" + path
    linux = config.get("linux")
    seccomp = linux.get("seccomp") if isinstance(linux, dict) else None
    listener = seccomp.get("listenerPath") if isinstance(seccomp, dict) else None
    if isinstance(listener, str) and listener and not listener.startswith("/"):
        absolute = physical + "/" + listener
        # Too long for sun_path: keep it relative; the entry symlinks still resolve it.
        if len(os.fsencode(absolute)) <= SUN_PATH_MAX:
            seccomp["listenerPath"] = absolute


def _link_entries(original: str, tmp: str) -> None:
    """A symlink in tmp to each entry of the original bundle but config.json."""
    physical = os.path.realpath(original, strict=True)
    with os.scandir(physical) as entries:
        for entry in entries:
            if entry.name != "config.json":
                os.symlink(os.path.join(physical, entry.name), os.path.join(tmp, entry.name))


def _rewrite_cached(config: dict[str, Any], source: str, mode: Mode, emulate: Version | None,
                    unknown_fail: bool):
    """rewrite() with the command line's settings, through the compiled-filter cache:
    $OCISHIM_CACHE, else the system's cache directory when run as root."""
    import sys

    from .. import filtercache
    from .settings import Settings

    where = os.environ.get(filtercache.ENV) or (filtercache.DEFAULT_DIR if os.geteuid() == 0
                                                else filtercache.OFF)
    cache, problem = filtercache.open_cache(where)
    if problem:
        print(f"ocishim: warning: {problem}", file=sys.stderr)
    settings = Settings(mode=mode, emulate=emulate, unknown_fail=unknown_fail)
    return filtercache.rewrite_config(config, source, settings, cache, container=False)


def _rewrite_audited(config: dict[str, Any], source: str, mode: Mode, emulate: Version | None,
                     unknown_fail: bool, socket: str):
    """rewrite(), then audit mode (ocishim/audit.py) with the agent at socket; not cached."""
    from ..audit import audit_config
    from .config import rewrite as plain_rewrite

    result = plain_rewrite(config, mode, emulate, source, unknown_fail)
    if result.config is not None:
        audit_config(result.config, result.patched, result.enosys_names, socket)
    return result


def _notes(result) -> tuple[str, ...]:
    """The check's repairs and notices (patch.check), cached or freshly built."""
    done = getattr(result, "filter", None)
    if done is not None:
        return tuple(done.notes)
    patched = getattr(result, "patched", None)
    return tuple(patched.notes) if patched is not None else ()


def prepare_bundle(bundle: str, mode: Mode, emulate: Version | None, unknown_fail: bool,
                   crun: bool = False, audit_socket: str | None = None) -> Prepared:
    """Write the patched config into a new private directory; how to run it."""
    loaded = load(bundle)
    if loaded.config is None:
        raise UsageError(bundle, "ocishim run takes a bundle directory or its config.json")
    directory = bundle_dir(bundle)
    if audit_socket is not None:
        result = _rewrite_audited(loaded.config, loaded.source, mode, emulate, unknown_fail, audit_socket)
    else:
        result = _rewrite_cached(loaded.config, loaded.source, mode, emulate, unknown_fail)
    config = result.config if result.config is not None else loaded.config
    for note in _notes(result):
        print(f"ocishim: {note}", file=sys.stderr)
    root = config.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise ProfileError("root.path", "a bundle needs root.path (a string)")
    try:
        if not crun:
            resolve_like_runc(config, directory)
    except OSError as exc:
        raise SystemFailure(directory, f"cannot resolve the bundle directory: {exc.strerror}") from None
    tmp = tempfile.mkdtemp(prefix="ocishim-bundle-")
    config_path = os.path.join(tmp, "config.json")
    try:
        with open(config_path, "x") as f:
            f.write(dumps(config))
        if not crun:
            _link_entries(directory, tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        where = exc.filename if isinstance(exc.filename, str) else tmp
        raise SystemFailure(where, f"cannot make the temporary bundle: {exc.strerror}") from None
    if crun:
        return Prepared(tmp, ("--bundle", directory, "--config", config_path))
    return Prepared(tmp, ("--bundle", tmp))


def run(bundle: str, runtime: str = "crun", container_id: str | None = None,
        mode: Mode = Mode("unnamed"), emulate: Version | None = None,
        runtime_args: Sequence[str] = (), unknown_fail: bool = False,
        audit_socket: str | None = None) -> int:
    """Run the bundle with the runtime; returns the container's exit code."""
    binary = find_runtime(runtime)
    cid = container_id or f"ocishim-{uuid.uuid4().hex[:12]}"
    base = [binary, *runtime_args]
    # The delete below would remove a container of that name that is not ours.
    if container_id is not None and _exists(base, cid):
        raise UsageError("--id", f"a container {cid!r} already exists ({binary} state {cid})")
    proc: subprocess.Popen | None = None
    pending: list[int] = []
    previous = {}

    def forward(signum, _frame):
        if proc is None:
            pending.append(signum)  # before the runtime starts: do not start it
        elif proc.poll() is None:
            proc.send_signal(signum)

    # Handlers first, so that a signal cannot end this process between creating the
    # temporary bundle and removing it.
    for sig in FORWARDED:
        previous[sig] = signal.signal(sig, forward)
    crun = is_crun(binary)
    tmp: str | None = None
    try:
        prepared = prepare_bundle(bundle, mode, emulate, unknown_fail, crun, audit_socket)
        tmp = prepared.tmp
        if pending:
            return 128 + pending[0]
        proc = subprocess.Popen(base + ["run", *prepared.run_args, cid])
        if pending:  # arrived while Popen ran, when proc was still None
            proc.send_signal(pending[0])
        while True:
            try:
                code = proc.wait()
                break
            except InterruptedError:
                continue
        return code if code >= 0 else 128 - code
    except OSError as exc:
        raise SystemFailure(binary, f"cannot start the runtime: {exc.strerror}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc is not None:
            subprocess.run(base + ["delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _exists(base: Sequence[str], cid: str) -> bool:
    """Whether the runtime (with its global flags) has a container of this id."""
    try:
        return subprocess.run([*base, "state", cid], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError as exc:
        raise SystemFailure(base[0], f"cannot start the runtime: {exc.strerror}") from None
