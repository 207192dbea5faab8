"""Progress that reaches the parent from forked worker processes, chunk by chunk.

A worker cannot draw (it shares the parent's terminal) and a unit may be one big shard, so
counting units as they finish is too coarse. A ``Relay`` is a ``ProgressSink`` the units call
wherever they run: in the process that made it, it calls the sink at once; in a forked worker it
adds to two counters in shared memory (bytes expected, bytes done), which the parent reads while
it waits (``drain``) and passes on. Nothing the units write depends on it.
"""

from __future__ import annotations

import os
from typing import Any

from ckpttool.progress import ProgressSink

__all__ = ["Relay"]


class Relay:
    """A ``ProgressSink`` usable from forked workers; see the module docstring."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self._pid = os.getpid()
        self._shared: Any = None
        self._passed = [0, 0]

    def start(self, total: int) -> None:
        self._tell(0, total)

    def advance(self, n: int) -> None:
        self._tell(1, n)

    def _tell(self, slot: int, n: int) -> None:
        if os.getpid() == self._pid:
            (self.sink.start if slot == 0 else self.sink.advance)(n)
            return
        if self._shared is None:  # a process forked by someone else: it must not draw
            return
        with self._shared.get_lock():
            self._shared[slot] += n

    def open(self, context: Any) -> None:
        """Make the shared counters; call before the workers are forked."""
        self._shared = context.Array("q", 2)
        self._passed = [0, 0]

    def drain(self) -> None:
        """Pass on what the workers counted since the last call (in the parent)."""
        if self._shared is None:
            return
        with self._shared.get_lock():
            now = list(self._shared)
        total, done = now[0] - self._passed[0], now[1] - self._passed[1]
        self._passed = now
        if total:
            self.sink.start(total)
        if done:
            self.sink.advance(done)

    def close(self) -> None:
        self.drain()
        self._shared = None
