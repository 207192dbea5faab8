"""Benchmark: ``remap`` of a checkpoint that pickles the whole model (YOLOv5-style), kept as a module.

Builds (once, outside the repo) ``{'model': nn.Sequential of --layers Linear(--dim, --dim), 'opt':
argparse.Namespace, 'epoch': 3}`` with ``torch.save`` of the module itself, then times in fresh
child processes, best of ``--repeat``, with each child's peak RSS from ``wait4``:

* ``ckpttool remap --map 0=first``: the module written back as a module of its class, renamed;
* the same with ``--sanitize`` (the module becomes its state_dict);
* the usual script: ``torch.load(weights_only=False)``, rename the child, ``torch.save``;
* ``ckpttool inspect --json`` of the same file (the reader alone).

    python bench/rewrite_bench.py [--layers 500] [--dim 512] [--repeat 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed

PY = sys.executable
BASELINE = ("import sys, collections, torch\n"
            "ck = torch.load(sys.argv[1], weights_only=False)\n"
            "m = ck['model']\n"
            "m._modules = collections.OrderedDict(('first' if k == '0' else k, v) for k, v in m._modules.items())\n"
            "torch.save(ck, sys.argv[2])\n")


def path(layers: int, dim: int) -> Path:
    return BENCH_DIR / f"rewrite_module_{layers}x{dim}.pt"


def build(layers: int, dim: int) -> None:
    """Write the file once (in a child, so this process's peak RSS does not leak into the timed ones)."""
    import argparse as ap

    import torch

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    target = path(layers, dim)
    if target.exists():
        return
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(dim, dim) for _ in range(layers)))
    torch.save({"model": model, "opt": ap.Namespace(lr=0.01, epochs=300, imgsz=640), "epoch": 3}, target)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=500)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        build(args.layers, args.dim)
        return
    subprocess.run([PY, __file__, "--build", "--layers", str(args.layers), "--dim", str(args.dim)], check=True)
    src = path(args.layers, args.dim)
    out = BENCH_DIR / "rewrite_out.pt"
    rows = []

    def row(name: str, cmd: list[str]) -> None:
        wall, rss = timed(cmd, args.repeat)
        rows.append((name, wall, rss / 1024))
        out.unlink(missing_ok=True)

    size = src.stat().st_size / 1e9
    row(f"ckpttool remap --map 0=first ({size:.2f} GB, {args.layers} pickled modules)",
        ckpttool_cmd("remap", str(src), "-o", str(out), "--map", "0=first", "--force"))
    row("ckpttool remap --map 0=first --sanitize",
        ckpttool_cmd("remap", str(src), "-o", str(out), "--map", "0=first", "--sanitize", "--force"))
    row("torch.load(weights_only=False) + rename + torch.save", [PY, "-c", BASELINE, str(src), str(out)])
    row("ckpttool inspect --json (reader only)", ckpttool_cmd("inspect", str(src), "--json"))
    print("| case | best wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for name, wall, rss in rows:
        print(f"| {name} | {wall:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
