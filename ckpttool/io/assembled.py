"""One logical buffer laid out from byte ranges of several sources (files, zip members, records).

Distributed checkpoints spread one tensor over many files: DCP chunks saved by several ranks,
DeepSpeed's flat fp32 partitions (one per rank, a parameter straddling two of them), Hugging Face
shards. An ``AssembledSource`` is a ``ByteSource`` over such a buffer: a sorted list of pieces, each
``length`` bytes at ``offset`` in the buffer, read from ``source`` at ``source_offset``. A
``Storage`` over it gives an ordinary lazy ``TensorRef``; its bytes are read piece by piece and
chunk by chunk, so memory stays bounded by one chunk, never by the tensor or the model.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ckpttool.errors import TruncatedFile, UnreadableCheckpoint
from ckpttool.model import CHUNK_BYTES, ByteSource

__all__ = ["Piece", "AssembledSource"]


@dataclass(frozen=True, slots=True)
class Piece:
    """``length`` bytes at ``offset`` in the assembled buffer, found at ``source_offset`` in ``source``."""

    offset: int
    length: int
    source: ByteSource
    source_offset: int


class AssembledSource:
    """A ``ByteSource`` whose bytes come from pieces of other sources, in buffer order.

    The pieces must not overlap. Holes are allowed only when ``fill`` is given (DeepSpeed pads
    partitions; a hole read without ``fill`` is an error, never zeros made up in silence).
    """

    def __init__(self, path: Path, pieces: Sequence[Piece], size: int, *, fill: int | None = None) -> None:
        self.path = path
        self.size = size
        self.fill = fill
        ordered = sorted((p for p in pieces if p.length), key=lambda p: p.offset)
        end = 0
        for p in ordered:
            if p.offset < end or p.length < 0:
                raise UnreadableCheckpoint(f"pieces of one buffer overlap at byte {p.offset}", path=path)
            if fill is None and p.offset != end:
                raise UnreadableCheckpoint(f"no piece holds bytes {end}..{p.offset} of a buffer", path=path)
            end = p.offset + p.length
        if end > size or (fill is None and end != size):
            raise UnreadableCheckpoint(f"pieces cover {end} bytes of a {size}-byte buffer", path=path)
        self.pieces = ordered
        self._starts = [p.offset for p in ordered]

    def read(self, offset: int, length: int) -> bytes:
        return b"".join(self.chunks(offset, length, max(length, 1)))

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes ``offset..offset+length`` in pieces of at most ``chunk`` bytes."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedFile(f"a read of {length} bytes at {offset} is past the end of a "
                                f"{self.size}-byte buffer", path=self.path)
        pending: list[bytes] = []
        held = 0
        for part in self._parts(offset, offset + length, chunk):
            pending.append(part)
            held += len(part)
            if held >= chunk:
                joined = b"".join(pending)
                pending, held = [], 0
                for i in range(0, len(joined) - len(joined) % chunk, chunk):
                    yield joined[i:i + chunk]
                rest = joined[len(joined) - len(joined) % chunk:]
                if rest:
                    pending, held = [rest], len(rest)
        if pending:
            yield b"".join(pending)

    def _parts(self, start: int, end: int, chunk: int) -> Iterator[bytes]:
        i = max(bisect_right(self._starts, start) - 1, 0)
        pos = start
        while pos < end:
            piece = self.pieces[i] if i < len(self.pieces) else None
            if piece is None or pos < piece.offset:
                hole_end = min(end, piece.offset if piece else end)
                if self.fill is None:
                    raise UnreadableCheckpoint(f"no piece holds byte {pos} of a buffer", path=self.path)
                while pos < hole_end:
                    n = min(chunk, hole_end - pos)
                    yield bytes([self.fill]) * n
                    pos += n
                continue
            piece_end = piece.offset + piece.length
            if pos >= piece_end:
                i += 1
                continue
            stop = min(end, piece_end)
            yield from piece.source.chunks(piece.source_offset + pos - piece.offset, stop - pos, chunk)
            pos = stop
            i += 1
