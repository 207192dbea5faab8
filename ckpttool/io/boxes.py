"""One tensor's C-order bytes assembled from boxes (sub-blocks) saved separately, read lazily.

Sharded training saves a tensor as boxes of its global index space: ``Shard(0)`` gives row
blocks (each one contiguous range of the global buffer), ``Shard(1)`` column blocks, 2-D meshes a
grid of tiles, uneven last shards smaller boxes. A ``BoxSource`` is a ``ByteSource`` over the
global buffer: each read is cut into runs (the longest stretches that are contiguous both in the
global order and inside one box), and each box is read once per window with one call, so memory
stays bounded by a window (one chunk) and the number of reads by the boxes, not by the rows.

The boxes must tile the tensor exactly (no gap, no overlap): what they do not cover is an error,
never zeros made up in silence. A box's bytes are found only when first read (``opener``), so
building the source for every tensor of a large checkpoint costs no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ckpttool.errors import ResourceLimit, TruncatedFile, UnreadableCheckpoint
from ckpttool.model import CHUNK_BYTES, ByteSource

__all__ = ["Box", "BoxSource", "MAX_CELLS"]

MAX_CELLS = 1 << 20
Opener = Callable[[], tuple[ByteSource, int]]


@dataclass(frozen=True, slots=True)
class Box:
    """The block ``offsets``..``offsets+sizes`` of the global tensor; ``opener`` gives its C-order bytes."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    opener: Opener


