"""Benchmark ``ckpttool extract-ema`` on a big synthetic timm-style training checkpoint.

Builds (once, outside the repo, in $CKPTTOOL_BENCH_DIR or /tmp/ckpttool-bench) a checkpoint with a
fp32 ``state_dict`` of about SIZE/2 GB and a ``state_dict_ema`` of the same size whose values differ
slightly, then times, each in its own child process (best of --repeat, warm page cache; peak RSS
from ``wait4``):

  torch-by-hand        ``torch.load`` + ``safetensors.torch.save_file(ck["state_dict_ema"])``: what
                       people do by hand (no checks, no verification, the whole file in memory)
  torch-by-hand-mmap   the same with ``torch.load(mmap=True)``
  ckpttool --list      ``extract-ema --list``: where the EMA is (metadata only)
  ckpttool --dry-run   ``extract-ema --dry-run``: finds and checks the EMA (distance streamed)
  ckpttool -o          ``extract-ema -o out.safetensors``: checks + atomic write + re-read verification

Usage:  .venv/bin/python bench/ema_bench.py [--size-gb 1] [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed

_MAKE = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[3])
    from common import transformer_state_dict
    total, out = int(float(sys.argv[1]) * 2**30), sys.argv[2]
    torch.manual_seed(0)
    sd = transformer_state_dict(total // 2)
    for v in sd.values():
        v.normal_()
    ema = {k: v + 1e-3 * torch.randn_like(v) for k, v in sd.items()}
    torch.save({"epoch": 9, "arch": "synthetic", "state_dict": sd, "state_dict_ema": ema}, out)
""")

_BY_HAND = textwrap.dedent("""
    import sys, torch
    from safetensors.torch import save_file
    ck = torch.load(sys.argv[1], map_location="cpu", weights_only=True, mmap=sys.argv[3] == "mmap")
    save_file({k: v.contiguous() for k, v in ck["state_dict_ema"].items()}, sys.argv[2])
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0, help="total checkpoint size (model + EMA)")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    src = BENCH_DIR / f"ema_train_{a.size_gb:g}gb.pth.tar"
    if not src.exists():
        import subprocess

        subprocess.run([sys.executable, "-c", _MAKE, str(a.size_gb), str(src), str(Path(__file__).parent)],
                       check=True)
    out = BENCH_DIR / "ema_out.safetensors"
    rows = []
    for name, cmd in (
        ("torch-by-hand", [sys.executable, "-c", _BY_HAND, str(src), str(out), "load"]),
        ("torch-by-hand-mmap", [sys.executable, "-c", _BY_HAND, str(src), str(out), "mmap"]),
        ("ckpttool --list", ckpttool_cmd("extract-ema", str(src), "--list", "--json")),
        ("ckpttool --dry-run", ckpttool_cmd("extract-ema", str(src), "--dry-run", "--json")),
        ("ckpttool -o", ckpttool_cmd("extract-ema", str(src), "-o", str(out), "--force", "--json")),
    ):
        seconds, peak_kib = timed(cmd, a.repeat)
        rows.append((name, seconds, peak_kib / 1024))
        out.unlink(missing_ok=True)
    size = src.stat().st_size / 2**30
    print(f"extract-ema on a {size:.2f} GiB timm-style checkpoint (EMA {size / 2:.2f} GiB), best of {a.repeat}\n")
    print("| contender | wall s | peak RSS MiB |")
    print("|---|---:|---:|")
    for name, seconds, mib in rows:
        print(f"| {name} | {seconds:.2f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
