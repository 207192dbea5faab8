"""Comparing the values of two tensors: identical bytes first, statistics only when they differ.

The byte pass reads both tensors in aligned windows (``preadv`` into two reused buffers for
tensors stored contiguously in a plain file, ``TensorRef.chunks()`` otherwise) and stops at the
first difference, so an identical pair costs one streamed read of each and no numeric work.
A differing pair (or a pair of different dtypes) is read again in smaller chunks, widened to
float64 and folded into ``DiffStats``; memory stays bounded by a chunk whatever the tensor size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ckpttool.dtypes import by_name
from ckpttool.errors import TruncatedFile
from ckpttool.io.source import FileSource
from ckpttool.model import CHUNK_BYTES, TensorRef
from ckpttool.numeric import NUMERIC_CHUNK_ELEMENTS, DiffAccumulator, DiffStats, fixed_chunks, widen

__all__ = ["compare_values", "same_bytes", "numeric_stats", "ByteComparer", "Progress"]

Progress = Callable[[int], None]  # called with bytes of A just compared


def _same_location(a: TensorRef, b: TensorRef) -> bool:
    """Both views read the same bytes of the same file (``diff x.pt x.pt``): no need to read them."""
    sa, sb = a.storage, b.storage
    if sa.source is None or sb.source is None or type(sa.source) is not type(sb.source):
        return False
    if (sa.offset, sa.byteorder, a.storage_offset, a.stride, a.dtype) != \
            (sb.offset, sb.byteorder, b.storage_offset, b.stride, b.dtype):
        return False
    if getattr(sa.source, "offset", 0) != getattr(sb.source, "offset", 0):  # zip members
        return False
    path_a, path_b = getattr(sa.source, "path", None), getattr(sb.source, "path", None)
    if path_a is None or path_b is None:
        return False
    try:  # one file only: a folder source (DCP) spreads the bytes over data files that may be missing
        return os.path.isfile(path_a) and os.path.samefile(path_a, path_b)
    except OSError:
        return False


def _pieces(t: TensorRef, size: int) -> Iterator[bytes]:
    return fixed_chunks(t.chunks(size), size)


def same_bytes(a: TensorRef, b: TensorRef, progress: Progress | None = None,
               chunk: int = CHUNK_BYTES) -> tuple[bool, int]:
    """Whether ``a`` and ``b`` (same dtype and shape) hold the same bytes, streamed from ``chunks()``."""
    if _same_location(a, b):
        return True, a.nbytes
    done = 0
    for pa, pb in zip(_pieces(a, chunk), _pieces(b, chunk)):
        if pa != pb:
            return False, done
        done += len(pa)
        if progress is not None:
            progress(len(pa))
    return True, done


class ByteComparer:
    """The identical-bytes pass, with two reusable window buffers and one descriptor per file.

    Tensors stored contiguously in a plain file (torch zip records, safetensors) are read with
    ``preadv`` into the same two buffers and compared with ``==`` (memcmp): no fresh multi-MB
    allocation per chunk, and no file pages mapped, so peak RSS stays at two windows. Anything
    else (strided views, compressed zip members, big-endian legacy data) streams ``TensorRef.chunks()``.
    """

    def __init__(self, window: int = CHUNK_BYTES) -> None:
        self.window = window
        self._bufs: tuple[bytearray, bytearray] | None = None
        self._fds: dict[Path, int] = {}
        self._slots: dict[int, bytearray] = {}

    def _range(self, t: TensorRef) -> tuple[int, int] | None:
        """(descriptor, absolute offset) of ``t``'s bytes when they lie contiguous in a plain file."""
        source = t.storage.source
        if not isinstance(source, FileSource) or not t.is_contiguous or t.storage.byteorder != "little":
            return None
        fd = self._fds.get(source.path)
        if fd is None:
            fd = self._fds[source.path] = os.open(source.path, os.O_RDONLY)
        return fd, t.storage.offset + t.storage_offset * t.itemsize

    def same(self, a: TensorRef, b: TensorRef, progress: Progress | None = None) -> tuple[bool, int]:
        """Whether ``a`` and ``b`` (same dtype and shape) hold the same bytes, and how many were read."""
        if _same_location(a, b):
            return True, a.nbytes
        ra, rb = self._range(a), self._range(b)
        if ra is None or rb is None:
            return same_bytes(a, b, progress, self.window)
        if self._bufs is None:
            self._bufs = (bytearray(self.window), bytearray(self.window))
        (fa, oa), (fb, ob) = ra, rb
        buf_a, buf_b = self._bufs
        done, total = 0, a.nbytes
        while done < total:
            n = min(self.window, total - done)
            if n == self.window:
                if os.preadv(fa, [buf_a], oa + done) != n or os.preadv(fb, [buf_b], ob + done) != n:
                    raise TruncatedFile("the file ends inside a tensor", path=a.storage.source.path)  # type: ignore[union-attr]
                equal = buf_a == buf_b
            else:  # the tail: small reads, compared as bytes
                equal = _pread(fa, n, oa + done) == _pread(fb, n, ob + done)
            if not equal:
                return False, done
            done += n
            if progress is not None:
                progress(n)
        return True, done

    def windows(self, t: TensorRef, size: int, slot: int) -> Iterator[bytes | memoryview]:
        """``t``'s bytes in pieces of ``size``, read into buffer ``slot`` (valid until the next piece)."""
        where = self._range(t)
        if where is None:
            yield from _pieces(t, size)
            return
        fd, offset = where
        buf = self._slots.get(slot)
        if buf is None or len(buf) < size:
            buf = self._slots[slot] = bytearray(size)
        view = memoryview(buf)
        done, total = 0, t.nbytes
        while done < total:
            n = min(size, total - done)
            if os.preadv(fd, [view[:n]], offset + done) != n:
                raise TruncatedFile("the file ends inside a tensor", path=t.storage.source.path)  # type: ignore[union-attr]
            yield view[:n]
            done += n

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._bufs = None
        self._slots.clear()


