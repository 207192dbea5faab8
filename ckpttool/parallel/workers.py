"""One handle for work split into units and steps that one process must do, alone or under torchrun.

A writer that spreads files over ``--jobs`` processes and over the ranks of a torchrun group has
two kinds of steps: units (each writes or checks its own files; ``run``) and steps of the leader
alone (make the temporary folder, write the index, rename; ``leader``) whose result every process
needs. Alone, the leader is this process; under torchrun it is rank 0 and the others wait for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ckpttool.parallel.pool import run_units
from ckpttool.parallel.relay import Relay
from ckpttool.parallel.torchrun import Ranks

__all__ = ["Workers"]

R = TypeVar("R")


@dataclass
class Workers:
    """``jobs`` processes per rank; ``ranks`` the started torchrun group, or None when run alone."""

    jobs: int = 1
    ranks: Ranks | None = None

    @property
    def is_leader(self) -> bool:
        return self.ranks is None or self.ranks.is_leader

    def share(self, sizes: Sequence[int]) -> list[int]:
        """The units this process's group runs: all of them alone, this rank's share under torchrun."""
        return list(range(len(sizes))) if self.ranks is None else self.ranks.share(sizes)

    def run(self, work: Callable[[int], R], sizes: Sequence[int], progress: Relay | None = None) -> list[R]:
        """Every unit's result, in unit order, in every process; a failure anywhere raises everywhere.

        ``progress``: the relay the units report to (its workers' counts reach this process).
        """
        if self.ranks is None:
            return run_units(work, sizes, self.jobs, progress)
        return self.ranks.run(work, sizes, self.jobs, progress)

    def leader(self, fn: Callable[[], R]) -> R:
        """``fn()`` done once, by the leader; its (picklable) result in every process."""
        return fn() if self.ranks is None else self.ranks.on_leader(fn)

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for when alone)."""
        if self.ranks is not None:
            self.ranks.barrier()
