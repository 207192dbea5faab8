"""Comparing two composite entries (quantized, sparse, nested, DTensor, torchao, unknown subclasses).

Same kind, logical shape and part layout first; then each part's bytes and the plain state
(scale, zero point, placements...). Quantized tensors are compared by their dequantized values
too, so a changed integer is reported with figures a person can read. An entry with no parts to
compare is "not compared", never "identical".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckpttool.model import CompositeTensor, TensorRef
from ckpttool.numeric import DiffAccumulator, DiffStats
from ckpttool.ops.diff.result import TensorDiff
from ckpttool.ops.diff.values import ByteComparer, compare_values

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["compare_composite", "dequantized", "DEQUANTIZE_MAX_ELEMENTS"]

# Dequantized comparison holds both tensors as float64 in memory: bounded; past it the integer
# representations are compared chunk by chunk (the figures are then in integer steps, said in the note).
DEQUANTIZE_MAX_ELEMENTS = 16 * 1024 * 1024


def _layout(c: CompositeTensor) -> tuple[Any, ...]:
    return (c.kind, c.shape, tuple((k, t.dtype, t.shape) for k, t in c.parts.items()))


def compare_composite(key: str, a: CompositeTensor, b: CompositeTensor, kind: str, rtol: float, atol: float,
                      comparer: ByteComparer, key_a: str | None = None) -> TensorDiff:
    """One entry of the diff for two composites under the same aligned key."""
    entry = TensorDiff(key, "shape", kind, a.dtype, b.dtype, a.shape, b.shape, key_a=key_a,
                       entry_type=a.kind if a.kind == b.kind else f"{a.kind}/{b.kind}")
    if _layout(a) != _layout(b):
        entry.note = "different kind or inner tensors" if a.shape == b.shape else ""
        return entry
    entry.params_changed = a.params != b.params
    changed: list[str] = []
    first_stats: DiffStats | None = None
    for name, pa in a.parts.items():
        same, stats = compare_values(pa, b.parts[name], rtol, atol, None, comparer)
        if not same:
            changed.append(name)
            first_stats = first_stats or stats
    entry.parts_changed = changed
    if not a.parts:
        entry.status = "not_compared"
        entry.note = "no inner tensors to compare" + ("" if not entry.params_changed else "; state differs")
        return entry
    if not changed and not entry.params_changed:
        entry.status = "identical"
        entry.stats = DiffStats.identical(max(a.numel, 0))
        return entry
    if a.kind == "quantized" and a.decoded and b.decoded and a.numel <= DEQUANTIZE_MAX_ELEMENTS:
        try:
            acc = DiffAccumulator(rtol, atol)
            acc.add(dequantized(a).reshape(-1), dequantized(b).reshape(-1))
            entry.stats = acc.result()
        except (ValueError, KeyError):  # a scheme dequantized() does not know: bytes only
            entry.stats = first_stats
        entry.note = "dequantized values compared"
    else:
        entry.stats = first_stats
        if changed:
            entry.note = f"figures are for the inner tensor {changed[0]!r}"
            if a.kind == "quantized":
                entry.note += " (integer steps: too large to dequantize in memory)"
    close = entry.stats is not None and entry.stats.within_tolerance and not entry.params_changed
    entry.status = "close" if close and a.kind == "quantized" else "changed"
    if entry.params_changed:
        entry.note = (entry.note + "; " if entry.note else "") + "state differs (" + ", ".join(
            k for k in sorted(set(a.params) | set(b.params)) if a.params.get(k) != b.params.get(k)) + ")"
    return entry


def _as_float(t: TensorRef) -> np.ndarray:
    from ckpttool.numeric import widen

    return widen(t.read_bytes(), t.dtype)


def dequantized(c: CompositeTensor) -> np.ndarray:
    """``(int_repr - zero_point) * scale`` of a quantized tensor, as float64 in its logical shape."""
    import numpy as np

    shape = c.shape or ()
    raw = c.parts["int_repr"].to_numpy().astype(np.float64).reshape(-1)
    per = {"quint4x2": 2, "quint2x4": 4}.get(c.dtype)
    if per:  # unpack the low bits first, as torch does
        bits = 8 // per
        codes = raw.astype(np.uint8)
        raw = np.stack([(codes >> (bits * i)) & ((1 << bits) - 1) for i in range(per)], axis=1).reshape(-1)
        raw = raw[:int(np.prod(shape))].astype(np.float64)
    values = raw.reshape(shape)
    if "scale" in c.params:
        return (values - float(c.params["zero_point"])) * float(c.params["scale"])
    axis = int(c.params["axis"])
    scales, zeros = _as_float(c.parts["scales"]), _as_float(c.parts["zero_points"])
    view = [1] * len(shape)
    view[axis] = -1
    if c.params.get("qscheme") == "per_channel_affine_float_qparams" or c.parts["zero_points"].dtype != "int64":
        return (values - zeros.reshape(view)) * scales.reshape(view)
    return (values - zeros.reshape(view)) * scales.reshape(view)
