"""Chunked numeric helpers: raw element bytes widened exactly, and streaming difference statistics.

numpy has no bfloat16 or float8 types, so ``TensorRef`` hands those out as same-width unsigned
integers; ``widen`` turns them into float32/float64 exactly through ``ml_dtypes``, so ``diff`` never
needs torch. ``DiffAccumulator`` folds pairs of chunks into the figures ``diff`` reports (max and
mean |Δ|, relative L2, cosine, elements outside ``torch.isclose`` tolerance, NaN/Inf counts) with
float64 accumulation, so memory stays bounded by one chunk whatever the tensor size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ckpttool.dtypes import by_name
from ckpttool.errors import UnsupportedFormat
from ckpttool.tensors import raw_numpy_dtype

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["widen", "to_float32", "fixed_chunks", "DiffStats", "DiffAccumulator", "NUMERIC_CHUNK_ELEMENTS"]

# 1 Mi elements: float64 work arrays of 8 MiB each keep a handful of temporaries well under 100 MB.
NUMERIC_CHUNK_ELEMENTS = 1 << 20
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu")


def _raw_array(data: bytes | memoryview | np.ndarray, dtype: str) -> np.ndarray:
    import numpy as np

    if isinstance(data, np.ndarray):
        return data.reshape(-1)
    return np.frombuffer(data, dtype=np.dtype(raw_numpy_dtype(dtype)))


def to_float32(data: bytes | memoryview | np.ndarray, dtype: str) -> np.ndarray:
    """float16 / bfloat16 / float8 raw elements as float32, exactly (every such value is a float32)."""
    import numpy as np

    raw = _raw_array(data, dtype)
    if dtype in _ML_DTYPES:
        import ml_dtypes

        return raw.view(getattr(ml_dtypes, dtype)).astype(np.float32)
    if dtype in ("float16", "float32"):
        return raw.astype(np.float32)
    raise UnsupportedFormat(f"{dtype} does not widen exactly to float32")


def widen(data: bytes | memoryview | np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """Raw little-endian elements of ``dtype`` as a flat float64 (complex128 for complex) array.

    Exact for every floating type up to float64, bool and integers below 2**53; int64/uint64
    beyond that round to the nearest float64, which the statistics tolerate. ``out``, a flat
    buffer at least as long (float64, or complex128 for complex types), is filled and a view of it
    returned: reusing buffers spares the page faults of fresh multi-MB arrays on every chunk.
    """
    import numpy as np

    d = by_name(dtype)
    if d is None:
        raise UnsupportedFormat(f"unknown dtype {dtype!r}")
    raw = _raw_array(data, dtype)
    if dtype in _ML_DTYPES:
        import ml_dtypes

        raw = raw.view(getattr(ml_dtypes, dtype))
    elif dtype == "complex32":  # pairs of float16 (real, imag)
        raw = raw.view("<f2").astype(np.float32).view(np.complex64)
    wide = np.complex128 if d.kind == "c" else np.float64
    if out is None or out.dtype != wide or out.size < raw.size:
        return raw.astype(wide)
    view = out[:raw.size]
    view[...] = raw
    return view


def fixed_chunks(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a stream of byte pieces into pieces of exactly ``size`` bytes (the last may be shorter).

    Sources yield pieces of their own size (a strided view comes in one piece, an inflated zip
    member in inflater-sized ones); two tensors compared chunk by chunk need aligned boundaries.
    """
    buf = bytearray()
    for piece in pieces:
        if not buf and len(piece) == size:
            yield piece
            continue
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


