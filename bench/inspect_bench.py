"""``inspect`` against ``torch.load(mmap=True, weights_only=True)``, on 100 MB and 2 GB files.

Run: ``python bench/inspect_bench.py [--sizes 100MB,2GB]``. Files are built once in
$CKPTTOOL_BENCH_DIR (default /tmp/ckpttool-bench), never in the repository. Prints a markdown
table; both commands run as whole processes (interpreter start and imports included), best of 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ckpttool_cmd, make_checkpoint, timed

TORCH_BASELINE = ("import sys, torch; sd = torch.load(sys.argv[1], mmap=True, weights_only=True); "
                  "print(len(sd))")


def parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[:-2]) * factor)
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100MB,2GB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        for fmt in ("pt", "safetensors"):
            path = make_checkpoint(f"inspect-{size}", parse_size(size), fmt)
            ours, our_rss = timed(ckpttool_cmd("inspect", str(path), "--json"), args.repeat)
            base_cmd = [sys.executable, "-c", TORCH_BASELINE, str(path)]
            if fmt == "safetensors":
                base_cmd = [sys.executable, "-c", "import sys; from safetensors.torch import load_file; "
                            "print(len(load_file(sys.argv[1])))", str(path)]
            base, base_rss = timed(base_cmd, args.repeat)
            rows.append((size, fmt, path.stat().st_size, ours, our_rss, base, base_rss))
    print("| size | format | file bytes | ckpttool inspect --json (s) | peak RSS (MiB) | baseline (s) "
          "| baseline RSS (MiB) | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size, fmt, nbytes, ours, our_rss, base, base_rss in rows:
        print(f"| {size} | {fmt} | {nbytes:,} | {ours:.3f} | {our_rss / 1024:.0f} | {base:.3f} | "
              f"{base_rss / 1024:.0f} | {base / ours:.1f}x |")
    pts = [r for r in rows if r[1] == "pt"]
    if len(pts) >= 2:
        print(f"\nlargest/smallest .pt inspect time ratio: {pts[-1][3] / pts[0][3]:.2f}")


if __name__ == "__main__":
    main()
