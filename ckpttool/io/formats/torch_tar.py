"""torch's oldest format (before 0.4): a tar of ``sys_info``, ``storages``, ``tensors`` and ``pickle``.

Scanners that only look for pickles at the start of a file miss this one entirely, and
``weights_only=True`` loading refused it only from torch 2.6 on (CVE-2025-32434); this reader runs
every pickle in all four members through the safe VM and locates storage bytes inside the tar.
Only the member headers are parsed (``tarfile`` never extracts anything here).
"""

from __future__ import annotations

import struct
import tarfile
from pathlib import Path
from typing import Any

from ckpttool.dtypes import by_name, by_storage_class
from ckpttool.errors import CkptError, CorruptPickle, ResourceLimit, TruncatedFile, UnreadableCheckpoint
from ckpttool.io.pickle.run import PickleLoad, run_pickle
from ckpttool.io.source import FileSource, check_storage_size
from ckpttool.model import GlobalRef, Storage, TensorRef

__all__ = ["read_torch_tar"]

MAX_MEMBER = 1 << 30
MAX_RECORDS = 1_000_000


class _Member:
    """One tar member's bytes, read through the file at its data offset."""

    def __init__(self, file: FileSource, info: tarfile.TarInfo) -> None:
        if info.offset_data + info.size > file.size:
            raise TruncatedFile(f"tar member {info.name!r} runs past the end of the file", path=file.path)
        self.file, self.start, self.size = file, info.offset_data, info.size

    def head(self) -> bytes:
        return self.file.read(self.start, min(self.size, MAX_MEMBER))


def _members(path: Path, file: FileSource) -> dict[str, _Member]:
    try:
        with tarfile.open(path, mode="r:", format=tarfile.PAX_FORMAT) as tar:
            infos = tar.getmembers()
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise UnreadableCheckpoint(f"corrupt tar archive: {exc}", path=path) from None
    found = {i.name: i for i in infos if i.isfile()}
    missing = {"sys_info", "pickle", "storages", "tensors"} - set(found)
    if missing:
        raise UnreadableCheckpoint(f"tar archive without {', '.join(sorted(missing))}: not a torch file",
                                   path=path)
    return {name: _Member(file, info) for name, info in found.items()}


