"""One progress bar over a whole job, on stderr, for every command that streams bytes.

The operations report bytes through a ``ckpttool.progress.ProgressSink``; this draws them. The bar
appears only on a terminal (stderr), only once the job has run for ``DELAY_S`` and is not done,
and disappears when the job ends, so piped and ``--json`` output is never touched. ``--no-progress``
turns it off. Under ``torchrun`` only rank 0 draws, showing its own share of the work (the ranks
share one terminal); ``--jobs`` workers report through the parent, which alone draws.

``CKPTTOOL_PROGRESS_DELAY`` (seconds) replaces ``DELAY_S``; it exists for the test-suite, which
sets it to 0 to see the bar without timing anything.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from ckpttool.cli.common import console, quiet_rank

__all__ = ["ProgressBar", "progress_bar", "progress_option"]

F = TypeVar("F", bound=Callable[..., Any])
DELAY_S = 1.0


def progress_option(fn: F) -> F:
    """``--no-progress``: never draw the bar (it is drawn only on a terminal anyway)."""
    return click.option("--no-progress", "no_progress", is_flag=True,
                        help="Draw no progress bar on stderr (none is drawn when stderr is not a terminal).")(fn)


def _delay() -> float:
    try:
        return float(os.environ.get("CKPTTOOL_PROGRESS_DELAY", DELAY_S))
    except ValueError:
        return DELAY_S


class ProgressBar:
    """A ``ProgressSink`` drawing a rich bar of bytes done on stderr; see the module docstring."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.total = 0
        self.done = 0
        self.t0 = time.monotonic()
        self.delay = _delay()
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        self.total += total
        self._draw()

    def advance(self, n: int) -> None:
        self.done += n
        self._draw()

    def _draw(self) -> None:
        if self._bar is None:
            if time.monotonic() - self.t0 < self.delay or self.done >= self.total:
                return
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress(self.label, BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), console=console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        self._bar.update(self._task, completed=self.done, total=self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _label(what: str) -> str:
    from ckpttool.parallel import ranks_from_env

    ranks = ranks_from_env()
    return f"{what} (rank 0 of {ranks.world_size}: its share)" if ranks is not None else what


@contextmanager
def progress_bar(what: str, no_progress: bool = False) -> Iterator[ProgressBar | None]:
    """A bar labelled ``what`` for the job inside the block, or None where none may be drawn."""
    if no_progress or not sys.stderr.isatty() or quiet_rank():
        yield None
        return
    bar = ProgressBar(_label(what))
    try:
        yield bar
    finally:
        bar.close()
