"""Comparing the values of two tensors: identical bytes first, statistics only when they differ.

The byte pass reads both tensors in aligned chunks and stops at the first difference, so an
identical pair costs one streamed read of each and no numeric work. A differing pair (or a pair of
different dtypes) is read again in smaller chunks, widened to float64 and folded into
``DiffStats``; memory stays bounded by a chunk whatever the tensor size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from ckpttool.dtypes import by_name
from ckpttool.model import CHUNK_BYTES, TensorRef
from ckpttool.numeric import NUMERIC_CHUNK_ELEMENTS, DiffAccumulator, DiffStats, fixed_chunks, widen

__all__ = ["compare_values", "same_bytes", "Progress"]

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
    try:
        return os.path.samefile(path_a, path_b)
    except OSError:
        return False


def _pieces(t: TensorRef, size: int) -> Iterator[bytes]:
    return fixed_chunks(t.chunks(size), size)


def same_bytes(a: TensorRef, b: TensorRef, progress: Progress | None = None,
               chunk: int = CHUNK_BYTES) -> tuple[bool, int]:
    """Whether ``a`` and ``b`` (same dtype and shape) hold the same bytes, and how many were read."""
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


def numeric_stats(a: TensorRef, b: TensorRef, rtol: float, atol: float, progress: Progress | None = None,
                  skip_progress: int = 0, elements: int = NUMERIC_CHUNK_ELEMENTS) -> DiffStats:
    """Statistics of B against A (same numel, any dtypes), chunk by chunk in float64."""
    import numpy as np

    acc = DiffAccumulator(rtol, atol)
    size_a, size_b = elements * a.itemsize, elements * b.itemsize
    n = min(elements, max(a.numel, 1))
    complex_ = by_name(a.dtype).kind == "c" or by_name(b.dtype).kind == "c"  # type: ignore[union-attr]
    buf_a, buf_b = (np.empty(n, dtype=np.complex128 if complex_ else np.float64) for _ in range(2))
    seen = 0
    for pa, pb in zip(_pieces(a, size_a), _pieces(b, size_b)):
        wa, wb = widen(pa, a.dtype, buf_a), widen(pb, b.dtype, buf_b)
        acc.add(wa, wb)
        seen += len(pa)
        if progress is not None and seen > skip_progress:
            progress(min(len(pa), seen - skip_progress))
            skip_progress = seen
    return acc.result()


def compare_values(a: TensorRef, b: TensorRef, rtol: float, atol: float,
                   progress: Progress | None = None) -> tuple[bool, DiffStats]:
    """``(bytes_identical, stats)`` for two tensors of one shape; dtypes may differ (upcast)."""
    if a.dtype == b.dtype:
        identical, done = same_bytes(a, b, progress)
        if identical:
            if progress is not None and done < a.nbytes:
                progress(a.nbytes - done)
            return True, DiffStats.identical(a.numel)
        return False, numeric_stats(a, b, rtol, atol, progress, skip_progress=done)
    return False, numeric_stats(a, b, rtol, atol, progress)