class BoxSource:
    """A ``ByteSource`` over a tensor of ``shape`` whose elements of ``itemsize`` bytes live in boxes."""

    def __init__(self, path: Path, shape: tuple[int, ...], itemsize: int, boxes: Sequence[Box]) -> None:
        self.path = path
        self.shape = shape
        self.itemsize = itemsize
        numel = 1
        for s in shape:
            numel *= s
        self.size = numel * itemsize
        self.boxes = [b for b in boxes if all(s > 0 for s in b.sizes)] if numel else []
        self._opened: dict[int, tuple[ByteSource, int]] = {}
        self._grid()

    def _grid(self) -> None:
        """Cut the index space at every box edge; map each cell to the one box that holds it."""
        shape, n = self.shape, len(self.shape)
        bounds = [sorted({0, d, *(b.offsets[i] for b in self.boxes), *(b.offsets[i] + b.sizes[i] for b in self.boxes)})
                  for i, d in enumerate(shape)]
        split = [i for i in range(n) if len(bounds[i]) > 2]
        self.j = split[-1] if split else -1  # the innermost dimension cut by a box edge
        self.inner = 1
        for s in shape[self.j + 1:]:
            self.inner *= s
        self.bounds = bounds[:self.j + 1]
        cells = 1
        for b in self.bounds:
            cells *= len(b) - 1
        if cells > MAX_CELLS:
            raise ResourceLimit(f"a tensor is cut into {cells} blocks by its chunks", path=self.path)
        self.cell_box: dict[tuple[int, ...], int] = {}
        at = [{edge: pos for pos, edge in enumerate(b)} for b in self.bounds]
        covered = 0
        for k, box in enumerate(self.boxes):
            ranges = [range(at[i][box.offsets[i]], at[i][box.offsets[i] + box.sizes[i]]) for i in range(self.j + 1)]
            for cell in _product(ranges):
                if cell in self.cell_box:
                    raise UnreadableCheckpoint(f"two chunks of one tensor overlap (at {list(box.offsets)})",
                                               path=self.path)
                self.cell_box[cell] = k
            vol = 1
            for s in box.sizes:
                vol *= s
            covered += vol
        if covered * self.itemsize != self.size or (len(self.cell_box) != cells and self.size):
            raise UnreadableCheckpoint(f"the chunks of a tensor of shape {list(shape)} do not cover it "
                                       f"({covered} of {self.size // max(self.itemsize, 1)} elements)", path=self.path)

    def _open(self, k: int) -> tuple[ByteSource, int]:
        got = self._opened.get(k)
        if got is None:
            got = self._opened[k] = self.boxes[k].opener()
        return got

    def _run(self, pos: int) -> tuple[int, int, int]:
        """(box, byte offset inside the box, bytes to the end of the run) for global byte ``pos``."""
        isz, j = self.itemsize, self.j
        e, within = divmod(pos, isz)
        if j < 0:
            return 0, pos, self.size - pos
        row_len = self.shape[j] * self.inner
        row, w = divmod(e, row_len)
        xj, r = divmod(w, self.inner)
        coords = [0] * j
        for i in range(j - 1, -1, -1):
            row, coords[i] = divmod(row, self.shape[i])
        cell = tuple(bisect_right(self.bounds[i], c) - 1 for i, c in enumerate((*coords, xj)))
        k = self.cell_box[cell]
        box = self.boxes[k]
        local = 0
        for i in range(j):
            local = local * box.sizes[i] + coords[i] - box.offsets[i]
        local = (local * box.sizes[j] + xj - box.offsets[j]) * self.inner + r
        run_end = self.bounds[j][cell[j] + 1] * self.inner  # in elements, within this global row
        return k, local * isz + within, (run_end - w) * isz - within

    def read(self, offset: int, length: int) -> bytes:
        return b"".join(self.chunks(offset, length, max(length, 1)))

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes ``offset..offset+length`` of the global tensor, in windows of at most ``chunk``."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedFile(f"a read of {length} bytes at {offset} is past the end of a "
                                f"{self.size}-byte tensor", path=self.path)
        end = offset + length
        while offset < end:
            stop = min(end, offset + chunk)
            yield self._window(offset, stop)
            offset = stop

    def readinto(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the global bytes from ``offset``: each box read once, into place when it can be."""
        if offset < 0 or offset + len(view) > self.size:
            raise TruncatedFile(f"a read of {len(view)} bytes at {offset} is past the end of a "
                                f"{self.size}-byte tensor", path=self.path)
        if len(view):
            self._fill(self._runs(offset, offset + len(view)), view)

    def _runs(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """(box, offset in the box, length) for ``start..stop``, runs that continue each other merged."""
        runs: list[tuple[int, int, int]] = []
        pos = start
        while pos < stop:
            k, at, n = self._run(pos)
            n = min(n, stop - pos)
            if runs and runs[-1][0] == k and runs[-1][1] + runs[-1][2] == at:
                runs[-1] = (k, runs[-1][1], runs[-1][2] + n)
            else:
                runs.append((k, at, n))
            pos += n
        return runs

    def _fill(self, runs: list[tuple[int, int, int]], out: memoryview) -> None:
        from ckpttool.io.buffers import read_into

        if len(runs) == len({k for k, _, _ in runs}):  # row blocks: one read per box, straight into place
            pos = 0
            for k, at, n in runs:
                src, base = self._open(k)
                read_into(src, base + at, out[pos:pos + n])
                pos += n
            return
        spans: dict[int, list[int]] = {}  # column blocks, tiles: one read per box, then scattered
        for k, at, n in runs:
            span = spans.get(k)
            if span is None:
                spans[k] = [at, at + n]
            else:
                span[0], span[1] = min(span[0], at), max(span[1], at + n)
        data: dict[int, memoryview] = {}
        for k, (lo, hi) in spans.items():
            src, base = self._open(k)
            data[k] = memoryview(src.read(base + lo, hi - lo))
        pos = 0
        for k, at, n in runs:
            lo = spans[k][0]
            out[pos:pos + n] = data[k][at - lo:at - lo + n]
            pos += n

    def _window(self, start: int, stop: int) -> bytes:
        runs = self._runs(start, stop)
        if len(runs) == 1:
            k, at, n = runs[0]
            src, base = self._open(k)
            return src.read(base + at, n)
        out = bytearray(stop - start)
        self._fill(runs, memoryview(out))
        return bytes(out)


def _product(ranges: list[range]) -> Iterator[tuple[int, ...]]:
    if not ranges:
        yield ()
        return
    for head in ranges[0]:
        for rest in _product(ranges[1:]):
            yield (head, *rest)
