"""How long-running operations say how far they are, without printing anything.

An operation is given a ``ProgressSink``: it calls ``start(n)`` with bytes of work it now knows
about (possibly several times, as parts of the job become known: the total is their sum) and
``advance(n)`` as bytes are done. The CLI draws a bar from it; the library never prints. Bytes
counted: tensor bytes written plus the same bytes read back by the verification pass (writes),
tensor bytes compared (diff), file bytes scanned (scan).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Protocol, TypeVar

__all__ = ["ProgressSink", "Tally", "counted", "WriteAndVerify", "Planned"]

B = TypeVar("B", bound=Sized)


class ProgressSink(Protocol):
    """Where an operation reports bytes of work it expects, then bytes done."""

    def start(self, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


class Tally:
    """A sink that only adds up what it is told (a library caller that wants the numbers, tests)."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def start(self, total: int) -> None:
        self.total += total

    def advance(self, n: int) -> None:
        self.done += n


def counted(pieces: Iterable[B], progress: ProgressSink | None) -> Iterator[B]:
    """``pieces`` passed through, each one's length told to ``progress`` as it goes by."""
    if progress is None:
        yield from pieces
        return
    for piece in pieces:
        progress.advance(len(piece))
        yield piece


class WriteAndVerify:
    """The sink a writer gets: each byte it will write is also read back once by the verification pass."""

    def __init__(self, progress: ProgressSink) -> None:
        self.progress = progress

    def start(self, total: int) -> None:
        self.progress.start(2 * total)

    def advance(self, n: int) -> None:
        self.progress.advance(n)


class Planned:
    """The sink for one unit whose size the caller already announced: only a difference is passed on."""

    def __init__(self, progress: ProgressSink, announced: int) -> None:
        self.progress = progress
        self.announced = announced

    def start(self, total: int) -> None:
        extra, self.announced = total - self.announced, 0
        if extra:
            self.progress.start(extra)

    def advance(self, n: int) -> None:
        self.progress.advance(n)
