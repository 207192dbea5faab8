"""``torch.export`` archives (``torch.export.save`` → ``.pt2``): the weights and constants, never the graph.

A PT2 archive is a zip whose ``<root>/archive_format`` reads ``pt2``. Each exported program
``NAME`` has its graph in ``models/NAME.json`` (code that ``torch.export.load`` would deserialize
into a runnable module: reported, never read) and its tensors in torch's own storage format, not
pickles: ``data/weights/NAME_weights_config.json`` and ``data/constants/NAME_constants_config.json``
map each fully qualified name to a record (``weight_3``, ``tensor_0``) of raw storage bytes plus
its dtype, sizes, strides and storage offset. Several names may point to one record (aliases),
and become views of one ``Storage`` here as they do in torch. Tensor subclasses are the
exception (``use_pickle``): their record is a nested ``torch.save`` archive, read by the safe
reader like any other. ``opaque_obj_*`` constants are plain pickles (``pickle.loads`` in torch)
and ``custom_obj_*`` ones TorchScript pickles; both go through the safe VM, so their globals are
reported like every pickle's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ckpttool.dtypes import by_name
from ckpttool.errors import CkptError, ResourceLimit, UnreadableCheckpoint, UnsupportedFormat
from ckpttool.io.formats.zip_index import ZipEntry, ZipIndex
from ckpttool.io.pickle.run import PickleLoad, run_pickle
from ckpttool.model import CHUNK_BYTES, PickledDict, Storage, TensorRef

__all__ = ["is_pt2", "read_pt2", "Pt2Read", "FORMAT", "MARKER", "SCALAR_TYPES", "code_members"]

FORMAT = "torch-export"
MARKER = "torch-export"  # key in the tree's ``attrs`` the layout recogniser looks for
MAX_CONFIG_BYTES = 256 << 20
MAX_NESTED_BYTES = 1 << 30
MAX_ZEROS_BYTES = 1 << 40  # an empty record of a fake tensor: torch allocates zeros of its shape

# torch/_export/serde/schema.py ScalarType -> torch dtype name
SCALAR_TYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
                8: "float64", 9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16",
                28: "uint16", 29: "float8_e4m3fn", 30: "float8_e5m2", 31: "float8_e4m3fnuz",
                32: "float8_e5m2fnuz", 33: "float8_e8m0fnu", 34: "uint32", 35: "uint64"}
_STRIDED = 7
# Members holding code: the serialized graph, and AOTInductor / ExecuTorch / MTIA compiled artifacts.
_CODE_DIRS = ("models/", "data/aotinductor/", "data/executorch/", "data/mtia")


class Pt2Read:
    """The tree of a PT2 archive, every pickle met inside it, anomalies and archive facts."""

    def __init__(self, tree: PickledDict, loads: list[PickleLoad], anomalies: list[str],
                 members: dict[str, Any]) -> None:
        self.tree, self.loads, self.anomalies, self.members = tree, loads, anomalies, members


def _root(index: ZipIndex) -> str | None:
    first = next(iter(index.entries), "")
    return first.split("/", 1)[0] if "/" in first else None


def is_pt2(index: ZipIndex) -> bool:
    """True when the archive declares itself a PT2 archive (``<root>/archive_format`` is ``pt2``)."""
    root = _root(index)
    entry = index.entries.get(f"{root}/archive_format") if root else None
    return entry is not None and entry.size < 64 and index.read(entry.name, 64).strip() == b"pt2"


def code_members(index: ZipIndex, root: str) -> list[str]:
    """The members ``torch.export.load`` (or an AOTInductor loader) would turn into running code."""
    return [n for n in index.entries if any(n.startswith(f"{root}/{d}") for d in _CODE_DIRS)
            and not n.endswith("/")]


class _SliceSource:
    """A stored (uncompressed) zip member seen as a file of its own, for archives nested in the archive."""

    def __init__(self, index: ZipIndex, entry: ZipEntry) -> None:
        if entry.method != 0:
            raise UnsupportedFormat(f"nested archive {entry.name!r} is compressed", path=index.path)
        self.path, self.file, self.base, self.size = index.path, index.file, entry.data_offset, entry.size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise UnreadableCheckpoint("a read past the end of a nested archive", path=self.path)
        return self.file.read(self.base + offset, length)

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        if offset < 0 or offset + length > self.size:
            raise UnreadableCheckpoint("a read past the end of a nested archive", path=self.path)
        yield from self.file.chunks(self.base + offset, length, chunk)


class _Zeros:
    """What torch makes of an empty record with a non-empty shape (a fake tensor was saved): zeros."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, offset: int, length: int) -> bytes:
        return bytes(length)

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        while length > 0:
            n = min(chunk, length)
            yield bytes(n)
            length -= n


def _ints(values: Any, what: str, where: str, path: Path) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise UnreadableCheckpoint(f"{where}: {what} is not a list", path=path)
    out = []
    for v in values:
        n = v.get("as_int") if isinstance(v, dict) else None
        if type(n) is not int or n < 0:
            raise UnsupportedFormat(f"{where}: {what} is symbolic or invalid ({str(v)[:60]})", path=path)
        out.append(n)
    return tuple(out)


