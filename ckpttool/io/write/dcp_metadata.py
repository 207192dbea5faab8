"""``.metadata`` pickled without importing torch, opcode for opcode the way torch's writer pickles it.

A DCP folder's ``.metadata`` is a pickled ``Metadata`` dataclass (and the dataclasses it holds),
which torch's reader loads with the full ``pickle`` module. Importing torch only to pickle those
records would cost a writer some 200 MiB of memory and a second of start-up, so this module
emits the same objects directly: ``NEWOBJ`` + ``BUILD`` for each dataclass (a tuple state for
``TensorProperties``, as its ``__getstate__`` gives), ``REDUCE`` for ``torch.Size``, the layout
and the memory-format enum, plain globals for dtypes. Tests load the result with ``pickle`` and
compare it with the same records built from torch's classes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["metadata_pickle", "TensorRecord", "BytesRecord"]

_MD = "torch.distributed.checkpoint.metadata"


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Obj:
    cls: _Global
    state: Any


@dataclass(frozen=True)
class _Call:
    fn: _Global
    args: tuple[Any, ...]


@dataclass
class TensorRecord:
    """A tensor entry: dtype name, global shape, chunks as ((offsets, sizes), (file, offset, length))."""

    fqn: str
    dtype: str
    shape: tuple[int, ...]
    chunks: Sequence[tuple[tuple[tuple[int, ...], tuple[int, ...]], tuple[str, int, int]]]


@dataclass
class BytesRecord:
    """A non-tensor entry and where its item lies: (file, offset, length)."""

    fqn: str
    item: tuple[str, int, int]


def _size(dims: Sequence[int]) -> _Call:
    return _Call(_Global("torch", "Size"), (tuple(dims),))


def _info(item: tuple[str, int, int]) -> _Obj:
    rel, offset, length = item
    return _Obj(_Global("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
                {"relative_path": rel, "offset": offset, "length": length})


def _properties(dtype: str) -> _Obj:
    layout = _Call(_Global("torch.serialization", "_get_layout"), ("torch.strided",))
    contiguous = _Call(_Global(_MD, "_MEM_FORMAT_ENCODING"), (0,))
    return _Obj(_Global(_MD, "TensorProperties"), (_Global("torch", dtype), layout, False, contiguous, False))


def _tree(records: Sequence[TensorRecord | BytesRecord], planner: dict[str, tuple[Any, ...]]) -> _Obj:
    sdm: dict[str, Any] = {}
    storage: list[tuple[Any, Any]] = []
    for r in records:
        if isinstance(r, TensorRecord):
            chunks = []
            for i, ((offsets, sizes), item) in enumerate(r.chunks):
                chunks.append(_Obj(_Global(_MD, "ChunkStorageMetadata"),
                                   {"offsets": _size(offsets), "sizes": _size(sizes)}))
                index = _Obj(_Global(_MD, "MetadataIndex"), {"fqn": r.fqn, "index": i, "offset": _size(offsets)})
                storage.append((index, _info(item)))
            sdm[r.fqn] = _Obj(_Global(_MD, "TensorStorageMetadata"),
                              {"properties": _properties(r.dtype), "size": _size(r.shape), "chunks": chunks})
        else:
            sdm[r.fqn] = _Obj(_Global(_MD, "BytesStorageMetadata"), None)
            storage.append((_Obj(_Global(_MD, "MetadataIndex"), {"fqn": r.fqn, "index": None}), _info(r.item)))
    return _Obj(_Global(_MD, "Metadata"), {"state_dict_metadata": sdm, "planner_data": planner,
                                           "storage_data": _Pairs(storage), "storage_meta": None,
                                           "version": "1.0.0"})


@dataclass(frozen=True)
class _Pairs:
    """A dict whose keys are records (not hashable as such): written as key/value pairs."""

    items: list[tuple[Any, Any]]


class _Emitter:
    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def emit(self, obj: Any) -> None:
        out = self.out
        if obj is None:
            out += b"N"
        elif obj is True or obj is False:
            out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                out += b"K" + bytes([obj])
            elif 0 <= obj < 65536:
                out += b"M" + struct.pack("<H", obj)
            elif -(1 << 31) <= obj < (1 << 31):
                out += b"J" + struct.pack("<i", obj)
            else:
                raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                out += b"\x8a" + bytes([len(raw)]) + raw
        elif isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            out += b"X" + struct.pack("<I", len(data)) + data
        elif isinstance(obj, tuple):
            if not obj:
                out += b")"
                return
            out += b"("
            for v in obj:
                self.emit(v)
            out += b"t"
        elif isinstance(obj, list):
            out += b"]("
            for v in obj:
                self.emit(v)
            out += b"e"
        elif isinstance(obj, dict | _Pairs):
            out += b"}("
            for k, v in (obj.items if isinstance(obj, _Pairs) else obj.items()):
                self.emit(k)
                self.emit(v)
            out += b"u"
        elif isinstance(obj, _Global):
            out += f"c{obj.module}\n{obj.name}\n".encode()
        elif isinstance(obj, _Call):
            self.emit(obj.fn)
            self.emit(obj.args)
            out += b"R"
        elif isinstance(obj, _Obj):
            self.emit(obj.cls)
            out += b")\x81"
            if obj.state is not None:
                self.emit(obj.state)
                out += b"b"
        else:
            raise TypeError(f"cannot write a {type(obj).__name__} into .metadata")


def metadata_pickle(records: Sequence[TensorRecord | BytesRecord], planner: dict[str, tuple[Any, ...]]) -> bytes:
    """The bytes of ``.metadata`` for these entries, in order, with each fqn's path in the nested tree."""
    em = _Emitter()
    em.emit(_tree(records, planner))
    em.out += b"."
    return bytes(em.out)
