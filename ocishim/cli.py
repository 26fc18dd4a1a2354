"""The `ocishim` command: argument parsing and printing only."""

from __future__ import annotations

import os
import sys

# typing, json, traceback and argparse (with re and enum, most of a cache hit's start-up)
# cost every command: each is imported where it is used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

from . import __version__
from .cli_run import (DEFAULT_AUDIT_SOCKET, DEFAULT_ENOSYS, DEFAULT_RUNTIME, UNKNOWN_SYSCALL,
                      _mode, _plain_run, cmd_run, guarded)
from .errors import BpfError, UsageError


# The kernel takes at most 4096 instructions (32 KiB); a file far beyond that is not a
# filter, and reading it whole (or an endless pipe) would only exhaust memory.
MAX_PROGRAM_BYTES = 1 << 20


def _read_program(path: str, endian: str):
    """A raw filter from a file, or from stdin when path is `-`."""
    from .bpf.insn import decode

    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_PROGRAM_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_PROGRAM_BYTES + 1)
    except OSError as exc:
        raise UsageError(where, exc.strerror or str(exc)) from None
    if len(data) > MAX_PROGRAM_BYTES:
        raise BpfError(where, f"larger than {MAX_PROGRAM_BYTES // 1024} KiB: not a seccomp filter "
                              "(the kernel takes at most 4096 instructions, 32 KiB)")
    try:
        return decode(data, endian)
    except BpfError as exc:
        raise BpfError(where, exc.message) from None


