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


@dataclass(slots=True)
class TensorEntry:
    """A tensor of the checkpoint: global dtype and shape, and the chunks that hold it."""

    fqn: str
    dtype: str
    shape: tuple[int, ...]
    chunks: list[Chunk]


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


def _storage(sd: Any, where: Path) -> dict[tuple[str, tuple[int, ...] | None], StorageItem]:
    if not isinstance(sd, dict):
        raise UnreadableCheckpoint("DCP .metadata has no storage_data (not written by a FileSystemWriter?)",
                                   path=where)
    out: dict[tuple[str, tuple[int, ...] | None], StorageItem] = {}
    for key, info in sd.items():
        k, v = _attrs(key), _attrs(info)
        fqn, offset = k.get("fqn"), k.get("offset")
        rel, start, length = v.get("relative_path"), v.get("offset"), v.get("length")
        transforms = v.get("transform_descriptors") or ()
        if (not isinstance(fqn, str) or not isinstance(rel, str) or type(start) is not int
                or type(length) is not int or start < 0 or length < 0
                or not isinstance(transforms, tuple | list) or not all(isinstance(t, str) for t in transforms)):
            raise UnreadableCheckpoint("DCP .metadata has a malformed storage entry", path=where)
        if "/" in rel or "\\" in rel or rel in ("", ".", ".."):
            raise UnreadableCheckpoint(f"DCP .metadata names a data file outside its folder: {rel!r}", path=where)
        out[(fqn, None if offset is None else _ints(offset))] = StorageItem(rel, start, length, tuple(transforms))
    return out


def _tensor(fqn: str, meta: Stub, storage: dict[tuple[str, tuple[int, ...] | None], StorageItem],
            where: Path) -> TensorEntry:
    attrs = _attrs(meta)
    dtype, shape = _dtype(attrs.get("properties")), _ints(attrs.get("size"))
    chunks_meta = attrs.get("chunks")
    if dtype is None or shape is None or not isinstance(chunks_meta, list):
        raise UnreadableCheckpoint(f"DCP tensor {fqn!r} has no readable dtype, size or chunks", path=where)
    chunks: list[Chunk] = []
    for c in chunks_meta:
        ca = _attrs(c)
        offsets, sizes = _ints(ca.get("offsets")), _ints(ca.get("sizes"))
        if offsets is None or sizes is None or len(offsets) != len(shape) or len(sizes) != len(shape) \
                or any(o + s > d for o, s, d in zip(offsets, sizes, shape)):
            raise UnreadableCheckpoint(f"DCP tensor {fqn!r} has a chunk outside its shape", path=where)
        item = storage.get((fqn, offsets))
        if item is None:
            raise UnreadableCheckpoint(f"DCP tensor {fqn!r}: no storage entry for its chunk at {list(offsets)}",
                                       path=where)
        chunks.append(Chunk(offsets, sizes, item))
    return TensorEntry(fqn, dtype, shape, chunks)


def read_metadata(folder: Path) -> DcpMetadata:
    """Parse ``folder/.metadata`` with the safe VM; nothing in it is called or imported."""
    meta_path = folder / ".metadata"
    size = meta_path.stat().st_size
    if size > MAX_METADATA:
        raise ResourceLimit(f".metadata is {size} bytes", path=meta_path)
    load = run_pickle(meta_path.read_bytes(), ".metadata", None)
    attrs = _attrs(load.value)
    sdm = attrs.get("state_dict_metadata")
    if not isinstance(sdm, dict):
        raise UnreadableCheckpoint("DCP .metadata has no state_dict_metadata", path=meta_path)
    planner = attrs.get("planner_data") if isinstance(attrs.get("planner_data"), dict) else {}
    storage = _storage(attrs.get("storage_data"), meta_path)
    entries: dict[str, TensorEntry | BytesEntry] = {}
    paths: dict[str, tuple[Any, ...]] = {}
    for fqn, item in sdm.items():
        if not isinstance(fqn, str) or not isinstance(item, Stub):
            raise UnreadableCheckpoint("DCP .metadata has a malformed entry", path=meta_path)
        path = planner.get(fqn)
        paths[fqn] = tuple(path) if isinstance(path, tuple | list) and path else (fqn,)
        if item.qualname.endswith("TensorStorageMetadata"):
            entries[fqn] = _tensor(fqn, item, storage, meta_path)
        else:
            found = storage.get((fqn, None))
            if found is None:
                raise UnreadableCheckpoint(f"DCP entry {fqn!r} has no storage entry", path=meta_path)
            entries[fqn] = BytesEntry(fqn, found)
    version = attrs.get("version")
    files = {s.relative_path for s in storage.values()}
    return DcpMetadata(folder, entries, paths, load, version if isinstance(version, str) else None, files)
