"""Run units in this process or over forked worker processes, results in unit order.

Workers are forked, so they inherit the opened checkpoints (lazy ``TensorRef``s, their sources)
without pickling them: only the unit's index goes to a worker and only its (small, picklable)
result comes back. Each worker holds what one unit needs, so memory is bounded per process.
The first failure cancels the units not yet started and is raised in the caller.
Progress is told as units finish, or chunk by chunk from the workers through a ``Relay``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ckpttool.parallel.relay import Relay

__all__ = ["run_units"]

R = TypeVar("R")
MIN_PARALLEL_BYTES = 32 << 20  # below this, starting processes costs more than it saves
_WORK: list[Callable[[int], Any]] = []
POLL_S = 0.2  # how often the parent passes on workers' progress


def _call(i: int) -> Any:
    return _WORK[-1](i)


def run_units(work: Callable[[int], R], sizes: Sequence[int], jobs: int,
              progress: Callable[[int], None] | Relay | None = None) -> list[R]:
    """``[work(i) for i in range(len(sizes))]``, over ``jobs`` processes when that is more than one.

    ``progress(nbytes)`` is called in this process as each unit completes with the unit's size.
    A ``Relay`` instead is the sink the units themselves report to, chunk by chunk; its
    workers' counts are passed on here while the units run.
    """
    relay = progress if isinstance(progress, Relay) else None
    if relay is not None:
        progress = None
    n = len(sizes)
    jobs = min(max(1, jobs), n)
    if jobs <= 1 or sum(sizes) < MIN_PARALLEL_BYTES or not _can_fork():
        out = []
        for i in range(n):
            out.append(work(i))
            if progress is not None:
                progress(sizes[i])
        return out
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("fork")
    if relay is not None:
        relay.open(context)
    order = sorted(range(n), key=lambda i: (-sizes[i], i))  # largest first: the pool's queue balances the rest
    results: dict[int, Any] = {}
    _WORK.append(work)
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_call, i): i for i in order}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S if relay is not None else None,
                                     return_when=FIRST_COMPLETED)
                if relay is not None:
                    relay.drain()
                for f in done:
                    exc = f.exception()
                    if exc is not None:
                        for other in pending:
                            other.cancel()
                        raise exc
                    results[futures[f]] = f.result()
                    if progress is not None:
                        progress(sizes[futures[f]])
    finally:
        _WORK.pop()
        if relay is not None:
            relay.close()
    return [results[i] for i in range(n)]


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()
