"""`ocishim-runtime`: a runc-compatible wrapper for containerd, Docker, CRI-O and Kubernetes.

On `create` and `run` it rewrites the bundle's config.json (temp file + rename, so a
kill leaves the old file or the new one), then execv's the real runtime with the
arguments unchanged. Every other command (state, start, kill, delete, exec, features,
--version, ...) goes to the real runtime untouched, so its output is byte-identical.

Pass-through is decided from argv alone and never depends on the settings file: a
broken, missing or untrusted settings file must not stop `kill`, `delete` or `state`,
or containers could not even be cleaned up. That path imports nothing but os and sys
(ocishim.errors on a failure; ocishim.files to read a settings file that exists, and
json only where that file could name a runtime), so it costs little more than starting
Python. Only `create` and `run` read the settings and patch.

During `create` stdio belongs to the container: nothing is printed or read; errors,
expected or not, go to the --log file as one line (JSON when --log-format is json,
runc's format), and to stderr only when there is no --log. The wrapper always exits 1
on a failure, as runc does; containerd shows the log line in its error.
"""

import os
import sys

# Annotations are evaluated (no `from __future__ import annotations`: the __future__
# module is one more import), so the checker's names are written as strings.
TYPE_CHECKING = False  # typing, collections.abc and contextlib cost pass-through 2-10 ms
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# Nothing from the package at import time, not even ocishim.errors: the pass-through
# path must not pay for (or break on) the pipeline. ocishim.errors is imported where an
# error is raised or caught; everything else in _patch.

# Global flags of runc and crun that take a value; every other global flag is a switch.
VALUE_FLAGS = frozenset({"--log", "--log-format", "--root", "--criu", "--rootless",
                         "--cgroup-manager", "--log-level"})
SWITCH_FLAGS = frozenset({"--debug", "--systemd-cgroup", "--help", "-h", "--version", "-v"})
OWN_FLAG = "--ocishim-runtime"
# The settings file for this runtime entry, for engines that pass arguments but no
# environment (Docker's runtimeArgs). A flag of the administrator's, so trusted like
# $OCISHIM_CONFIG; removed from the command line like --ocishim-runtime.
CONFIG_FLAG = "--ocishim-config"
# The wrapper's own version; `--version` must stay the real runtime's, byte for byte.
VERSION_FLAG = "--ocishim-version"
# Set in the real runtime's environment. Seeing it on entry means the "real runtime"
# started ocishim-runtime again (a script around it, a copy): without this check that
# is an endless exec loop, which argv[0] alone cannot see. Runtimes give a container
# the config's process.env, not their own, so it never reaches a container.
EXEC_MARK = "OCISHIM_RUNTIME_EXEC"
RUNTIME_ENV = "OCISHIM_RUNTIME"
PATCHED_COMMANDS = ("create", "run")
# The same file as settings.DEFAULT_PATH and $OCISHIM_CONFIG (settings.py is not
# imported on pass-through; a test checks that the two agree).
SETTINGS_ENV = "OCISHIM_CONFIG"
DEFAULT_SETTINGS = "/etc/ocishim/config.json"
# A log line stays one readable line whatever a hostile config put into a message.
MAX_MESSAGE = 4096


class Invocation:
    """A parsed command line. A plain class: dataclasses would cost pass-through ~20 ms."""

    __slots__ = ("argv", "globals", "command", "command_index", "real_runtime",
                 "settings", "own_version", "error")

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv  # for the real runtime: without ocishim's own flags
        self.globals: dict[str, str] = {}
        self.command: str | None = None
        self.command_index = -1
        self.real_runtime: str | None = None  # --ocishim-runtime
        self.settings: str | None = None  # --ocishim-config
        self.own_version = False  # --ocishim-version
        self.error: str | None = None  # the command line could not be parsed

    @property
    def patches(self) -> bool:
        """create/run: stdio is the container's. An unparsable line that names either is
        treated the same way, since it may be one."""
        if self.command is not None:
            return self.command in PATCHED_COMMANDS
        return self.error is not None and any(a in PATCHED_COMMANDS for a in self.argv)


