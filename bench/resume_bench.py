"""Benchmark: ``ckpttool validate-resume`` vs the usual ``torch.load`` look at a training checkpoint.

Builds synthetic training checkpoints outside the repo (weights + SGD momentum of the same size +
LambdaLR state + epoch), then times, each in a fresh child process with its peak RSS from ``wait4``:

* ckpttool: ``validate-resume FILE --epochs 400 --schedule cosine --lrf 0.2 --old-epochs 300 --json``
  (reads the pickle and the archive index only, never tensor bytes);
* baseline: ``torch.load(FILE, map_location="cpu", weights_only=True)`` and print the epoch, which is
  what one does by hand to see where a run stopped.

Prints a markdown table; validate-resume's time should stay flat as the file grows.

    python bench/resume_bench.py [--sizes 100MB,1GB] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed, transformer_state_dict

_UNITS = {"MB": 10**6, "GB": 10**9}


def make_training_checkpoint(name: str, weight_bytes: int) -> Path:
    """A training dict with ``weight_bytes`` of fp32 weights and as much momentum, built once."""
    import torch

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"resume_{name}.pt"
    if path.exists():
        return path
    sd = transformer_state_dict(weight_bytes)
    base, epoch = 0.01, 99
    lr = base * (((1 + math.cos((epoch + 1) * math.pi / 300)) / 2) * 0.8 + 0.2)  # the cosine lf
    opt = {"state": {i: {"momentum_buffer": torch.empty_like(t)} for i, t in enumerate(sd.values())},
           "param_groups": [{"lr": lr, "momentum": 0.937, "dampening": 0, "weight_decay": 0.0005, "nesterov": True,
                             "maximize": False, "foreach": None, "differentiable": False, "fused": None,
                             "initial_lr": base, "params": list(range(len(sd)))}]}
    sched = {"base_lrs": [base], "last_epoch": epoch + 1, "_step_count": epoch + 2, "_is_initial": False,
             "_get_lr_called_within_step": False, "_last_lr": [lr], "lr_lambdas": [None]}
    tmp = path.with_suffix(".partial")
    torch.save({"epoch": epoch, "model": sd, "optimizer": opt, "scheduler": sched,
                "opt": {"epochs": 300, "hyp": {"lr0": base, "lrf": 0.2}}}, tmp)
    tmp.rename(path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100MB,1GB", help="weight sizes (the file holds twice this: + momentum)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", metavar="SIZE", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build:  # in a child, so this process never imports torch (a fork would inherit its RSS)
        make_training_checkpoint(a.build, int(float(a.build[:-2]) * _UNITS[a.build[-2:].upper()]))
        return 0
    rows = []
    for size in a.sizes.split(","):
        subprocess.run([sys.executable, __file__, "--build", size], check=True)
        path = BENCH_DIR / f"resume_{size}.pt"
        ours, ours_rss = timed(ckpttool_cmd("validate-resume", str(path), "--epochs", "400", "--schedule", "cosine",
                                            "--lrf", "0.2", "--old-epochs", "300", "--json"), a.repeat)
        base, base_rss = timed([sys.executable, "-c", "import sys, torch; ck = torch.load(sys.argv[1], "
                                "map_location='cpu', weights_only=True); print(ck['epoch'])", str(path)], a.repeat)
        rows.append((size, path.stat().st_size, ours, ours_rss // 1024, base, base_rss // 1024))
    print("| weights | file bytes | validate-resume --json (s) | peak RSS (MiB) | torch.load (s) | "
          "torch.load RSS (MiB) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for size, nbytes, ours, ours_rss, base, base_rss in rows:
        print(f"| {size} | {nbytes:,} | {ours:.3f} | {ours_rss} | {base:.3f} | {base_rss} | {base / ours:.1f}x |")
    if len(rows) > 1:
        print(f"\nlargest/smallest validate-resume time ratio: {rows[-1][2] / rows[0][2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
