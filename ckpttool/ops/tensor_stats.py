"""Per-tensor statistics (min/max/mean/std, NaN/Inf counts), streamed in bounded chunks."""

from __future__ import annotations

import math
from typing import Any

from ckpttool.dtypes import by_name
from ckpttool.model import TensorRef
from ckpttool.numeric import widen
from ckpttool.tensors import raw_numpy_dtype

__all__ = ["tensor_stats", "as_float64"]

_CHUNK_ELEMENTS = 1 << 22


def as_float64(raw: Any, dtype: str) -> Any:
    """Raw element values widened to float64 exactly; complex values by their magnitude."""
    import numpy as np

    wide = widen(raw, dtype)
    return np.abs(wide) if wide.dtype.kind == "c" else wide


def tensor_stats(t: TensorRef) -> dict[str, Any]:
    """min, max, mean, std (population), and NaN/Inf counts of ``t``'s finite values."""
    import numpy as np

    d = by_name(t.dtype)
    if t.numel == 0 or d is None or d.name == "complex32" or t.storage.source is None:
        return {"numel": t.numel}
    raw_dtype = np.dtype(raw_numpy_dtype(t.dtype))
    count, total, total_sq, nan, inf = 0, 0.0, 0.0, 0, 0
    lo, hi = math.inf, -math.inf
    for piece in t.chunks(_CHUNK_ELEMENTS * d.itemsize):
        values = as_float64(np.frombuffer(piece, dtype=raw_dtype), t.dtype)
        nan += int(np.isnan(values).sum())
        inf += int(np.isinf(values).sum())
        finite = values[np.isfinite(values)]
        if finite.size:
            count += finite.size
            total += float(finite.sum())
            total_sq += float(np.square(finite).sum())
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not count:
        return {"numel": t.numel, "nan": nan, "inf": inf}
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return {"numel": t.numel, "min": lo, "max": hi, "mean": mean, "std": math.sqrt(var),
            "nan": nan, "inf": inf}