def parse(argv: "Sequence[str]") -> Invocation:
    """Split a runc command line into global flags, the command and its arguments.

    A malformed line gives an Invocation whose `error` says why, with what was parsed
    before it (the --log flags, so that the error can go there).
    """
    out: list[str] = []
    inv = Invocation(out)
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in (OWN_FLAG, CONFIG_FLAG):
            if not eq:
                if i + 1 >= len(args):
                    inv.error = f"{name}: needs a path"
                    break
                value, i = args[i + 1], i + 1
            if name == OWN_FLAG:
                inv.real_runtime = value
            else:
                inv.settings = value
            i += 1
            continue
        if inv.command is None and arg == VERSION_FLAG:
            inv.own_version = True
            i += 1
            continue
        if inv.command is None and arg.startswith("-"):
            if name in VALUE_FLAGS:
                if not eq:
                    if i + 1 >= len(args):
                        inv.error = f"{name}: needs a value"
                        break
                    out.append(arg)
                    i += 1
                    value = arg = args[i]  # the value is appended below, in place of the flag
                inv.globals[name] = value
            elif name in SWITCH_FLAGS or name.startswith("--"):
                inv.globals[name] = value if eq else "true"
            else:
                inv.error = f"{arg}: unknown global flag"
                break
        elif inv.command is None:
            inv.command, inv.command_index = arg, len(out)
        out.append(arg)
        i += 1
    if inv.error is not None:
        inv.argv = list(argv)  # for `patches`: the whole line, not the part parsed
    return inv


# The options of `create` and `run`, as each runtime's parser reads them: name -> takes a value.
# runc (urfave/cli on Go's flag package): one or two dashes, `=value` or the next argument,
# no abbreviations, options also after the container id, the last one counts.
_RUNC_OPTIONS = {"bundle": True, "b": True, "console-socket": True, "pid-file": True,
                 "preserve-fds": True, "no-pivot": False, "no-new-keyring": False,
                 "detach": False, "d": False, "keep": False, "no-subreaper": False}
# crun (argp, in order): `--long[=value]` with unambiguous prefixes, `-b DIR` or `-bDIR`,
# options only before the container id; `--config`/`-f` names the config file.
_CRUN_LONG = {"bundle": True, "config": True, "console-socket": True, "preserve-fds": True,
              "pid-file": True, "no-pivot": False, "no-subreaper": False,
              "no-new-keyring": False, "detach": False}
_CRUN_SHORT = {"b": "bundle", "f": "config", "d": "detach"}


def _runc_reads(rest: "Sequence[str]") -> tuple[str | None, str | None]:
    from ..errors import UsageError

    bundle = None
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            continue  # the container id; runc takes options after it too
        if arg.startswith("---"):
            raise UsageError(arg, "bad flag syntax")
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in _RUNC_OPTIONS:
            raise UsageError(arg, "not an option of runc's create/run")
        if _RUNC_OPTIONS[name] and not eq:
            if i >= len(rest):
                raise UsageError(arg, "needs a value")
            value, i = rest[i], i + 1
        if name in ("bundle", "b"):
            bundle = value
    return bundle, None


def _crun_reads(rest: "Sequence[str]") -> tuple[str | None, str | None]:
    from ..errors import UsageError

    found: dict[str, str] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break  # in order: the container id ends the options
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            matches = [o for o in _CRUN_LONG if o == name] or [o for o in _CRUN_LONG if o.startswith(name)]
            if len(matches) != 1:
                raise UsageError(arg, "not an option of crun's create/run" if not matches
                                 else f"ambiguous: {', '.join(matches)}")
            name = matches[0]
            if _CRUN_LONG[name]:
                if not eq:
                    if i >= len(rest):
                        raise UsageError(arg, "needs a value")
                    value, i = rest[i], i + 1
                found[name] = value
            elif eq:
                raise UsageError(arg, "takes no value")
            continue
        cluster = arg[1:]
        for j, letter in enumerate(cluster):
            name = _CRUN_SHORT.get(letter)
            if name is None:
                raise UsageError(arg, f"-{letter} is not an option of crun's create/run")
            if _CRUN_LONG[name]:
                value = cluster[j + 1:]
                if not value:
                    if i >= len(rest):
                        raise UsageError(arg, "needs a value")
                    value, i = rest[i], i + 1
                found[name] = value
                break
    return found.get("bundle"), found.get("config")


