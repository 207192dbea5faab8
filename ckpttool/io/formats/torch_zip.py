"""torch's zip checkpoint format (``torch.save`` since 1.6, and ``torch.jit.save`` archives).

Mirrors ``torch.load``: the archive's root folder is the prefix of its first entry, the object is
``<root>/data.pkl``, storages are the records ``<root>/data/<key>``, and ``<root>/byteorder`` says
how the bytes are ordered. The pickle goes through ``SafeUnpickler``; every other ``.pkl`` member
(TorchScript ``constants.pkl``, a stray ``data.pkl`` at another path) is scanned for globals too,
since a payload can hide in a member torch would not read today but another tool would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ckpttool.dtypes import by_storage_class
from ckpttool.errors import CorruptPickle, UnreadableCheckpoint
from ckpttool.io.formats.zip_index import ZipIndex, read_zip_index
from ckpttool.io.pickle.run import PickleLoad, run_pickle
from ckpttool.io.source import FileSource, check_storage_size
from ckpttool.model import GlobalRef, Storage

__all__ = ["read_torch_zip", "ZipRead"]

MAX_PICKLE_BYTES = 1 << 30


class ZipRead:
    """The result of reading a torch zip archive: root object, format, and every pickle seen."""

    def __init__(self, tree: Any, fmt: str, loads: list[PickleLoad], index: ZipIndex, root: str,
                 info: dict[str, str]) -> None:
        self.tree = tree
        self.format = fmt
        self.loads = loads
        self.index = index
        self.root = root
        self.info = info


def _root_of(index: ZipIndex) -> str:
    if not index.entries:
        raise UnreadableCheckpoint("zip archive is empty", path=index.path)
    first = next(iter(index.entries))
    if "/" not in first:
        raise UnreadableCheckpoint("zip archive is not a torch checkpoint (no root folder)",
                                   path=index.path)
    return first.split("/", 1)[0]


class _StorageLoader:
    """persistent_load for zip archives: ``('storage', type, key, location, numel)`` → Storage."""

    def __init__(self, index: ZipIndex, root: str, byteorder: str) -> None:
        self.index = index
        self.root = root
        self.byteorder = byteorder
        self.storages: dict[str, Storage] = {}

    def __call__(self, pid: Any) -> Storage:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            raise CorruptPickle(f"unknown persistent id {str(pid)[:60]}")
        _, storage_type, key, location, numel = pid[:5]
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CorruptPickle("malformed storage persistent id")
        if isinstance(location, bytes):
            location = location.decode("ascii", "replace")
        name = storage_type.name if isinstance(storage_type, GlobalRef) else str(storage_type)
        if name == "UntypedStorage":
            dtype, itemsize = "uint8", 1
        else:
            d = by_storage_class(name)
            if d is None:
                raise CorruptPickle(f"unknown storage type {name!r}")
            dtype, itemsize = d.name, d.itemsize
        if key in self.storages:
            return self.storages[key]
        record = f"{self.root}/data/{key}"
        entry = self.index.entries.get(record)
        nbytes = numel * itemsize
        check_storage_size(nbytes, key, self.index.path)
        if entry is None:
            raise UnreadableCheckpoint(f"storage record {record!r} is missing", path=self.index.path)
        if entry.size != nbytes:
            raise UnreadableCheckpoint(
                f"storage {key!r} declares {nbytes} bytes but its record holds {entry.size}",
                path=self.index.path)
        source, offset = self.index.source(entry)
        storage = Storage(key=key, dtype=dtype, nbytes=nbytes, location=str(location),
                          source=source, offset=offset, byteorder=self.byteorder)
        self.storages[key] = storage
        return storage


_PROTO0_GLOBAL = re.compile(rb"\(?c[\w.]+\n[\w.]+\n")


def _holds_pickle(index: ZipIndex, name: str, root: str) -> bool:
    """Every ``.pkl`` member, and any other member (storage records aside) that starts like a pickle.

    torch reads ``.data/serialization_id`` as text, but a payload parked there (or in any extra
    member) would run in a tool that unpickles it: scan it rather than trust the name.
    """
    if name.endswith((".pkl", ".debug_pkl")):
        return True
    if name.startswith(f"{root}/data/") or name.endswith("/"):
        return False
    entry = index.entries[name]
    if entry.size < 2:
        return False
    src, offset = index.source(entry)
    head = src.read(offset, min(entry.size, 64))
    return (head[0] == 0x80 and head[1] <= 5) or _PROTO0_GLOBAL.match(head) is not None


def _small(index: ZipIndex, name: str) -> str | None:
    if name not in index.entries:
        return None
    return index.read(name, 4096).decode("utf-8", "replace").strip()


def read_torch_zip(path: Path, file: FileSource, *, keep_going: bool = False,
                   index: ZipIndex | None = None) -> ZipRead:
    """Read the archive at ``path`` as ``torch.load`` would, without running its pickles.

    ``index`` is the archive's already parsed central directory, if the caller has it.
    """
    index = index or read_zip_index(path, file)
    root = _root_of(index)
    data_pkl = f"{root}/data.pkl"
    if data_pkl not in index.entries:
        raise UnreadableCheckpoint(f"zip archive has no {data_pkl!r}: not a torch checkpoint",
                                   path=path)
    byteorder = _small(index, f"{root}/byteorder") or "little"
    info = {k: v for k in ("version", ".data/version", ".format_version", "byteorder")
            if (v := _small(index, f"{root}/{k}")) is not None}
    is_script = any(n.startswith(f"{root}/code/") for n in index.entries) or \
        f"{root}/constants.pkl" in index.entries
    loader = _StorageLoader(index, root, byteorder)
    loads = [run_pickle(index.read(data_pkl, MAX_PICKLE_BYTES), data_pkl, loader, keep_going=keep_going)]
    for name in index.entries:
        if name != data_pkl and _holds_pickle(index, name, root):
            load = run_pickle(index.read(name, MAX_PICKLE_BYTES), name, _StorageLoader(index, root, byteorder),
                              keep_going=True)
            if load.error is not None and not name.endswith((".pkl", ".debug_pkl")):
                # a user's extra file that merely starts like a pickle: what it named still counts,
                # but failing to parse it does not make the checkpoint unreadable
                load.anomalies.append(f"starts like a pickle but is not one ({load.error.message})")
                load.error = None
            loads.append(load)
    return ZipRead(loads[0].value, "torchscript" if is_script else "torch-zip", loads, index, root, info)