def _parse_int(text: str, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(what, f"not an integer: {text!r}") from None
    if not -(2**63) <= value < 2**64:
        raise UsageError(what, f"does not fit in 64 bits: {text!r}")
    return value & (2**64 - 1)


def _arch(name: str, what: str = "ARCH"):
    from .arch import BY_NAME, lookup, spellings
    from .explain import closest

    arch = lookup(name)
    if arch is None:
        near = closest(name.lower(), spellings())
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise UsageError(what, f"unknown architecture {name!r}{hint} (known: {', '.join(BY_NAME)}, "
                               "and Go, Docker and Debian names such as amd64, arm64, i386, armhf)")
    return arch


def _parse_kernel(text: str, what: str) -> tuple[int, int]:
    from . import syscalls

    try:
        return syscalls.parse_version(text)
    except ValueError as exc:
        raise UsageError(what, str(exc)) from None


def _load(args):
    from .profile import load

    caps = None
    if args.caps is not None:
        caps = frozenset(c.strip() for c in args.caps.split(",") if c.strip())
    kernel = _parse_kernel(args.kernel, "--kernel") if args.kernel else None
    loaded = load(args.profile, caps=caps, kernel=kernel)
    if loaded.profile is None:
        raise UsageError(args.profile, "has no seccomp profile (linux.seccomp is absent): no filter")
    return loaded.profile


def cmd_disasm(args) -> int:
    """Print a listing of a raw filter."""
    from .bpf.disasm import disassemble

    program = _read_program(args.file, args.endian)
    little = None if args.endian == "host" else args.endian == "little"
    sys.stdout.write(disassemble(program, little))
    return 0


def cmd_emu(args) -> int:
    """Run one call through a raw filter and print the action."""
    from . import syscalls
    from .actions import describe
    from .bpf import emu
    from .bpf.disasm import disassemble
    from .explain import parse_nr, unknown_name_text

    arch = _arch(args.arch)
    nr = parse_nr(args.syscall)
    if nr is None:
        if arch.name not in syscalls.arches():
            raise UsageError("SYSCALL", f"ocishim has no syscall table for {arch.name}: "
                                        "give the number instead of the name")
        nr = syscalls.resolve(arch.name, args.syscall)
        if nr is None:
            raise UsageError("SYSCALL", unknown_name_text(args.syscall, [arch.name]))
    program = _read_program(args.file, args.endian)
    if len(args.args) > 6:
        raise UsageError("ARG", "a syscall has at most 6 arguments")
    values = [_parse_int(a, f"ARG {i}") for i, a in enumerate(args.args)]
    result = emu.run(program, arch, nr, values)
    if args.trace:
        listing = disassemble(program, arch.little_endian).splitlines()
        for pc in result.trace:
            print(listing[pc + 1])
    print(describe(result.ret))
    return 0


def _patched(args):
    from .patch import patch_profile

    mode, emulate = _mode(args)
    profile = _load(args)
    patched = patch_profile(profile, mode, emulate, unknown_fail=args.unknown_syscall == "fail")
    for warning in patched.compiled.warnings:
        print(f"ocishim: warning: {warning}", file=sys.stderr)
    for note in patched.notes:  # the check's repairs and kept stricter answers (patch.check)
        print(f"ocishim: {note}", file=sys.stderr)
    return profile, patched


def cmd_explain(args) -> int:
    """Print, per (arch, syscall), the answer before and after patching."""
    from .explain import explain, select

    profile, patched = _patched(args)
    compiled = patched.compiled
    arches = compiled.arches
    if args.arch:
        wanted = _arch(args.arch, "--arch")
        arches = tuple(a for a in arches if a == wanted)
        if not arches:
            raise UsageError("--arch", f"{wanted.name} is not in this filter "
                                       f"({', '.join(a.name for a in compiled.arches)})")
    only = select(args.syscalls, arches)
    entries = explain(profile, arches, compiled.program, patched.program, only)
    if args.host_libseccomp:
        from .hostlib import annotate, parse_version

        entries = annotate(entries, profile, parse_version(args.host_libseccomp))
    if args.json:
        import json

        json.dump([e.as_json() for e in entries], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    mode = str(patched.mode) + (f", emulating kernel {args.emulate_kernel}" if args.emulate_kernel else "")
    if args.host_libseccomp:
        print(f"runc:, crun: what plain runc and crun answer on a host with libseccomp {args.host_libseccomp}")
    print(f"{'arch':<8} {'nr':>10}  {'syscall':<24} {'before (libseccomp)':<22} after (--enosys {mode})")
    for e in entries:
        mark = "" if e.before == e.after else "  *"
        nr = f"{e.nr:#x}" if e.nr >= 0x10000 else str(e.nr)
        name = e.name if e.name is not None else "(not in table)"
        plain = "".join(f"  {runtime}: {value}" for runtime, value in e.plain)
        print(f"{e.arch:<8} {nr:>10}  {name:<24} {e.before:<22} {e.after}{mark}{plain}")
        for r in e.rules:
            print(f"{'':<8} {'':>10}  {'':<24}   {r}")
    _print_runtime_notes(profile, patched)
    return 0


def _print_runtime_notes(profile, patched) -> None:
    """What crun, runc and other JSON readers get, and what neither can do."""
    from . import libseccomp, syscalls
    from .explain import runtime_notes

    notes = runtime_notes(profile, patched)
    version = ".".join(map(str, libseccomp.version()))
    lacking = sorted({r.name for r in patched.compiled.pending})
    print()
    print(f"host libseccomp {version}")
    if lacking:
        print(f"  does not know {len(lacking)} name(s) the profile uses; plain runc and crun drop "
              f"their rules, ocishim compiles them: {', '.join(lacking)}")
    print(f"crun (run.oci.seccomp_bpf_data): the program above, exactly "
          f"({notes.crun_instructions} instructions)")
    print(f"runc and other JSON readers: the profile plus an ERRNO(ENOSYS) rule for "
          f"{len(notes.json_names)} name(s)"
          + (f", {len(notes.json_names_unknown_here)} of them unknown to libseccomp {version} "
             "(a runtime skips names its libseccomp cannot resolve)" if notes.json_names_unknown_here else ""))
    if notes.runc_max:
        print("  runc's own stub answers ENOSYS above the highest number its libseccomp names ("
              + ", ".join(f"{a} {m}" for a, m in notes.runc_max.items()) + ")")
    if notes.runc_enosys_over_rules:
        print("  so under runc these syscalls the profile has rules for answer ENOSYS instead:")
        for arch, name, nr in notes.runc_enosys_over_rules:
            print(f"    {arch}: {name}({nr})")
    if notes.neither:
        by_arch: dict[str, list[str]] = {}
        for arch, nr in notes.neither:
            label = f"{nr:#x}" if nr >= 0x10000 else str(nr)
            by_arch.setdefault(arch, []).append(f"{syscalls.name(arch, nr)}({label})")
        print("  E(A) syscalls neither the JSON rule nor runc's stub answers ENOSYS for; "
              "only crun's program does:")
        for arch, items in by_arch.items():
            print(f"    {arch}: {' '.join(items)}")


def _write_output(data: bytes, path: str | None, binary: bool) -> None:
    from .errors import SystemFailure
    from .files import write_atomically

    path = path or "-"
    if path in ("-", "/dev/stdout"):
        # /dev/stdout is a symlink (to /proc/self/fd/1), which the writer refuses:
        # here it can only mean this process's stdout.
        if binary and sys.stdout.isatty():
            raise UsageError("--format", "refusing to write a binary filter to a terminal; use -o FILE")
        sys.stdout.flush()
        path = "-"
    try:
        write_atomically(path, data, streams=True)
    except OSError as exc:
        # The system failed (a full disk, a FIFO without reader): exit 1, the old file kept.
        raise SystemFailure(path, f"cannot write: {exc.strerror or exc}") from None


def cmd_patch(args) -> int:
    """Write the patched filter (or the rewritten config) to stdout or -o FILE."""
    import base64

    from .bpf.disasm import disassemble
    from .bpf.insn import encode

    if args.format == "config":
        return _patch_config(args)
    profile, patched = _patched(args)
    program = _audited(args, profile, patched, "crun").program if args.audit else patched.program
    if args.format == "bpf":
        _write_output(encode(program), args.output, binary=True)
    elif args.format == "base64":
        _write_output(base64.b64encode(encode(program)) + b"\n", args.output, binary=False)
    else:
        _write_output(disassemble(program).encode(), args.output, binary=False)
    return 0


def _audited(args, profile, patched, loader: str):
    """--audit: the patched program with its refusals notified (ocishim/audit.py)."""
    from .audit import PLAIN, audit_program, refuse_own_listener

    refuse_own_listener(profile)
    return audit_program(patched, [c.syscall for c in PLAIN[loader]])


def _patch_config(args) -> int:
    from .integrations.config import dumps, rewrite
    from .profile import load

    mode, emulate = _mode(args)
    loaded = load(args.profile)
    if loaded.config is None:
        raise UsageError(args.profile, "--format config needs a bundle or a config.json")
    result = rewrite(loaded.config, mode, emulate, loaded.source, args.unknown_syscall == "fail")
    if result.config is None:
        print("ocishim: the config has no linux.seccomp: no filter, written unchanged", file=sys.stderr)
    elif args.audit:
        from .audit import audit_config

        audit_config(result.config, result.patched, result.enosys_names, args.audit_socket)
    _write_output(dumps(result.config or loaded.config).encode(), args.output, binary=False)
    return 0


def cmd_exec(args) -> int:
    from .load import Listener, exec_filtered

    if not args.command:
        raise UsageError("CMD", "nothing to run: ocishim exec PROFILE -- CMD [ARG...]")
    profile, patched = _patched(args)
    program = patched.program
    listener = Listener(profile.listener_path, profile.listener_metadata or "",
                        profile.field_path("listenerPath")) if profile.listener_path else None
    if args.audit:
        from .audit import metadata

        program = _audited(args, profile, patched, "exec").program
        listener = Listener(args.audit_socket, metadata(program), "--audit-socket")
    flags = patched.compiled.flags
    if listener is not None:
        from .actions import FILTER_FLAGS
        flags |= FILTER_FLAGS["SECCOMP_FILTER_FLAG_NEW_LISTENER"]
    exec_filtered(program, flags, args.command, rootfs=args.rootfs, listener=listener,
                  profile=profile)
    return 1  # not reached: exec_filtered raises before loading, or execs, or exits


def cmd_agent(args) -> int:
    """Serve listener fds and log every notified call, or summarize such a log."""
    from .agent.main import serve, summarize

    if args.summary:
        return summarize(args.summary, sys.stdout)
    return serve(args.socket, args.log, args.json)


def cmd_convert(args) -> int:
    """Write a Docker-format profile as the OCI linux.seccomp object Docker would build."""
    from .convert import convert_file, dumps

    caps = None
    if args.caps is not None:
        caps = frozenset(c.strip() for c in args.caps.split(",") if c.strip())
    kernel = _parse_kernel(args.kernel, "--kernel") if args.kernel else None
    arch = _arch(args.arch, "--arch") if args.arch else None
    seccomp = convert_file(args.profile, caps, kernel, arch)
    _write_output(dumps(seccomp).encode(), args.output, binary=False)
    return 0


def cmd_hook(args) -> int:
    """Run an OCI hook: precreate reads config.json on stdin and prints it patched."""
    from .integrations.hook import main_precreate

    # main_precreate reads sys.stdin inside its own error handling, so a bad input is
    # refused (exit 2) and logged there like any other bad config.
    return main_precreate()


def cmd_cache(args) -> int:
    """`ocishim cache stats|clear` for the directory the hook and the wrapper use."""
    from . import filtercache
    from .integrations.settings import load_settings

    where = filtercache.location(load_settings())
    if args.action == "clear":
        print(f"{where}: removed {filtercache.clear(where)} entries")
        return 0
    found = filtercache.stats(where)
    print(f"directory: {found.directory}\nstate: {found.state}\nentries: {found.entries}\n"
          f"bytes: {found.bytes} (at most {found.max_bytes})")
    return 0


def cmd_install(args) -> int:
    """Wire ocishim into one engine's config (or show the diff with --dry-run)."""
    from .install import apply, plan

    change = plan(args.what, args.file or args.dir, args.ocishim, args.wrapper, args.config, args.name)
    if args.dry_run:
        sys.stdout.write(change.diff())
        return 0
    backup = apply(change)
    print(change.path)
    if backup:
        print(f"ocishim: the previous file is in {backup}", file=sys.stderr)
    if change.old == change.new:
        print("ocishim: already installed, nothing changed", file=sys.stderr)
    elif args.what in ("containerd", "docker", "crio"):
        print(f"ocishim: restart {args.what} to load it", file=sys.stderr)
    return 0


def cmd_verify(args) -> int:
    """Prove libseccomp's program and the patched one against the profile; 3 when they differ."""
    import json

    from .verify.profile import verify

    mode, emulate = _mode(args)
    profile = _load(args)
    program = _read_program(args.program, args.endian) if args.program else None
    result = verify(profile, mode, emulate, program=program)
    if args.json:
        json.dump([{"check": r.check, "agrees": r.agrees, "paths": r.leaves, "pieces": r.pieces,
                    "differences": [d.as_json() for d in r.differences],
                    "undecided": [u.as_json() for u in r.undecided]} for r in result.reports],
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for r in result.reports:
            verdict = "agrees" if r.agrees else \
                "DIFFERS" if any(not d.known for d in r.differences) else "CANNOT DECIDE everywhere"
            print(f"{r.check}: {verdict} ({r.leaves} program paths, {r.pieces} pieces compared)")
            for item in r.differences + r.undecided:
                print(f"  {item.text()}")
        for note in result.patched.notes:
            print(note)
    return 0 if result.agrees else 3


def cmd_scan(args) -> int:
    """Predict an image's breakage before and after ocishim (ocishim/scan/)."""
    from .scan import cmd_scan as run

    return run(args, _load, _mode)


def cmd_doctor(args) -> int:
    """Print the host report (ocishim/doctor.py)."""
    from .doctor import cmd_doctor as run

    return run(args)


def cmd_inspect(args) -> int:
    """Print the filters of a running process or container (ocishim/inspect.py)."""
    from .inspect import cmd_inspect as run

    return run(args)


def cmd_log(args) -> int:
    """The recent decisions of the hook and the wrapper, read back from where they were logged."""
    import json

    from .integrations.log import entry_dict, read_recent
    from .integrations.settings import load_settings

    if args.lines < 0:
        raise UsageError("-n", "must be 0 or more")
    entries = read_recent(load_settings(), args.lines, args.file or None)
    if args.json:
        print(json.dumps([entry_dict(e) for e in entries], indent=1))
        return 0
    for e in entries:
        pid = f"[{e.pid}]" if e.pid is not None else ""
        print(f"{e.time or '?'} ocishim{pid} {e.level}: {e.message}")
    return 0


def _libseccomp_path() -> str | None:
    """The file the loaded libseccomp came from, as the dynamic loader found it."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)  # anonymous mappings have no sixth field
                if len(fields) == 6 and "/libseccomp.so" in fields[5]:
                    return fields[5].strip()
    except (OSError, IndexError):
        pass
    return None


def version_text() -> str:
    """What `ocishim --version` prints: ocishim, its libseccomp and its syscall table."""
    from . import syscalls
    from .syscalls._data import SOURCE_SHA256

    lines = [f"ocishim {__version__}"]
    try:
        from . import libseccomp

        found = ".".join(map(str, libseccomp.version()))
        lines.append(f"libseccomp {found} ({_libseccomp_path() or 'path unknown'})")
    except (ImportError, OSError, AttributeError) as exc:  # --version must answer anyway
        lines.append(f"libseccomp: cannot be loaded ({exc})")
    # The table has no version field: its newest `since` is the newest kernel it knows.
    newest = max(syscalls.since(a, nr) for a in syscalls.arches() for nr in syscalls.numbers(a))
    lines.append(f"syscall table: syscalls up to Linux {syscalls.format_version(newest)} "
                 f"(data sha256 {SOURCE_SHA256[:12]})")
    return "\n".join(lines) + "\n"


def _argparse_classes() -> tuple[type, type]:
    """argparse's formatter and --version's action, made where a parser is built."""
    import argparse

    class Formatter(argparse.RawDescriptionHelpFormatter):
        """argparse's, with its default width found without shutil: argparse imports
        shutil (and with it bz2, lzma, fnmatch) to measure the terminal for every argument
        it adds. The width is shutil.get_terminal_size()'s, less 2."""

        def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                     width: int | None = None) -> None:
            if width is None:
                width = _terminal_columns() - 2
            super().__init__(prog, indent_increment, max_help_position, width)

    class VersionAction(argparse.Action):
        def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                     help=None):
            super().__init__(option_strings, dest, nargs=0, default=default, help=help)

        def __call__(self, parser, namespace, values, option_string=None):
            sys.stdout.write(version_text())
            parser.exit(0)

    return Formatter, VersionAction


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


DESCRIPTION = """\
ocishim makes container seccomp profiles answer ENOSYS ("not implemented") instead of
EPERM for syscalls the profile has no rule for, so that newer programs fall back to
older syscalls instead of failing. It compiles the profile with libseccomp, puts a
small check in front, and hands the result to crun, runc, podman or containerd.

PROFILE is a bundle directory, a config.json, a bare linux.seccomp object or a
Docker-format profile. Exit codes: 0 success, 1 system failure, 2 bad input."""

EPILOG = """\
examples:
  ocishim explain /path/to/bundle clone3 faccessat2   what these syscalls get, before and after
  ocishim patch config.json --format base64           crun's run.oci.seccomp_bpf_data value
  ocishim patch bundle --format config -o new.json    the config rewritten for any runtime
  ocishim run bundle --runtime runc                   run a bundle with the patched filter
  ocishim help COMMAND                                more about one command"""

_MODE_HELP = """\
--enosys modes (which syscalls without a rule answer ENOSYS instead of the default):
  unnamed     every syscall that no rule of the profile names (the default)
  auto        only those added after the newest syscall the profile names
  kernel:X.Y  only those added after Linux X.Y
  max         only numbers above the highest the profile names (runc's own check)
  off         none: libseccomp's filter unchanged"""

_COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (one-line help, description, examples)
    "explain": (
        "show what each syscall gets from a profile, before and after patching",
        "For every syscall of every arch in the filter (or only those given), the answer of\n"
        "libseccomp's filter and of the patched one: ALLOW, ERRNO(EPERM), ERRNO(ENOSYS),\n"
        "KILL_PROCESS, TRAP, LOG, TRACE(n), NOTIFY, or 'depends on args' with the rule.\n"
        "A '*' marks what patching changed. Then what crun, runc and other runtimes get.",
        "examples:\n"
        "  ocishim explain config.json clone3 faccessat2\n"
        "  ocishim explain docker-default.json --arch amd64 --json\n"
        "  ocishim explain bundle --enosys kernel:5.10 0x1b3"),
    "patch": (
        "write the patched filter: raw BPF, base64, a listing, or a rewritten config.json",
        "Compile PROFILE, prepend the ENOSYS check and write the result. Raw BPF is what\n"
        "seccomp(2) takes, in host byte order; base64 is crun's run.oci.seccomp_bpf_data;\n"
        "config is the whole config.json rewritten for any runtime.",
        "examples:\n"
        "  ocishim patch config.json -o filter.bpf\n"
        "  ocishim patch config.json --format disasm | less\n"
        "  ocishim patch bundle --format config -o bundle/config.json"),
    "disasm": (
        "print a raw filter as readable instructions",
        "Print a raw sock_filter array (a file, or - for stdin) one instruction a line.",
        "examples:\n"
        "  ocishim disasm filter.bpf\n"
        "  ocishim patch config.json | ocishim disasm -"),
    "emu": (
        "run one syscall through a raw filter and print the answer",
        "Emulate the kernel's run of FILE (- for stdin) for one call on ARCH and print the\n"
        "action, in the words of explain. ARCH may be spelt as libseccomp, the OCI spec\n"
        "(SCMP_ARCH_X86_64), Go or Docker (amd64, arm64), or Debian (i386, armhf) spell it.",
        "examples:\n"
        "  ocishim emu filter.bpf amd64 clone3\n"
        "  ocishim emu filter.bpf x86_64 socket 40 --trace\n"
        "  ocishim emu filter.bpf aarch64 0x1b7"),
    "exec": (
        "load the patched filter into this process and run a command under it",
        "Set no_new_privs, load the patched filter, then execve CMD: a quick way to try a\n"
        "program under a profile without a container. Put the command after --.",
        "examples:\n"
        "  ocishim exec docker-default.json -- /bin/bash -c '[ -x /bin/ls ] && echo ok'"),
    "run": (
        "run a bundle with crun or runc under the patched filter",
        "Patch the bundle's config (the bundle itself is never written) and run it with the\n"
        "runtime. The container's exit status is ocishim's.",
        "examples:\n"
        "  ocishim run ./bundle\n"
        "  ocishim run ./bundle --runtime runc --runtime-arg=--root=/run/test"),
    "convert": (
        "write a Docker-format profile as the OCI linux.seccomp object, for ctr, runc and crun",
        "Convert PROFILE the way Docker (and containers/common for Podman, CRI-O) do when\n"
        "they build config.json: keep the rules whose includes/excludes hold for the\n"
        "capabilities, kernel and architecture given, expand archMap for that architecture,\n"
        "turn errno names into numbers. The result is what the plain runtimes read.",
        "examples:\n"
        "  ocishim convert docker-default.json -o seccomp.json\n"
        "  ctr run --seccomp-profile seccomp.json IMAGE ID CMD\n"
        "  ocishim convert docker-default.json --caps CAP_CHOWN,CAP_SYS_ADMIN --arch arm64 --kernel 5.10"),
    "hook": (
        "OCI hook for podman and buildah: patch config.json on stdin (precreate)",
        "precreate: read config.json on stdin, print it patched on stdout. podman runs it\n"
        "before creating each container; a non-zero exit refuses the container. Install\n"
        "it with `ocishim install podman-hook`.",
        "example:\n"
        "  ocishim hook precreate < config.json > patched.json"),
    "scan": (
        "predict which syscalls of an image break under a profile, before and after ocishim",
        "Read every ELF file of ROOTFS (a root file system, an OCI image layout, or a docker\n"
        "save / podman save archive, layers and whiteouts applied): the libc and its\n"
        "version, the machines, static and Go binaries. For each syscall those need ENOSYS\n"
        "for, say what the plain runtime answers (on this host, or with --host-libseccomp)\n"
        "and what it answers with ocishim, and what breaks. PROFILE defaults to Docker's\n"
        "default profile. Exit status: 0 nothing breaks after ocishim, 3 something does,\n"
        "2 bad input.",
        "examples:\n"
        "  ocishim scan /srv/rootfs/trixie docker-default-20.10.0.json\n"
        "  ocishim scan image.tar --runtime crun --json\n"
        "  ocishim scan ./oci-layout profile.json --host-libseccomp 2.4.1"),
    "doctor": (
        "report what this host's kernel, libseccomp and runtimes do with new syscalls",
        "The running kernel; the libseccomp ocishim loads, its API level and the syscalls this\n"
        "kernel has that it cannot name; for each runtime found (runc, crun): its version, the\n"
        "libseccomp it links or embeds (read from the binary), whether it takes crun's BPF\n"
        "annotation, the highest syscall number its libseccomp names (where runc's stub\n"
        "starts) and a verdict: exact, approximate (and what is lost) or broken; the cgroup\n"
        "mode; whether the podman hook and the wrapper are installed and wired in.",
        "examples:\n"
        "  ocishim doctor\n"
        "  ocishim doctor --json\n"
        "  ocishim doctor --profile docker-default.json"),
    "inspect": (
        "show the seccomp filters a running process or container has",
        "Read every seccomp filter of a process back from the kernel (ptrace: the process is\n"
        "seized, read and released; it does not notice), say whether each starts with\n"
        "ocishim's stub, runc's or none, and which syscalls the stub answers ENOSYS. With the\n"
        "container's config.json (found through the runtimes' state directories), say in\n"
        "which mode ocishim produces exactly that filter. Needs root, and no tracer already\n"
        "attached to the process.",
        "examples:\n"
        "  ocishim inspect 4242\n"
        "  ocishim inspect mycontainer --json\n"
        "  ocishim inspect 3f2a9c --root /run/docker/runtime-runc/moby"),
    "agent": (
        "the audit agent: answer and log the calls an --audit filter refuses",
        "Take listener fds on --socket (the OCI listenerPath protocol: the container state\n"
        "as JSON, the fd by SCM_RIGHTS), answer every notified call with the errno the\n"
        "filter without audit gives, and log each kind of call once, then counts. It never\n"
        "lets a call through. --summary LOG prints, per container, the refused syscalls,\n"
        "how often, and which ones ENOSYS would fix.",
        "examples:\n"
        "  ocishim agent --socket /run/ocishim/agent/agent.sock --log /var/log/ocishim/audit.log --json\n"
        "  ocishim run --audit ./bundle\n"
        "  ocishim agent --summary /var/log/ocishim/audit.log"),
    "install": (
        "wire ocishim into podman, containerd, Docker or CRI-O",
        "Write what each engine needs to run containers through ocishim, with the absolute\n"
        "paths of this ocishim and its ocishim-runtime:\n"
        "  podman-hook  the hooks.d file for `ocishim hook precreate` (give podman a hooks\n"
        "               directory of its own: CRI-O reads the default one, without precreate)\n"
        "  containerd   runtime NAME (runc v2 shim, BinaryName ocishim-runtime) in config.toml\n"
        "  docker       runtime NAME in daemon.json, with --config as runtimeArgs\n"
        "  crio         the drop-in crio.conf.d/10-ocishim.conf with runtime NAME\n"
        "Only that file is touched: the old one is kept as FILE.ocishim.bak and the new one\n"
        "replaces it atomically. Restart the engine afterwards.",
        "examples:\n"
        "  ocishim install podman-hook --dir /etc/ocishim/hooks.d\n"
        "  ocishim install containerd --dry-run\n"
        "  ocishim install docker --config /etc/ocishim/docker.json"),
}


