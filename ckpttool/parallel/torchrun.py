"""Units over the ranks of a torch.distributed group, when ``torchrun`` started this process.

``torchrun --nproc-per-node K [--nnodes M] -m ckpttool convert ...`` sets ``RANK``,
``WORLD_SIZE`` (and the rendezvous address) in each process. Every rank opens the same input
(shared storage), runs the units ``balance`` gives it, and all ranks exchange their results and
failures with ``all_gather_object`` over gloo (CPU, no GPU needed). Only then does rank 0 publish
(write the index, rename into place), and a barrier holds the others until it has: a failure on
any rank is raised on every rank and nothing is published.

Work that is not split (a single output file, a remap) runs on rank 0 alone (``on_leader``) while
the others wait for its outcome and end with the same result or exit status; inside it the process
behaves as if run alone, so nested writers never wait on ranks that are not there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ckpttool.errors import CkptError, UnreadableCheckpoint, UsageError
from ckpttool.parallel.plan import balance

if TYPE_CHECKING:
    from ckpttool.parallel.relay import Relay

__all__ = ["Ranks", "ranks_from_env", "RankFailed", "LeaderFailed", "run_split"]

R = TypeVar("R")
_SOLO: list[bool] = []  # set while rank 0 runs work of its own: the group is not asked for anything


class RankFailed(UnreadableCheckpoint):
    """Another rank failed; this one stops too, and nothing is published."""


class LeaderFailed(CkptError):
    """Rank 0 failed at work it ran alone; the other ranks end with its exit status (it reports)."""

    reference = "rank-failed"

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc] - the leader's status, not the class's


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
            try:
                dist.init_process_group("gloo")
            except (ValueError, RuntimeError) as exc:  # an environment torchrun did not set up whole
                raise UsageError(f"cannot join the torchrun group (rank {self.rank} of {self.world_size}): {exc}",
                                 hint="start it with torchrun, or unset WORLD_SIZE to run as one process") from None
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

    def run(self, work: Callable[[int], R], sizes: Sequence[int], jobs: int = 1,
            progress: Callable[[int], None] | Relay | None = None) -> list[R]:
        """Every unit's result (on every rank); this rank ran its share. A failure anywhere raises everywhere.

        ``jobs`` > 1: this rank's share runs over that many forked worker processes (ranks × jobs).
        """
        from ckpttool.parallel.pool import run_units

        mine = self.share(sizes)
        results: dict[int, Any] = {}
        error: str | None = None
        try:
            done = run_units(lambda k: work(mine[k]), [sizes[i] for i in mine], jobs, progress)
            results = dict(zip(mine, done))
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

    def on_leader(self, fn: Callable[[], R]) -> R:
        """``fn()`` run by rank 0 alone; its result (picklable) on every rank, its failure raised on every rank.

        Rank 0 raises its own error (and reports it); the others raise ``LeaderFailed`` with its exit status.
        """
        result: Any = None
        failure: tuple[int, str] | None = None
        caught: BaseException | None = None
        if self.is_leader:
            _SOLO.append(True)
            try:
                result = fn()
            except CkptError as exc:
                caught, failure = exc, (exc.exit_code, exc.one_line())
            except BaseException as exc:  # noqa: BLE001 - the others learn of it, then it is raised here
                caught, failure = exc, (2, f"{type(exc).__name__}: {exc}")
            finally:
                _SOLO.pop()
        result, failure = self.gather((result if failure is None else None, failure))[0]
        if caught is not None:
            raise caught
        if failure is not None:
            raise LeaderFailed(f"rank 0: {failure[1]}", failure[0])
        return result

    def __enter__(self) -> Ranks:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_split(work: Callable[[int], R], sizes: Sequence[int], jobs: int,
              progress: Callable[[int], None] | Relay | None = None) -> list[R]:
    """``run_units`` alone; under torchrun the units split over the ranks (each over ``jobs`` processes)."""
    from ckpttool.parallel.pool import run_units

    ranks = ranks_from_env()
    if ranks is None:
        return run_units(work, sizes, jobs, progress)
    with ranks:
        return ranks.run(work, sizes, jobs, progress if ranks.is_leader else None)


def ranks_from_env() -> Ranks | None:
    """The group ``torchrun`` set up in the environment, or None when run alone (WORLD_SIZE unset or 1).

    Also None on rank 0 while it runs work of its own (``Ranks.on_leader``).
    """
    if _SOLO:
        return None
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        return None
    if world <= 1 or not 0 <= rank < world or "MASTER_ADDR" not in os.environ:
        return None
    return Ranks(rank, world)
