"""libseccomp 2.5.4 bugs beyond the two pinned in tests/patch/test_rules.py (issue 9).

Found by scripts/hunt_libseccomp.py and shrunk to their smallest rule sets
(tests/verify/libseccomp_bugs.py: BUGS; PINNED, the two pinned ones in the form the
integration test runs, go through the same tests). For each one:
- `verify` reports libseccomp's program against the profile with witnesses, and every
  witness shows what the rules, written out again in libseccomp_bugs.py, mean;
- the real kernel, running libseccomp's program neutralised (every return turned into
  an ERRNO marker), answers each witness as the checker says libseccomp's program does,
  and the hand-found witnesses as measured while hunting (for the new bugs: ALLOW where
  the rules refuse, so libseccomp's program is weaker than the profile);
- libseccomp's own PFC export of the same rules (its rule tree, before BPF) answers
  each witness as the rules mean, so libseccomp's BPF generator is what departs; or,
  for the bugs marked tree_wrong, answers as the program does while the rules, read as
  seccomp_rule_add(3) documents them (any rule that matches applies, a rule's
  conditions all hold), mean otherwise: the tree itself is wrong. Either way these are
  libseccomp bugs and not a wrong meaning in ocishim.verify.meaning;
- each new rule set is minimal: without any one rule or condition (or with x86_64
  alone), libseccomp's program agrees with the meaning.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from ocishim import libseccomp
from ocishim.actions import RET_ALLOW, strictness
from ocishim.arch import BY_NAME
from ocishim.compile import compile_profile
from ocishim.profile.parse import parse_seccomp
from ocishim.verify.check import Difference, check_program
from ocishim.verify.meaning import Meaning
from ocishim.verify.profile import verify

from kernel.harness import Call, ia32_available, kernel_results, require_kernel
from verify import libseccomp_pfc
from verify.libseccomp_bugs import BUGS, PERSONALITY, PINNED, Bug

X86_64 = BY_NAME["x86_64"]
ALL = {**PINNED, **BUGS}

pytestmark = pytest.mark.skipif(libseccomp.version() >= (2, 6, 0),
                                reason="the bugs are those of libseccomp 2.5.4")


def profile_of(bug: Bug):
    return parse_seccomp(copy.deepcopy(bug.seccomp), "linux.seccomp")


def libseccomp_differences(bug: Bug) -> tuple[list[Difference], tuple]:
    """verify's report on libseccomp's program, and that program."""
    verification = verify(profile_of(bug), "unnamed", native=X86_64)
    report = next(r for r in verification.reports if r.check == "libseccomp vs profile")
    return list(report.differences), verification.patched.compiled.program


def call_of(arch: str, nr: int, args) -> Call:
    if arch == "x86":
        if reason := ia32_available():
            pytest.fail(f"an i386 call is needed for this witness: {reason}")
        return Call(nr, tuple(args), "i386")
    return Call(nr, tuple(args), "x86_64")


@pytest.mark.parametrize("name", ALL)
def test_verify_reports_the_bug_with_witnesses(name):
    bug = ALL[name]
    differences, _ = libseccomp_differences(bug)
    assert differences, f"{bug.why}: verify finds libseccomp's program equal to the profile"
    for d in differences:
        w = d.witness
        assert w.nr == PERSONALITY[w.arch], d.text()
        want = bug.means(w.arch, w.args)
        assert want is not None, f"witness where two actions hold: {d.text()}"
        assert d.want == want != d.got, d.text()
    if bug.lib_says == RET_ALLOW:
        assert any(strictness(d.got) < strictness(d.want) for d in differences), \
            f"{bug.why}: no witness where libseccomp's program is weaker"


@pytest.mark.parametrize("name", ALL)
def test_ocishim_verify_reports_the_bug(name, tmp_path):
    """`ocishim verify CONFIG --json`: exit 3, and libseccomp's program differs from the
    profile at witnesses that show what the rules mean."""
    bug = ALL[name]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"ociVersion": "1.0.2", "linux": {"seccomp": bug.seccomp}}))
    proc = subprocess.run([sys.executable, "-m", "ocishim", "verify", str(config), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    report = next(r for r in json.loads(proc.stdout) if r["check"] == "libseccomp vs profile")
    assert not report["agrees"] and report["differences"]
    for d in report["differences"]:
        w = d["witness"]
        assert d["expected_value"] == bug.means(w["arch"], tuple(w["args"])) != d["got_value"], d


@pytest.mark.kernel
@pytest.mark.parametrize("name", ALL)
def test_the_kernel_confirms_the_witnesses(name):
    """libseccomp's program, neutralised and loaded for real, answers each of verify's
    witnesses as verify says, and the hand-found witnesses as measured while hunting."""
    require_kernel()
    bug = ALL[name]
    differences, program = libseccomp_differences(bug)
    calls = [call_of(d.witness.arch, d.witness.nr, d.witness.args) for d in differences]
    calls += [call_of(arch, PERSONALITY[arch], args) for arch, args in bug.witnesses]
    got = kernel_results(program, calls)
    assert got[:len(differences)] == [d.got for d in differences]
    for (arch, args), answer in zip(bug.witnesses, got[len(differences):]):
        assert answer == bug.lib_says != bug.means(arch, args), (arch, args, hex(answer))


@pytest.mark.parametrize("name", ALL)
def test_where_libseccomp_departs(name):
    """libseccomp's own account of the rules (its PFC export) answers every witness as the
    rules mean, unlike the BPF it generates from the same rule tree; or, where the tree
    is wrong, as the BPF does."""
    bug = ALL[name]
    differences, _ = libseccomp_differences(bug)
    text = libseccomp_pfc.profile_pfc(profile_of(bug), X86_64)
    points = [(d.witness.arch, d.witness.args, d.got) for d in differences]
    points += [(arch, args, bug.lib_says) for arch, args in bug.witnesses]
    assert points
    for arch, args, program_says in points:
        tree_says = libseccomp_pfc.answer(text, arch, PERSONALITY[arch], args)
        assert tree_says == (program_says if bug.tree_wrong else bug.means(arch, args)), (arch, args)


def _one_less(seccomp: dict):
    """Each rule set with one rule, or one condition of a two-condition rule, left out."""
    rules = seccomp["syscalls"]
    for i, rule in enumerate(rules):
        if len(rules) > 1:
            yield f"without syscalls[{i}]", dict(seccomp, syscalls=rules[:i] + rules[i + 1:])
        for j in range(len(rule["args"])):
            if len(rule["args"]) > 1:
                fewer = dict(rule, args=rule["args"][:j] + rule["args"][j + 1:])
                yield f"without syscalls[{i}].args[{j}]", dict(seccomp, syscalls=rules[:i] + [fewer] + rules[i + 1:])
    arches = seccomp["architectures"]
    if len(arches) > 1:
        yield "x86_64 alone", dict(seccomp, architectures=arches[:1])


@pytest.mark.parametrize("name", BUGS)
def test_each_rule_set_is_minimal(name):
    """Nothing can be left out: with one rule or condition less, or the native arch alone,
    libseccomp's program agrees. (PINNED keep the arches of their tests in test_rules.py.)"""
    smaller = list(_one_less(BUGS[name].seccomp))
    assert smaller
    for why, seccomp in smaller:
        profile = parse_seccomp(copy.deepcopy(seccomp), "linux.seccomp")
        compiled = compile_profile(profile, X86_64)
        report = check_program(compiled.program, Meaning(profile, compiled.arches))
        assert not report.differences, f"{name} {why}: {[d.text() for d in report.differences]}"
