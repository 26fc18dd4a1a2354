"""Write the man pages ocishim(1) and ocishim-runtime(8) and ocishim's bash completion.

Everything a user types comes from the code itself: ocishim(1) and the completion walk
ocishim.cli.build_parser() (commands, options, metavars, choices, help, examples), and
ocishim-runtime(8) takes its flags, environment variables and settings path from the
wrapper's constants. So a new option shows up in the page on the next build, and a
test (tests/test_man.py) checks the pages name every option the parser has.

    python3 scripts/gen_man.py OUTDIR    writes OUTDIR/ocishim.1, OUTDIR/ocishim-runtime.8
                                         and OUTDIR/ocishim.bash-completion

Output is deterministic: no date, no build path. Needs only the standard library and
this checkout (the parser imports nothing of libseccomp).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ocishim import __version__  # noqa: E402
from ocishim.cli import build_parser  # noqa: E402
from ocishim.integrations import wrapper  # noqa: E402

# Values for options whose help names them but that have no argparse choices.
OPTION_VALUES = {"--enosys": "unnamed auto max off kernel:", "--runtime": "crun runc"}


# ---------------------------------------------------------------- roff

def roff(text: str) -> str:
    """Text safe in a roff line: backslashes escaped, minus signs as \\-, no leading dot."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def lines(text: str) -> list[str]:
    return [roff(line) if line.strip() else "" for line in text.splitlines()]


def block(text: str) -> list[str]:
    """Preformatted text (argparse's raw descriptions keep their line breaks)."""
    out = [".nf"]
    for line in text.splitlines():
        out.append(roff(line) if line.strip() else ".sp")
    return out + [".fi"]


# ---------------------------------------------------------------- the parser

