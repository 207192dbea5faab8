"""A DCP folder's ``.metadata``, read by the safe VM into plain records: entries, chunks, storage.

``.metadata`` is a pickled ``torch.distributed.checkpoint.metadata.Metadata``: for each flattened
key (fqn) either a ``TensorStorageMetadata`` (dtype, global size, the chunks the ranks saved: each
an offset and size in the global tensor) or a ``BytesStorageMetadata`` (a ``torch.save``'d
value); ``storage_data`` says where each item lies (``_StorageInfo``: file, offset, length and
any stream transforms); ``planner_data`` gives each fqn's path in the original nested dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import ResourceLimit, UnreadableCheckpoint
from ckpttool.io.pickle.rebuild import dtype_of_global
from ckpttool.io.pickle.run import PickleLoad, run_pickle
from ckpttool.model import Stub

__all__ = ["MAX_METADATA", "StorageItem", "Chunk", "TensorEntry", "BytesEntry", "DcpMetadata", "read_metadata",
           "DCP_CLASSES", "foreign_globals"]

MAX_METADATA = 1 << 30

DCP_CLASSES = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "TensorStorageMetadata", "BytesStorageMetadata",
                                              "TensorProperties", "ChunkStorageMetadata", "MetadataIndex",
                                              "StorageMeta", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
}
_PLAIN_GLOBALS = {"torch.serialization._get_layout", "torch.Size", "torch.device", "collections.OrderedDict",
                  "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
                  "pathlib.PureWindowsPath", "builtins.set", "builtins.frozenset", "copyreg._reconstructor",
                  "builtins.object", "builtins.tuple", "builtins.list", "builtins.dict", "builtins.int"}


@dataclass(frozen=True, slots=True)
class StorageItem:
    """Where one saved item lies: ``length`` bytes at ``offset`` in ``relative_path``."""

    relative_path: str
    offset: int
    length: int
    transforms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One saved piece of a tensor: the box ``offsets``..``offsets+sizes`` of the global tensor."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    item: StorageItem


class TensorEntry:
    """A tensor of the checkpoint: global dtype and shape, and the chunks that hold it.

    The chunks are kept as the rows ``.metadata`` gave and checked when first asked for, so opening
    a folder with hundreds of thousands of chunk entries builds one object per tensor, not per chunk.
    """

    __slots__ = ("fqn", "dtype", "shape", "_rows", "_chunks", "_where")

    def __init__(self, fqn: str, dtype: str, shape: tuple[int, ...], rows: list[Any], where: Path) -> None:
        self.fqn, self.dtype, self.shape = fqn, dtype, shape
        self._rows: list[Any] | None = rows
        self._chunks: list[Chunk] | None = None
        self._where = where

    @property
    def chunk_count(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._chunks or ())

    @property
    def chunks(self) -> list[Chunk]:
        if self._chunks is None:
            self._chunks = _chunks(self.fqn, self.shape, self._rows or [], self._where)
            self._rows = None
        return self._chunks


@dataclass(slots=True)
class BytesEntry:
    """A non-tensor value, saved with ``torch.save`` (or raw bytes) as one item."""

    fqn: str
    item: StorageItem


@dataclass
class DcpMetadata:
    """Everything ``.metadata`` says, in ckpttool's terms."""

    folder: Path
    entries: dict[str, TensorEntry | BytesEntry]
    paths: dict[str, tuple[Any, ...]]
    load: PickleLoad
    version: str | None = None
    files: set[str] = field(default_factory=set)


def foreign_globals(load: PickleLoad) -> list[str]:
    """The globals ``.metadata`` names that torch's DCP writer never puts there."""
    from ckpttool.dtypes import by_name

    def allowed(module: str, name: str) -> bool:
        if name in DCP_CLASSES.get(module, ()):
            return True
        return f"{module}.{name}" in _PLAIN_GLOBALS or (module == "torch" and by_name(name) is not None)

    return sorted(f"{m}.{n}" for (m, n) in load.globals if not allowed(m, n))


def _attrs(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Stub):
        attrs = obj.attributes
        return attrs if isinstance(attrs, dict) else {}
    return {}


def _ints(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, tuple | list) and all(type(v) is int and v >= 0 for v in value):
        return tuple(value)
    return None


def _dtype(props: Any) -> str | None:
    if not isinstance(props, Stub):
        return None
    state = props.state
    if isinstance(state, tuple) and state:
        return dtype_of_global(state[0])
    return dtype_of_global(_attrs(props).get("dtype"))


