"""ocishim-runtime: the runc-compatible wrapper (not built yet; see issue 4)."""

import sys


def main() -> int:
    print("ocishim-runtime: not implemented yet", file=sys.stderr)
    return 1