def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """name -> (one-line help, sub-parser), in the parser's order."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    return {name: (helps.get(name, ""), sp) for name, sp in action.choices.items()}


def option_label(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest.upper()
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar or ("{" + ",".join(action.choices) + "}" if action.choices else action.dest.upper())
    return ", ".join(f"{o} {metavar}" for o in action.option_strings)


def option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    if action.choices and not action.option_strings and action.metavar:
        text += f" ({', '.join(action.choices)})"
    return text


def options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        out += [".TP", f".B {roff(option_label(action))}", roff(option_help(parser, action))]
    return out


def usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().replace("usage:", "", 1).split())


# ---------------------------------------------------------------- ocishim(1)

def ocishim_page() -> str:
    parser = build_parser()
    out = [f'.TH OCISHIM 1 "" "ocishim {__version__}" "User Commands"',
           ".SH NAME", "ocishim \\- seccomp profiles that answer ENOSYS for syscalls they cannot know",
           ".SH SYNOPSIS", ".B ocishim", "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] ...",
           ".br", ".B ocishim \\-\\-version",
           ".SH DESCRIPTION", *block(parser.description or ""),
           ".SH OPTIONS", *options(parser),
           ".TP", ".B \\-h, \\-\\-help", "show the help of ocishim, or after a COMMAND of that command",
           ".SH COMMANDS"]
    for name, (short, sp) in subcommands(parser).items():
        out += [f'.SS "{roff(name)}"', roff(short[:1].upper() + short[1:]) + ".", ".PP",
                f".B {roff(usage(sp))}"]
        if sp.description:
            out += [".PP", *block(sp.description)]
        opts = options(sp)
        if opts:
            out += [".PP", "Arguments and options:", ".RS", *opts, ".RE"]
        if sp.epilog:
            out += [".PP", *block(sp.epilog)]
    out += [".SH EXAMPLES", *block(parser.epilog or ""),
            ".SH EXIT STATUS",
            ".TP", ".B 0", "success",
            ".TP", ".B 1", "a runtime or system failure",
            ".TP", ".B 2", "bad input: the message names the field or JSON path",
            ".TP", ".B 3", "verify: differences, or places it cannot decide",
            ".SH ENVIRONMENT",
            ".TP", f".B {wrapper.SETTINGS_ENV}",
            f"the settings file of the hook and the wrapper (default {roff(wrapper.DEFAULT_SETTINGS)})",
            ".TP", ".B OCISHIM_DEBUG", "print a traceback for an internal error",
            ".TP", ".B OCISHIM_COMPILE_TIMEOUT",
            "seconds one libseccomp compile may take (0 to 10, default 10)",
            ".SH FILES",
            ".TP", f".I {roff(wrapper.DEFAULT_SETTINGS)}",
            "the administrator's settings: enosys, emulate\\-kernel, unknown\\-syscall, "
            "annotations, log, runtime",
            ".TP", ".I /usr/share/ocishim/hooks.d/ocishim\\-precreate.json",
            "the podman precreate hook (Debian package): podman \\-\\-hooks\\-dir /usr/share/ocishim/hooks.d",
            ".TP", ".I /var/log/ocishim.log",
            "where the hook and the wrapper log when there is neither a journal nor syslog",
            ".SH SEE ALSO", ".BR ocishim\\-runtime (8),", ".BR runc (8),", ".BR crun (1),",
            ".BR podman (1),", ".BR seccomp (2)"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- ocishim-runtime(8)

def runtime_page() -> str:
    w = wrapper
    patched = " and ".join(f"\\fB{c}\\fR" for c in w.PATCHED_COMMANDS)
    out = [f'.TH OCISHIM\\-RUNTIME 8 "" "ocishim {__version__}" "System Administration"',
           ".SH NAME", "ocishim\\-runtime \\- a runc\\-compatible runtime that patches seccomp filters",
           ".SH SYNOPSIS",
           ".B ocishim\\-runtime", f"[\\fB{roff(w.OWN_FLAG)}\\fR \\fIPATH\\fR] "
           f"[\\fB{roff(w.CONFIG_FLAG)}\\fR \\fIFILE\\fR] [\\fIRUNTIME\\-OPTIONS\\fR] "
           "\\fICOMMAND\\fR [\\fIARGS\\fR]",
           ".br", f".B ocishim\\-runtime {roff(w.VERSION_FLAG)}",
           ".SH DESCRIPTION",
           f"On {patched}, ocishim\\-runtime rewrites the bundle's config.json (a temporary file "
           "renamed over it) so that its seccomp profile answers ENOSYS for syscalls the profile "
           "cannot know about, then executes the real runtime with the same arguments. Every "
           "other command, \\-\\-version and features included, goes to the real runtime "
           "untouched and reads no settings.",
           ".PP",
           "It is meant to be named as the runtime binary of containerd (BinaryName), Docker "
           "(runtimes in daemon.json), CRI\\-O (runtime_path) or Kubernetes (a RuntimeClass "
           "handler); \\fBocishim install\\fR writes those entries.",
           ".PP",
           "During create nothing is printed on the container's stdio: a failure is exit status 1 "
           "and one line in the file given by \\-\\-log (JSON with \\-\\-log\\-format json). The "
           "container is then not created; it never runs with a weaker filter.",
           ".SH OPTIONS",
           ".TP", f".B {roff(w.OWN_FLAG)} \\fIPATH\\fR",
           f"the real runtime (else ${w.RUNTIME_ENV}, \"runtime\" in the settings, or runc in PATH); "
           "never ocishim\\-runtime itself",
           ".TP", f".B {roff(w.CONFIG_FLAG)} \\fIFILE\\fR",
           f"the settings file for this runtime entry (else ${w.SETTINGS_ENV}, else "
           f"{roff(w.DEFAULT_SETTINGS)}); a missing FILE refuses create. For Docker: "
           f"\"runtimeArgs\": [\"{roff(w.CONFIG_FLAG)}=FILE\"]",
           ".TP", f".B {roff(w.VERSION_FLAG)}",
           "print the wrapper's own version, its libseccomp and its syscall table "
           "(\\-\\-version stays the real runtime's)",
           ".PP", "Global options of runc and crun that take a value: "
           + ", ".join(f"\\fB{roff(f)}\\fR" for f in sorted(w.VALUE_FLAGS)) + ".",
           ".SH ENVIRONMENT",
           ".TP", f".B {w.RUNTIME_ENV}", "the real runtime",
           ".TP", f".B {w.SETTINGS_ENV}", "the settings file",
           ".SH FILES",
           ".TP", f".I {roff(w.DEFAULT_SETTINGS)}",
           "settings: {\"enosys\": \"unnamed\", \"emulate\\-kernel\": \"5.10\", "
           "\"unknown\\-syscall\": \"warn\", \"annotations\": \"use\", \"log\": \"auto\", "
           "\"runtime\": \"/usr/bin/runc\"}, every key optional; owned by root and writable only by root",
           ".SH EXAMPLES", ".nf",
           "Docker, /etc/docker/daemon.json:",
           "  {\"runtimes\": {\"ocishim\": {\"path\": \"/usr/bin/ocishim\\-runtime\"}}}",
           "  docker run \\-\\-runtime ocishim IMAGE",
           ".sp",
           "containerd: ctr run \\-\\-runc\\-binary /usr/bin/ocishim\\-runtime \\-\\-seccomp IMAGE ID",
           ".fi",
           ".SH SEE ALSO", ".BR ocishim (1),", ".BR runc (8)"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- bash completion

def completion() -> str:
    """A bash completion function: commands, each command's options, and known values."""
    parser = build_parser()
    commands = subcommands(parser)
    values: dict[str, str] = {}
    per_command = []
    for name, (_, sp) in commands.items():
        opts, positional = [], ""
        for action in sp._actions:
            opts += action.option_strings
            if action.option_strings and action.nargs != 0:
                choices = " ".join(action.choices) if action.choices else OPTION_VALUES.get(action.option_strings[-1], "")
                for o in action.option_strings:
                    if choices:
                        values[o] = choices
            if not action.option_strings and action.choices and not positional:
                positional = " ".join(action.choices)
        if name == "help":
            positional = " ".join(commands)
        per_command.append(f'        {name}) opts="{" ".join(opts)}"; words_at="{positional}" ;;')
    value_cases = [f'        {o}) COMPREPLY=($(compgen -W "{v}" -- "$cur")); return ;;'
                   for o, v in sorted(values.items())]
    return "\n".join([
        "# bash completion for ocishim, generated by scripts/gen_man.py from ocishim.cli.build_parser",
        "_ocishim() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    local cmd='' i opts='' words_at=''",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac',
        "    done",
        '    if [[ -z "$cmd" ]]; then',
        f'        COMPREPLY=($(compgen -W "{" ".join(commands)} --version --help" -- "$cur"))',
        "        return",
        "    fi",
        '    case "$prev" in',
        *value_cases,
        "    esac",
        '    case "$cmd" in',
        *per_command,
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        '    elif [[ -n "$words_at" && "$COMP_CWORD" -eq $((i + 1)) ]]; then',
        '        COMPREPLY=($(compgen -W "$words_at" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -f -- "$cur"))',
        "    fi",
        "}",
        "complete -o filenames -F _ocishim ocishim",
    ]) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: gen_man.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "ocishim.1").write_text(ocishim_page())
    (out / "ocishim-runtime.8").write_text(runtime_page())
    (out / "ocishim.bash-completion").write_text(completion())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
