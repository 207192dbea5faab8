"""Write real DCP folders with ``torch.distributed.checkpoint.save`` from gloo processes on 127.0.0.1.

``python make_folders.py OUT WORLD`` starts WORLD processes; each builds DTensors on a CPU device
mesh and all of them save together, as a sharded training job would:
- world 2: ``shard0`` (Shard(0), one uneven last shard, a replicated tensor, plain values),
  ``shard1`` (Shard(1), uneven), ``fsdp`` (an FSDP2 model and its Adam state after one step);
- world 4: ``mesh2d`` (a 2x2 mesh, [Shard(0), Shard(1)] and [Shard(1), Shard(0)], uneven edges).
The values are a fixed function of the index, so every rank builds the same global tensors.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _full(shape: tuple[int, ...], dtype: object, seed: int) -> object:
    import torch

    n = 1
    for s in shape:
        n *= s
    return ((torch.arange(n, dtype=torch.float64) * 0.37 + seed) % 17 - 8).reshape(shape).to(dtype)


def _save_world2(out: Path) -> None:
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor, init_device_mesh

    mesh = init_device_mesh("cpu", (2,))
    state = {
        "model": {
            "emb.weight": distribute_tensor(_full((7, 5), torch.float32, 1), mesh, [Shard(0)]),
            "lin.weight": distribute_tensor(_full((6, 4), torch.bfloat16, 2), mesh, [Shard(0)]),
            "lin.bias": distribute_tensor(_full((3,), torch.float16, 3), mesh, [Shard(0)]),
            "norm.weight": distribute_tensor(_full((4,), torch.float32, 4), mesh, [Replicate()]),
            "ids": distribute_tensor(torch.arange(9, dtype=torch.int64), mesh, [Shard(0)]),
        },
        "epoch": 3,
        "args": {"lr": 0.5, "name": "run"},
    }
    dcp.save(state, checkpoint_id=out / "shard0")
    cols = {"model": {"w": distribute_tensor(_full((4, 9), torch.float32, 5), mesh, [Shard(1)]),
                      "v": distribute_tensor(_full((3, 2, 5), torch.float64, 6), mesh, [Shard(1)])}}
    dcp.save(cols, checkpoint_id=out / "shard1")
    _save_fsdp(out / "fsdp")


def _save_fsdp(folder: Path) -> None:
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    for layer in (model[0], model[2]):
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(2, 5)).sum().backward()
    opt.step()
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=folder)


def _save_world4(out: Path) -> None:
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    mesh = init_device_mesh("cpu", (2, 2))
    state = {"model": {
        "a": distribute_tensor(_full((5, 7), torch.float32, 7), mesh, [Shard(0), Shard(1)]),
        "b": distribute_tensor(_full((6, 3), torch.float16, 8), mesh, [Shard(1), Shard(0)]),
        "c": distribute_tensor(_full((9, 2, 3), torch.float32, 9), mesh, [Shard(0), Shard(0)]),
    }}
    dcp.save(state, checkpoint_id=out / "mesh2d")


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    warnings.simplefilter("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        (_save_world2 if world == 2 else _save_world4)(Path(out))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(out: str, world: int) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(world, free_port(), out), nprocs=world, join=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
