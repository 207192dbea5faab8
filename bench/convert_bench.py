"""Benchmark: ``ckpttool convert`` vs ``safetensors.torch.save_file(torch.load(...))`` and back.

Builds a synthetic fp32 checkpoint (default 2 GB, outside the repo), then times each direction in
a fresh child process and reads its peak RSS from ``wait4`` (the child's own ``ru_maxrss``), so the
numbers include interpreter and torch start-up for both sides alike. Prints a markdown table.

    python bench/convert_bench.py [--gb 2] [--dir /tmp/ckpttool_convert_bench] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
_SCRIPT = Path(PY).with_name("ckpttool")
CKPTTOOL = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "ckpttool"]

BASE_PT2ST = ("import sys, torch; from safetensors.torch import save_file; "
              "save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2], metadata={'format': 'pt'})")
BASE_ST2PT = ("import sys, torch; from safetensors.torch import load_file; "
              "torch.save(load_file(sys.argv[1]), sys.argv[2])")
# ckpttool fsyncs before it renames (a crash never leaves a torn file): the same baseline made durable.
FSYNC = "; import os; fd = os.open(sys.argv[2], os.O_RDONLY); os.fsync(fd)"


def build(path: Path, gb: float) -> tuple[int, int]:
    """A state_dict of ``gb`` GB: one big embedding, many 32 MB matrices, small biases.

    Run in a child process: Linux carries a parent's peak RSS over to its children's ``ru_maxrss``,
    so this process must never hold the model itself.
    """
    import torch

    torch.manual_seed(0)
    total = int(gb * 1e9)
    sd: dict[str, torch.Tensor] = {"embed.weight": torch.randn(32_000, 1024)}  # 131 MB
    i = 0
    while sum(t.nbytes for t in sd.values()) < total:
        sd[f"layers.{i}.weight"] = torch.randn(2048, 4096)  # 33.5 MB
        sd[f"layers.{i}.bias"] = torch.randn(4096)
        i += 1
    torch.save(sd, path)
    return sum(t.nbytes for t in sd.values()), max(t.nbytes for t in sd.values())


def run(argv: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{argv} failed: {err}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/ckpttool_convert_bench"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        print(*build(args.build, args.gb))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    src = args.dir / "model.pt"
    sizes = subprocess.run([PY, __file__, "--build", str(src), "--gb", str(args.gb)], check=True,
                           capture_output=True, text=True).stdout.split()
    total, largest = int(sizes[0]), int(sizes[1])
    st = args.dir / "model.safetensors"
    subprocess.run([PY, "-c", BASE_PT2ST, str(src), str(st)], check=True)
    cases = [
        ("pt → safetensors", "baseline: save_file(torch.load())", [PY, "-c", BASE_PT2ST, str(src)], ".safetensors"),
        ("pt → safetensors", "baseline + fsync", [PY, "-c", BASE_PT2ST + FSYNC, str(src)], ".safetensors"),
        ("pt → safetensors", "ckpttool convert", [*CKPTTOOL, "convert", str(src), "-o"], ".safetensors"),
        ("safetensors → pt", "baseline: torch.save(load_file())", [PY, "-c", BASE_ST2PT, str(st)], ".pt"),
        ("safetensors → pt", "baseline + fsync", [PY, "-c", BASE_ST2PT + FSYNC, str(st)], ".pt"),
        ("safetensors → pt", "ckpttool convert", [*CKPTTOOL, "convert", str(st), "-o"], ".pt"),
    ]
    best: dict[int, tuple[float, int]] = {}
    for _ in range(args.repeat):  # rounds interleave the tools, so drifting disk speed hits all alike
        for i, (_, _, argv, ext) in enumerate(cases):
            out = args.dir / f"out{ext}"
            if out.exists():
                out.unlink()
            os.sync()  # start every run with no dirty pages: nobody pays for another's writeback
            wall, rss = run([*argv, str(out)])
            if i not in best or wall < best[i][0]:
                best[i] = (wall, rss)
    rows = [(direction, who, *best[i]) for i, (direction, who, _, _) in enumerate(cases)]
    print(f"checkpoint: {total / 1e9:.2f} GB fp32, {largest / 1e6:.0f} MB largest tensor; "
          f"best of {args.repeat} interleaved rounds, "
          f"os.sync() before each run, fresh process each run (includes Python/torch start-up)\n")
    print("| direction | tool | time (s) | × baseline | peak RSS (MB) |")
    print("|---|---|---:|---:|---:|")
    base: dict[str, float] = {}
    for direction, who, wall, rss in rows:
        base.setdefault(direction, wall)
        print(f"| {direction} | {who} | {wall:.2f} | {wall / base[direction]:.2f} | {rss / 1e6:.0f} |")
    shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
