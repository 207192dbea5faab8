"""A strided view over a storage, checked with Python integers before anything trusts it.

Shared by every rebuilder that turns a storage record into a ``TensorRef`` (plain tensors, the
integer representation of quantized tensors, the parts of sparse and nested tensors).
"""

from __future__ import annotations

from typing import Any

from ckpttool.dtypes import by_name
from ckpttool.errors import CorruptPickle
from ckpttool.model import Storage, TensorRef

__all__ = ["ints", "strided_tensor"]


def ints(value: Any, what: str) -> tuple[int, ...]:
    """Sizes or strides: at most 64 non-negative Python ints."""
    if type(value) is not tuple:
        if not isinstance(value, tuple | list):
            raise CorruptPickle(f"tensor {what} must be a tuple of integers")
        value = tuple(value)
    if len(value) > 64:
        raise CorruptPickle(f"tensor has {len(value)} dimensions")
    for v in value:
        if type(v) is not int or v < 0:
            raise CorruptPickle(f"tensor {what} must be non-negative integers")
    return value


def strided_tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None = None,
                   requires_grad: Any = False) -> TensorRef:
    """The view ``storage[offset:]`` with ``size``/``stride``, refused if it reaches outside."""
    if not isinstance(storage, Storage):
        raise CorruptPickle("tensor rebuilt from something that is not a storage")
    shape, strides = ints(size, "size"), ints(stride, "stride")
    if type(offset) is not int or offset < 0 or len(shape) != len(strides):
        raise CorruptPickle("tensor offset or stride is invalid")
    dtype = dtype or storage.dtype
    d = by_name(dtype)
    if d is None:
        raise CorruptPickle(f"unknown dtype {dtype!r}")
    numel = 1
    for s in shape:
        numel *= s
    if numel:
        last = offset
        for n, st in zip(shape, strides):
            last += (n - 1) * st
        if (last + 1) * d.itemsize > storage.nbytes:
            raise CorruptPickle(
                f"a tensor view of {shape} reaches byte {(last + 1) * d.itemsize} of a "
                f"{storage.nbytes}-byte storage")
    return TensorRef(dtype=d.name, shape=shape, stride=strides, storage=storage,
                     storage_offset=offset, requires_grad=requires_grad is True)
