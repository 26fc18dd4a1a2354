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

Start-up is part of every run (issue 11: with a compiled-filter cache hit, at most 1.5x
`runc run`), so this module imports no more than it uses: processes are started with
os.posix_spawn, not subprocess (which brings selectors, threading and contextlib); the
private directory is made and removed with os calls, not tempfile and shutil (random,
fnmatch, bz2, lzma); Prepared is a plain class, not a dataclass; signals are handled
through _signal, the signal module's C half, without the enums it builds at import
(enum, functools and collections). A runtime whose file is named runc is taken for runc
(named_kind); any other is asked its `--version`, which runs while the config is read
and rewritten.
"""

from __future__ import annotations

import _signal  # the signal module without its enums: enum, functools and collections
import os
import posixpath
import sys

from ..errors import ProfileError, SystemFailure, UsageError

TYPE_CHECKING = False  # typing costs every run a few ms: its names are for the checker only
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from ..modes import Mode, Version

KNOWN_RUNTIMES = ("crun", "runc")
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
# Hooks runc 1.1.5 starts from its own process, whose working directory is the bundle;
# createContainer and startContainer hooks are started by `runc init` instead.
RUNC_PARENT_HOOKS = ("prestart", "createRuntime", "poststart", "poststop")
BIND_OPTIONS = ("bind", "rbind")  # the options that set MS_BIND in runc's specconv
SUN_PATH_MAX = 107  # a unix socket path longer than this cannot be connected to


# Python starts with SIGPIPE and SIGXFSZ ignored; a child gets them back at their
# defaults, as subprocess's restore_signals gives them.
_RESTORED = (_signal.SIGPIPE, _signal.SIGXFSZ)
PROBE_TIMEOUT = 30.0  # seconds for `RUNTIME --version`
# `runc run` (1.1.5) deletes its container on every way out but its own death by a
# signal (run's destroy on success and on failure); so the delete afterwards, a whole
# runtime start, is left out for it when it exits. Other runtimes always get one.
SELF_DELETING = ("runc",)


def find_runtime(name: str) -> str:
    """A runtime by name (crun, runc) or path; a clear error when it is not there."""
    if os.sep in name:
        if not (os.path.isfile(name) and os.access(name, os.X_OK)):
            raise UsageError("--runtime", f"{name} is not an executable file")
        return name
    path = _which(name)
    if path is None:
        known = ", ".join(KNOWN_RUNTIMES)
        raise UsageError("--runtime", f"runtime {name!r} not found in PATH (known: {known}, or a path)")
    return path


def _which(name: str) -> str | None:
    """shutil.which(name) for a name without a slash, without importing shutil."""
    path = os.environ.get("PATH")
    if path is None:
        try:
            path = os.confstr("CS_PATH") or os.defpath
        except (AttributeError, ValueError):
            path = os.defpath
    for directory in dict.fromkeys(path.split(os.pathsep)) if path else ():
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate) and os.access(candidate, os.F_OK | os.X_OK) \
                and not os.path.isdir(candidate):
            return candidate
    return None


def _spawn(argv: Sequence[str], stdin: int | None = None, stdout: int | None = None,
           stderr: int | None = None) -> int:
    """Start argv[0] (a path) with our environment, fds 0-2 replaced where given; its pid.

    An OSError when it cannot be started, as subprocess raises it.
    """
    actions = [(os.POSIX_SPAWN_DUP2, fd, target)
               for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)) if fd is not None]
    return os.posix_spawn(argv[0], list(argv), os.environ, file_actions=actions,
                          setsigdef=_RESTORED)


def _wait(pid: int) -> int:
    """pid's exit code as subprocess gives it: -N for a death by signal N."""
    try:
        _, status = os.waitpid(pid, 0)  # retried after a forwarded signal (PEP 475)
    except ChildProcessError:  # SIGCHLD ignored by whoever started us: reaped already
        return 0
    return os.waitstatus_to_exitcode(status)


def _quietly(argv: Sequence[str]) -> int:
    """Run argv to its end, its output to /dev/null (stdin ours); its exit code."""
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        pid = _spawn(argv, stdout=null, stderr=null)
    finally:
        os.close(null)
    return _wait(pid)


