"""``scan --json`` against ``inspect --json`` and ``torch.load``, on state dicts and a pickled module tree.

Run: ``python bench/scan_bench.py [--sizes 100MB,2GB] [--modules 3000] [--baseline-src DIR]``. The
scan walks every pickled object once more than inspect does (resource-trap analysis of the tree);
this prints how much that costs. ``--baseline-src`` times ``scan`` from another source tree too (an
export of an older commit: ``git archive REV | tar -x -C DIR``), interleaved in the same run.
Files are built once in $CKPTTOOL_BENCH_DIR (default /tmp/ckpttool-bench), never in the
repository. Each command runs as a whole process (interpreter start and imports included), best
of --repeat; the ratios compare commands of the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, make_checkpoint, timed
from inspect_bench import parse_size

TORCH_LOAD = ("import sys, torch; obj = torch.load(sys.argv[1], mmap=True, weights_only=False); "
              "print(type(obj))")


def make_module_tree(blocks: int) -> Path:
    """A whole pickled ``nn.Module`` (``torch.save(model)``): thousands of objects, few bytes."""
    import torch

    path = BENCH_DIR / f"scan-modules-{blocks}.pt"
    if path.exists():
        return path
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    layers = [torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.GELU())
              for _ in range(blocks)]
    tmp = path.with_suffix(".partial")
    torch.save(torch.nn.Sequential(*layers), tmp)
    tmp.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100MB,2GB")
    parser.add_argument("--modules", type=int, default=3000, help="blocks in the pickled module tree")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, help="a source tree whose scan is timed as the baseline")
    args = parser.parse_args()
    files = [(size, make_checkpoint(f"inspect-{size}", parse_size(size), "pt")) for size in args.sizes.split(",")]
    files.append((f"module tree, {args.modules} blocks", make_module_tree(args.modules)))
    print("| file | bytes | scan --json (s) | inspect --json (s) | torch.load (s) | scan / inspect "
          "| baseline scan (s) | scan / baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, path in files:
        scan, _ = timed(ckpttool_cmd("scan", str(path), "--json"), args.repeat)
        inspect, _ = timed(ckpttool_cmd("inspect", str(path), "--json"), args.repeat)
        base, _ = timed([sys.executable, "-c", TORCH_LOAD, str(path)], args.repeat)
        old = "n/a"
        if args.baseline_src:
            ran = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                   "from ckpttool.cli import main; sys.exit(main())", str(args.baseline_src.resolve()),
                   "scan", str(path), "--json"]
            old_s = float("inf")
            for _ in range(args.repeat):  # interleaved, so both see the same load on the machine
                old_s = min(old_s, timed(ran, 1)[0])
                scan = min(scan, timed(ckpttool_cmd("scan", str(path), "--json"), 1)[0])
            old = f"{old_s:.3f} | {scan / old_s:.2f}"
        print(f"| {label} | {path.stat().st_size:,} | {scan:.3f} | {inspect:.3f} | {base:.3f} "
              f"| {scan / inspect:.2f} | {old} |")


if __name__ == "__main__":
    main()
