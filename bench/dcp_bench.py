"""DCP folders and shard sets at scale: ckpttool against the torch route, in one run.

Run: ``python bench/dcp_bench.py [--size 1GiB] [--small 256MiB] [--repeat 1]``, or for how DCP -> shard
set grows with the model and ``--jobs``: ``--sizes 1GiB,2GiB,4GiB [--save FILE] [--clean]``. Builds, once, in
$CKPTTOOL_BENCH_DIR (default /tmp/ckpttool-bench): a transformer-like model (288 tensors plus one
256 MiB ``lm_head``) as a 2-rank DCP folder (Shard(0), written by two gloo processes), as one
``.pt``; a 12.5k-chunk-entry DCP folder (6,250 small tensors on 2 ranks); and a 100k-chunk-entry
``.metadata`` (1,000 tensors x 100 chunks, pickled from torch's own classes; no data files, as
neither side reads them). Every command runs as a fresh child process; time is wall clock (best of
``--repeat``), peak RSS is ``ru_maxrss`` of the child (for ``--jobs 2``, the largest process). The
inputs are built by a separate child (``--build``), so this process stays small: Linux carries
``ru_maxrss`` over ``fork``/``exec``, and a parent holding the model would inflate every figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed

HEAD = 256 << 20

TORCH_SHARDS = r"""
import json, sys, torch, warnings
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from safetensors.torch import save_file
warnings.simplefilter("ignore")
src, out, shards = sys.argv[1], sys.argv[2], int(sys.argv[3])
md = FileSystemReader(src).read_metadata()
keys = [k for k, v in md.state_dict_metadata.items() if hasattr(v, "chunks")]
total = sum(md.state_dict_metadata[k].size.numel() * md.state_dict_metadata[k].properties.dtype.itemsize for k in keys)
plan, cur, size = [], [], 0
for k in keys:
    m = md.state_dict_metadata[k]
    n = m.size.numel() * m.properties.dtype.itemsize
    if cur and size + n > total / shards:
        plan.append(cur); cur, size = [], 0
    cur.append(k); size += n
plan.append(cur)
for i, group in enumerate(plan):
    state = {k: torch.empty(md.state_dict_metadata[k].size, dtype=md.state_dict_metadata[k].properties.dtype)
             for k in group}
    dcp.load(state, checkpoint_id=src, no_dist=True)
    save_file(state, f"{out}/model-{i + 1:05d}-of-{len(plan):05d}.safetensors")
    del state
"""

TORCH_ALL = r"""
import sys, torch, warnings
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from safetensors.torch import save_file
warnings.simplefilter("ignore")
md = FileSystemReader(sys.argv[1]).read_metadata()
state = {k: torch.empty(v.size, dtype=v.properties.dtype) for k, v in md.state_dict_metadata.items()
         if hasattr(v, "chunks")}
