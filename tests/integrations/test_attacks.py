"""A hostile pod author and a hostile config against issue 7 (semantics.md rules 9-12).

Each test here reproduces one way found to get something other than "the profile with
the administrator's settings": a weaker filter, a crash, a file patched other than the
one the runtime reads, or a config two readers read differently. Expected values come
from the contract and from the real runtimes (runc, crun) asked directly, never from
ocishim's own output.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import hostile as H

WRAPPER = Path(sys.executable).parent / "ocishim-runtime"
ALLOW_ALL_BPF = base64.b64encode(struct.pack("<HBBI", 0x06, 0, 0, H.ALLOW)).decode()

# A plain profile: the details do not matter to the wrapper and hook cases below.
PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    ],
}


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="ocishim-attacks-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _env(workdir: Path, runtime: str = "/bin/true") -> dict[str, str]:
    settings = workdir / "settings.json"
    settings.write_text(json.dumps({"log": str(workdir / "ocishim.log")}))
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OCISHIM_CONFIG": str(settings),
            "OCISHIM_RUNTIME": runtime}


# ---------------------------------------------------------------------------------
# The wrapper must patch the bundle the real runtime reads.


def _bundle_the_runtime_reads(runtime: str, flags: list[str], workdir: Path) -> str:
    """Ask the real runtime which bundle directory it would use, with bundles that do not exist.

    runc and crun both chdir into the bundle first and name it in the error.
    """
    root = workdir / f"{Path(runtime).name}-root"
    proc = subprocess.run([runtime, "--root", str(root), "create", *flags, "attack-probe"],
                          capture_output=True, text=True, timeout=60, cwd=workdir)
    assert proc.returncode != 0, "the probe bundles do not exist: the runtime must fail"
    m = re.search(r"chdir [`]?(/[^:`' ]+)", proc.stderr)
    assert m, f"{runtime} did not name the bundle: {proc.stderr!r}"
    return m.group(1)


# (runtime, flags with two placeholder bundles A and B)
BUNDLE_SPELLINGS = [
    ("runc", ["-bundle", "{B}"]),  # Go's flag package takes one dash for long flags
    ("runc", ["-bundle={B}"]),
    ("runc", ["--bundle", "{A}", "--bundle", "{B}"]),  # the last one counts
    ("crun", ["-b{B}"]),  # argp: a short option's value may be attached
    ("crun", ["--bund", "{B}"]),  # argp: unambiguous prefixes of long options
    ("crun", ["--bundle", "{A}", "--bundle", "{B}"]),
]


@pytest.mark.parametrize("runtime,spelling", BUNDLE_SPELLINGS,
                         ids=[f"{r}:{' '.join(s)}" for r, s in BUNDLE_SPELLINGS])
def test_wrapper_patches_the_bundle_the_runtime_reads(runtime: str, spelling: list[str],
                                                      workdir: Path):
    """ocishim-runtime create: the config.json the real runtime will read carries ocishim's
    program (rule 9: a pod's run.oci.seccomp_bpf_data is replaced), whatever spelling of
    the bundle flag the runtime accepts. Otherwise crun loads the pod's ALLOW-all program.
    """
    real = shutil.which(runtime)
    assert real, f"{runtime} is installed by make test"
    # The oracle: the runtime itself says which bundle it uses for this spelling.
    probe = [f.format(A="/nonexistent-attack-A", B="/nonexistent-attack-B") for f in spelling]
    chosen = _bundle_the_runtime_reads(real, probe, workdir)
    assert chosen == "/nonexistent-attack-B", f"{runtime} {probe}: uses {chosen}"

    cwd_bundle, a, b = workdir / "cwd", workdir / "A", workdir / "B"
    forged = H.config(PROFILE, {H.BPF_ANNOTATION: ALLOW_ALL_BPF})
    for d in (cwd_bundle, a, b):
        d.mkdir()
        (d / "config.json").write_text(json.dumps(forged))
    flags = [f.format(A=str(a), B=str(b)) for f in spelling]
    # The wrapper in front of that very runtime (it reads the command line the way its
    # runtime does); the runtime then fails on the missing rootfs, which does not matter.
    proc = subprocess.run([str(WRAPPER), "--root", str(workdir / "wrapped-root"), "--log",
                           str(workdir / "log.json"), "--log-format", "json", "create", *flags,
                           "attack-1"], capture_output=True, text=True,
                          env=_env(workdir, real), cwd=cwd_bundle, timeout=120)
    log = (workdir / "log.json").read_text() if (workdir / "log.json").exists() else ""
    assert "ocishim:" not in log and "Traceback" not in proc.stderr, (log, proc.stderr)
    config = json.loads((b / "config.json").read_text())
    assert config["annotations"][H.BPF_ANNOTATION] != ALLOW_ALL_BPF, \
        f"{runtime} {flags}: the runtime reads {b}/config.json, which still carries the pod's " \
        f"ALLOW-all program (the wrapper patched another config)"


# ---------------------------------------------------------------------------------
# Deep JSON: a config runc accepts (Go decodes 10000 levels) must not crash ocishim.


def _deep_config(depth: int) -> str:
    text = json.dumps(H.config(PROFILE))
    return text[:-1] + ', "x-extension": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [500, 700, 900])
def test_hook_deep_config_no_internal_error(depth: int, workdir: Path):
    """`ocishim hook precreate`: exit 0 with a patched config, or exit 2 naming the input;
    never an internal error (rule 8 and the exit codes of semantics.md)."""
    proc = subprocess.run([sys.executable, "-m", "ocishim", "hook", "precreate"],
                          input=_deep_config(depth), capture_output=True, text=True,
                          env=_env(workdir), timeout=120, cwd=H.REPO)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, \
        f"depth {depth}: {proc.stderr[-300:]!r}"
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr[-300:])


@pytest.mark.parametrize("depth", [500, 700, 900])
def test_wrapper_deep_config_no_traceback(depth: int, workdir: Path):
    """ocishim-runtime create: during create stdio is the container's; an error is one JSON
    line in --log, never a traceback on stderr (runtimes.md, wrapper.py)."""
    bundle = workdir / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(_deep_config(depth))
    log = workdir / "log.json"
    proc = subprocess.run([str(WRAPPER), "--log", str(log), "--log-format", "json", "create",
                           "--bundle", str(bundle), "attack-2"], capture_output=True, text=True,
                          env=_env(workdir), timeout=120)
    assert proc.stdout == "" and proc.stderr == "", \
        f"depth {depth}: printed on the container's stdio: {proc.stderr[-300:]!r}"
    if proc.returncode != 0:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert any(e["level"] == "error" for e in lines), lines
        # Valid JSON that runc decodes is input to refuse by name or to patch, not a bug.
        assert not any("internal error" in e["msg"] for e in lines), lines


# ---------------------------------------------------------------------------------
# Rule 12 across two names of one number: arm 341 is arm_sync_file_range (libseccomp
# 2.5.4 knows it) and sync_file_range2 (it does not: the table's alias).


def _libseccomp_one_name(rules: list[dict[str, Any]], default: int) -> tuple:
    """libseccomp's program for the rules all put on arm_sync_file_range, arm alone (the oracle)."""
    import pyseccomp

    from ocishim.bpf.insn import decode

    f = pyseccomp.SyscallFilter(default)
    f.remove_arch(pyseccomp.Arch.NATIVE)
    f.add_arch(pyseccomp.Arch.ARM)
    for rule in rules:
        conds = [pyseccomp.Arg(c["index"], pyseccomp.EQ, c["value"]) for c in rule.get("args", ())]
        f.add_rule(H.oci_action(rule["action"], rule.get("errnoRet")), "arm_sync_file_range", *conds)
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return decode(out.read(), "little")


ALIAS_RULES = [
    {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
    {"names": ["arm_sync_file_range"], "action": "SCMP_ACT_KILL_PROCESS"},
]


def test_alias_of_a_known_name_merges_like_libseccomp(workdir: Path):
    """[ALLOW sync_file_range2 if arg0 == 1, KILL_PROCESS arm_sync_file_range] on arm: both
    names are syscall 341, so libseccomp's merge of the two rules on one syscall applies (an
    unconditional rule overrides conditional ones: KILL_PROCESS for every argument). ocishim's
    rule block for the alias runs before libseccomp's program and ALLOWs 341(1)."""
    from ocishim.arch import BY_NAME
    from ocishim.bpf import emu

    arm = BY_NAME["arm"]
    oracle = _libseccomp_one_name([{**r, "names": ["arm_sync_file_range"]} for r in ALIAS_RULES],
                                  H.oci_action("SCMP_ACT_ERRNO", None))
    assert emu.run(oracle, arm, 341, (1, 0, 0, 0, 0, 0)).ret == H.KILL_PROCESS  # the oracle itself

    seccomp = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_ARM"],
               "syscalls": ALIAS_RULES}
    spath = H.write_settings(workdir, {"enosys": "off"}, workdir / "log")
    out = H.run_hook(H.config(seccomp), spath)
    assert out.rc == 0, out.stderr
    for arg0 in (0, 1, 2):
        want = emu.run(oracle, arm, 341, (arg0, 0, 0, 0, 0, 0)).ret
        got = emu.run(out.program, arm, 341, (arg0, 0, 0, 0, 0, 0)).ret
        assert H.rank(got) >= H.rank(want), \
            f"arm 341({arg0}): ocishim answers {H.name(got)}, libseccomp {H.name(want)}"


@pytest.mark.parametrize("flag", [["--config", "other.json"], ["-f", "other.json"],
                                  ["--config=other.json"]])
def test_wrapper_patches_crun_config_flag(flag: list[str], workdir: Path):
    """crun create --config FILE (-f FILE) reads FILE instead of the bundle's config.json
    (runtimes.md). ocishim-runtime in front of crun must patch that file, or crun loads the
    pod's run.oci.seccomp_bpf_data from it (rule 9)."""
    crun = shutil.which("crun")
    assert crun, "crun is installed by make test"
    bundle = workdir / "bundle"
    bundle.mkdir()
    # The oracle: crun names the file it reads when it is missing.
    proc = subprocess.run([crun, "--root", str(workdir / "crun-root"), "create", *flag,
                           "--bundle", str(bundle), "attack-probe"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "other.json" in proc.stderr, proc.stderr

    forged = json.dumps(H.config(PROFILE, {H.BPF_ANNOTATION: ALLOW_ALL_BPF}))
    (bundle / "config.json").write_text(forged)
    (bundle / "other.json").write_text(forged)
    proc = subprocess.run([str(WRAPPER), "--log", str(workdir / "log.json"), "--log-format",
                           "json", "create", *flag, "--bundle", str(bundle), "attack-3"],
                          capture_output=True, text=True, env=_env(workdir), timeout=120)
    assert proc.returncode in (0, 1), (proc.stdout, proc.stderr)
    if proc.returncode == 0:  # went on to the runtime: the file crun reads must be patched
        config = json.loads((bundle / "other.json").read_text())
        assert config["annotations"][H.BPF_ANNOTATION] != ALLOW_ALL_BPF, \
            f"{flag}: crun reads other.json, which still carries the pod's ALLOW-all program"


# ---------------------------------------------------------------------------------
# Messages name the annotation or setting that decided, not a command-line flag (issue 7,
# build 3: "A message about a bad annotation or setting names it, not a command-line flag").

UNKNOWN_PROFILE: dict[str, Any] = {
    **PROFILE,
    "syscalls": PROFILE["syscalls"] + [{"names": ["not_a_real_syscall"],
                                        "action": "SCMP_ACT_ALLOW"}],
}


@pytest.mark.parametrize("where", ["annotation", "setting"])
def test_unknown_syscall_fail_names_annotation_or_setting(where: str, workdir: Path):
    """unknown-syscall=fail chosen by an annotation or by the settings file: the refusal names
    annotations.ocishim.unknown-syscall or the settings key, never `--unknown-syscall`."""
    svalues = {"unknown-syscall": "fail"} if where == "setting" else {}
    annotations = {"ocishim.unknown-syscall": "fail"} if where == "annotation" else {}
    spath = H.write_settings(workdir, svalues, workdir / "log")
    env = {**_env(workdir), "OCISHIM_CONFIG": spath}
    proc = subprocess.run([sys.executable, "-m", "ocishim", "hook", "precreate"],
                          input=json.dumps(H.config(UNKNOWN_PROFILE, annotations)),
                          capture_output=True, text=True, env=env, timeout=120, cwd=H.REPO)
    assert proc.returncode == 2, proc.stderr
    assert "--unknown-syscall" not in proc.stderr, \
        f"the {where} decided, but the message names a command-line flag: {proc.stderr!r}"
    wanted = "annotations.ocishim.unknown-syscall" if where == "annotation" else "unknown-syscall"
    assert wanted in proc.stderr, proc.stderr
