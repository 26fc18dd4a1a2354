"""`ocishim run`'s own way in: its plain command lines parsed without argparse, and the
error handling every command shares (cli.main uses both).

bin/ocishim starts `ocishim run` here, so that a container run through a compiled-filter
cache hit does not load the whole CLI module (2 ms, against `runc run`'s 60: issue 11);
what this parser does not take goes to cli.main, whose argparse has the messages.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


# Defaults the parser and _plain_run share.
DEFAULT_RUNTIME = "crun"
DEFAULT_ENOSYS = "unnamed"
UNKNOWN_SYSCALL = ("warn", "fail")  # the first is the default
DEFAULT_AUDIT_SOCKET = "/run/ocishim/agent/agent.sock"
# `ocishim run`'s options by their whole names: dest, and whether a value follows.
_RUN_OPTIONS = {"--runtime": ("runtime", True), "--id": ("id", True),
                "--runtime-arg": ("runtime_arg", True), "--enosys": ("enosys", True),
                "--emulate-kernel": ("emulate_kernel", True),
                "--unknown-syscall": ("unknown_syscall", True), "--audit": ("audit", False),
                "--audit-socket": ("audit_socket", True)}


class _Args:
    """The parsed command line, as argparse's Namespace holds it."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)


def _plain_run(argv: Sequence[str]) -> _Args | None:
    """`ocishim run ...` parsed without argparse, for the plain spellings only: the whole
    option names (`--name value` with a value that does not start with "-", or
    `--name=value`), --audit, and one BUNDLE that does not start with "-". Anything else
    (--help, an abbreviation, a mistake) gives None: argparse parses it, with its
    messages. argparse's import (re, enum, gettext) is most of a cache hit's start-up;
    tests/test_cli.py checks that both parsers agree.
    """
    values: dict[str, object] = {
        "command": "run", "func": cmd_run, "runtime": DEFAULT_RUNTIME, "id": None,
        "runtime_arg": [], "enosys": DEFAULT_ENOSYS, "emulate_kernel": None,
        "unknown_syscall": UNKNOWN_SYSCALL[0], "audit": False, "audit_socket": DEFAULT_AUDIT_SOCKET}
    bundle = None
    i = 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            if bundle is not None:
                return None
            bundle = arg
            continue
        name, eq, value = arg.partition("=")
        option = _RUN_OPTIONS.get(name)
        if option is None:
            return None
        dest, takes_value = option
        if not takes_value:
            if eq:
                return None
            values[dest] = True
            continue
        if not eq:
            if i >= len(argv) or argv[i].startswith("-"):
                return None
            value, i = argv[i], i + 1
        if dest == "runtime_arg":
            values[dest].append(value)  # type: ignore[attr-defined]
        elif dest == "unknown_syscall" and value not in UNKNOWN_SYSCALL:
            return None
        else:
            values[dest] = value
    if bundle is None:
        return None
    return _Args(bundle=bundle, **values)


def _mode(args):
    """--enosys and --emulate-kernel, checked: (Mode, emulated version or None)."""
    from .modes import parse_kernel, parse_mode

    mode = parse_mode(args.enosys)
    emulate = parse_kernel(args.emulate_kernel, "--emulate-kernel") if args.emulate_kernel else None
    return mode, emulate


def cmd_run(args) -> int:
    """Run a bundle with crun or runc under the patched filter."""
    from .integrations.run import run

    mode, emulate = _mode(args)
    return run(args.bundle, args.runtime, args.id, mode, emulate, args.runtime_arg,
               unknown_fail=args.unknown_syscall == "fail",
               audit_socket=args.audit_socket if args.audit else None)


def guarded(args) -> int:  # noqa: ANN001  argparse's Namespace or _Args
    """Run the parsed command: its exit code, and every failure as one line on stderr."""
    from .errors import OcishimError

    try:
        if args.command != "help":  # help must work even where libseccomp is too old
            # By ctypes: the binding's import (20 ms and more) waits for a command that compiles.
            from .filtercache import require_libseccomp

            require_libseccomp()
        return args.func(args)
    except OcishimError as exc:
        print(f"ocishim: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not a user error: say so, keep the details on request
        text = " ".join(str(exc).split())  # one line, whatever the exception carries
        print(f"ocishim: internal error: {type(exc).__name__}: {text}", file=sys.stderr)
        if os.environ.get("OCISHIM_DEBUG"):
            import traceback

            traceback.print_exc()
        return 1


def main_run(argv: Sequence[str]) -> int:
    """`ocishim run ...` (argv without the program name): parsed here when plain, else by
    cli.main."""
    args = _plain_run(argv)
    if args is None:
        from .cli import main

        return main(list(argv))
    from .startup import site_directories

    site_directories()  # a -IS start: the binding's import sets site up (libseccomp.py)
    return guarded(args)
