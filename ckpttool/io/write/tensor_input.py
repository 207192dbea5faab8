"""What a writer accepts as a tensor: a ``TensorRef``, or a ``torch.Tensor`` seen as one.

Writers work on ``TensorRef`` only, so that a lazily read tensor and a tensor built in memory are
streamed the same way. ``TensorAdapter`` wraps CPU torch tensors over a memory view of their
storage (no copy; a GPU storage is copied to the CPU once) and gives tensors sharing one torch
storage one ``Storage`` object, which is how writers know two tensors share memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ckpttool.errors import OutputRefused
from ckpttool.model import CHUNK_BYTES, Storage, TensorRef

__all__ = ["MemorySource", "TensorAdapter", "is_torch_tensor"]


class MemorySource:
    """A ``ByteSource`` over bytes already in memory (a torch storage, a cast buffer)."""

    in_memory = True  # its chunks are views: nothing gains from reading them into other buffers

    def __init__(self, data: memoryview, path: Path | None = None) -> None:
        self.data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        self.path = path or Path("<memory>")

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset:offset + length])

    def readinto(self, offset: int, view: memoryview) -> None:
        view[:] = self.data[offset:offset + len(view)]  # a short slice raises ValueError: sizes differ

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        end = offset + length
        while offset < end:
            n = min(chunk, end - offset)
            yield self.data[offset:offset + n]  # type: ignore[misc] - a view, never copied
            offset += n


def is_torch_tensor(value: Any) -> bool:
    """True for a ``torch.Tensor`` (checked without importing torch)."""
    mod = type(value).__module__
    return (mod.startswith("torch") and hasattr(value, "untyped_storage")
            and hasattr(value, "storage_offset"))


class TensorAdapter:
    """Turns torch tensors into ``TensorRef``s, one ``Storage`` per distinct torch storage."""

    def __init__(self) -> None:
        self._storages: dict[tuple[str, int, int, str], tuple[Storage, Any]] = {}

    def __call__(self, t: Any) -> TensorRef:
        import torch

        requires_grad = bool(t.requires_grad)
        is_parameter = isinstance(t, torch.nn.Parameter)
        if t.layout != torch.strided or t.is_quantized or t.is_nested:
            raise OutputRefused(f"cannot write a {t.layout} tensor; convert it to a dense tensor first")
        if t.device.type == "meta":
            raise OutputRefused("cannot write a meta tensor: it has no data")
        if t.is_conj() or t.is_neg():
            t = t.resolve_conj().resolve_neg()
        t = t.detach()
        dtype = str(t.dtype).removeprefix("torch.")
        untyped = t.untyped_storage()
        # Keyed by the original storage, so views of one GPU storage share one CPU copy of it.
        key = (str(t.device), untyped.data_ptr(), untyped.nbytes(), dtype)
        if key not in self._storages or untyped.data_ptr() == 0:
            if t.device.type != "cpu":
                untyped = untyped.cpu()
            raw = torch.empty(0, dtype=torch.uint8).set_(untyped)
            view = memoryview(raw.numpy()) if untyped.nbytes() else memoryview(b"")
            storage = Storage(key=str(len(self._storages)), dtype=dtype, nbytes=untyped.nbytes(),
                              location="cpu", source=MemorySource(view))
            self._storages[key] = (storage, raw)  # keep the bytes alive while their view is used
        storage = self._storages[key][0]
        return TensorRef(dtype=dtype, shape=tuple(t.shape), stride=tuple(t.stride()), storage=storage,
                         storage_offset=t.storage_offset(), requires_grad=requires_grad,
                         is_parameter=is_parameter)