def _plain_from_stubs(md: Any, where: Path) -> tuple[Any, dict[str, Any], list[Any]]:
    """The safe VM's tree of ``.metadata`` as the plain tuples ``_build`` takes (see ``dcp_fast.Plain``)."""
    attrs = _attrs(md)
    sdm, sd = attrs.get("state_dict_metadata"), attrs.get("storage_data")
    if not isinstance(sdm, dict):
        raise UnreadableCheckpoint("DCP .metadata has no state_dict_metadata", path=where)
    if not isinstance(sd, dict):
        raise UnreadableCheckpoint("DCP .metadata has no storage_data (not written by a FileSystemWriter?)",
                                   path=where)
    planner = attrs.get("planner_data") if isinstance(attrs.get("planner_data"), dict) else {}
    storage: dict[tuple[Any, Any], tuple[Any, ...]] = {}
    shared: dict[Any, Any] = {}  # one copy of each file name and chunk size: they repeat across chunks
    for key, info in sd.items():
        k, v = _attrs(key), _attrs(info)
        offset = k.get("offset")
        rel = v.get("relative_path")
        storage[(k.get("fqn"), None if offset is None else _ints(offset))] = (
            shared.setdefault(rel, rel) if isinstance(rel, str) else rel, v.get("offset"), v.get("length"),
            v.get("transform_descriptors"))
    entries: list[Any] = []
    for fqn, item in sdm.items():
        if not isinstance(item, Stub):
            raise UnreadableCheckpoint("DCP .metadata has a malformed entry", path=where)
        name = item.qualname.rsplit(".", 1)[-1]
        if name != "TensorStorageMetadata":
            entries.append((fqn, name, None, None, storage.get((fqn, None))))
            continue
        a = _attrs(item)
        chunks = a.get("chunks")
        rows = None
        if isinstance(chunks, list):
            rows = []
            for c in chunks:
                offsets = _ints(_attrs(c).get("offsets"))
                sizes = _ints(_attrs(c).get("sizes"))
                rows.append((offsets, shared.setdefault(sizes, sizes), storage.get((fqn, offsets))))
        entries.append((fqn, name, _dtype(a.get("properties")), _ints(a.get("size")), rows))
    return attrs.get("version"), planner, entries


def _item(row: Any, fqn: str, where: Path) -> StorageItem:
    if row is None:
        raise UnreadableCheckpoint(f"DCP entry {fqn!r} has no storage entry", path=where)
    rel, start, length, transforms = row
    transforms = transforms or ()
    if (not isinstance(rel, str) or type(start) is not int or type(length) is not int or start < 0 or length < 0
            or not isinstance(transforms, tuple | list) or not all(isinstance(t, str) for t in transforms)):
        raise UnreadableCheckpoint(f"DCP .metadata has a malformed storage entry for {fqn!r}", path=where)
    if "/" in rel or "\\" in rel or rel in ("", ".", ".."):
        raise UnreadableCheckpoint(f"DCP .metadata names a data file outside its folder: {rel!r}", path=where)
    return StorageItem(rel, start, length, tuple(transforms))


def _chunks(fqn: str, shape: tuple[int, ...], rows: list[Any], where: Path) -> list[Chunk]:
    chunks: list[Chunk] = []
    for offsets, sizes, storage in rows:
        if offsets is None or sizes is None or len(offsets) != len(shape) or len(sizes) != len(shape) \
                or any(o < 0 or s < 0 or o + s > d for o, s, d in zip(offsets, sizes, shape)):
            raise UnreadableCheckpoint(f"DCP tensor {fqn!r} has a chunk outside its shape", path=where)
        chunks.append(Chunk(offsets, sizes, _item(storage, f"{fqn}@{list(offsets)}", where)))
    return chunks


def _build(folder: Path, where: Path, plain: tuple[Any, dict[str, Any], list[Any]], load: PickleLoad) -> DcpMetadata:
    from ckpttool.dtypes import by_name

    version, planner, rows = plain
    entries: dict[str, TensorEntry | BytesEntry] = {}
    paths: dict[str, tuple[Any, ...]] = {}
    files: set[str] = set()
    for fqn, kind, dtype, shape, extra in rows:
        if not isinstance(fqn, str) or fqn in entries:
            raise UnreadableCheckpoint("DCP .metadata has a malformed entry", path=where)
        path = planner.get(fqn) if isinstance(planner, dict) else None
        paths[fqn] = tuple(path) if isinstance(path, tuple | list) and path else (fqn,)
        if kind == "TensorStorageMetadata":
            if not isinstance(dtype, str) or by_name(dtype) is None or _ints(shape) is None \
                    or not isinstance(extra, list):
                raise UnreadableCheckpoint(f"DCP tensor {fqn!r} has no readable dtype, size or chunks", path=where)
            entries[fqn] = TensorEntry(fqn, dtype, shape, extra, where)
            files.update(r[2][0] for r in extra if r[2] is not None and isinstance(r[2][0], str))
        else:
            item = _item(extra, fqn, where)
            files.add(item.relative_path)
            entries[fqn] = BytesEntry(fqn, item)
    return DcpMetadata(folder, entries, paths, load, version if isinstance(version, str) else None, files)


def read_metadata(folder: Path) -> DcpMetadata:
    """Parse ``folder/.metadata``; nothing in it is called or imported (see ``dcp_fast`` for large ones)."""
    from ckpttool.io.formats.dcp_fast import fast_plain

    meta_path = folder / ".metadata"
    size = meta_path.stat().st_size
    if size > MAX_METADATA:
        raise ResourceLimit(f".metadata is {size} bytes", path=meta_path)
    data = meta_path.read_bytes()
    fast = fast_plain(data)
    if fast is not None:
        from collections import Counter

        from ckpttool.io.pickle.globals_policy import classify

        seen = Counter({(m, n): c for m, n, c in fast[3]})
        load = PickleLoad(".metadata", None, len(data), seen, {k: classify(*k) for k in seen})
        return _build(folder, meta_path, fast[:3], load)
    load = run_pickle(data, ".metadata", None)
    plain = _plain_from_stubs(load.value, meta_path)
    load.value = None  # the stubs' tree is several times the file: keep only what was taken from it
    return _build(folder, meta_path, plain, load)