def _pread(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    return data if len(data) == n else data + os.pread(fd, n - len(data), offset + len(data))


def numeric_stats(a: TensorRef, b: TensorRef, rtol: float, atol: float, progress: Progress | None = None,
                  skip_progress: int = 0, elements: int = NUMERIC_CHUNK_ELEMENTS,
                  comparer: ByteComparer | None = None) -> DiffStats:
    """Statistics of B against A (same numel, any dtypes), chunk by chunk in float64."""
    import numpy as np

    acc = DiffAccumulator(rtol, atol)
    size_a, size_b = elements * a.itemsize, elements * b.itemsize
    n = min(elements, max(a.numel, 1))
    complex_ = by_name(a.dtype).kind == "c" or by_name(b.dtype).kind == "c"  # type: ignore[union-attr]
    buf_a, buf_b = (np.empty(n, dtype=np.complex128 if complex_ else np.float64) for _ in range(2))
    seen = 0
    if comparer is not None:
        pieces = zip(comparer.windows(a, size_a, 0), comparer.windows(b, size_b, 1))
    else:
        pieces = zip(_pieces(a, size_a), _pieces(b, size_b))
    for pa, pb in pieces:
        wa, wb = widen(pa, a.dtype, buf_a), widen(pb, b.dtype, buf_b)
        acc.add(wa, wb)
        seen += len(pa)
        if progress is not None and seen > skip_progress:
            progress(min(len(pa), seen - skip_progress))
            skip_progress = seen
    return acc.result()


def compare_values(a: TensorRef, b: TensorRef, rtol: float, atol: float, progress: Progress | None = None,
                   comparer: ByteComparer | None = None) -> tuple[bool, DiffStats]:
    """``(bytes_identical, stats)`` for two tensors of one shape; dtypes may differ (upcast)."""
    if a.dtype == b.dtype:
        identical, done = comparer.same(a, b, progress) if comparer is not None else same_bytes(a, b, progress)
        if identical:
            if progress is not None and done < a.nbytes:
                progress(a.nbytes - done)
            return True, DiffStats.identical(a.numel)
        return False, numeric_stats(a, b, rtol, atol, progress, skip_progress=done, comparer=comparer)
    return False, numeric_stats(a, b, rtol, atol, progress, comparer=comparer)
