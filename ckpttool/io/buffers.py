"""Tensor bytes read into a few reused buffers instead of a fresh ``bytes`` object per chunk.

A fresh 16 MiB object per chunk costs an allocation, page faults on new memory and often a
second copy; at gigabytes that is a large share of a convert's time. Sources that can read into
a caller's memory (``readinto``: files, DCP windows, boxes of a sharded tensor) fill a buffer
from a ``Ring`` of a few; the rest are copied in from ``read``. A view from the ring stays valid
until the ring comes round to its buffer again, so a consumer may hold at most ``len(ring) - 1``
pieces (``HashingSink`` holds one while it hashes it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ckpttool.model import CHUNK_BYTES, TensorRef
from ckpttool.progress import ProgressSink

__all__ = ["Ring", "read_into", "tensor_views", "same_tensor_bytes", "BUFFER_BYTES"]

BUFFER_BYTES = CHUNK_BYTES


class Ring:
    """``count`` buffers of ``size`` bytes (default ``BUFFER_BYTES``) handed out in turn."""

    def __init__(self, count: int = 2, size: int | None = None) -> None:
        self.size = size or BUFFER_BYTES
        self._buffers: list[memoryview] = []
        self._count = count
        self._next = 0

    def take(self, n: int) -> memoryview:
        """The next buffer, cut to ``n`` bytes.

        Buffers are allocated on first use and grown (to a power of two, at most ``size``) only when a
        piece needs more, so a job of small tensors never holds ``count`` full-size buffers.
        """
        i = self._next
        self._next = (i + 1) % self._count
        if i == len(self._buffers):
            self._buffers.append(memoryview(bytearray(_fitting(n, self.size))))
        elif len(self._buffers[i]) < n:  # whoever held this buffer's last piece has let it go
            self._buffers[i] = memoryview(bytearray(_fitting(n, self.size)))
        return self._buffers[i][:n]


def _fitting(n: int, size: int) -> int:
    """The smallest power of two (from 64 KiB) holding ``n`` bytes, capped at ``size``."""
    return min(size, max(1 << 16, 1 << max(n - 1, 0).bit_length()))


def read_into(source: Any, offset: int, view: memoryview) -> None:
    """Fill ``view`` with ``len(view)`` bytes of ``source`` from ``offset``."""
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        readinto(offset, view)
    else:
        view[:] = source.read(offset, len(view))


def _direct(ref: TensorRef) -> bool:
    """Stored contiguously in a source that is not in memory already (whose views cost no copy)."""
    return (ref.is_contiguous and ref.storage.byteorder == "little" and ref.storage.source is not None
            and not getattr(ref.storage.source, "in_memory", False))


def tensor_views(ref: TensorRef, ring: Ring) -> Iterator[bytes | memoryview]:
    """``ref.chunks()``, read into the ring's buffers where the tensor is stored contiguously."""
    if ref.numel == 0:
        return
    if not _direct(ref):
        yield from ref.chunks(ring.size)
        return
    source = ref.storage.source
    pos = ref.storage.offset + ref.storage_offset * ref.itemsize
    end = pos + ref.nbytes
    while pos < end:
        view = ring.take(min(ring.size, end - pos))
        read_into(source, pos, view)
        yield view
        pos += len(view)


def same_tensor_bytes(a: TensorRef, b: TensorRef, ring: Ring | None = None,
                      progress: ProgressSink | None = None) -> bool:
    """True when two tensors hold the same C-order bytes, compared a buffer at a time (exact, no hash).

    ``progress`` is told the bytes of ``a`` compared.
    """
    if a.nbytes != b.nbytes:
        return False
    ring = ring or Ring(4)
    seen = 0
    for pa, pb in zip(tensor_views(a, ring), tensor_views(b, ring), strict=False):
        if len(pa) == len(pb):
            if not _equal(pa, pb):
                return False
            seen += len(pa)
            if progress is not None:
                progress.advance(len(pa))
        else:  # a source that chunks differently: fall back to the general stream comparison
            from ckpttool.io.write.verify import same_bytes

            same = same_bytes(a.chunks(), b.chunks())
            if same and progress is not None:
                progress.advance(a.nbytes - seen)
            return same
    return True


def _equal(a: bytes | memoryview, b: bytes | memoryview) -> bool:
    """Byte equality at ``memcmp`` speed (``memoryview ==`` compares element by element)."""
    a, b = _whole(a), _whole(b)
    if isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)):
        return a == b
    import numpy as np

    return bool(np.array_equal(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)))


def _whole(data: bytes | memoryview) -> bytes | bytearray | memoryview:
    """A view of a whole ``bytes``/``bytearray`` as that object (whose ``==`` is one ``memcmp``)."""
    if isinstance(data, memoryview) and isinstance(data.obj, (bytes, bytearray)) and len(data) == len(data.obj) \
            and data.contiguous and data.format == "B":
        return data.obj
    return data
