"""Quantized entries as plain tensors under documented names, for outputs that hold only plain tensors.

``convert --quantized-parts`` writes each quantized tensor ``KEY`` as

- ``KEY.int_repr``: its integer representation (``int8`` for ``qint8``, ``uint8`` for ``quint8``,
  ``int32`` for ``qint32``; for ``quint4x2``/``quint2x4`` the packed bytes, 2 or 4 values a byte,
  low bits first), exactly as ``Tensor.int_repr()`` returns it;
- per-tensor schemes: ``KEY.scale`` (float64, 0-dim) and ``KEY.zero_point`` (int64, 0-dim);
- per-channel schemes: ``KEY.scales`` and ``KEY.zero_points`` (as ``q_per_channel_scales()`` /
  ``q_per_channel_zero_points()``), the axis in the metadata;

and records ``{KEY: {dtype, qscheme, shape, axis?}}`` as JSON under the metadata key
``ckpttool.quantized``: enough for ``torch._make_per_tensor_quantized_tensor`` /
``_make_per_channel_quantized_tensor`` to rebuild it. An eager quantized layer's packed tuple
(``..._packed_params._packed_params``) is written the same way under ``KEY.0.*`` with its bias as
``KEY.1``.
"""

from __future__ import annotations

import struct
from typing import Any

from ckpttool.errors import OutputRefused
from ckpttool.io.write.tensor_input import MemorySource
from ckpttool.model import CompositeTensor, StateDict, Storage, TensorRef

__all__ = ["expand_quantized", "METADATA_KEY"]

METADATA_KEY = "ckpttool.quantized"


def _scalar(value: float | int, dtype: str) -> TensorRef:
    data = struct.pack("<d", float(value)) if dtype == "float64" else struct.pack("<q", int(value))
    storage = Storage(key="scalar", dtype=dtype, nbytes=8, location="cpu", source=MemorySource(memoryview(data)))
    return TensorRef(dtype=dtype, shape=(), stride=(), storage=storage)


def _quantized(prefix: str, parts: dict[str, TensorRef], params: dict[str, Any], dtype: str,
               shape: list[int]) -> tuple[dict[str, TensorRef], dict[str, Any]]:
    """The plain tensors and the metadata record of one quantized tensor written under ``prefix``."""
    out = {f"{prefix}.int_repr": parts["int_repr"]}
    record: dict[str, Any] = {"dtype": dtype, "qscheme": params.get("qscheme"), "shape": shape}
    if "scale" in params:
        out[f"{prefix}.scale"] = _scalar(params["scale"], "float64")
        out[f"{prefix}.zero_point"] = _scalar(params["zero_point"], "int64")
    else:
        out[f"{prefix}.scales"], out[f"{prefix}.zero_points"] = parts["scales"], parts["zero_points"]
        record["axis"] = params["axis"]
    return out, record


def _expand(key: str, entry: CompositeTensor) -> tuple[dict[str, TensorRef], dict[str, Any]] | None:
    if entry.kind == "quantized" and entry.decoded:
        return _quantized(key, entry.parts, entry.params, entry.dtype, list(entry.shape or ()))
    if entry.kind != "packed_params" or not entry.decoded:
        return None
    tensors: dict[str, TensorRef] = {}
    records: dict[str, Any] = {}
    for index in sorted({name.split(".", 1)[0] for name in entry.parts}):
        info = entry.params.get(index)
        if isinstance(info, dict) and info.get("kind") == "quantized":
            parts = {n.split(".", 1)[1]: t for n, t in entry.parts.items() if n.startswith(index + ".")}
            more, record = _quantized(f"{key}.{index}", parts, info, info["dtype"], info["shape"])
            tensors.update(more)
            records[f"{key}.{index}"] = record
        elif index in entry.parts:
            tensors[f"{key}.{index}"] = entry.parts[index]
        else:
            return None
    return tensors, records


def expand_quantized(sd: StateDict) -> tuple[StateDict, dict[str, Any]]:
    """``sd`` with its quantized entries replaced by their documented plain parts, and their records.

    Raises:
        OutputRefused: a part's name is already a key of the state_dict.
    """
    tensors = dict(sd.tensors)
    composites: dict[str, CompositeTensor] = {}
    records: dict[str, Any] = {}
    for key, entry in sd.composites.items():
        expanded = _expand(key, entry)
        if expanded is None:
            composites[key] = entry
            continue
        more, record = expanded
        clash = sorted(set(more) & set(tensors))
        if clash:
            raise OutputRefused(f"the parts of quantized tensor {key!r} would overwrite {clash[0]!r}")
        tensors.update(more)
        if entry.kind == "quantized":
            records[key] = record
        else:
            records.update(record)
    return StateDict(tensors, sd.parameters, sd.extras, sd.version_metadata, composites), records
