"""Python's site set-up for entry points started without it (`python3 -IS`).

The Debian package and `make install` start `ocishim` and `ocishim-runtime` with -IS
(one word: the kernel hands a #! line's flags over as one argument), so that the two
things run on every container start (the podman hook, the wrapper's pass-through) do
not pay for the site directories' .pth files and sitecustomize: 3-5 ms a start. pip
drops interpreter flags from a script's #! line: a venv starts them with site as usual,
and then nothing here does anything.
"""

from __future__ import annotations

import sys

_whole_done = False


def site_directories() -> None:
    """The site directories on sys.path, as they are (no .pth files, no sitecustomize):
    enough for this package and the libseccomp binding, which are plain packages."""
    if sys.flags.no_site:
        import site

        sys.path.extend(d for d in site.getsitepackages() if d not in sys.path)


def whole_site() -> None:
    """site's whole set-up, as a normal start has it (the .pth files and sitecustomize
    too), for every command but the hook and a pass-through. Once."""
    global _whole_done
    if sys.flags.no_site and not _whole_done:
        _whole_done = True
        import site

        site.main()
