"""Units over the ranks of a torch.distributed group, when ``torchrun`` started this process.

``torchrun --nproc-per-node K [--nnodes M] -m ckpttool convert ...`` sets ``RANK``,
``WORLD_SIZE`` (and the rendezvous address) in each process. Every rank opens the same input
(shared storage), runs the units ``balance`` gives it, and all ranks exchange their results and
failures with ``all_gather_object`` over gloo (CPU, no GPU needed). Only then does rank 0 publish
(write the index, rename into place), and a barrier holds the others until it has: a failure on
any rank is raised on every rank and nothing is published.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ckpttool.errors import CkptError, UnreadableCheckpoint
from ckpttool.parallel.plan import balance

__all__ = ["Ranks", "ranks_from_env", "RankFailed"]

R = TypeVar("R")


class RankFailed(UnreadableCheckpoint):
    """Another rank failed; this one stops too, and nothing is published."""


@dataclass
class Ranks:
    """This process's place in a torch.distributed group started by ``torchrun``."""

    rank: int
    world_size: int
    _owns_group: bool = False

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def start(self) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
            self._owns_group = True

    def stop(self) -> None:
        import torch.distributed as dist

        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """``value`` from every rank, in rank order, on every rank."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def share(self, sizes: Sequence[int]) -> list[int]:
        """The units this rank runs."""
        return balance(sizes, self.world_size)[self.rank]

    def run(self, work: Callable[[int], R], sizes: Sequence[int]) -> list[R]:
        """Every unit's result (on every rank); this rank ran its share. A failure anywhere raises everywhere."""
        mine = self.share(sizes)
        results: dict[int, Any] = {}
        error: str | None = None
        try:
            for i in mine:
                results[i] = work(i)
        except CkptError as exc:
            error = f"rank {self.rank}: {exc.message}"
        except Exception as exc:  # noqa: BLE001 - reported to every rank, then raised
            error = f"rank {self.rank}: {type(exc).__name__}: {exc}"
        gathered = self.gather((results, error))
        errors = [e for _, e in gathered if e]
        if errors:
            raise RankFailed("; ".join(errors))
        merged: dict[int, Any] = {}
        for part, _ in gathered:
            merged.update(part)
        return [merged[i] for i in range(len(sizes))]


def ranks_from_env() -> Ranks | None:
    """The group ``torchrun`` set up in the environment, or None when run alone (WORLD_SIZE unset or 1)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        return None
    if world <= 1 or not 0 <= rank < world or "MASTER_ADDR" not in os.environ:
        return None
    return Ranks(rank, world)