def runtime_kind(real: str) -> str:
    """Whose command line the real runtime reads: runc, crun, or unknown (either)."""
    name = os.path.basename(os.path.realpath(real))
    return "crun" if name.startswith("crun") else "runc" if name.startswith("runc") else "unknown"


def config_of(inv: Invocation, kind: str) -> str:
    """The config.json the real runtime will read for this create/run, as an absolute path.

    Read the way that runtime parses its options. For a runtime of unknown kind, a
    command line that runc and crun would read differently is refused: ocishim must
    patch the file the runtime loads, or a pod's own run.oci.seccomp_bpf_data stays.
    """
    from ..errors import UsageError

    rest = inv.argv[inv.command_index + 1:]
    readers = {"runc": (_runc_reads,), "crun": (_crun_reads,)}.get(kind, (_runc_reads, _crun_reads))
    seen = {_resolve(*reader(rest)) for reader in readers}
    if len(seen) != 1:
        raise UsageError(" ".join(rest), "runc and crun would read this command line differently; "
                                         "use --bundle DIR")
    return seen.pop()


def _resolve(bundle: str | None, config: str | None) -> str:
    cwd = os.getcwd()
    bundle = os.path.join(cwd, bundle) if bundle else cwd
    if config is None or config == "config.json":  # crun: that exact name is the bundle's
        return os.path.join(bundle, "config.json")
    return os.path.join(cwd, config)  # crun resolves any other name before it enters the bundle


# ------------------------------------------------------------------ the real runtime

def settings_path(inv: "Invocation | None" = None) -> str:
    """The settings file create/run read: --ocishim-config, $OCISHIM_CONFIG, else the system's."""
    if inv is not None and inv.settings:
        return inv.settings
    return os.environ.get(SETTINGS_ENV) or DEFAULT_SETTINGS


def runtime_from_settings(path: str | None = None) -> str | None:
    """The settings' "runtime" for a pass-through; None when the file cannot give one.

    Never an error: pass-through must reach a runtime whatever state the settings are
    in (create and run report a broken file; they are the ones that need it). The file
    is trusted on the same terms as for create (files.read_trusted: only root can have
    written it); one that fails them names nothing, since its runtime would run as root.
    """
    path = path or settings_path()
    if not os.path.lexists(path):
        return None  # the usual case without settings: no import, no parse
    from ..errors import OcishimError
    from ..files import read_trusted

    try:
        data = read_trusted(path, "settings file")
    except (OSError, OcishimError):
        return None
    if b"runtime" not in data and b"\\u" not in data:
        return None  # no key can spell it, so json (and re, its decoder's) is not needed
    import json

    try:
        values = json.loads(data)  # as load_settings reads it: the same file, the same runtime
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return None
    runtime = values.get("runtime") if isinstance(values, dict) else None
    return runtime if isinstance(runtime, str) and runtime else None


def find_real_runtime(inv: Invocation, configured: str | None) -> str:
    """The runtime to exec: --ocishim-runtime, $OCISHIM_RUNTIME, `configured`, then runc in PATH."""
    if os.environ.get(EXEC_MARK):
        raise _refused(f"real runtime {os.environ[EXEC_MARK]} ran ocishim-runtime again: "
                       "it is ocishim-runtime itself")
    me = {os.path.realpath(sys.argv[0]), os.path.realpath(__file__)}
    choice = inv.real_runtime or os.environ.get(RUNTIME_ENV) or configured
    candidates = [choice] if choice else [
        os.path.join(d, "runc") for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)]
    for path in candidates:
        resolved = path if os.sep in path else _which(path)
        if not resolved or not os.access(resolved, os.X_OK) or os.path.isdir(resolved):
            if choice:
                raise _refused(f"real runtime {path!r} is not an executable")
            continue
        if os.path.realpath(resolved) in me:
            if choice:
                raise _refused(f"{path} is ocishim-runtime itself")
            continue
        return resolved
    raise _refused("no real runtime: set OCISHIM_RUNTIME, \"runtime\" in the settings, "
                   "or pass --ocishim-runtime PATH")


