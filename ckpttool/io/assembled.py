"""One logical buffer laid out from byte ranges of several sources: the 1-D case of ``BoxSource``.

DeepSpeed's flat fp32 partitions (one per rank, a parameter straddling two of them) are a
tensor's bytes laid end to end over several files. An ``AssembledSource`` takes them as a sorted
list of pieces, each ``length`` bytes at ``offset`` in the buffer, read from ``source`` at
``source_offset``, and is a ``BoxSource`` over a 1-D byte tensor whose boxes are those pieces: one
way to read a tensor assembled from several files (DCP chunks use the same), chunk by chunk, so
memory stays bounded by one chunk, never by the tensor or the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ckpttool.errors import UnreadableCheckpoint
from ckpttool.io.boxes import Box, BoxSource, Opener
from ckpttool.io.source import in_chunks
from ckpttool.model import CHUNK_BYTES, ByteSource

__all__ = ["Piece", "AssembledSource"]


@dataclass(frozen=True, slots=True)
class Piece:
    """``length`` bytes at ``offset`` in the assembled buffer, found at ``source_offset`` in ``source``."""

    offset: int
    length: int
    source: ByteSource
    source_offset: int


class _Fill:
    """A ``ByteSource`` of one repeated byte: the padding between pieces, when the caller allows it."""

    def __init__(self, path: Path, byte: int) -> None:
        self.path = path
        self._byte = bytes([byte])

    def read(self, offset: int, length: int) -> bytes:
        return self._byte * length

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        return in_chunks(self.read, offset, length, chunk)


def _at(source: ByteSource, offset: int) -> Opener:
    return lambda: (source, offset)


class AssembledSource(BoxSource):
    """A ``ByteSource`` whose bytes come from pieces of other sources, in buffer order.

    The pieces must not overlap. Holes are allowed only when ``fill`` is given (DeepSpeed pads
    partitions; a hole read without ``fill`` is an error, never zeros made up in silence).
    """

    def __init__(self, path: Path, pieces: Sequence[Piece], size: int, *, fill: int | None = None) -> None:
        ordered = sorted((p for p in pieces if p.length), key=lambda p: p.offset)
        boxes: list[Box] = []
        end = 0
        for p in ordered:
            if p.offset < end or p.length < 0:
                raise UnreadableCheckpoint(f"pieces of one buffer overlap at byte {p.offset}", path=path)
            if p.offset != end:
                if fill is None:
                    raise UnreadableCheckpoint(f"no piece holds bytes {end}..{p.offset} of a buffer", path=path)
                boxes.append(Box((end,), (p.offset - end,), _at(_Fill(path, fill), 0)))
            boxes.append(Box((p.offset,), (p.length,), _at(p.source, p.source_offset)))
            end = p.offset + p.length
        if end > size or (fill is None and end != size):
            raise UnreadableCheckpoint(f"pieces cover {end} bytes of a {size}-byte buffer", path=path)
        if end < size:
            boxes.append(Box((end,), (size - end,), _at(_Fill(path, fill or 0), 0)))
        self.fill = fill
        self.pieces = ordered
        super().__init__(path, (size,), 1, boxes)
