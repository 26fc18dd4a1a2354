"""The build's check is bounded (issue 9, "no hang"): a profile whose rules cut the
argument space into more regions than the checker's budget is built as every runtime
builds it, libseccomp's program unseen, and the note says so plainly; it never takes
the container start hostage."""

from __future__ import annotations

import time

from ocishim.patch import patch_profile
from ocishim.patch import check as build_check
from ocishim.profile.model import ArgCond, Profile, Rule
from tests import shared_data


def _exploding(n: int) -> Profile:
    """n rules on one syscall, each two range conditions on other arguments, ERRNOs that
    differ: every rule's conditions cut the space the others leave open."""
    rules = tuple(Rule(("personality",), "SCMP_ACT_ERRNO", 1 + i % 3,
                       (ArgCond(i % 6, i + 1, 0, "SCMP_CMP_GT"), ArgCond((i + 1) % 6, i + 7, 0, "SCMP_CMP_LT")),
                       f"syscalls[{i}]") for i in range(n))
    return Profile("SCMP_ACT_ALLOW", None, ("SCMP_ARCH_X86_64",), syscalls=rules)


def test_an_exploding_profile_is_built_unchecked_in_bounded_time():
    profile = _exploding(12)
    start = time.process_time()
    patched = patch_profile(profile, "unnamed")
    spent = time.process_time() - start
    assert spent < 5, spent
    assert len(patched.notes) == 1 and patched.notes[0].startswith("unchecked: cannot decide within "
                                                                   "the checker's budget"), patched.notes
    assert patched.repaired == ()
    # the filter is the one the build makes without the check, byte for byte
    assert patched.program == patch_profile(profile, "unnamed", check=False).program


def test_the_budget_is_what_stops_it(monkeypatch):
    """With a budget large enough, the same check goes on (and finds the overlap unsettled):
    the note above comes from the budget, not from anything else giving up."""
    profile = _exploding(3)
    monkeypatch.setattr(build_check, "BUDGET", 10**7)
    roomy = patch_profile(profile, "unnamed")
    assert not any("budget" in n for n in roomy.notes), roomy.notes
    monkeypatch.setattr(build_check, "BUDGET", 10)
    tight = patch_profile(profile, "unnamed")
    assert any("budget" in n for n in tight.notes), tight.notes


def test_docker_default_fits_the_budget_many_times():
    """Docker's default profile on three arches spends under a tenth of the budget."""
    from ocishim.profile import load

    path = shared_data.PROFILES / "docker-default.json"
    profile = load(str(path)).profile
    used = []

    class Counting(build_check.Budget):
        def __exit__(self, *exc):
            used.append(self.units - self.left)
            return super().__exit__(*exc)

    import pytest
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build_check, "Budget", Counting)
        patched = patch_profile(profile, "unnamed")
    assert patched.notes == () and len(used) == 1
    assert 0 < used[0] < build_check.BUDGET / 10, used