class _Reader:
    """Reads one archive's configs into lazy tensors; shares storages between aliases."""

    def __init__(self, path: Path, index: ZipIndex, root: str, keep_going: bool) -> None:
        self.path, self.index, self.root, self.keep_going = path, index, root, keep_going
        self.loads: list[PickleLoad] = []
        self.anomalies: list[str] = []
        self.storages: dict[str, Storage] = {}

    def config(self, name: str) -> dict[str, Any] | None:
        member = f"{self.root}/{name}"
        if member not in self.index.entries:
            return None
        try:
            doc = json.loads(self.index.read(member, MAX_CONFIG_BYTES).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise UnreadableCheckpoint(f"{member} is not valid JSON: {exc}", path=self.path) from None
        config = doc.get("config") if isinstance(doc, dict) else None
        if not isinstance(config, dict):
            raise UnreadableCheckpoint(f"{member} has no config mapping", path=self.path)
        return config

    def entries(self, config: dict[str, Any], folder: str) -> PickledDict:
        out = PickledDict(ordered=True)
        for fqn, meta in config.items():
            if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
                raise UnreadableCheckpoint(f"{folder}: entry {fqn!r} names no record", path=self.path)
            out[fqn] = self.entry(str(fqn), meta, folder)
        return out

    def member(self, folder: str, name: str) -> ZipEntry:
        if "/" in name or name in ("", ".", ".."):
            raise UnreadableCheckpoint(f"{folder}: record name {name!r} leaves its folder", path=self.path)
        entry = self.index.entries.get(f"{self.root}/{folder}{name}")
        if entry is None:
            raise UnreadableCheckpoint(f"record {folder}{name} is missing", path=self.path)
        return entry

    def entry(self, fqn: str, meta: dict[str, Any], folder: str) -> Any:
        name = meta["path_name"]
        entry = self.member(folder, name)
        if name.startswith("opaque_obj_") or name.startswith("custom_obj_") or meta.get("use_pickle"):
            return self.nested(entry, f"{folder}{name}")
        return self.tensor(fqn, meta, entry, folder)

    def tensor(self, fqn: str, meta: dict[str, Any], entry: ZipEntry, folder: str) -> TensorRef:
        where = f"{folder}{meta['path_name']} ({fqn})"
        tm = meta.get("tensor_meta")
        if not isinstance(tm, dict):
            raise UnreadableCheckpoint(f"{where}: no tensor_meta", path=self.path)
        code = tm.get("dtype")
        dtype = SCALAR_TYPES.get(code) if type(code) is int else None
        if dtype is None:
            raise UnsupportedFormat(f"{where}: unknown scalar type {tm.get('dtype')!r}", path=self.path)
        if tm.get("layout", _STRIDED) != _STRIDED:
            raise UnsupportedFormat(f"{where}: layout {tm.get('layout')!r} is not strided", path=self.path)
        shape = _ints(tm.get("sizes"), "sizes", where, self.path)
        stride = _ints(tm.get("strides"), "strides", where, self.path)
        (offset,) = _ints([tm.get("storage_offset", {"as_int": 0})], "storage_offset", where, self.path)
        if len(stride) != len(shape):
            raise UnreadableCheckpoint(f"{where}: {len(shape)} sizes but {len(stride)} strides", path=self.path)
        storage = self.storage(entry, dtype, tm, where)
        ref = TensorRef(dtype=dtype, shape=shape, stride=stride, storage=storage, storage_offset=offset,
                        requires_grad=bool(tm.get("requires_grad")), is_parameter=bool(meta.get("is_param")))
        itemsize = ref.itemsize
        extent = 0 if 0 in shape else offset + 1 + sum((s - 1) * st for s, st in zip(shape, stride))
        if extent * itemsize > storage.nbytes:
            raise UnreadableCheckpoint(f"{where}: the tensor reaches past its {storage.nbytes}-byte record",
                                       path=self.path)
        return ref

    def storage(self, entry: ZipEntry, dtype: str, tm: dict[str, Any], where: str) -> Storage:
        if entry.name in self.storages:
            return self.storages[entry.name]
        d = by_name(dtype)
        itemsize = d.itemsize if d else 1
        if entry.size % itemsize:
            raise UnreadableCheckpoint(f"{where}: {entry.size} bytes is not a whole number of {dtype}",
                                       path=self.path)
        device = tm.get("device") if isinstance(tm.get("device"), dict) else {}
        location = str(device.get("type", "cpu")) + (f":{device['index']}" if device.get("index") is not None else "")
        if entry.size == 0:
            shape = _ints(tm.get("sizes"), "sizes", where, self.path)
            numel = 1
            for s in shape:
                numel *= s
            if numel * itemsize > MAX_ZEROS_BYTES:
                raise ResourceLimit(f"{where}: an empty record stands for {numel * itemsize} bytes of zeros",
                                    path=self.path)
            storage = Storage(key=entry.name, dtype=dtype, nbytes=numel * itemsize, location=location,
                              source=_Zeros(self.path))
            self.anomalies.append(f"{where}: empty record; torch.export.load fills it with zeros")
        else:
            source, offset = self.index.source(entry)
            storage = Storage(key=entry.name, dtype=dtype, nbytes=entry.size, location=location,
                              source=source, offset=offset, byteorder="little")
        self.storages[entry.name] = storage
        return storage

    def nested(self, entry: ZipEntry, name: str) -> Any:
        """A pickled record: a nested ``torch.save`` archive, or a bare pickle; read safely either way."""
        source, offset = self.index.source(entry)
        head = source.read(offset, 4) if entry.size >= 4 else b""
        if head == b"PK\x03\x04":
            from ckpttool.io.formats.torch_zip import read_torch_zip

            try:
                z = read_torch_zip(self.path, _SliceSource(self.index, entry), keep_going=self.keep_going)  # type: ignore[arg-type]
            except CkptError as exc:
                exc.message = f"{name}: {exc.message}"
                raise
            for load in z.loads:
                load.where = f"{name}/{load.where}"
            self.loads.extend(z.loads)
            return z.tree
        load = run_pickle(self.index.read(entry.name, MAX_NESTED_BYTES), name, None, keep_going=self.keep_going)
        self.loads.append(load)
        return load.value


def _model_names(index: ZipIndex, root: str) -> list[str]:
    prefix = f"{root}/models/"
    return [n[len(prefix):-5] for n in index.entries if n.startswith(prefix) and n.endswith(".json")
            and "/" not in n[len(prefix):]]


def _model(reader: _Reader, name: str) -> PickledDict:
    legacy = f"{reader.root}/data/weights/{name}.pt"
    if legacy in reader.index.entries:
        raise UnsupportedFormat(f"model {name!r} keeps its weights in the legacy data/weights/{name}.pt "
                                "form; re-save it with torch.export.save", path=reader.path)
    weights = reader.config(f"data/weights/{name}_weights_config.json")
    if weights is None:
        raise UnreadableCheckpoint(f"model {name!r} has no data/weights/{name}_weights_config.json",
                                   path=reader.path)
    constants = reader.config(f"data/constants/{name}_constants_config.json") or {}
    out = PickledDict(ordered=True)
    out["weights"] = reader.entries(weights, "data/weights/")
    out["constants"] = reader.entries(constants, "data/constants/")
    sample = reader.index.entries.get(f"{reader.root}/data/sample_inputs/{name}.pt")
    if sample is not None:
        out["example_inputs"] = reader.nested(sample, f"data/sample_inputs/{name}.pt")
    return out


def _scan_other_pickles(reader: _Reader) -> None:
    """Pickles parked anywhere else (``extra/``...): torch does not read them, another tool might."""
    from ckpttool.io.formats.torch_zip import _holds_pickle

    for name in reader.index.entries:
        if _holds_pickle(reader.index, name, reader.root):
            load = run_pickle(reader.index.read(name, MAX_NESTED_BYTES), name, None, keep_going=True)
            if load.error is not None and not name.endswith((".pkl", ".debug_pkl")):
                load.anomalies.append(f"starts like a pickle but is not one ({load.error.message})")
                load.error = None
            reader.loads.append(load)


def read_pt2(path: Path, index: ZipIndex, *, keep_going: bool = False) -> Pt2Read:
    """Read the archive's weights, constants and example inputs lazily; list its code members."""
    root = _root(index)
    assert root is not None  # is_pt2 checked it
    reader = _Reader(path, index, root, keep_going)
    names = _model_names(index, root)
    if not names:
        if any(n.startswith(f"{root}/data/aotinductor/") for n in index.entries):
            raise UnsupportedFormat("an AOTInductor package (compiled code and its own weight blobs), "
                                    "not a torch.export archive; ckpttool does not read it", path=path)
        raise UnreadableCheckpoint("PT2 archive holds no exported program (no models/*.json)", path=path)
    names.sort(key=lambda n: (n != "model", n))
    models = {n: _model(reader, n) for n in names}
    tree = PickledDict(models[names[0]], ordered=True)
    if len(names) > 1:
        tree["other_models"] = PickledDict({n: models[n] for n in names[1:]}, ordered=True)
        reader.anomalies.append(f"the archive holds {len(names)} exported programs; the sections show "
                                f"{names[0]!r}, the others are under other_models: {', '.join(names[1:])}")
    version = index.read(f"{root}/archive_version", 64).decode("utf-8", "replace").strip() \
        if f"{root}/archive_version" in index.entries else None
    tree.attrs[MARKER] = {"archive_version": version, "models": names}
    _scan_other_pickles(reader)
    members = {"code": code_members(index, root), "archive_version": version, "models": names,
               "root": root}
    return Pt2Read(tree, reader.loads, index.anomalies + reader.anomalies, members)
