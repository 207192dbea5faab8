"""Deterministic balancing of units (by byte size) over workers, and the default worker count."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["balance", "default_jobs"]


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count).

    Under torchrun the ranks of one machine (``LOCAL_WORLD_SIZE``) share them.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        cores = max(1, os.cpu_count() or 1)
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, cores // local)


def balance(sizes: Sequence[int], workers: int) -> list[list[int]]:
    """Unit indices per worker: largest first to the least loaded (ties to the lowest index), each list sorted."""
    workers = max(1, workers)
    bins: list[list[int]] = [[] for _ in range(workers)]
    load = [0] * workers
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        w = min(range(workers), key=lambda k: (load[k], k))
        bins[w].append(i)
        load[w] += max(sizes[i], 1)
    return [sorted(b) for b in bins]
