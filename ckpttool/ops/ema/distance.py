"""How far the EMA is from the raw weights: max |Δ| and relative L2, streamed window by window.

Both tensors are read in aligned windows of the same element count (their itemsizes may differ:
an fp16 EMA of an fp32 model); fp16/bf16/float8 are widened exactly to float32 (float64 stays
float64), bit identity is checked on the raw bytes first (identical windows need no arithmetic),
and the sums of squares are accumulated in float64. Memory stays bounded by a window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckpttool.dtypes import is_floating
from ckpttool.model import StateDict, TensorRef
from ckpttool.numeric import to_float32
from ckpttool.progress import ProgressSink

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["Distance", "TensorDistance", "ema_distance", "WINDOW_ELEMENTS"]

WINDOW_ELEMENTS = 1 << 22  # 4 Mi elements: 16 MiB of float32 per side


@dataclass(frozen=True, slots=True)
class TensorDistance:
    """One tensor's distance, EMA vs raw; ``identical`` means bit for bit (equal values across dtypes)."""

    key: str
    max_abs: float | None
    rel_l2: float | None
    identical: bool
    ema_nonfinite: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "max_abs": self.max_abs, "rel_l2": self.rel_l2, "identical": self.identical}


@dataclass
class Distance:
    """All compared tensors together; ``rel_l2`` is ‖raw − EMA‖ / ‖raw‖ over every element."""

    compared: int = 0
    identical: int = 0
    max_abs: float | None = None
    rel_l2: float | None = None
    tensors: list[TensorDistance] = field(default_factory=list)

    @property
    def nonfinite_keys(self) -> list[str]:
        """Tensors whose EMA has NaN/Inf where the raw weights are finite (a diverged average)."""
        return [t.key for t in self.tensors if t.ema_nonfinite]

    @property
    def all_identical(self) -> bool:
        return self.compared > 0 and self.identical == self.compared

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "rel_l2": self.rel_l2, "compared": self.compared,
                "identical": self.identical}


def _windows(t: TensorRef, n: int) -> Iterator[bytes | np.ndarray]:
    """``t``'s raw elements in C order, ``n`` at a time (bytes when contiguous, else one array)."""
    if t.numel == 0:
        return
    if t.is_contiguous and t.storage.byteorder == "little" and t.storage.source is not None:
        start, size = t.storage_offset * t.itemsize, t.itemsize
        for i in range(0, t.numel, n):
            yield t.storage.read(start + i * size, min(n, t.numel - i) * size)
        return
    flat = t.to_numpy().reshape(-1)
    for i in range(0, t.numel, n):
        yield flat[i:i + n]


def _values(raw: bytes | np.ndarray, dtype: str) -> np.ndarray:
    import numpy as np

    if dtype in ("float32", "float64"):
        return raw.reshape(-1) if isinstance(raw, np.ndarray) else np.frombuffer(raw, dtype="<f4" if dtype ==
                                                                                    "float32" else "<f8")
    return to_float32(raw, dtype)


class _Sums:
    """max |Δ| and the float64 sums of squares of one tensor pair."""

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.sum_d2 = self.sum_a2 = 0.0
        self.nonfinite = False
        self.ema_nonfinite = 0  # elements non-finite in the EMA where the raw weights are finite

    def add(self, raw: np.ndarray, ema: np.ndarray) -> None:
        import numpy as np

        if raw.dtype != ema.dtype:
            raw, ema = raw.astype(np.float64), ema.astype(np.float64)
        d = raw - ema
        hi, lo = float(d.max()), float(d.min())
        if not (math.isfinite(hi) and math.isfinite(lo)):
            self.nonfinite = True
            self.ema_nonfinite += int(np.count_nonzero(~np.isfinite(ema) & np.isfinite(raw)))
            finite = np.isfinite(d)
            d, raw = d[finite], raw[finite]
            hi, lo = (float(d.max()), float(d.min())) if d.size else (0.0, 0.0)
        self.max_abs = max(self.max_abs, hi, -lo)
        self.sum_d2 += _square_sum(d)
        self.sum_a2 += _square_sum(raw)


def _compare(key: str, ema: TensorRef, raw: TensorRef, progress: ProgressSink | None = None
             ) -> tuple[TensorDistance, _Sums]:
    sums = _Sums()
    same_bytes = ema.dtype == raw.dtype
    for e, r in zip(_windows(ema, WINDOW_ELEMENTS), _windows(raw, WINDOW_ELEMENTS)):
        if progress is not None:
            progress.advance(len(e) if isinstance(e, bytes) else e.nbytes)
        if ema.dtype == raw.dtype and (e == r if isinstance(e, bytes) else e.tobytes() == bytes(r)):
            sums.sum_a2 += _finite_square_sum(_values(r, raw.dtype))
            continue
        same_bytes = False
        sums.add(_values(r, raw.dtype), _values(e, ema.dtype))
    if ema.dtype != raw.dtype:  # an fp16 copy of fp32 weights is "identical" when every value is equal
        same_bytes = sums.max_abs == 0.0 and not sums.nonfinite
    rel = math.sqrt(sums.sum_d2) / math.sqrt(sums.sum_a2) if sums.sum_a2 > 0 else (0.0 if sums.sum_d2 == 0
                                                                                   else None)
    return TensorDistance(key, sums.max_abs, rel, same_bytes, sums.ema_nonfinite), sums


def _finite_square_sum(a: np.ndarray) -> float:
    """Σa² over the finite elements (an attention mask's -inf must not swamp the norm)."""
    import numpy as np

    total = _square_sum(a)
    return total if math.isfinite(total) else _square_sum(a[np.isfinite(a)])


_BLOCK = 1 << 16


def _square_sum(a: np.ndarray) -> float:
    """Σa², by float32 dot products over blocks of 64 Ki elements summed in float64 (accurate and fast)."""
    import numpy as np

    return sum(float(np.dot(b, b)) for b in (a[i:i + _BLOCK] for i in range(0, a.size, _BLOCK)))


def ema_distance(ema: StateDict, raw: StateDict, progress: ProgressSink | None = None) -> Distance:
    """Compare every floating EMA tensor with the raw tensor of the same key and shape.

    ``progress`` is told the EMA bytes to compare, then each window compared.
    """
    out = Distance()
    sum_d2 = sum_a2 = 0.0
    pairs = [(key, e, raw.tensors[key]) for key, e in ema.tensors.items()
             if key in raw.tensors and raw.tensors[key].shape == e.shape
             and is_floating(e.dtype) and is_floating(raw.tensors[key].dtype)]
    if progress is not None:
        progress.start(sum(e.nbytes for _, e, _ in pairs))
    for key, e, r in pairs:
        td, sums = _compare(key, e, r, progress)
        out.tensors.append(td)
        out.compared += 1
        out.identical += td.identical
        out.max_abs = td.max_abs if out.max_abs is None else max(out.max_abs, td.max_abs or 0.0)
        sum_d2 += sums.sum_d2
        sum_a2 += sums.sum_a2
    if out.compared:
        out.rel_l2 = math.sqrt(sum_d2) / math.sqrt(sum_a2) if sum_a2 > 0 else (0.0 if sum_d2 == 0 else None)
    return out
