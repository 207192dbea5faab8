"""Turning a ``TensorRef``'s bytes into values: Python scalars, numpy arrays, torch tensors.

numpy and torch are imported here, lazily, so metadata-only commands never pay for them.
bfloat16 and the float8 types come back from ``as_numpy`` as same-width unsigned integers (numpy
has no such dtypes); ``ckpttool.numeric`` widens them to float32 exactly.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ckpttool.dtypes import by_name
from ckpttool.errors import UnreadableCheckpoint
from ckpttool.model import TensorRef

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["as_numpy", "as_torch", "gather_bytes", "scalar_value", "raw_numpy_dtype"]

_STRUCT = {"float64": "<d", "float32": "<f", "float16": "<e", "int64": "<q", "int32": "<i",
           "int16": "<h", "int8": "<b", "uint8": "<B", "uint16": "<H", "uint32": "<I", "uint64": "<Q",
           "bool": "<?"}


def scalar_value(t: TensorRef) -> Any:
    """The value of a one-element tensor as a Python number (None for exotic dtypes)."""
    fmt = _STRUCT.get(t.dtype)
    if fmt is None or t.numel != 1:
        return None
    start = t.storage_offset * t.itemsize
    if start + t.itemsize > t.storage.nbytes:
        return None
    data = t.storage.read(start, t.itemsize)
    if t.storage.byteorder == "big":
        fmt = ">" + fmt[1:]
    return struct.unpack(fmt, data)[0]


def raw_numpy_dtype(dtype: str) -> str:
    """The numpy dtype holding ``dtype``'s raw elements (uint for bfloat16 / float8)."""
    d = by_name(dtype)
    if d is None:
        raise UnreadableCheckpoint(f"unknown dtype {dtype!r}")
    if d.numpy is not None:
        return d.numpy
    if d.kind == "c":
        return {4: "<u4"}.get(d.itemsize, "<u4")
    return {1: "|u1", 2: "<u2", 4: "<u4", 8: "<u8"}[d.itemsize]


def gather_bytes(t: TensorRef) -> bytes:
    """C-order little-endian bytes of a strided (or big-endian) view, via numpy."""
    return as_numpy(t).tobytes()


def as_numpy(t: TensorRef) -> np.ndarray:
    """The tensor's raw elements as a C-contiguous numpy array of its shape."""
    import numpy as np

    dtype = np.dtype(raw_numpy_dtype(t.dtype))
    if t.numel == 0:
        return np.zeros(t.shape, dtype=dtype)
    if t.is_contiguous and t.storage.byteorder == "little" and t.storage.source is not None:
        data = t.storage.read(t.storage_offset * t.itemsize, t.nbytes)
        return np.frombuffer(data, dtype=dtype).reshape(t.shape)
    flat = np.frombuffer(t.storage.read(), dtype=dtype)
    if t.storage.byteorder == "big":
        flat = flat.byteswap()
    view = np.lib.stride_tricks.as_strided(
        flat[t.storage_offset:], shape=t.shape, strides=tuple(s * dtype.itemsize for s in t.stride),
        writeable=False)
    return np.ascontiguousarray(view)


def as_torch(t: TensorRef) -> torch.Tensor:
    """A CPU torch tensor with ``t``'s dtype, shape and values (a copy; the file stays closed)."""
    import torch

    dtype = getattr(torch, t.dtype)
    if t.numel == 0:
        return torch.empty(t.shape, dtype=dtype)
    data = bytearray(b"".join(t.chunks()))
    return torch.frombuffer(data, dtype=dtype).reshape(t.shape).clone()