dcp.load(state, checkpoint_id=sys.argv[1], no_dist=True)
save_file(state, sys.argv[2])
"""

TORCH_TO_DCP = ("import sys, warnings; warnings.simplefilter('ignore'); "
                "from torch.distributed.checkpoint.format_utils import torch_save_to_dcp; "
                "torch_save_to_dcp(sys.argv[1], sys.argv[2])")
TORCH_METADATA = ("import sys; from torch.distributed.checkpoint import FileSystemReader; "
                  "print(len(FileSystemReader(sys.argv[1]).read_metadata().storage_data))")


def parse_size(text: str) -> int:
    units = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[:-3]) * factor)
    return int(text)


def model(total: int) -> dict:
    """288 transformer-like tensors plus a 256 MiB head, about ``total`` bytes, deterministic values."""
    import torch
    from common import transformer_state_dict

    sd = transformer_state_dict(max(total - HEAD, 1 << 20), layers=24)
    gen = torch.Generator().manual_seed(0)
    for t in sd.values():
        t.copy_(torch.randn(t.shape, generator=gen))
    sd["lm_head.weight"] = torch.randn(HEAD // 4096, 1024, generator=gen)
    return sd


def local_model(total: int, mesh: object, rank: int) -> dict:
    """``model(total)``'s shapes as ``Shard(0)`` DTensors, each rank making only its own rows.

    Values differ from ``model`` (a generator per tensor and rank), the layout on disk does not;
    two ranks then hold one model between them, so a 4 GiB folder builds in ~4 GiB of memory.
    """
    import torch
    from common import transformer_state_dict
    from torch.distributed.tensor import DTensor, Shard

    shapes = {k: tuple(v.shape) for k, v in transformer_state_dict(max(total - HEAD, 1 << 20), layers=24).items()}
    shapes["lm_head.weight"] = (HEAD // 4096, 1024)
    out = {}
    for i, (key, shape) in enumerate(shapes.items()):
        rows = len(torch.arange(shape[0]).chunk(2)[rank]) if len(torch.arange(shape[0]).chunk(2)) > rank else 0
        gen = torch.Generator().manual_seed(i * 2 + rank)
        local = torch.randn((rows, *shape[1:]), generator=gen)
        stride = tuple(int(torch.tensor(shape[j + 1:]).prod()) for j in range(len(shape)))
        out[key] = DTensor.from_local(local, mesh, [Shard(0)], shape=torch.Size(shape), stride=stride)
    return out


def _save_ranks(rank: int, port: int, folder: str, total: int, small: int) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    warnings.simplefilter("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    mesh = init_device_mesh("cpu", (2,))
    if small:
        import torch

        gen = torch.Generator().manual_seed(1)
        sd = {f"t.{i}": torch.randn(small, generator=gen) for i in range(6250)}
        state = {"model": {k: distribute_tensor(v, mesh, [Shard(0)]) for k, v in sd.items()}}
    else:
        state = {"model": local_model(total, mesh, rank)}
    dcp.save(state, checkpoint_id=folder)
    dist.barrier()
    dist.destroy_process_group()


def two_rank_dcp(folder: Path, total: int, small: int = 0) -> Path:
    if not (folder / ".metadata").exists():
        import torch.multiprocessing as mp

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.dcp.make_folders import free_port

        shutil.rmtree(folder, ignore_errors=True)
        mp.spawn(_save_ranks, args=(free_port(), str(folder), total, small), nprocs=2, join=True)
    return folder


def single_pt(path: Path, total: int) -> Path:
    if not path.exists():
        import torch

        torch.save({"model": model(total)}, path.with_suffix(".partial"))
        path.with_suffix(".partial").rename(path)
    return path


def metadata_100k(folder: Path) -> Path:
    if not (folder / ".metadata").exists():
        import pickle

        import torch
        from torch.distributed.checkpoint.filesystem import _StorageInfo
        from torch.distributed.checkpoint.metadata import (
            ChunkStorageMetadata,
            Metadata,
            MetadataIndex,
            TensorProperties,
            TensorStorageMetadata,
        )

        folder.mkdir(parents=True, exist_ok=True)
        sdm, storage = {}, {}
        for t in range(1000):
            fqn = f"model.layers.{t}.weight"
            chunks = [ChunkStorageMetadata(torch.Size([c * 4, 0]), torch.Size([4, 8])) for c in range(100)]
            sdm[fqn] = TensorStorageMetadata(TensorProperties(dtype=torch.float32), torch.Size([400, 8]), chunks)
            for c in range(100):
                storage[MetadataIndex(fqn, torch.Size([c * 4, 0]))] = _StorageInfo(f"__{c}_0.distcp", t * 1000, 1000)
        md = Metadata(sdm, {k: tuple(k.split(".", 1)) for k in sdm}, storage)
        (folder / ".metadata").write_bytes(pickle.dumps(md))
    return folder


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    if path.is_file():
        path.unlink()
    return path


def row(rows: list, what: str, ours: tuple[float, int], base: tuple[float, int] | None, base_name: str) -> None:
    rows.append((what, ours, base, base_name))


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def growth(args: argparse.Namespace) -> None:
    """Time and peak RSS of DCP -> shard set as the model grows, ``--jobs`` 1 and 2, the torch route beside."""
    import subprocess

    sizes = [parse_size(x) for x in args.sizes.split(",")]
    folders = [BENCH_DIR / f"dcp2-{total >> 20}MiB" for total in sizes]
    if args.build:
        for total, folder in zip(sizes, folders):
            two_rank_dcp(folder, total)
        return
    subprocess.run([sys.executable, __file__, "--build", "--sizes", args.sizes], check=True)
    out = BENCH_DIR / "dcp-out"
    py = sys.executable
    lines = ["| model | torch route (s) | torch RSS (MiB) | --jobs 1 (s) | RSS (MiB) | ratio | "
             "--jobs 2 (s) | RSS (MiB) | ratio | load before, after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for total, folder in zip(sizes, folders):
        before = _load()
        shard = str(max(total // 4, HEAD + (1 << 20)))
        fresh(out).mkdir()
        base = timed([py, "-c", TORCH_SHARDS, str(folder), str(out), "4"], args.repeat)
        ours = [timed(ckpttool_cmd("convert", str(folder), "-o", str(fresh(out)), "--max-shard-size", shard,
                                   "--jobs", jobs, "--force"), args.repeat) for jobs in ("1", "2")]
        fresh(out)
        cells = [f"{round(total / (1 << 30), 2):g} GiB", f"{base[0]:.2f}", f"{base[1] / 1024:.0f}"]
        for t, rss in ours:
            cells += [f"{t:.2f}", f"{rss / 1024:.0f}", f"{t / base[0]:.2f}x"]
        lines.append("| " + " | ".join(cells) + f" | {before}; {_load()} |")
        print(lines[-1], flush=True)
        if args.clean:
            shutil.rmtree(folder, ignore_errors=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.save:
        args.save.write_text(f"`python bench/dcp_bench.py --sizes {args.sizes} --repeat {args.repeat}`, "
                             f"{os.cpu_count()} CPUs, load average (1, 5, 15 min) in the last column:\n\n{table}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1GiB", help="the big model (the issue's trial used 2GiB)")
    parser.add_argument("--small", default="512MiB", help="a second size, to show how time and memory grow")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sizes", help="growth curve only: DCP -> shard set at these sizes (e.g. 1GiB,2GiB,4GiB), "
                                        "--jobs 1 and 2 against the torch route")
    parser.add_argument("--save", type=Path, help="also write the table (and the load) to this markdown file")
    parser.add_argument("--clean", action="store_true", help="remove the inputs of --sizes afterwards")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if args.sizes:
        growth(args)
        return
    sizes = [parse_size(args.small), parse_size(args.size)]
    if args.build:
        for total in sizes:
            two_rank_dcp(BENCH_DIR / f"dcp2-{total >> 20}MiB", total)
            single_pt(BENCH_DIR / f"model-{total >> 20}MiB.pt", total)
        two_rank_dcp(BENCH_DIR / "dcp2-12500-entries", 0, small=128)
        metadata_100k(BENCH_DIR / "dcp-100k-entries")
        return
    import subprocess

    subprocess.run([sys.executable, __file__, "--build", "--size", args.size, "--small", args.small], check=True)
    out = BENCH_DIR / "dcp-out"
    rows: list = []
    py = sys.executable
    for total in sizes:
        tag = f"{total >> 20}MiB"
        folder = BENCH_DIR / f"dcp2-{tag}"
        pt = BENCH_DIR / f"model-{tag}.pt"
        shard = str(max(total // 4, HEAD + (1 << 20)))
        for jobs in ("1", "2"):
            ours = timed(ckpttool_cmd("convert", str(folder), "-o", str(fresh(out)), "--max-shard-size", shard,
                                      "--jobs", jobs, "--force"), args.repeat)
            fresh(out).mkdir()
            base = timed([py, "-c", TORCH_SHARDS, str(folder), str(out), "4"], args.repeat) if jobs == "1" else None
            row(rows, f"{tag} DCP (2 ranks) -> shard set, --jobs {jobs}", ours, base, "dcp.load per shard + save_file")
        ours = timed(ckpttool_cmd("convert", str(pt), "-o", str(fresh(out)), "--force"), args.repeat)
        base = timed([py, "-c", TORCH_TO_DCP, str(pt), str(fresh(out))], args.repeat)
        row(rows, f"{tag} .pt -> DCP", ours, base, "torch_save_to_dcp")
    many = BENCH_DIR / "dcp2-12500-entries"
    target = BENCH_DIR / "many.safetensors"
    ours = timed(ckpttool_cmd("convert", str(many), "-o", str(target), "--force"), args.repeat)
    base = timed([py, "-c", TORCH_ALL, str(many), str(target)], args.repeat)
    row(rows, "12.5k-entry DCP -> safetensors", ours, base, "dcp.load + save_file")
    big = BENCH_DIR / "dcp-100k-entries"
    ours = timed(ckpttool_cmd("inspect", str(big), "--json"), max(args.repeat, 3))
    base = timed([py, "-c", TORCH_METADATA, str(big)], max(args.repeat, 3))
    row(rows, "100k-entry inspect --json", ours, base, "FileSystemReader.read_metadata()")
    fresh(out)
    print("| case | ckpttool (s) | peak RSS (MiB) | torch route | torch (s) | torch RSS (MiB) | ratio |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for what, (t, rss), base, name in rows:
        if base is None:
            print(f"| {what} | {t:.2f} | {rss / 1024:.0f} | | | | |")
        else:
            print(f"| {what} | {t:.2f} | {rss / 1024:.0f} | {name} | {base[0]:.2f} | {base[1] / 1024:.0f} | "
                  f"{t / base[0]:.2f}x |")
    size = (big / ".metadata").stat().st_size
    print(f"\n100k-entry .metadata: {size:,} bytes, {size / 100_000:.0f} bytes per chunk entry on disk")


if __name__ == "__main__":
    main()
