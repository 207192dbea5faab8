"""torch zip archives written member by member, in the layout ``torch.save`` produces.

``data.pkl`` first, then ``.format_version``, ``.storage_alignment``, ``byteorder``, each storage
as ``data/<key>`` (64-byte aligned, streamed in chunks from wherever the tensor's bytes live), then
``version`` and ``.data/serialization_id``. Memory is bounded by one chunk, not by the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ckpttool.io.write.pickle_writer import Expected, Transform, pickle_tree
from ckpttool.io.write.tensor_input import TensorAdapter
from ckpttool.io.write.zip_writer import ALIGNMENT, Sink, ZipStreamWriter
from ckpttool.model import Storage, TensorRef
from ckpttool.progress import ProgressSink, counted

__all__ = ["write_torch", "Written", "storage_pieces"]


@dataclass
class Written:
    """What a writer put in the file, and where the meant bytes come from, for verification.

    ``sources`` maps each storage key (torch) or tensor name (safetensors) to a function that
    streams the bytes that were meant to be written there.
    """

    tensors: int
    sources: dict[str, Callable[[], Iterable[bytes | memoryview]]]
    expected: list[Expected] = field(default_factory=list)
    metadata: dict[str, str] | None = None
    dtypes: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    refs: dict[str, TensorRef] = field(default_factory=dict)  # safetensors: the tensor each name was written from


def storage_pieces(storage: Storage) -> Iterator[bytes | memoryview]:
    """The storage's bytes, little-endian, chunk by chunk."""
    assert storage.source is not None
    swap = storage.byteorder == "big"
    for piece in storage.source.chunks(storage.offset, storage.nbytes):
        if swap:
            import numpy as np

            from ckpttool.tensors import raw_numpy_dtype

            piece = np.frombuffer(piece, dtype=raw_numpy_dtype(storage.dtype)).byteswap().tobytes()
        yield piece


def _serialization_id(pickle_bytes: bytes) -> bytes:
    """A 40-digit id like torch's, derived from the content so equal trees give equal files."""
    return str(int.from_bytes(hashlib.sha256(pickle_bytes).digest()[:17], "little")).zfill(40)[:40].encode()


def write_torch(tree: Any, sink: Sink, root: str, transform: Transform | None = None,
                progress: ProgressSink | None = None) -> Written:
    """Write ``tree`` to ``sink`` as a torch zip archive whose records live under ``root/``.

    ``progress`` is told the storage bytes to write once the pickle is built, then each chunk.
    """
    pk = pickle_tree(tree, TensorAdapter(), transform)
    if progress is not None:
        progress.start(sum(s.nbytes for s in pk.storages))
    z = ZipStreamWriter(sink, root)
    z.add_bytes("data.pkl", pk.data)
    z.add_bytes(".format_version", b"1")
    z.add_bytes(".storage_alignment", str(ALIGNMENT).encode())
    z.add_bytes("byteorder", b"little")
    sources: dict[str, Callable[[], Iterable[bytes | memoryview]]] = {}
    for key, storage in enumerate(pk.storages):
        z.add(f"data/{key}", counted(storage_pieces(storage), progress), storage.nbytes)
        sources[str(key)] = partial(storage_pieces, storage)
    z.add_bytes("version", b"3\n")
    z.add_bytes(".data/serialization_id", _serialization_id(pk.data))
    z.close()
    return Written(tensors=pk.tensors, sources=sources, expected=pk.expected)
