"""runc's own seccomp integration tests, through ocishim-runtime (issue 7's acceptance).

tests/integration/seccomp*.bats of the installed runc version (from its Debian source
package, see runc_bats.py) run three times, as runc's CI runs them: with plain runc,
and with RUNC pointing at ocishim-runtime in `max` mode and in the default mode
(no enosys setting: `unnamed`). The oracle is runc's own test suite and plain runc:
- `max` is runc-compatible (semantics.md), so every test must end exactly as with
  plain runc;
- the default mode may differ only in the tests listed in UNNAMED_DIFFERS, each for a
  reason read from the test's own program and profile, and each must fail with exactly
  the message that reason predicts.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import runc_bats
from .runc_bats import BatsResult, RuncTree

# Default mode (`unnamed`): every syscall the profile has no rule for answers ENOSYS.
# Two of runc's tests assert another errno for a syscall their profile does not name.
# Each entry: test name -> (the reason, the lines its failure must print and nothing else).
UNNAMED_DIFFERS: dict[str, tuple[str, list[str]]] = {
    "runc run [seccomp -ENOSYS handling]": (
        "seccomp_syscall_test1.c asserts that unshare(0) and setns(0, 0) fail with EPERM "
        "(\"explicitly denied syscalls (those in Linux 3.0) get -EPERM\"). Its profile "
        "(seccomp_syscall_test1.json, defaultAction SCMP_ACT_ERRNO, no defaultErrnoRet) "
        "has no rule for either, so they take the default action; `unnamed` answers "
        "ENOSYS for every syscall without a rule. Every other assertion of the program "
        "(named syscalls with argument rules, the fake syscall 1000) still passes.",
        [f"syscall_assert(raw(unshare, 0) == -EPERM) failed: {-errno.ENOSYS} != {-1}",
         f"syscall_assert(raw(setns, 0, 0) == -EPERM) failed: {-errno.ENOSYS} != {-1}"],
    ),
    "runc run [seccomp defaultErrnoRet=ENXIO]": (
        "seccomp_syscall_test2.c expects chdir(\"/\") to fail with ENXIO, the profile's "
        "defaultErrnoRet (6). seccomp_syscall_test2.json has no rule for chdir, so "
        "`unnamed` answers ENOSYS instead.",
        [f"got errno={os.strerror(errno.ENOSYS)}"],
    ),
}

# The syscalls each reason above is about, per profile of runc's testdata: checked
# against the installed version's files so that the reasons cannot go stale silently.
UNNAMED_BY_PROFILE = {
    "seccomp_syscall_test1": {"names": ("unshare", "setns"), "errno": errno.EPERM},
    "seccomp_syscall_test2": {"names": ("chdir",), "errno": errno.ENXIO},
}


@dataclass(frozen=True)
class Run:
    result: BatsResult
    log: str  # ocishim's log for the run ("" for plain runc)


@pytest.fixture(scope="module")
def tree() -> RuncTree:
    why = runc_bats.missing_prerequisites()
    if why:
        pytest.skip(why)
    try:
        return runc_bats.ensure_tree()
    except runc_bats.SourceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def runs(tree: RuncTree, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """plain runc, ocishim-runtime max, ocishim-runtime default: one bats run each, in turn
    (runc's tests all name their container test_busybox, so runs cannot overlap)."""
    real = shutil.which("runc")
    assert real is not None
    out = {"runc": Run(runc_bats.run_bats(tree, real), "")}
    for label, settings in (("max", {"enosys": "max"}), ("default", None)):
        d = tmp_path_factory.mktemp(f"ocishim-{label}")
        log = d / "ocishim.log"
        result = runc_bats.run_bats(tree, runc_bats.ocishim_runc(d, settings, log))
        out[label] = Run(result, log.read_text() if log.exists() else "")
    return out


def _ran(result: BatsResult) -> list[str]:
    return [name for name, status in result.statuses.items() if status != "skip"]


def test_plain_runc_passes_its_own_tests(runs: dict[str, Run]) -> None:
    """The control: runc's suite passes against runc here, or the comparison means nothing."""
    result = runs["runc"].result
    failed = {n: result.diagnostics[n] for n, s in result.statuses.items() if s == "not ok"}
    assert not failed, failed
    assert _ran(result), "every test was skipped"
    for name, status in result.statuses.items():
        if status == "skip":
            # the only skip runc's seccomp tests make on a kernel >= 5.6 (notify-compat)
            assert name == "runc run [seccomp] (SCMP_ACT_NOTIFY old kernel)", name


@pytest.mark.parametrize("label, mode", [("max", "max"), ("default", "unnamed")])
def test_every_container_went_through_ocishim(runs: dict[str, Run], label: str,
                                              mode: str) -> None:
    """Not a vacuous pass-through: each test that ran had its config patched, in the mode
    asked, and ocishim logged no error. setup_bundle makes one runc.XXXXXX dir per test."""
    run = runs[label]
    patched = re.findall(r"info: run: patched (\S+)/bundle/config\.json \(--enosys (\S+)\)",
                         run.log)
    assert {m for _, m in patched} == {mode}, run.log
    assert len({Path(d).name for d, _ in patched}) == len(_ran(run.result)), run.log
    assert ": error:" not in run.log, run.log


def test_max_mode_equals_plain_runc(runs: dict[str, Run]) -> None:
    plain, ours = runs["runc"].result, runs["max"].result
    assert list(ours.statuses) == list(plain.statuses)
    differ = {n: (plain.statuses[n], ours.statuses[n], ours.diagnostics[n])
              for n in plain.statuses if plain.statuses[n] != ours.statuses[n]}
    assert not differ, differ


def test_default_mode_differs_only_where_expected(runs: dict[str, Run]) -> None:
    plain, ours = runs["runc"].result, runs["default"].result
    assert list(ours.statuses) == list(plain.statuses)
    missing = set(UNNAMED_DIFFERS) - set(plain.statuses)
    assert not missing, f"runc's suite no longer has {missing}: re-read it and update the list"
    for name in plain.statuses:
        if name in UNNAMED_DIFFERS:
            assert plain.statuses[name] == "ok", name
            assert ours.statuses[name] == "not ok", name
        else:
            assert ours.statuses[name] == plain.statuses[name], (name, ours.diagnostics[name])


@pytest.mark.parametrize("name", sorted(UNNAMED_DIFFERS))
def test_default_mode_fails_for_the_stated_reason(runs: dict[str, Run], name: str) -> None:
    """The program's own complaint, and nothing else: only the predicted syscalls changed."""
    _, expected = UNNAMED_DIFFERS[name]
    diag = runs["default"].result.diagnostics[name].splitlines()
    complaints = [line for line in diag if line.startswith(("syscall_assert(", "got errno="))]
    assert complaints == expected, "\n".join(diag)


@pytest.mark.parametrize("profile", sorted(UNNAMED_BY_PROFILE))
def test_reasons_match_the_installed_tests(tree: RuncTree, profile: str) -> None:
    """The syscalls in each reason are ones the test's profile has no rule for, and the
    errno the program expects for them is the profile's default errno."""
    data = tree.integration / "testdata"
    seccomp = json.loads((data / f"{profile}.json").read_text())
    source = (data / f"{profile}.c").read_text()
    facts = UNNAMED_BY_PROFILE[profile]
    named = {n for rule in seccomp["syscalls"] for n in rule.get("names", [rule.get("name")])}
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    # runtime-spec: defaultErrnoRet unset means EPERM
    assert seccomp.get("defaultErrnoRet", errno.EPERM) == facts["errno"]
    for syscall in facts["names"]:
        assert syscall not in named, (profile, syscall)
        assert re.search(rf"\b{syscall}\b", source), (profile, syscall)
    assert errno.errorcode[facts["errno"]] in source
