"""Benchmark: consolidating a DeepSpeed ZeRO-2 and ZeRO-3 folder (2 ranks) to safetensors.

``ckpttool convert DS_FOLDER -o model.safetensors`` against DeepSpeed's own
``get_fp32_state_dict_from_zero_checkpoint`` + ``safetensors.torch.save_file`` (plus an fsync, since
ckpttool makes its output durable before renaming it). Each side runs in a fresh child process;
wall time and the child's peak RSS (``wait4``) are reported as a markdown table, and the two
outputs are compared tensor by tensor.

The folders are written by the real DeepSpeed in its side environment (see
fixtures/make_deepspeed_fixtures.py for how to build ``.venv-deepspeed``), into ``--dir``, not
into the repository: a stack of bf16 linear layers of about ``--gib`` GiB of fp32 master weights
trained one step with AdamW on CPU (gloo, 2 local processes), then ``engine.save_checkpoint``.

    python bench/deepspeed_bench.py [--gib 0.25] [--dir /tmp/ckpttool-bench/deepspeed]
                                    [--ds-python .venv-deepspeed/bin/python] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("ckpttool")
CKPTTOOL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ckpttool"]

BASELINE = ("import os, sys; from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint; "
            "from safetensors.torch import save_file; "
            "save_file(get_fp32_state_dict_from_zero_checkpoint(sys.argv[1]), sys.argv[2], metadata={'format': 'pt'}); "
            "fd = os.open(sys.argv[2], os.O_RDONLY); os.fsync(fd)")
COMPARE = ("import sys; from safetensors import safe_open\n"
           "a, b = safe_open(sys.argv[1], 'pt'), safe_open(sys.argv[2], 'pt')\n"
           "ka, kb = sorted(a.keys()), sorted(b.keys())\n"
           "assert ka == kb, (len(ka), len(kb))\n"
           "for k in ka:\n"
           "    x, y = a.get_tensor(k), b.get_tensor(k)\n"
           "    assert x.dtype == y.dtype and x.shape == y.shape and x.view(-1).view(__import__('torch').uint8)"
           ".equal(y.view(-1).view(__import__('torch').uint8)), k\n"
           "print(len(ka))")


def _worker(rank: int, world: int, port: int, stage: int, gib: float, out: str) -> None:
    """One rank of the run that writes the folder (side environment only)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world)})
    import deepspeed
    import torch
    from torch import nn

    torch.set_num_threads(1)
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    torch.manual_seed(0)
    width = 2048
    layers = max(1, round(gib * 2**30 / 4 / (width * width + width)))
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": stage},
              "bf16": {"enabled": True}, "zero_allow_untested_optimizer": True,
              "zero_force_ds_cpu_optimizer": False, "steps_per_print": 10_000}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    x = torch.randn(1, width, dtype=torch.bfloat16)
    engine.backward(engine(x).float().square().mean())
    engine.step()
    engine.save_checkpoint(out)
    torch.distributed.barrier()


def make(folder: Path, stage: int, gib: float) -> None:
    """Write the folder with the real DeepSpeed (run under the side environment's python)."""
    import socket

    import torch.multiprocessing as mp

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, stage, gib, str(folder)), nprocs=2, join=True)


def run(argv: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "DS_ACCELERATOR": "cpu"})
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{argv} failed: {err[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=0.25, help="fp32 master weights per folder, in GiB")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/ckpttool-bench/deepspeed"))
    ap.add_argument("--ds-python", default=str(ROOT / ".venv-deepspeed" / "bin" / "python"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--make", type=int, metavar="STAGE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make is not None:
        make(args.dir, args.make, args.gib)
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for stage in (2, 3):
        folder = args.dir / f"zero{stage}_{args.gib:g}gib"
        if not (folder / "latest").is_file():
            subprocess.run([args.ds_python, __file__, "--make", str(stage), "--gib", str(args.gib),
                            "--dir", str(folder)], check=True, env={**os.environ, "DS_ACCELERATOR": "cpu"},
                           stdout=subprocess.DEVNULL)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        ours_out, base_out = args.dir / f"z{stage}_ckpttool.safetensors", args.dir / f"z{stage}_deepspeed.safetensors"
        best: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeat):
            for who, argv in (("deepspeed", [args.ds_python, "-c", BASELINE, str(folder), str(base_out)]),
                              ("ckpttool", [*CKPTTOOL, "convert", str(folder), "-o", str(ours_out), "--force"])):
                wall, rss = run(argv)
                old = best.get(who)
                best[who] = (min(wall, old[0]) if old else wall, max(rss, old[1]) if old else rss)
        check = subprocess.run([args.ds_python, "-c", COMPARE, str(ours_out), str(base_out)], capture_output=True,
                               text=True)
        same = f"bit-identical ({check.stdout.strip()} tensors)" if check.returncode == 0 else "DIFFERENT"
        (w0, r0), (w1, r1) = best["deepspeed"], best["ckpttool"]
        rows.append(f"| ZeRO-{stage} | {size / 2**30:.2f} GiB | {ours_out.stat().st_size / 2**20:.0f} MiB | "
                    f"{w0:.2f} s / {r0 / 2**20:.0f} MiB | {w1:.2f} s / {r1 / 2**20:.0f} MiB | {w1 / w0:.2f}x | "
                    f"{same} |")
        for p in (ours_out, base_out):
            p.unlink(missing_ok=True)
    print("| folder | on disk | fp32 output | DeepSpeed + save_file (wall / peak RSS) | ckpttool convert | "
          "wall ratio | outputs |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
