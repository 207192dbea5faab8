"""``python load_sharded.py FOLDER REFERENCE.pt``: 2 gloo processes load a DCP folder into sharded DTensors.

Each rank makes every tensor of REFERENCE (a plain state_dict) a DTensor of the same global shape,
sharded along dim 0 or (for 2-D tensors) dim 1, loads FOLDER into them with
``torch.distributed.checkpoint.load``, and checks its local shard against REFERENCE's slice.
Exit status 0 when every rank matched.
"""

from __future__ import annotations

import os
import sys
import warnings


def _worker(rank: int, port: int, folder: str, reference: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    warnings.simplefilter("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        ref = torch.load(reference, weights_only=True)
        mesh = init_device_mesh("cpu", (2,))
        state = {}
        for k, v in ref["model"].items():
            dim = 1 if v.dim() == 2 else 0
            state[k] = distribute_tensor(torch.zeros_like(v), mesh, [Shard(dim)])
        target = {"model": state, "epoch": 0}
        dcp.load(target, checkpoint_id=folder)
        for k, v in ref["model"].items():
            got = state[k].full_tensor()
            if not torch.equal(got, v):
                raise SystemExit(f"rank {rank}: {k} differs")
            local = state[k].to_local()
            if local.numel() and local.numel() >= v.numel():
                raise SystemExit(f"rank {rank}: {k} was not sharded")
        if target["epoch"] != ref["epoch"]:
            raise SystemExit(f"rank {rank}: epoch {target['epoch']}")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(folder: str, reference: str) -> None:
    import torch.multiprocessing as mp

    from tests.dcp.make_folders import free_port

    mp.spawn(_worker, args=(free_port(), folder, reference), nprocs=2, join=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
