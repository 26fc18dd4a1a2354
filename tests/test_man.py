"""The man pages and the bash completion scripts/gen_man.py writes from the parser.

They cannot drift: every command and option the parser has must be in ocishim(1) and
in the completion, the wrapper's own flags in ocishim-runtime(8). groff must format
the pages without a warning, and two runs must write the same bytes (no date, no path).
The installed pages are checked again in integration/test_deb.py.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("man")
    for run in ("a", "b"):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_man.py"), str(out / run)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    for name in ("ocishim.1", "ocishim-runtime.8", "ocishim.bash-completion"):
        assert (out / "a" / name).read_bytes() == (out / "b" / name).read_bytes(), name
    assert str(REPO) not in (out / "a" / "ocishim.1").read_text()
    return out / "a"


def _parser_options() -> dict[str, list[str]]:
    sys.path.insert(0, str(REPO))
    from ocishim.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: [o for a in sp._actions if not isinstance(a, argparse._HelpAction) for o in a.option_strings]
            for name, sp in sub.choices.items()}


def test_ocishim_page_names_every_command_and_option(pages: Path) -> None:
    page = (pages / "ocishim.1").read_text().replace("\\-", "-")
    options = _parser_options()
    assert {"explain", "patch", "convert", "install", "hook", "run", "verify"} <= set(options)
    for command, opts in options.items():
        assert f'.SS "{command}"' in page, command
        for option in opts:
            assert option in page, (command, option)
    assert sum(map(len, options.values())) > 40


def test_runtime_page_names_the_wrappers_flags(pages: Path) -> None:
    page = (pages / "ocishim-runtime.8").read_text().replace("\\-", "-")
    for flag in ("--ocishim-runtime", "--ocishim-config", "--ocishim-version", "OCISHIM_RUNTIME",
                 "OCISHIM_CONFIG", "/etc/ocishim/config.json"):
        assert flag in page, flag


@pytest.mark.parametrize("name", ["ocishim.1", "ocishim-runtime.8"])
def test_groff_formats_without_warnings(pages: Path, name: str) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff not found (make deps installs groff-base)")
    proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(pages / name)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def _complete(script: Path, words: list[str]) -> list[str]:
    line = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ocishim; printf "%s\\n" "${COMPREPLY[@]}"'
    proc = subprocess.run(["bash", "-c", line, "_", str(script), *words], capture_output=True, text=True,
                          timeout=30, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.split("\n") if w]


def test_completion(pages: Path) -> None:
    script = pages / "ocishim.bash-completion"
    assert sorted(_complete(script, ["ocishim", "ex"])) == ["exec", "explain"]
    assert _complete(script, ["ocishim", "install", ""]) == ["podman-hook", "containerd", "docker", "crio"]
    assert _complete(script, ["ocishim", "patch", "p.json", "--format", ""]) == ["bpf", "base64", "disasm", "config"]
    assert _complete(script, ["ocishim", "explain", "p.json", "--enosys", "k"]) == ["kernel:"]
    for command, opts in _parser_options().items():
        offered = _complete(script, ["ocishim", command, "--"])
        assert {o for o in opts if o.startswith("--")} <= set(offered), command