class _Probe:
    """`RUNTIME --version`, started at once and read when its answer is needed, so that
    the runtime's start-up overlaps with reading and rewriting the config."""

    __slots__ = ("pid", "fd")

    def __init__(self, binary: str) -> None:
        self.pid: int | None = None
        self.fd: int | None = None
        read_end, write_end = os.pipe()
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            self.pid = _spawn([binary, "--version"], stdin=null, stdout=write_end, stderr=null)
            self.fd = read_end
        except OSError:
            os.close(read_end)  # then it gets the portable temporary bundle, which any runtime reads
        finally:
            os.close(write_end)
            os.close(null)

    def kind(self) -> str | None:
        """crun or runc, as the output's first word says (within PROBE_TIMEOUT), else None;
        reaps the probe."""
        import select
        import time

        if self.fd is None:
            return None
        chunks: list[bytes] = []
        deadline = time.monotonic() + PROBE_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    return None  # hung: killed below, as subprocess.run's timeout does
                data = os.read(self.fd, 65536)
                if not data:
                    break
                chunks.append(data)
        finally:
            self.close()
        text = b"".join(chunks).decode(errors="replace")
        return next((k for k in KNOWN_RUNTIMES if text.startswith(f"{k} version")), None)

    def close(self) -> None:
        """Stop and reap the probe if it still runs (a bundle that failed meanwhile)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.pid is not None:
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except ProcessLookupError:  # exited, not yet reaped: waited for below
                pass
            _wait(self.pid)
            self.pid = None


def named_kind(binary: str) -> str | None:
    """"runc" for a runtime whose file is named runc, without asking it; else None (ask).

    The name decides only what is safe either way: the runc way is the temporary bundle,
    which any runtime reads (crun too), and crun's `run` deletes its container on exit
    as runc's does. Only crun's --config needs the runtime's own word, since runc
    refuses that flag. Asking costs a whole Go start beside every `ocishim run`.
    """
    return "runc" if os.path.basename(os.path.realpath(binary)).startswith("runc") else None


def bundle_dir(bundle: str) -> str:
    """The directory a runtime would be given as --bundle for BUNDLE (a directory or its config)."""
    if os.path.isdir(bundle):
        return bundle
    return os.path.dirname(bundle) or "."


class Prepared:
    """The private directory to remove afterwards, and how the runtime is told of the bundle.

    A plain class: a dataclass costs `ocishim run` the dataclasses module."""

    __slots__ = ("tmp", "run_args")

    def __init__(self, tmp: str, run_args: tuple[str, ...]) -> None:
        self.tmp = tmp
        self.run_args = run_args  # what goes between `run` and the container id

    def __repr__(self) -> str:
        return f"Prepared(tmp={self.tmp!r}, run_args={self.run_args!r})"


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


_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


def read_bundle(bundle: str) -> tuple[dict[str, Any], str]:
    """The bundle's config.json (BUNDLE is its directory or the file), decoded by
    profile.parse's rules, and its path.

    Only decoded here: the rewrite checks the whole config (rule 11) and parses the
    profile, or on a cache hit checks what lies outside the cached profile.
    """
    from ..profile.document import read_json

    source = bundle
    if os.path.isdir(bundle):
        source = os.path.join(bundle, "config.json")
        if not os.path.lexists(source):
            raise ProfileError(bundle, "bundle directory has no config.json")
    config = read_json(source)
    if not isinstance(config, dict):
        raise ProfileError(source, "expected a JSON object at the top level, got "
                                   f"{_JSON_KINDS.get(type(config), 'something else')}")
    if source == bundle:  # a file: a config, or a profile of another kind
        from ..profile.parse import detect

        if detect(config) != "config":
            raise UsageError(bundle, "ocishim run takes a bundle directory or its config.json")
    return config, source


def patched_config(bundle: str, mode: Mode, emulate: Version | None, unknown_fail: bool,
                   audit_socket: str | None = None) -> tuple[dict[str, Any], str | None]:
    """The bundle's config rewritten for every runtime (the rewrite's notes on stderr), and
    its linux.seccomp as JSON text when the compiled-filter cache's Filter holds it."""
    config, source = read_bundle(bundle)
    if audit_socket is not None:
        result = _rewrite_audited(config, source, mode, emulate, unknown_fail, audit_socket)
    else:
        result = _rewrite_cached(config, source, mode, emulate, unknown_fail)
    if result.config is not None:
        config = result.config
    for note in _notes(result):
        print(f"ocishim: {note}", file=sys.stderr)
    root = config.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise ProfileError("root.path", "a bundle needs root.path (a string)")
    done = getattr(result, "filter", None)
    return config, (done.seccomp if done is not None and result.config is not None else None)


def _without_crun_program(config: dict[str, Any]) -> None:
    """Take crun's program (run.oci.seccomp_bpf_data) out of a config runc gets: runc
    compiles the rewritten linux.seccomp and ignores the annotation, but still decodes,
    stores and hands on its 10-50 KB (2-3 ms of a `runc run`). Taken out, not left as the
    bundle had it: a crun under runc's name then compiles the rewritten profile too."""
    from ..filtercache import BPF_ANNOTATION

    annotations = config.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(BPF_ANNOTATION, None)


def _private_dir(prefix: str) -> str:
    """tempfile.mkdtemp(prefix=prefix) without importing tempfile: a new directory, 0700,
    in $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp or the working directory, the first
    where one can be made."""
    candidates = [os.environ[name] for name in ("TMPDIR", "TEMP", "TMP") if os.environ.get(name)]
    candidates += ["/tmp", "/var/tmp", "/usr/tmp"]
    try:
        candidates.append(os.getcwd())
    except OSError:
        candidates.append(os.curdir)
    problem: OSError | None = None
    for base in candidates:
        for _ in range(100):
            path = os.path.abspath(os.path.join(base, prefix + os.urandom(6).hex()))
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError:
                continue
            except OSError as exc:
                problem = problem or exc
                break
    where = problem.filename if problem and isinstance(problem.filename, str) else candidates[0]
    raise SystemFailure(where, "cannot make the temporary bundle: "
                               f"{problem.strerror if problem else 'no usable directory'}")