@dataclass(frozen=True, slots=True)
class DiffStats:
    """How far tensor B is from tensor A. Differences are over pairs where both are finite.

    ``rel_l2`` is ‖A−B‖/‖A‖ and ``cosine`` is A·B/(‖A‖‖B‖); both are None where undefined
    (no finite pair, or ‖A‖ = 0 with A ≠ B). ``mismatched`` counts elements ``torch.isclose``
    (``equal_nan=False``) rejects: a NaN on either side always counts.
    """

    numel: int
    finite: int
    max_abs: float | None
    mean_abs: float | None
    rel_l2: float | None
    cosine: float | None
    mismatched: int
    nan_a: int = 0
    nan_b: int = 0
    inf_a: int = 0
    inf_b: int = 0

    @property
    def mismatched_fraction(self) -> float:
        return self.mismatched / self.numel if self.numel else 0.0

    @property
    def within_tolerance(self) -> bool:
        return self.mismatched == 0

    @classmethod
    def identical(cls, numel: int) -> DiffStats:
        """The figures of a byte-identical pair (no NaN counting: bit-equal is equal)."""
        return cls(numel=numel, finite=numel, max_abs=0.0, mean_abs=0.0, rel_l2=0.0, cosine=1.0, mismatched=0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_abs": self.max_abs, "mean_abs": self.mean_abs, "rel_l2": self.rel_l2, "cosine": self.cosine,
            "mismatched": self.mismatched, "mismatched_fraction": self.mismatched_fraction, "numel": self.numel,
        }
        for name in ("nan_a", "nan_b", "inf_a", "inf_b"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """Re(x̄·y), single-threaded: einsum's SIMD loop, not BLAS, whose spinning threads collapse
    on a busy machine (20x slower measured on 2 loaded cores) for no gain at 1 Mi elements."""
    import numpy as np

    if x.dtype.kind == "c":
        return float(np.vdot(x, y).real)
    return float(np.einsum("i,i->", x, y))


class DiffAccumulator:
    """Folds aligned chunk pairs of two tensors into ``DiffStats`` (float64 accumulation)."""

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-8) -> None:
        self.rtol, self.atol = rtol, atol
        self.numel = self.finite = self.mismatched = 0
        self.nan_a = self.nan_b = self.inf_a = self.inf_b = 0
        self.max_abs = 0.0
        self.sum_abs = self.sum_d2 = self.sum_a2 = self.sum_b2 = self.dot_ab = 0.0
        self._work: tuple[np.ndarray, np.ndarray] | None = None

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        if self._work is None or self._work[0].size < n:
            self._work = (np.empty(n), np.empty(n))
        return self._work[0][:n], self._work[1][:n]

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        """One pair of flat float64 (or complex128) chunks of equal length."""
        import numpy as np

        self.numel += a.size
        if a.size == 0:
            return
        sum_a2, sum_b2 = _dot(a, a), _dot(b, b)
        if not (math.isfinite(sum_a2) and math.isfinite(sum_b2)):  # a NaN/Inf somewhere (or overflow)
            a, b = self._split_nonfinite(a, b, np.isfinite(a), np.isfinite(b))
            sum_a2, sum_b2 = _dot(a, a), _dot(b, b)
            if a.size == 0:
                return
        # torch.isclose (equal_nan=False) on the finite pairs: |a-b| <= atol + rtol*|b|.
        d, tol = self._buffers(a.size)
        if a.dtype.kind == "c":
            np.abs(a - b, out=d)
        else:
            np.subtract(a, b, out=d)
            np.abs(d, out=d)
        np.abs(b, out=tol)
        tol *= self.rtol
        tol += self.atol
        self.mismatched += int(a.size - np.count_nonzero(d <= tol))
        self.finite += a.size
        self.max_abs = max(self.max_abs, float(d.max()))
        self.sum_abs += float(d.sum())
        self.sum_d2 += _dot(d, d)
        self.sum_a2 += sum_a2
        self.sum_b2 += sum_b2
        self.dot_ab += _dot(a, b)

    def _split_nonfinite(self, a: np.ndarray, b: np.ndarray, fin_a: np.ndarray, fin_b: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Count NaN/Inf, count the non-finite pairs isclose rejects, return the finite pairs."""
        import numpy as np

        self.nan_a += int(np.count_nonzero(np.isnan(a)))
        self.nan_b += int(np.count_nonzero(np.isnan(b)))
        self.inf_a += int(np.count_nonzero(np.isinf(a)))
        self.inf_b += int(np.count_nonzero(np.isinf(b)))
        both = fin_a & fin_b
        rest = ~both
        # inf == inf of the same sign is close; NaN never is; finite vs non-finite never is.
        self.mismatched += int(np.count_nonzero(rest) - np.count_nonzero(a[rest] == b[rest]))
        return a[both], b[both]

    def result(self) -> DiffStats:
        """The statistics of everything added so far."""
        if self.finite == 0:
            return DiffStats(self.numel, 0, None, None, None, None, self.mismatched,
                             self.nan_a, self.nan_b, self.inf_a, self.inf_b)
        norm_a, norm_b, norm_d = math.sqrt(self.sum_a2), math.sqrt(self.sum_b2), math.sqrt(self.sum_d2)
        rel_l2 = norm_d / norm_a if norm_a > 0 else (0.0 if norm_d == 0 else None)
        if norm_a > 0 and norm_b > 0:
            cosine: float | None = max(-1.0, min(1.0, self.dot_ab / (norm_a * norm_b)))
        else:
            cosine = 1.0 if norm_a == norm_b else 0.0
        return DiffStats(self.numel, self.finite, self.max_abs, self.sum_abs / self.finite, rel_l2, cosine,
                         self.mismatched, self.nan_a, self.nan_b, self.inf_a, self.inf_b)
