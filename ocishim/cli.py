"""The `ocishim` command: argument parsing and printing only."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Sequence

from . import __version__
from .errors import OcishimError, UsageError


def _read_program(path: str, endian: str):
    from .bpf.insn import decode

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(path, exc.strerror or str(exc)) from None
    return decode(data, endian)


def _parse_int(text: str, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(what, f"not an integer: {text!r}") from None
    if not -(2**63) <= value < 2**64:
        raise UsageError(what, f"does not fit in 64 bits: {text!r}")
    return value & (2**64 - 1)


def _arch(name: str):
    from .arch import BY_NAME, BY_OCI

    arch = BY_NAME.get(name.lower()) or BY_OCI.get(name.upper())
    if arch is None:
        raise UsageError("ARCH", f"unknown architecture {name!r} (known: {', '.join(BY_NAME)})")
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
    from .bpf.disasm import disassemble

    program = _read_program(args.file, args.endian)
    little = None if args.endian == "host" else args.endian == "little"
    sys.stdout.write(disassemble(program, little))
    return 0


def cmd_emu(args) -> int:
    from . import syscalls
    from .actions import describe
    from .bpf import emu
    from .bpf.disasm import disassemble

    arch = _arch(args.arch)
    program = _read_program(args.file, args.endian)
    try:
        nr = int(args.syscall, 0)
    except ValueError:
        found = syscalls.resolve(arch.name, args.syscall) if arch.name in syscalls.arches() else None
        if found is None:
            raise UsageError("SYSCALL", f"unknown syscall {args.syscall!r} on {arch.name}") from None
        nr = found
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
    from .patch import parse_kernel, parse_mode, patch_profile

    profile = _load(args)
    mode = parse_mode(args.enosys)
    emulate = parse_kernel(args.emulate_kernel) if args.emulate_kernel else None
    patched = patch_profile(profile, mode, emulate, unknown_fail=args.unknown_syscall == "fail")
    for warning in patched.compiled.warnings:
        print(f"ocishim: warning: {warning}", file=sys.stderr)
    return profile, patched


def cmd_explain(args) -> int:
    from .explain import explain

    profile, patched = _patched(args)
    compiled = patched.compiled
    arches = compiled.arches
    if args.arch:
        wanted = _arch(args.arch)
        arches = tuple(a for a in arches if a == wanted)
        if not arches:
            raise UsageError("--arch", f"{wanted.name} is not in this filter "
                                       f"({', '.join(a.name for a in compiled.arches)})")
    entries = explain(profile, arches, compiled.program, patched.program, args.syscalls)
    if args.json:
        json.dump([e.as_json() for e in entries], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    mode = str(patched.mode) + (f", emulating kernel {args.emulate_kernel}" if args.emulate_kernel else "")
    print(f"{'arch':<8} {'nr':>10}  {'syscall':<24} {'before (libseccomp)':<22} after (--enosys {mode})")
    for e in entries:
        mark = "" if e.before == e.after else "  *"
        nr = f"{e.nr:#x}" if e.nr >= 0x10000 else str(e.nr)
        print(f"{e.arch:<8} {nr:>10}  {e.name:<24} {e.before:<22} {e.after}{mark}")
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
    import base64

    from .bpf.disasm import disassemble
    from .bpf.insn import encode

    if args.format == "config":
        return _patch_config(args)
    _, patched = _patched(args)
    if args.format == "bpf":
        _write_output(encode(patched.program), args.output, binary=True)
    elif args.format == "base64":
        _write_output(base64.b64encode(encode(patched.program)) + b"\n", args.output, binary=False)
    else:
        _write_output(disassemble(patched.program).encode(), args.output, binary=False)
    return 0


def _patch_config(args) -> int:
    from .integrations.config import dumps, rewrite
    from .patch import parse_kernel, parse_mode
    from .profile import load

    loaded = load(args.profile)
    if loaded.config is None:
        raise UsageError(args.profile, "--format config needs a bundle or a config.json")
    emulate = parse_kernel(args.emulate_kernel) if args.emulate_kernel else None
    result = rewrite(loaded.config, parse_mode(args.enosys), emulate, loaded.source,
                     args.unknown_syscall == "fail")
    if result.config is None:
        print("ocishim: the config has no linux.seccomp: no filter, written unchanged", file=sys.stderr)
    _write_output(dumps(result.config or loaded.config).encode(), args.output, binary=False)
    return 0


def cmd_exec(args) -> int:
    from .load import Listener, exec_filtered

    if not args.command:
        raise UsageError("CMD", "nothing to run: ocishim exec PROFILE -- CMD [ARG...]")
    profile, patched = _patched(args)
    listener = Listener(profile.listener_path, profile.listener_metadata or "",
                        profile.field_path("listenerPath")) if profile.listener_path else None
    flags = patched.compiled.flags
    if listener is not None:
        from .actions import FILTER_FLAGS
        flags |= FILTER_FLAGS["SECCOMP_FILTER_FLAG_NEW_LISTENER"]
    exec_filtered(patched.program, flags, args.command, rootfs=args.rootfs, listener=listener,
                  profile=profile)
    return 1  # not reached: exec_filtered raises before loading, or execs, or exits


def cmd_run(args) -> int:
    from .integrations.run import run
    from .patch import parse_kernel, parse_mode

    mode = parse_mode(args.enosys)
    emulate = parse_kernel(args.emulate_kernel) if args.emulate_kernel else None
    return run(args.bundle, args.runtime, args.id, mode, emulate, args.runtime_arg,
               unknown_fail=args.unknown_syscall == "fail")


def cmd_hook(args) -> int:
    from .integrations.hook import main_precreate

    return main_precreate()


def cmd_install(args) -> int:
    from .integrations.hook import install

    path = install(args.dir, args.ocishim or _own_path(), args.config)
    print(path)
    return 0


def _own_path() -> str:
    import shutil

    found = shutil.which("ocishim")
    if found is None:
        raise UsageError("--ocishim", "ocishim is not in PATH: give its absolute path")
    return os.path.abspath(found)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ocishim", description=__doc__)
    p.add_argument("--version", action="version", version=f"ocishim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def profile_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("profile", metavar="PROFILE",
                        help="bundle dir, config.json, linux.seccomp object or Docker profile")
        sp.add_argument("--caps", metavar="CAP,...",
                        help="capabilities for Docker includes/excludes (default: Docker's default set)")
        sp.add_argument("--kernel", metavar="X.Y",
                        help="kernel version for Docker minKernel (default: the running kernel)")

    def endian_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--endian", choices=("host", "little", "big"), default="host",
                        help="byte order of FILE (default: host, what seccomp(2) takes)")

    def mode_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--enosys", metavar="MODE", default="unnamed",
                        help="unnamed (default), auto, max, off or kernel:X.Y")
        sp.add_argument("--emulate-kernel", metavar="X.Y",
                        help="also answer ENOSYS for every syscall newer than kernel X.Y")
        sp.add_argument("--unknown-syscall", choices=("warn", "fail"), default="warn",
                        help="a name neither libseccomp nor the table knows: warn (default) or fail")

    sp = sub.add_parser("disasm", help="human-readable listing of a raw filter")
    sp.add_argument("file", metavar="FILE")
    endian_arg(sp)
    sp.set_defaults(func=cmd_disasm)

    sp = sub.add_parser("emu", help="run one syscall through a raw filter")
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("arch", metavar="ARCH")
    sp.add_argument("syscall", metavar="SYSCALL", help="name or number")
    sp.add_argument("args", metavar="ARG", nargs="*", help="integers, any base (0x.., 0o.., 0b..)")
    sp.add_argument("--trace", action="store_true", help="print the instructions executed")
    endian_arg(sp)
    sp.set_defaults(func=cmd_emu)

    sp = sub.add_parser("explain", help="what every syscall gets from a profile")
    profile_args(sp)
    sp.add_argument("syscalls", metavar="SYSCALL", nargs="*", help="only these (names or numbers)")
    sp.add_argument("--arch", metavar="ARCH")
    sp.add_argument("--json", action="store_true")
    mode_args(sp)
    sp.set_defaults(func=cmd_explain)

    sp = sub.add_parser("patch", help="the patched filter, as raw BPF, base64 or a listing")
    profile_args(sp)
    mode_args(sp)
    sp.add_argument("--format", choices=("bpf", "base64", "disasm", "config"), default="bpf",
                    help="config: the whole config.json, rewritten for any runtime")
    sp.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
    sp.set_defaults(func=cmd_patch)

    sp = sub.add_parser("exec", help="load the patched filter (no_new_privs) and execve CMD")
    profile_args(sp)
    mode_args(sp)
    sp.add_argument("--rootfs", metavar="DIR", help="chroot into DIR first")
    sp.add_argument("command", metavar="CMD", nargs="*",
                    help="after --: the command and its arguments")
    sp.set_defaults(func=cmd_exec)

    sp = sub.add_parser("run", help="run a bundle with crun or runc under the patched filter")
    sp.add_argument("bundle", metavar="BUNDLE")
    sp.add_argument("--runtime", default="crun", help="crun (default), runc, or a path")
    sp.add_argument("--id", help="container id (default: ocishim-<random>)")
    sp.add_argument("--runtime-arg", action="append", default=[], metavar="ARG",
                    help="a global flag for the runtime, e.g. --runtime-arg=--root=/run/x")
    mode_args(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("hook", help="OCI hooks: precreate (podman, buildah)")
    sp.add_argument("stage", choices=("precreate",))
    sp.set_defaults(func=cmd_hook)

    sp = sub.add_parser("install", help="install an integration file")
    sp.add_argument("what", choices=("podman-hook",))
    sp.add_argument("--dir", default="/etc/containers/oci/hooks.d",
                    help="hooks directory (default: /etc/containers/oci/hooks.d; give podman its "
                         "own with --hooks-dir, CRI-O does not know precreate)")
    sp.add_argument("--ocishim", metavar="PATH", help="absolute path of ocishim (default: from PATH)")
    sp.add_argument("--config", metavar="FILE", help="settings file for the hook (OCISHIM_CONFIG)")
    sp.set_defaults(func=cmd_install)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if "exec" in argv and "--" in argv[argv.index("exec"):]:
        # Everything after `--` is the command, options included.
        cut = argv.index("--", argv.index("exec"))
        argv, command = argv[:cut], argv[cut + 1:]
    args, extra = parser.parse_known_args(argv)
    if command is not None:
        args.command = list(args.command) + command
    # `explain PROFILE --json read write`: names may follow the options.
    if extra and getattr(args, "command", None) == "explain" and not any(e.startswith("-") for e in extra):
        args.syscalls = list(args.syscalls) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        from . import libseccomp

        libseccomp.require()
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
        print(f"ocishim: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("OCISHIM_DEBUG"):
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
