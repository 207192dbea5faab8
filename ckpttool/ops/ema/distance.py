"""How far the EMA is from the raw weights: max |Δ| and relative L2, streamed chunk by chunk.

Both tensors are cut into aligned chunks of the same element count (their itemsizes may differ:
an fp16 EMA of an fp32 model), widened exactly to float64 and folded into ``DiffAccumulator``s;
bit identity is checked on the raw bytes at the same time, so memory stays bounded by a chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ckpttool.dtypes import is_floating
from ckpttool.model import StateDict, TensorRef
from ckpttool.numeric import NUMERIC_CHUNK_ELEMENTS, DiffAccumulator, fixed_chunks, widen

__all__ = ["Distance", "TensorDistance", "ema_distance"]


@dataclass(frozen=True, slots=True)
class TensorDistance:
    """One tensor's distance: EMA vs raw."""

    key: str
    max_abs: float | None
    rel_l2: float | None
    identical: bool

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
    def all_identical(self) -> bool:
        return self.compared > 0 and self.identical == self.compared

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "rel_l2": self.rel_l2, "compared": self.compared,
                "identical": self.identical}


def _pairs(ema: TensorRef, raw: TensorRef) -> Any:
    n = NUMERIC_CHUNK_ELEMENTS
    return zip(fixed_chunks(ema.chunks(), n * ema.itemsize), fixed_chunks(raw.chunks(), n * raw.itemsize))


def _compare(key: str, ema: TensorRef, raw: TensorRef) -> tuple[TensorDistance, DiffAccumulator]:
    acc = DiffAccumulator()
    same_bytes = ema.dtype == raw.dtype
    for e, r in _pairs(ema, raw):
        if same_bytes and e != r:
            same_bytes = False
        acc.add(widen(r, raw.dtype), widen(e, ema.dtype))
    stats = acc.result()
    if ema.dtype != raw.dtype:  # an fp16 copy of fp32 weights is "identical" when every value is equal
        same_bytes = stats.max_abs == 0.0 and stats.finite == stats.numel
    return TensorDistance(key, stats.max_abs, stats.rel_l2, same_bytes), acc


def ema_distance(ema: StateDict, raw: StateDict) -> Distance:
    """Compare every floating EMA tensor with the raw tensor of the same key and shape."""
    out = Distance()
    sum_d2 = sum_a2 = 0.0
    for key, e in ema.tensors.items():
        r = raw.tensors.get(key)
        if r is None or r.shape != e.shape or not (is_floating(e.dtype) and is_floating(r.dtype)):
            continue
        td, acc = _compare(key, e, r)
        out.tensors.append(td)
        out.compared += 1
        out.identical += td.identical
        if td.max_abs is not None:
            out.max_abs = td.max_abs if out.max_abs is None else max(out.max_abs, td.max_abs)
        sum_d2 += acc.sum_d2
        sum_a2 += acc.sum_a2
    if out.compared:
        out.rel_l2 = math.sqrt(sum_d2) / math.sqrt(sum_a2) if sum_a2 > 0 else (0.0 if sum_d2 == 0 else None)
    return out
