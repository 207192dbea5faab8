"""Per-tensor statistics (min/max/mean/std, NaN/Inf counts), streamed in bounded chunks."""

from __future__ import annotations

import math
from typing import Any

from ckpttool.dtypes import by_name
from ckpttool.model import TensorRef
from ckpttool.tensors import raw_numpy_dtype

__all__ = ["tensor_stats", "as_float64"]

_CHUNK_ELEMENTS = 1 << 22


def as_float64(raw: Any, dtype: str) -> Any:
    """Raw element values (as ``TensorRef.to_numpy`` gives them) widened to float64, exactly."""
    import numpy as np

    if dtype == "bfloat16" or dtype.startswith("float8"):
        import ml_dtypes

        return raw.view(getattr(ml_dtypes, dtype)).astype(np.float64)
    if dtype.startswith("complex"):
        return np.abs(raw.astype(np.complex128))
    return raw.astype(np.float64)


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
