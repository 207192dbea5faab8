"""Benchmark: ``ckpttool remap`` vs the usual ``torch.load`` + rename + ``torch.save`` script.

Builds (once, outside the repo) a transformer-like fp32 state_dict of about ``--gb`` GB (3000
tensors) and a training dict holding it with an SGD momentum state, then times in fresh child
processes, best of ``--repeat``, with each child's peak RSS from ``wait4``:

* renaming every layer (``--map model.layers=model.blocks``), ckpttool vs the torch script;
* the same on the training dict (ckpttool also moves the optimizer state, the script does not);
* planning only: ``--dry-run`` with ``--like`` alignment against a reference of the renamed keys,
  and against one a layer short (every group of same-shaped modules goes to the order stage, which
  can tell nothing apart there: the worst case, and nothing may be guessed).

    python bench/remap_bench.py [--gb 1] [--repeat 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed, transformer_state_dict

PY = sys.executable
BASELINE = ("import sys, torch\n"
            "ck = torch.load(sys.argv[1], weights_only=True, mmap=sys.argv[3] == 'mmap')\n"
            "sd = ck['model'] if 'model' in ck else ck\n"
            "new = {k.replace('model.layers.', 'model.blocks.', 1): v for k, v in sd.items()}\n"
            "if 'model' in ck: ck['model'] = new\n"
            "torch.save(ck if 'model' in ck else new, sys.argv[2])\n")


def paths(gb: float) -> tuple[Path, Path, Path]:
    """(state_dict file, training-dict file, renamed reference file)."""
    return BENCH_DIR / f"remap_sd_{gb}.pt", BENCH_DIR / f"remap_train_{gb}.pt", BENCH_DIR / f"remap_ref_{gb}.pt"


def short_ref_path(gb: float) -> Path:
    """The renamed reference without its last layer."""
    return BENCH_DIR / f"remap_ref_short_{gb}.pt"


def build(gb: float) -> None:
    """Write the three files once (run in a child, so this process's peak RSS does not leak into
    the timed children: Linux children inherit ``ru_maxrss`` across fork)."""
    import torch

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    sd_path, train_path, ref_path = paths(gb)
    sd = transformer_state_dict(int(gb * 1e9))
    if not sd_path.exists():
        torch.save(sd, sd_path)
    if not ref_path.exists():
        # shapes only: one element per tensor, expanded with stride 0
        torch.save({k.replace("model.layers.", "model.blocks.", 1): torch.zeros((), dtype=v.dtype).expand(v.shape)
                    for k, v in sd.items()}, ref_path)
    short = short_ref_path(gb)
    if not short.exists():
        last = max(int(k.split(".")[2]) for k in sd)
        torch.save({k.replace("model.layers.", "model.blocks.", 1): torch.zeros((), dtype=v.dtype).expand(v.shape)
                    for k, v in sd.items() if not k.startswith(f"model.layers.{last}.")}, short)
    if not train_path.exists():
        params = [torch.nn.Parameter(t) for t in sd.values()]
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        torch.save({"model": sd, "optimizer": opt.state_dict(), "epoch": 3}, train_path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        build(args.gb)
        return
    subprocess.run([PY, __file__, "--build", "--gb", str(args.gb)], check=True)
    sd_path, train_path, ref_path = paths(args.gb)
    n = 12 * 250
    out = BENCH_DIR / "remap_out.pt"
    rows = []

    def row(name: str, cmd: list[str]) -> None:
        wall, rss = timed(cmd + (["--force"] if cmd[:3] == ckpttool_cmd() else []), args.repeat)
        rows.append((name, wall, rss / 1024))
        out.unlink(missing_ok=True)

    for label, src in (("state_dict", sd_path), ("training dict + SGD state", train_path)):
        size = src.stat().st_size / 1e9
        row(f"{label} ({size:.2f} GB): ckpttool remap --map", ckpttool_cmd(
            "remap", str(src), "-o", str(out), "--map", "model.layers=model.blocks"))
        row(f"{label}: torch.load + rename + torch.save", [PY, "-c", BASELINE, str(src), str(out), "load"])
        row(f"{label}: torch.load(mmap=True) + rename + torch.save", [PY, "-c", BASELINE, str(src), str(out), "mmap"])
    row(f"plan only: --like alignment of {n} tensors, --dry-run", ckpttool_cmd(
        "remap", str(sd_path), "--like", str(ref_path), "--dry-run", "--json"))
    row(f"plan only: --like a reference one layer short ({n} tensors, order stage), --dry-run", ckpttool_cmd(
        "remap", str(sd_path), "--like", str(short_ref_path(args.gb)), "--dry-run", "--json"))
    print("| case | best wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for name, wall, rss in rows:
        print(f"| {name} | {wall:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
