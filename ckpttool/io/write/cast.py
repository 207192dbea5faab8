"""Lazy dtype casts: a cast tensor is a ``TensorRef`` over a storage converted chunk by chunk.

Nothing is converted until a writer streams the bytes, so casting a 2 GB model to fp16 holds one
chunk at a time. The conversion is torch's own (``Tensor.to``), so values are exactly what
``model.half()`` would give. Tensors sharing a storage share the cast storage too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ckpttool.dtypes import by_name
from ckpttool.errors import UsageError
from ckpttool.model import CHUNK_BYTES, Storage, TensorRef

__all__ = ["CastSource", "Caster", "CASTABLE", "DTYPE_ALIASES", "parse_dtype"]

CASTABLE = frozenset({"float16", "bfloat16", "float32", "float64"})
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "float16": "float16", "bf16": "bfloat16",
                 "bfloat16": "bfloat16", "fp32": "float32", "float": "float32", "float32": "float32"}


def parse_dtype(name: str) -> str:
    """``fp16``/``bf16``/``fp32`` (or torch's names) as a torch dtype name."""
    try:
        return DTYPE_ALIASES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown --dtype {name!r}", hint="use fp16, bf16 or fp32") from None


class CastSource:
    """The bytes of ``storage`` converted from ``src`` to ``dst`` elements, on read."""

    def __init__(self, storage: Storage, src: str, dst: str) -> None:
        self.storage = storage
        self.src, self.dst = src, dst
        self.si = by_name(src).itemsize  # type: ignore[union-attr]
        self.di = by_name(dst).itemsize  # type: ignore[union-attr]
        self.path = storage.source.path if storage.source is not None else Path("<cast>")

    def _convert(self, data: bytes) -> bytes:
        import torch

        if not data:
            return b""
        t = torch.frombuffer(bytearray(data), dtype=getattr(torch, self.src))
        return t.to(getattr(torch, self.dst)).view(torch.uint8).numpy().tobytes()

    def read(self, offset: int, length: int) -> bytes:
        first, count = offset // self.di, length // self.di
        return self._convert(self.storage.read(first * self.si, count * self.si))

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        step = max(self.di, chunk // max(self.si, self.di) * self.di)
        end = offset + length
        while offset < end:
            n = min(step, end - offset)
            yield self.read(offset, n)
            offset += n


class Caster:
    """Casts floating tensors (fp16/bf16/fp32/fp64) to ``dtype``; other tensors pass through.

    ``cast``/``kept`` count tensors converted and floating tensors left alone (float8, already
    the target dtype); integer and bool tensors are never touched.
    """

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self._storages: dict[tuple[int, str], Storage] = {}
        self._tensors: dict[int, TensorRef] = {}
        self.cast = 0
        self.skipped: list[str] = []

    def __call__(self, t: TensorRef, key: str = "") -> TensorRef:
        if t.dtype not in CASTABLE or t.dtype == self.dtype:
            if t.dtype not in CASTABLE and by_name(t.dtype) is not None and by_name(t.dtype).kind == "f":  # type: ignore[union-attr]
                self.skipped.append(key)
            return t
        done = self._tensors.get(id(t))
        if done is not None:
            return done
        st = t.storage
        skey = (id(st), t.dtype)
        new = self._storages.get(skey)
        if new is None:
            si = by_name(t.dtype).itemsize  # type: ignore[union-attr]
            di = by_name(self.dtype).itemsize  # type: ignore[union-attr]
            new = Storage(key=st.key, dtype=self.dtype, nbytes=st.nbytes // si * di, location="cpu",
                          source=CastSource(st, t.dtype, self.dtype) if st.source is not None else None)
            if st.byteorder != "little":
                raise UsageError("casting big-endian storages is not supported")
            self._storages[skey] = new
        out = TensorRef(dtype=self.dtype, shape=t.shape, stride=t.stride, storage=new,
                        storage_offset=t.storage_offset, requires_grad=t.requires_grad,
                        is_parameter=t.is_parameter)
        self._tensors[id(t)] = out
        self.cast += 1
        return out
