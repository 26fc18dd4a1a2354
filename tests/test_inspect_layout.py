"""inspect.layout against programs whose stub is known: ocishim's own patch in every mode
(stub length and E(A) from the patch, which computes them without inspect's walk), and
libseccomp's unpatched program (no stub). runc's stub is checked on programs runc
really loaded, in integration/test_inspect.py."""

from __future__ import annotations

import pytest

from ocishim.inspect import layout, ranges_text, same_answers
from ocishim.patch import patch_profile
from ocishim.profile import load
from tests import shared_data

PROFILES = shared_data.PROFILES
NAMES = ("docker-default.json", "docker-default-20.10.0.json", "containers-default.json",
         "spo-security-profiles-operator.json")
MODES = ("unnamed", "auto", "max", "kernel:5.4", "off")


@pytest.fixture(scope="module", params=NAMES)
def profile(request):
    if not (PROFILES / request.param).is_file():
        pytest.skip(f"{PROFILES / request.param} is not there (the shared test data)")
    return load(str(PROFILES / request.param)).profile


@pytest.mark.parametrize("mode", MODES)
def test_ocishim_stub_found_with_its_enosys_ranges(profile, mode):
    patched = patch_profile(profile, mode)
    found = layout(patched.program)
    if patched.stub_length == 0:
        assert (found.stub, found.start) == (None, 0)
        return
    assert found.stub == "ocishim"
    assert found.start == patched.stub_length
    expected = {arch: tuple(r) for arch, r in patched.enosys.items() if r}
    assert {arch: r for arch, r in found.enosys.items() if r} == expected


def test_libseccomp_program_has_no_stub(profile):
    program = patch_profile(profile, "off").compiled.program
    assert layout(program).stub is None


def test_same_answers_tells_modes_apart(profile):
    unnamed = patch_profile(profile, "unnamed")
    off = patch_profile(profile, "off")
    assert same_answers(unnamed.program, unnamed.program)
    assert same_answers(off.compiled.program, off.compiled.program)
    # The stub changes answers wherever E(A) is not empty (Docker's profile: reboot);
    # containers-default answers ENOSYS by default already, and gets no stub.
    assert same_answers(unnamed.program, off.program) == (not any(unnamed.enosys.values()))


def test_ranges_text():
    assert ranges_text(((0, 1), (5, 5), (467, 0x3FFFFFFF))) == "0-1 5 467-0x3fffffff"
    assert ranges_text(()) == "none"
