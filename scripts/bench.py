#!/usr/bin/env python3
"""Cost of the ENOSYS stub: BPF instructions executed per syscall, by the emulator.

For each profile, arch and mode: mean and worst instructions executed over nr
0..1100 (x32: 0x40000000 | 0..1100), and the most the stub adds to any one
syscall compared with libseccomp's unpatched program. Prints a Markdown table.

    make bench            # or: python scripts/bench.py [PROFILE ...] [--arch ARCH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocishim.arch import BY_NAME, X32_SYSCALL_BIT  # noqa: E402
from ocishim.bpf import emu  # noqa: E402
from ocishim.compile import compile_profile  # noqa: E402
from ocishim.patch import build, parse_mode  # noqa: E402
from ocishim.profile import load  # noqa: E402

MODES = ("off", "auto", "max", "unnamed", "kernel:5.4")
DEFAULT = [REPO.parent / "shared/data/profiles/docker-default.json"]


def costs(program, arch, nrs):
    return [len(emu.run(program, arch, nr).trace) for nr in nrs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profiles", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--arch", action="append", help="arch to measure (default: x86_64)")
    args = ap.parse_args()
    arches = args.arch or ["x86_64"]
    print("| profile | arch | program | length | mean | worst | most added |")
    print("|---|---|---|---:|---:|---:|---:|")
    for path in args.profiles:
        compiled = compile_profile(load(str(path)).profile)
        for name in arches:
            arch = BY_NAME[name]
            base = X32_SYSCALL_BIT if name == "x32" else 0
            nrs = [base + n for n in range(1101)]
            raw = costs(compiled.program, arch, nrs)
            rows = [("libseccomp (unpatched)", compiled.program, raw)]
            for mode in MODES:
                program = build(compiled, parse_mode(mode)).program
                rows.append((f"--enosys {mode}", program, costs(program, arch, nrs)))
            for label, program, c in rows:
                added = max(a - b for a, b in zip(c, raw))
                print(f"| {path.name} | {name} | {label} | {len(program)} | "
                      f"{sum(c) / len(c):.2f} | {max(c)} | {added} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