# Every command of build_parser, those with their texts above and the others.
COMMANDS = (*_COMMANDS, "log", "verify", "cache", "help")


def _add_command(sub, name: str, formatter: type) -> argparse.ArgumentParser:
    short, description, examples = _COMMANDS[name]
    return sub.add_parser(name, help=short, description=description, epilog=examples,
                          formatter_class=formatter)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with command only that command's (the same parser for a
    command line that starts with it, built in a fraction of the time)."""
    def want(name: str) -> bool:
        return command is None or command == name

    import argparse

    formatter, version_action = _argparse_classes()
    p = argparse.ArgumentParser(prog="ocishim", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=formatter)
    p.add_argument("--version", action=version_action,
                   help="print the versions of ocishim, of the libseccomp it loads and of its syscall table")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def profile_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("profile", metavar="PROFILE",
                        help="bundle directory, config.json, linux.seccomp object or Docker profile")
        sp.add_argument("--caps", metavar="CAP,...",
                        help="capabilities for a Docker profile's includes/excludes "
                             "(default: Docker's default set)")
        sp.add_argument("--kernel", metavar="X.Y",
                        help="kernel version for a Docker profile's minKernel (default: the running kernel)")

    def audit_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--audit", action="store_true",
                        help="audit mode: refusals by the default action and the ENOSYS stub go to "
                             "`ocishim agent`, which answers with the same errno and logs them")
        sp.add_argument("--audit-socket", metavar="PATH", default=DEFAULT_AUDIT_SOCKET,
                        help="the agent's socket, the filter's listenerPath "
                             "(default: /run/ocishim/agent/agent.sock)")

    def endian_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--endian", choices=("host", "little", "big"), default="host",
                        help="byte order of FILE (default: host, what seccomp(2) takes)")

    def mode_args(sp: argparse.ArgumentParser) -> None:
        sp.epilog = f"{_MODE_HELP}\n\n{sp.epilog}" if sp.epilog else _MODE_HELP
        sp.add_argument("--enosys", metavar="MODE", default=DEFAULT_ENOSYS,
                        help="which syscalls without a rule answer ENOSYS: unnamed (default), "
                             "auto, max, off or kernel:X.Y (see below)")
        sp.add_argument("--emulate-kernel", metavar="X.Y",
                        help="also answer ENOSYS for every syscall newer than Linux X.Y, even if "
                             "allowed: test an image against an older host's kernel")
        sp.add_argument("--unknown-syscall", choices=UNKNOWN_SYSCALL, default=UNKNOWN_SYSCALL[0],
                        help="a name neither libseccomp nor ocishim's table knows: "
                             "warn and skip it (default), or fail")

    if want("explain"):
        sp = _add_command(sub, "explain", formatter)
        profile_args(sp)
        sp.add_argument("syscalls", metavar="SYSCALL", nargs="*",
                        help="only these syscalls: names, or numbers (any base); default: all")
        sp.add_argument("--arch", metavar="ARCH",
                        help="only this architecture of the filter (amd64, x86_64, arm64, i386...)")
        sp.add_argument("--json", action="store_true",
                        help="print a JSON list of {arch, name, nr, before, after} instead of a table")
        sp.add_argument("--host-libseccomp", metavar="VERSION",
                        help="also show what plain runc and crun answer on a host with this libseccomp "
                             "(2.4.1, 2.5.4, 2.5.4-debian12, 2.6.0...; JSON keys runc and crun)")
        mode_args(sp)
        sp.set_defaults(func=cmd_explain)

    if want("patch"):
        sp = _add_command(sub, "patch", formatter)
        profile_args(sp)
        mode_args(sp)
        audit_args(sp)
        sp.add_argument("--format", choices=("bpf", "base64", "disasm", "config"), default="bpf",
                        help="bpf: raw filter (default); base64: for crun's annotation; disasm: "
                             "a listing; config: the whole config.json rewritten for any runtime")
        sp.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (replaced atomically) instead of stdout")
        sp.set_defaults(func=cmd_patch)

    if want("exec"):
        sp = _add_command(sub, "exec", formatter)
        profile_args(sp)
        mode_args(sp)
        audit_args(sp)
        sp.add_argument("--rootfs", metavar="DIR", help="chroot into DIR before running CMD")
        sp.add_argument("command", metavar="CMD", nargs="*",
                        help="after --: the command and its arguments")
        sp.set_defaults(func=cmd_exec)

    if want("run"):
        sp = _add_command(sub, "run", formatter)
        sp.add_argument("bundle", metavar="BUNDLE", help="OCI bundle directory (config.json and rootfs)")
        sp.add_argument("--runtime", default=DEFAULT_RUNTIME,
                        help="crun (default), runc, or the path of a runtime with runc's command line")
        sp.add_argument("--id", help="container id (default: ocishim-<random>)")
        sp.add_argument("--runtime-arg", action="append", default=[], metavar="ARG",
                        help="a global flag for the runtime, repeatable, e.g. --runtime-arg=--root=/run/x")
        mode_args(sp)
        audit_args(sp)
        sp.set_defaults(func=cmd_run)

    if want("disasm"):
        sp = _add_command(sub, "disasm", formatter)
        sp.add_argument("file", metavar="FILE", help="raw filter file, or - for stdin")
        endian_arg(sp)
        sp.set_defaults(func=cmd_disasm)

    if want("emu"):
        sp = _add_command(sub, "emu", formatter)
        sp.add_argument("file", metavar="FILE", help="raw filter file, or - for stdin")
        sp.add_argument("arch", metavar="ARCH",
                        help="architecture: x86_64, amd64, aarch64, arm64, i386, SCMP_ARCH_ARM...")
        sp.add_argument("syscall", metavar="SYSCALL", help="syscall name, or number (0 to 0xffffffff)")
        sp.add_argument("args", metavar="ARG", nargs="*",
                        help="up to 6 arguments, 64-bit integers in any base (-100, 0x28, 0o644, 0b10)")
        sp.add_argument("--trace", action="store_true", help="also print each instruction executed")
        endian_arg(sp)
        sp.set_defaults(func=cmd_emu)

    if want("convert"):
        sp = _add_command(sub, "convert", formatter)
        sp.add_argument("profile", metavar="PROFILE", help="Docker-format profile (archMap, includes/excludes)")
        sp.add_argument("--caps", metavar="CAP,...",
                        help="the container's capabilities (default: Docker's default set)")
        sp.add_argument("--kernel", metavar="X.Y",
                        help="kernel version for minKernel conditions (default: the running kernel)")
        sp.add_argument("--arch", metavar="ARCH",
                        help="the engine's architecture (default: this host's): amd64, arm64, s390x...")
        sp.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (replaced atomically) instead of stdout")
        sp.set_defaults(func=cmd_convert)

    if want("hook"):
        sp = _add_command(sub, "hook", formatter)
        sp.add_argument("stage", choices=("precreate",), help="the hook stage; only precreate")
        sp.set_defaults(func=cmd_hook)

    if want("scan"):
        sp = _add_command(sub, "scan", formatter)
        sp.add_argument("rootfs", metavar="ROOTFS",
                        help="root file system directory, OCI image layout, or docker/podman save archive")
        sp.add_argument("profile", metavar="PROFILE", nargs="?",
                        help="bundle, config.json, linux.seccomp or Docker profile (default: Docker's "
                             "default profile where it is installed, else podman's "
                             "/usr/share/containers/seccomp.json)")
        sp.add_argument("--caps", metavar="CAP,...",
                        help="capabilities for a Docker profile's includes/excludes "
                             "(default: Docker's default set)")
        sp.add_argument("--kernel", metavar="X.Y",
                        help="kernel version for a Docker profile's minKernel (default: the running kernel)")
        sp.add_argument("--runtime", default="runc",
                        help="the plain runtime to compare with: runc (default) or crun")
        sp.add_argument("--host-libseccomp", metavar="VERSION",
                        help="the plain runtime's libseccomp, as on another host (default: this host's)")
        sp.add_argument("--json", action="store_true",
                        help="print {libc, machines, findings: [{arch, syscall, function, before, after, "
                             "breaks_before, breaks_after}]}")
        mode_args(sp)
        sp.set_defaults(func=cmd_scan)

    if want("doctor"):
        sp = _add_command(sub, "doctor", formatter)
        sp.add_argument("--profile", metavar="FILE",
                        help="also list the names of this profile the libseccomp here cannot name")
        sp.add_argument("--json", action="store_true",
                        help="print {kernel, libseccomp, runtimes, cgroup, hook, wrapper} as JSON")
        sp.set_defaults(func=cmd_doctor)

    if want("inspect"):
        sp = _add_command(sub, "inspect", formatter)
        sp.add_argument("target", metavar="PID|CONTAINER-ID",
                        help="a process id, or a container id (or a unique prefix of one)")
        sp.add_argument("--root", action="append", default=[], metavar="DIR",
                        help="also look for containers in this runtime state directory (repeatable)")
        sp.add_argument("--json", action="store_true",
                        help='print {"pid", "filters": [{"index", "length", "stub", "enosys", "matches"}]}')
        sp.add_argument("--disasm", action="store_true", help="also print each filter's instructions")
        sp.set_defaults(func=cmd_inspect)

    if want("install"):
        sp = _add_command(sub, "install", formatter)
        sp.add_argument("what", choices=("podman-hook", "containerd", "docker", "crio"),
                        help="the engine to wire ocishim into")
        sp.add_argument("--dry-run", action="store_true",
                        help="print the change as a unified diff and write nothing")
        sp.add_argument("--file", metavar="FILE",
                        help="the engine's config file (default: /etc/containerd/config.toml, "
                             "/etc/docker/daemon.json, /etc/crio/crio.conf.d/10-ocishim.conf)")
        sp.add_argument("--dir", metavar="DIR",
                        help="podman-hook: the hooks directory (default: /etc/containers/oci/hooks.d; "
                             "give podman its own with --hooks-dir, CRI-O does not know precreate)")
        sp.add_argument("--ocishim", metavar="PATH",
                        help="absolute path of ocishim (default: the path this one was started from)")
        sp.add_argument("--wrapper", metavar="PATH",
                        help="absolute path of ocishim-runtime (default: beside ocishim)")
        sp.add_argument("--config", metavar="FILE",
                        help="ocishim's settings file, which must exist: the hook's OCISHIM_CONFIG, "
                             "Docker's runtimeArgs (default: /etc/ocishim/config.json)")
        sp.add_argument("--name", default="ocishim",
                        help="the runtime's name in the engine (default: ocishim)")
        sp.set_defaults(func=cmd_install)

    if want("log"):
        sp = sub.add_parser(
            "log", help="show the recent decisions and refusals of the hook and the wrapper",
            description="Read back what `ocishim hook` and `ocishim-runtime` logged: the settings'\n"
                        "log file, else the journal (journalctl -t ocishim) or the syslog files,\n"
                        "and /var/log/ocishim.log. Newest last.",
            epilog="examples:\n  ocishim log\n  ocishim log -n 100 --json\n"
                   "  ocishim log --file /var/log/ocishim.log.1",
            formatter_class=formatter)
        sp.add_argument("-n", "--lines", type=int, default=20, metavar="N",
                        help="how many entries (default: 20)")
        sp.add_argument("--json", action="store_true",
                        help="print a JSON list of {time, pid, level, message, source}")
        sp.add_argument("--file", action="append", metavar="FILE",
                        help="read this log file instead (repeatable)")
        sp.set_defaults(func=cmd_log)

    if want("verify"):
        sp = sub.add_parser(
            "verify", help="prove the filters against the profile, for every arch, syscall and argument",
            description="Walk libseccomp's program and the patched program over all of seccomp_data\n"
                        "(every arch, syscall number and argument value, in exact regions) and compare:\n"
                        "  libseccomp vs profile: libseccomp's program against the profile's meaning;\n"
                        "  patched vs rule 1: ENOSYS inside E(A), the unpatched answers elsewhere;\n"
                        "  program vs profile (--program FILE): a raw filter from elsewhere against\n"
                        "    the meaning, ENOSYS inside E(A) of --enosys (off: none).\n"
                        "Each difference is printed with a witness (arch, syscall, arguments) that the\n"
                        "emulator confirms. [known: ...] marks differences ocishim repairs (rules of\n"
                        "names the host libseccomp lacks). Exit status: 0 all agree, 3 differences or\n"
                        "places the checker cannot decide, 2 bad input (or an instruction it cannot follow).",
            epilog="examples:\n  ocishim verify docker-default.json\n"
                   "  ocishim verify ./bundle --json\n"
                   "  ocishim verify config.json --program dumped.bpf --enosys off",
            formatter_class=formatter)
        profile_args(sp)
        mode_args(sp)
        sp.add_argument("--program", metavar="FILE", help="also check this raw filter (or - for stdin)")
        endian_arg(sp)
        sp.add_argument("--json", action="store_true",
                        help="print a JSON list of {check, agrees, differences, undecided} instead")
        sp.set_defaults(func=cmd_verify)

    if want("agent"):
        sp = _add_command(sub, "agent", formatter)
        sp.add_argument("--socket", metavar="PATH",
                        help="the socket runtimes send listener fds to (listenerPath); created 0600 "
                             "in a root-only directory")
        sp.add_argument("--log", metavar="FILE", default="-",
                        help="where events go: a file (appended) or - for stdout (default)")
        sp.add_argument("--json", action="store_true", help="one JSON object a line (what --summary reads)")
        sp.add_argument("--summary", metavar="LOG",
                        help="print, per container, the refused syscalls of a JSON log and exit")
        sp.set_defaults(func=cmd_agent)

    if want("cache"):
        sp = sub.add_parser(
            "cache", help="show or empty the compiled-filter cache of the hook, the wrapper and run",
            description="The hook, ocishim-runtime and `ocishim run` keep each filter they build in a\n"
                        "root-only directory (default /var/cache/ocishim, where it exists; \"cache\" in the\n"
                        "settings or $OCISHIM_CACHE moves it or turns it off) and reuse it for the same "
                        "profile,\n"
                        "settings, syscall table, libseccomp and ocishim. stats prints the directory, its\n"
                        "entries and size; clear removes every entry.",
            epilog="examples:\n  ocishim cache stats\n  ocishim cache clear",
            formatter_class=formatter)
        sp.add_argument("action", choices=("stats", "clear"), help="stats or clear")
        sp.set_defaults(func=cmd_cache)

    if want("help"):
        sp = sub.add_parser("help", help="show this help, or a command's", description="Show help.",
                            formatter_class=formatter)
        sp.add_argument("topic", metavar="COMMAND", nargs="?", help="the command to explain")
        sp.set_defaults(func=lambda args: _cmd_help(p, sub, args))
    return p


def _cmd_help(parser: argparse.ArgumentParser, sub, args) -> int:
    """`ocishim help [COMMAND]`: the same text as --help."""
    if args.topic is None:
        parser.print_help()
        return 0
    if args.topic not in sub.choices:
        from .explain import closest

        near = closest(args.topic, sub.choices)
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise UsageError("help", f"no command {args.topic!r}{hint} (commands: {', '.join(sub.choices)})")
    sub.choices[args.topic].print_help()
    return 0


def _hook_precreate() -> int:
    """`ocishim hook precreate` as podman runs it, without building the whole parser."""
    from .integrations.hook import run_precreate

    return run_precreate()


def _is_int(text: str) -> bool:
    try:
        int(text, 0)
    except ValueError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """The `ocishim` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .startup import site_directories, whole_site

    if argv == ["hook", "precreate"]:
        site_directories()  # started with -IS: for the binding, on a cache miss
        return _hook_precreate()  # once per container: no parser, no libseccomp binding
    args = None
    if argv[:1] == ["run"]:
        # A cache hit needs nothing a .pth file adds; the binding's import runs site's
        # whole set-up itself (libseccomp.py) when the filter is compiled.
        site_directories()
        args = _plain_run(argv)
    else:
        whole_site()
    if args is None:
        args = _parse(argv)
    return guarded(args)


def _parse(argv: list[str]):  # noqa: ANN202  argparse's Namespace
    """The command line by argparse (which exits 2 with its message on a mistake)."""
    # A command line that starts with a command needs only that command's parser; help
    # needs them all.
    first = argv[0] if argv and argv[0] in COMMANDS and argv[0] != "help" else None
    parser = build_parser(first)
    command: list[str] | None = None
    if "exec" in argv and "--" in argv[argv.index("exec"):]:
        # Everything after `--` is the command, options included.
        cut = argv.index("--", argv.index("exec"))
        argv, command = argv[:cut], argv[cut + 1:]
    args, extra = parser.parse_known_args(argv)
    if command is not None:
        args.command = list(args.command) + command
    # `explain PROFILE --json read write`: names may follow the options. A negative
    # number is kept as a SYSCALL too, so that it gets explain's range message.
    if extra and getattr(args, "command", None) == "explain" and \
            not any(e.startswith("-") and not _is_int(e) for e in extra):
        args.syscalls = list(args.syscalls) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


if __name__ == "__main__":
    sys.exit(main())
