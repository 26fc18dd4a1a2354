"""ocishim-runtime patches the config.json its real runtime will read, however the
runtime's own option parser reads the command line (runc: Go flags, crun: argp).

The runtimes here are copies of /bin/true named like the real ones: the wrapper judges
the parser by the runtime's name, and the test looks at which file got patched. Which
file each real runtime reads for a spelling is checked against the real runc and crun
in test_attacks.py; here the cases are written out from their documented parsers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import hostile as H

REPO = Path(__file__).resolve().parents[2]
PROFILE = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
FORGED = "AAAAAAAAAAAGAAAAAAD/fw=="  # ret ALLOW: what a pod might put in the annotation


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for name in ("A", "B", "cwd"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(H.config(PROFILE, {H.BPF_ANNOTATION: FORGED})))
    (tmp_path / "cwd" / "other.json").write_text(json.dumps(H.config(PROFILE, {H.BPF_ANNOTATION: FORGED})))
    for name in ("runc", "crun", "youki"):
        shutil.copy("/bin/true", tmp_path / name)
    (tmp_path / "settings.json").write_text('{"log": "%s"}' % (tmp_path / "ocishim.log"))
    return tmp_path


def _wrap(work: Path, runtime: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OCISHIM_RUNTIME": str(work / runtime),
           "OCISHIM_CONFIG": str(work / "settings.json")}
    code = "import sys; from ocishim.runtime import main; sys.exit(main())"
    argv = [a.replace("{A}", str(work / "A")).replace("{B}", str(work / "B")) for a in args]
    return subprocess.run([sys.executable, "-c", code, "--log", str(work / "log.json"),
                           "--log-format", "json", "create", *argv], capture_output=True,
                          text=True, env=env, cwd=work / "cwd", timeout=120)


def _patched(work: Path) -> set[str]:
    out = set()
    for path in (work / "A" / "config.json", work / "B" / "config.json",
                 work / "cwd" / "config.json", work / "cwd" / "other.json"):
        if json.loads(path.read_text())["annotations"][H.BPF_ANNOTATION] != FORGED:
            out.add(str(path.relative_to(work)))
    return out


CASES = [
    # runtime, command line after `create`, the one file patched (None: refused)
    ("youki", ["--bundle", "{B}", "id"], "B/config.json"),
    ("youki", ["-b", "{B}", "id"], "B/config.json"),
    ("youki", ["--bundle={B}", "id"], "B/config.json"),
    ("youki", ["--pid-file", "p", "id"], "cwd/config.json"),
    ("youki", ["-bundle", "{B}", "id"], None),  # runc: B; crun: -b undle
    ("youki", ["--bund", "{B}", "id"], None),  # crun: a prefix of --bundle; runc: unknown
    ("youki", ["-f", "other.json", "id"], None),  # crun only
    ("runc", ["-bundle", "{B}", "id"], "B/config.json"),
    ("runc", ["-bundle={B}", "id"], "B/config.json"),
    ("runc", ["--bundle", "{A}", "--bundle", "{B}", "id"], "B/config.json"),
    ("runc", ["id", "--bundle", "{B}"], "B/config.json"),  # urfave/cli reorders flags
    ("runc", ["--bund", "{B}", "id"], None),
    ("runc", ["---bundle", "{B}", "id"], None),
    ("crun", ["-b{B}", "id"], "B/config.json"),
    ("crun", ["--bund", "{B}", "id"], "B/config.json"),
    ("crun", ["--bundle", "{A}", "--bundle", "{B}", "id"], "B/config.json"),
    ("crun", ["--conf", "other.json", "id"], "cwd/other.json"),
    ("crun", ["-fother.json", "--bundle", "{B}", "id"], "cwd/other.json"),
    ("crun", ["--config", "config.json", "--bundle", "{B}", "id"], "B/config.json"),
    ("crun", ["--co", "x", "id"], None),  # ambiguous: config, console-socket
    ("crun", ["-bundle", "{B}", "id"], None),  # -b undle: no such bundle, no config there
]


@pytest.mark.parametrize("runtime,args,expected", CASES,
                         ids=[f"{r}:{' '.join(a)}" for r, a, _ in CASES])
def test_the_file_the_runtime_reads_is_patched(work: Path, runtime: str, args: list[str],
                                               expected: str | None):
    proc = _wrap(work, runtime, args)
    assert proc.stdout == "" and proc.stderr == ""
    if expected is None:
        assert proc.returncode == 1
        assert _patched(work) == set()
        [line] = (work / "log.json").read_text().splitlines()
        assert json.loads(line)["level"] == "error"
    else:
        assert proc.returncode == 0, (work / "log.json").read_text()
        assert _patched(work) == {expected}


@pytest.mark.parametrize("text, runtime", [
    ('{"log": "auto"}', None),  # no key can spell it: not decoded at all
    ('{"runtime": "/usr/bin/crun"}', "/usr/bin/crun"),
    ('{"\\u0072untime": "/usr/bin/crun"}', "/usr/bin/crun"),  # spelt by an escape: decoded
    ('{"log": "runtime"}', None),
    ('{"runtime": 1}', None),
    ('not json', None),
])
def test_runtime_from_settings(tmp_path: Path, text: str, runtime: str | None) -> None:
    """The pass-through's reading of "runtime": json only where the text could name it,
    with the same answer as decoding every file."""
    from ocishim.integrations import wrapper

    path = tmp_path / "settings.json"
    path.write_text(text)
    path.chmod(0o644)
    assert wrapper.runtime_from_settings(str(path)) == runtime