def _remove(tmp: str) -> None:
    """shutil.rmtree(tmp, ignore_errors=True), without shutil for what ocishim put there
    (config.json and symlinks); anything else (a hook's own files) goes through shutil."""
    try:
        with os.scandir(tmp) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    raise IsADirectoryError(entry.path)
                os.unlink(entry.path)
        os.rmdir(tmp)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def write_bundle(config: dict[str, Any], directory: str, crun: bool,
                 seccomp_text: str | None = None) -> Prepared:
    """Put the patched config into a new private directory; how to run it.

    For runc (crun=False) the paths runc resolves against its bundle are made absolute
    first, and the directory gets a symlink to each entry of the original.
    seccomp_text: linux.seccomp as jsontext.dumps writes it, used as it is unless the
    resolution changed that object (a relative listenerPath).
    """
    from ..profile.jsontext import dumps

    linux = config.get("linux")
    seccomp = linux.get("seccomp") if isinstance(linux, dict) else None
    listener = seccomp.get("listenerPath") if isinstance(seccomp, dict) else None
    try:
        if not crun:
            resolve_like_runc(config, directory)
    except OSError as exc:
        raise SystemFailure(directory, f"cannot resolve the bundle directory: {exc.strerror}") from None
    if seccomp_text is not None and isinstance(seccomp, dict) and seccomp.get("listenerPath") == listener:
        text = dumps(config, {id(seccomp): seccomp_text})
    else:
        text = dumps(config)
    tmp = _private_dir("ocishim-bundle-")
    config_path = os.path.join(tmp, "config.json")
    try:
        with open(config_path, "x") as f:
            f.write(text)
        if not crun:
            _link_entries(directory, tmp)
    except OSError as exc:
        _remove(tmp)
        where = exc.filename if isinstance(exc.filename, str) else tmp
        raise SystemFailure(where, f"cannot make the temporary bundle: {exc.strerror}") from None
    if crun:
        return Prepared(tmp, ("--bundle", directory, "--config", config_path))
    return Prepared(tmp, ("--bundle", tmp))


def run(bundle: str, runtime: str = "crun", container_id: str | None = None,
        mode: Mode | None = None, emulate: Version | None = None,
        runtime_args: Sequence[str] = (), unknown_fail: bool = False,
        audit_socket: str | None = None) -> int:
    """Run the bundle with the runtime; returns the container's exit code.

    mode: the --enosys mode, unnamed when None."""
    if mode is None:
        from ..modes import Mode

        mode = Mode("unnamed")
    binary = find_runtime(runtime)
    cid = container_id or f"ocishim-{os.urandom(6).hex()}"
    base = [binary, *runtime_args]
    # The delete below would remove a container of that name that is not ours.
    if container_id is not None and _exists(base, cid):
        raise UsageError("--id", f"a container {cid!r} already exists ({binary} state {cid})")
    child: int | None = None
    running = deleted = False
    pending: list[int] = []
    previous = {}

    def forward(signum, _frame):
        if child is None:
            pending.append(signum)  # before the runtime starts: do not start it
        elif running:
            try:
                os.kill(child, signum)
            except ProcessLookupError:  # reaped a moment ago
                pass

    # Handlers first, so that a signal cannot end this process between creating the
    # temporary bundle and removing it.
    for sig in FORWARDED:
        previous[sig] = _signal.signal(sig, forward)
    probe: _Probe | None = None
    kind = named_kind(binary)
    tmp: str | None = None
    try:
        if kind is None:
            probe = _Probe(binary)
        config, seccomp_text = patched_config(bundle, mode, emulate, unknown_fail, audit_socket)
        if probe is not None:
            kind = probe.kind()
        if kind == "runc":
            _without_crun_program(config)
        prepared = write_bundle(config, bundle_dir(bundle), kind == "crun", seccomp_text)
        tmp = prepared.tmp
        if pending:
            return 128 + pending[0]
        child = _spawn(base + ["run", *prepared.run_args, cid])
        running = True
        if pending:  # arrived while the runtime was being started, when child was still None
            os.kill(child, pending[0])
        code = _wait(child)
        running = False
        deleted = code >= 0 and kind in SELF_DELETING  # by the runtime itself
        return code if code >= 0 else 128 - code
    except OSError as exc:
        raise SystemFailure(binary, f"cannot start the runtime: {exc.strerror}") from None
    finally:
        if probe is not None:
            probe.close()
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
        if child is not None and not deleted:
            try:
                _quietly([*base, "delete", "--force", cid])
            except OSError:
                pass
        if tmp is not None:
            _remove(tmp)


def _exists(base: Sequence[str], cid: str) -> bool:
    """Whether the runtime (with its global flags) has a container of this id."""
    try:
        return _quietly([*base, "state", cid]) == 0
    except OSError as exc:
        raise SystemFailure(base[0], f"cannot start the runtime: {exc.strerror}") from None