def _count(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_RECORDS:
        raise ResourceLimit(f"implausible {what} count {value!r}")
    return value


def _storages(path: Path, member: _Member, loads: list[PickleLoad], keep_going: bool) -> dict[str, Any]:
    data = member.head()
    objects: dict[str, Any] = {}
    load = run_pickle(data, "storages: count", keep_going=keep_going)
    loads.append(load)
    pos = load.end
    for i in range(_count(load.value, "storage") if load.error is None else 0):
        load = run_pickle(data, f"storages: record {i}", start=pos, keep_going=keep_going)
        loads.append(load)
        if load.error is not None:
            return objects
        key, location, storage_type = _triple(load.value)
        name = storage_type.name if isinstance(storage_type, GlobalRef) else ""
        d = by_storage_class(name)
        if d is None:
            raise CorruptPickle(f"unknown storage type {name!r}")
        if load.end + 8 > len(data):
            raise TruncatedFile("a storage record is cut short", path=path)
        (numel,) = struct.unpack_from("<q", data, load.end)
        nbytes = numel * d.itemsize
        check_storage_size(nbytes, key, path)
        if numel < 0 or load.end + 8 + nbytes > len(data):
            raise TruncatedFile(f"storage {key!r} runs past the end of its member", path=path)
        objects[str(key)] = Storage(key=str(key), dtype=d.name, nbytes=nbytes, location=str(location),
                                    source=member.file, offset=member.start + load.end + 8)
        pos = load.end + 8 + nbytes
    load = run_pickle(data, "storages: views", start=pos, keep_going=keep_going)
    loads.append(load)
    for view in load.value if isinstance(load.value, list) else []:
        if isinstance(view, tuple) and len(view) == 4 and str(view[1]) in objects:
            root = objects[str(view[1])]
            size = by_name(root.dtype).itemsize  # type: ignore[union-attr]
            start, length = view[2] * size, view[3] * size
            if start < 0 or length < 0 or start + length > root.nbytes:
                raise CorruptPickle("a storage view reaches outside its storage")
            objects[str(view[0])] = Storage(key=str(view[0]), dtype=root.dtype, nbytes=length,
                                            location=root.location, source=root.source,
                                            offset=root.offset + start)
    return objects


def _triple(value: Any) -> tuple[Any, Any, Any]:
    if not isinstance(value, tuple) or len(value) != 3:
        raise CorruptPickle("malformed record in a torch tar archive")
    return value


def _tensors(path: Path, member: _Member, objects: dict[str, Any], loads: list[PickleLoad],
             keep_going: bool) -> None:
    data = member.head()
    load = run_pickle(data, "tensors: count", keep_going=keep_going)
    loads.append(load)
    pos = load.end
    for i in range(_count(load.value, "tensor") if load.error is None else 0):
        load = run_pickle(data, f"tensors: record {i}", start=pos, keep_going=keep_going)
        loads.append(load)
        if load.error is not None:
            return
        key, storage_id, _type = _triple(load.value)
        pos = load.end
        if pos + 8 > len(data):
            raise TruncatedFile("a tensor record is cut short", path=path)
        (ndim,) = struct.unpack_from("<i", data, pos)
        if not 0 <= ndim <= 64 or pos + 8 + 16 * ndim + 8 > len(data):
            raise CorruptPickle("a tensor record has a bad dimension count")
        sizes = struct.unpack_from(f"<{ndim}q", data, pos + 8)
        strides = struct.unpack_from(f"<{ndim}q", data, pos + 8 + 8 * ndim)
        (offset,) = struct.unpack_from("<q", data, pos + 8 + 16 * ndim)
        pos += 8 + 16 * ndim + 8
        storage = objects.get(str(storage_id))
        if storage is None:
            raise CorruptPickle(f"tensor {key!r} names an unknown storage")
        from ckpttool.io.pickle.rebuild import call_global

        tensor = call_global("torch._utils._rebuild_tensor", (storage, offset, sizes, strides), {})
        assert isinstance(tensor, TensorRef)
        objects[str(key)] = tensor


def read_torch_tar(path: Path, file: FileSource, *, keep_going: bool = False
                   ) -> tuple[Any, list[PickleLoad], list[tuple[str, str]]]:
    """Read the tar format: the data object, every pickle's outcome, module source records."""
    members = _members(path, file)
    loads: list[PickleLoad] = [run_pickle(members["sys_info"].head(), "sys_info", keep_going=keep_going)]
    objects: dict[str, Any] = {}
    try:
        objects = _storages(path, members["storages"], loads, keep_going)
        _tensors(path, members["tensors"], objects, loads, keep_going)
    except CkptError as exc:
        if not keep_going:
            raise
        # a scan goes on to the pickle member, and keeps what the bad member named (a payload)
        loads[-1].error = loads[-1].error or exc
    modules: list[tuple[str, str]] = []

    def persistent_load(saved_id: Any) -> Any:
        if isinstance(saved_id, tuple):
            if len(saved_id) > 1 and isinstance(saved_id[1], str):
                modules.append((getattr(saved_id[0], "fullname", str(saved_id[0])), saved_id[1]))
            return saved_id[0] if saved_id else None
        if str(saved_id) not in objects:
            raise CorruptPickle(f"persistent id {str(saved_id)[:40]!r} names nothing in the archive")
        return objects[str(saved_id)]

    main = run_pickle(members["pickle"].head(), "pickle", persistent_load, keep_going=keep_going)
    loads.append(main)
    return main.value, loads, modules