def _refused(message: str) -> Exception:
    """The UsageError for --ocishim-runtime (ocishim.errors imported only for an error)."""
    from ..errors import UsageError

    return UsageError(OWN_FLAG, message)


def _which(name: str) -> str | None:
    """shutil.which without importing shutil (and fnmatch, re) on the pass-through path."""
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(d or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


# ------------------------------------------------------------------ create and run

def patch_config(path: str, settings, log) -> str:
    """Rewrite the config.json at path in place; returns what was done, for the log."""
    from .. import filtercache
    from ..errors import ProfileError, SystemFailure
    from ..files import write_atomically
    from ..profile.jsontext import dumps
    from ..profile.parse import read_json

    config = read_json(path)
    cache, problem = filtercache.open_cache(filtercache.location(settings))
    if problem:
        log(settings, "warning", f"{path}: {problem}", stderr=False)
    try:
        result = filtercache.rewrite_config(config, path, settings, cache)
    except RecursionError:
        # The decoder takes nesting the rewrite (copy.deepcopy, recursive checks) cannot:
        # only the config's depth gets there, so it is an input error at the file.
        raise ProfileError(path, "nested too deeply to rewrite") from None
    done = result.filter
    for warning in done.warnings if done else ():
        log(settings, "warning", f"{path}: {warning}", stderr=False)
    for note in done.notes if done else ():
        log(settings, "info", f"{path}: {note}", stderr=False)
    if result.config is None:
        return "no linux.seccomp: no filter, config left unchanged"
    try:
        write_atomically(path, dumps(result.config).encode())
    except OSError as exc:
        raise SystemFailure(path, f"cannot rewrite: {exc.strerror}") from None
    return (f"patched {path} (--enosys {done.mode}), {done.instructions} instructions"
            + (" (compiled-filter cache)" if result.cached else ""))


def _patch(inv: Invocation, seen: dict) -> str:
    """Settings, real runtime, libseccomp check and the rewrite; returns the runtime to exec.

    `seen` gets the settings once read, so that a refusal is logged where they say.
    """
    _whole_site()
    from ..errors import UsageError
    from ..filtercache import require_libseccomp
    from .log import log
    from .settings import load_settings

    if inv.settings is not None and not os.path.isfile(inv.settings):
        # A named file that is missing is a mistake, not a wish for the defaults.
        raise UsageError(CONFIG_FLAG, f"{inv.settings}: no such settings file")
    settings = seen["settings"] = load_settings(settings_path(inv))  # a broken file: no container
    real = find_real_runtime(inv, settings.runtime)
    require_libseccomp()  # without the binding's import: a cache hit never needs it
    done = patch_config(config_of(inv, runtime_kind(real)), settings, log)
    log(settings, "info", f"{inv.command}: {done}", stderr=False)
    return real


def _log_refusal(inv: Invocation, settings, message: str) -> None:
    """The refusal in ocishim's own log too (the settings' target, else the journal,
    syslog or the default file), where an administrator looks later; --log is the
    caller's and may be gone with the container."""
    try:
        from .log import log

        log(settings, "error", f"{inv.command} refused: {message}", stderr=False)
    except Exception:  # noqa: BLE001  why: the caller's --log line is the report; a broken
        pass  # log module must not replace it with another failure


def _std_fds_open() -> None:
    """Put /dev/null on any of fds 0-2 the caller left closed, for good.

    Otherwise a file opened while patching could land on fd 1 or 2, and the silencing
    below would juggle a closed descriptor. Checked in order, so the lowest free one,
    which os.open returns, is the one missing.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _stdio_silenced():  # noqa: ANN202  a context manager; contextlib only on create
    """fds 1 and 2 on /dev/null meanwhile, restored after (_silenced)."""
    from contextlib import contextmanager

    return contextmanager(_silenced)()


def _silenced() -> "Iterator[None]":
    """fds 1 and 2 on /dev/null meanwhile, restored after.

    During create they are the container's stdio. Errors are caught and logged, but
    this also holds for what no except clause sees: a warning printed by a library, a
    message written by C code. Restored before the exec, which must hand them on.
    """
    _std_fds_open()
    saved = [os.dup(fd) for fd in (1, 2)]  # >= 3 now, and close-on-exec
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for fd in (1, 2):
            os.dup2(null, fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:  # what Python buffered meanwhile goes to /dev/null, not out at exit
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


def create_or_run(inv: Invocation) -> int:
    """Patch the bundle, then exec the real runtime; on any failure one log line and exit 1."""
    from ..errors import OcishimError

    message = None
    seen: dict = {}
    with _stdio_silenced():
        try:
            real = _patch(inv, seen)
        except OcishimError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001  why: fail closed with one line, never a traceback
            message = f"internal error: {type(exc).__name__}: {exc}"
        if message is not None:
            _log_refusal(inv, seen.get("settings"), message)
    if message is not None:
        report(inv, message)
        return 1
    return _exec(inv, real)


# ------------------------------------------------------------------ the rest

def report(inv: Invocation, message: str) -> None:
    """An error for the runtime's caller: one line in --log (JSON if asked), never stdio
    during create/run; stderr otherwise when there is no --log."""
    import datetime
    import json

    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if inv.globals.get("--log-format") == "json":
        line = json.dumps({"level": "error", "msg": f"ocishim: {message}", "time": now})
    else:  # logrus text, as runc writes it; the quoted value escapes newlines
        line = f"time=\"{now}\" level=error msg={json.dumps(f'ocishim: {message}')}"
    logfile = inv.globals.get("--log")
    if logfile:
        try:
            # Not through a symlink (the bundle's directory may be another user's), and
            # never blocking on a FIFO nobody reads: the container is waiting.
            fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
            return
        except OSError:
            pass
    if not inv.patches or not logfile:
        try:
            os.write(2, (line + "\n").encode())
        except OSError:
            pass


def _exec(inv: Invocation, real: str) -> int:
    try:
        os.environ[EXEC_MARK] = real
        os.execv(real, [real] + inv.argv)
    except OSError as exc:
        report(inv, f"cannot exec {real}: {exc.strerror}")
    return 1


def pass_through(inv: Invocation) -> int:
    """Every command but create/run: exec the real runtime, whatever the settings' state."""
    try:
        configured = None
        if not (inv.real_runtime or os.environ.get(RUNTIME_ENV)):
            configured = runtime_from_settings(settings_path(inv))
        real = find_real_runtime(inv, configured)
    except Exception as exc:
        from ..errors import OcishimError  # only now: ocishim's own errors are reported

        if not isinstance(exc, OcishimError):
            raise
        report(inv, str(exc))
        return 1
    return _exec(inv, real)


def version_text() -> str:
    """ocishim's version, the libseccomp it loads and the kernel its syscall table reaches."""
    _whole_site()
    from .. import __version__

    lines = [f"ocishim-runtime version {__version__}"]
    try:
        from .. import libseccomp

        lines.append(f"libseccomp: {'.'.join(map(str, libseccomp.version()))}")
    except Exception as exc:  # noqa: BLE001  why: a missing library is worth reporting, not a crash
        lines.append(f"libseccomp: not loaded ({type(exc).__name__}: {exc})")
    from .. import syscalls

    newest = max(syscalls.since(arch, nr) or (0, 0)
                 for arch in syscalls.arches() for nr in syscalls.numbers(arch))
    lines.append(f"syscall table: Linux {syscalls.format_version(newest)}")
    return "\n".join(lines) + "\n"


def _whole_site() -> None:
    """site's whole set-up (ocishim/startup.py) for create, run and --ocishim-version:
    the libseccomp binding, psutil."""
    from ..startup import whole_site

    whole_site()


def main(argv: "Sequence[str] | None" = None) -> int:
    inv = parse(list(sys.argv[1:] if argv is None else argv))
    if inv.error is not None:
        report(inv, inv.error)
        return 1
    if inv.own_version:
        sys.stdout.write(version_text())
        return 0
    if inv.patches:
        return create_or_run(inv)
    return pass_through(inv)
