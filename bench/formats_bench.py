"""torch.export archives and .bin shard sets: ckpttool against the libraries' own loaders.

Run: ``python bench/formats_bench.py [--size 200MB]``. Builds, once, in $CKPTTOOL_BENCH_DIR (default
/tmp/ckpttool-bench): a ``.pt2`` archive of a stack of Linear layers (``torch.export.save``), its
state_dict as ``.pt``, and the same state_dict as a ``pytorch_model-*.bin`` shard set. Each command
runs as a fresh process (imports included), best of N; peak RSS is the child's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed

EXPORT_LOAD = "import sys, torch; ep = torch.export.load(sys.argv[1]); print(len(ep.state_dict))"
EXPORT_DIFF = ("import sys, torch; a = torch.export.load(sys.argv[1]).state_dict; "
               "b = torch.load(sys.argv[2], weights_only=True); "
               "print(all(torch.equal(a[k], b[k]) for k in b))")
EXPORT_CONVERT = ("import sys, torch; from safetensors.torch import save_file; "
                  "sd = torch.export.load(sys.argv[1]).state_dict; "
                  "save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[2])")
SHARDS_LOAD = ("import json, sys, torch, pathlib; d = pathlib.Path(sys.argv[1]); "
               "wm = json.loads((d / 'pytorch_model.bin.index.json').read_text())['weight_map']; sd = {}; "
               "[sd.update(torch.load(d / s, mmap=True, weights_only=True)) for s in sorted(set(wm.values()))]; "
               "print(len(sd))")


def _paths(size: int) -> tuple[Path, Path, Path]:
    return BENCH_DIR / f"export-{size}.pt2", BENCH_DIR / f"export-{size}.pt", BENCH_DIR / f"bin-{size}"


def _build(size: int) -> None:
    """Run in a child process: a parent holding torch and the model would inflate every child's
    ``ru_maxrss`` (Linux carries the pre-exec high-water mark into the exec'd child)."""
    import torch

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    pt2, pt, shards = _paths(size)
    width = 512
    layers = max(1, size // (width * width * 4))
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).eval()
    torch.export.save(torch.export.export(model, (torch.randn(1, width),)), str(pt2))
    torch.save(model.state_dict(), pt)
    shutil.rmtree(shards, ignore_errors=True)
    shards.mkdir()
    import subprocess

    subprocess.run(ckpttool_cmd("convert", str(pt), "-o", str(shards / "pytorch_model.bin"),
                                "--max-shard-size", "50MB"), check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="200MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = int(float(args.size.upper().removesuffix("MB")) * 10**6)
    if args.build_only:
        _build(size)
        return
    pt2, pt, shards = _paths(size)
    if not (pt2.exists() and pt.exists() and shards.exists()):
        import subprocess

        subprocess.run([sys.executable, __file__, "--size", args.size, "--build-only"], check=True)
    out = BENCH_DIR / "formats-bench-out"
    out.mkdir(exist_ok=True)
    py = sys.executable
    cases = [
        ("inspect .pt2", ckpttool_cmd("inspect", str(pt2), "--json"), [py, "-c", EXPORT_LOAD, str(pt2)]),
        ("diff .pt2 vs .pt", ckpttool_cmd("diff", str(pt2), str(pt), "--json"),
         [py, "-c", EXPORT_DIFF, str(pt2), str(pt)]),
        ("convert .pt2 -> safetensors",
         ckpttool_cmd("convert", str(pt2), "-o", str(out / "w.safetensors"), "--force"),
         [py, "-c", EXPORT_CONVERT, str(pt2), str(out / "base.safetensors")]),
        ("inspect .bin shard set", ckpttool_cmd("inspect", str(shards), "--json"),
         [py, "-c", SHARDS_LOAD, str(shards)]),
    ]
    shard_bytes = sum(p.stat().st_size for p in shards.iterdir())
    print(f"file: {pt2.name} {pt2.stat().st_size:,} bytes; shard set {shard_bytes:,} bytes\n")
    print("| case | ckpttool (s) | peak RSS (MiB) | library baseline (s) | baseline RSS (MiB) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ours_cmd, base_cmd in cases:
        ours, our_rss = timed(ours_cmd, args.repeat)
        base, base_rss = timed(base_cmd, args.repeat)
        print(f"| {name} | {ours:.2f} | {our_rss / 1024:.0f} | {base:.2f} | {base_rss / 1024:.0f} "
              f"| {base / ours:.1f}x |")


if __name__ == "__main__":
    main()
