"""torch's pre-1.6 stream format (``_use_new_zipfile_serialization=False``).

Five pickles in a row (magic number, protocol version, sys info, the data, the storage keys) and
then each storage's raw bytes, each preceded by its element count. Scanners that read only the
first pickle miss a payload in the data pickle; this reader runs all five through the safe VM.
The magic number must be a literal integer: a file can compute one with ``eval`` otherwise.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from ckpttool.dtypes import by_name, by_storage_class
from ckpttool.errors import CkptError, CorruptPickle, TruncatedFile, UnreadableCheckpoint
from ckpttool.io.pickle.run import PickleLoad, run_pickle
from ckpttool.io.source import FileSource, check_storage_size
from ckpttool.model import GlobalRef, Storage

__all__ = ["read_torch_legacy", "MAGIC_NUMBER", "LEGACY_PREFIX"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# The magic number as protocol-2 pickles it: PROTO 2, LONG1 10 bytes.
LEGACY_PREFIX = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
MAX_HEAD = 1 << 30


class _LegacyLoader:
    """persistent_load for the stream format: storages (with views) and module source records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.storages: dict[str, Storage] = {}
        self.modules: list[tuple[str, str]] = []

    def __call__(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CorruptPickle("legacy persistent id is not a tuple")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module" and len(pid) >= 2:
            source_file = pid[2] if len(pid) > 2 and isinstance(pid[2], str) else ""
            name = pid[1].fullname if isinstance(pid[1], GlobalRef) else str(pid[1])
            self.modules.append((name, source_file))
            return pid[1]
        if kind != "storage" or len(pid) != 6:
            raise CorruptPickle(f"unknown legacy persistent id {kind!r}")
        _, storage_type, key, location, numel, view = pid
        name = storage_type.name if isinstance(storage_type, GlobalRef) else str(storage_type)
        d = by_storage_class(name)
        if d is None or type(numel) is not int or numel < 0 or not isinstance(key, str):
            raise CorruptPickle("malformed legacy storage id")
        check_storage_size(numel * d.itemsize, key)
        root = self.storages.get(key)
        if root is None:
            loc = location.decode("ascii", "replace") if isinstance(location, bytes) else str(location)
            root = Storage(key=key, dtype=d.name, nbytes=numel * d.itemsize, location=loc, source=None)
            self.storages[key] = root
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise CorruptPickle("malformed legacy storage view")
        view_key, offset, size = view
        if view_key not in self.storages:
            self.storages[view_key] = _ViewStorage(root, offset * d.itemsize, size * d.itemsize, view_key)
        return self.storages[view_key]


def _ViewStorage(root: Storage, start: int, nbytes: int, key: str) -> Storage:  # noqa: N802
    view = Storage(key=key, dtype=root.dtype, nbytes=nbytes, location=root.location, source=None)
    view.offset = start  # resolved against the root once its file offset is known
    view.key = f"{root.key}@{start}:{key}"
    return view


def read_torch_legacy(path: Path, file: FileSource, *, keep_going: bool = False
                      ) -> tuple[Any, list[PickleLoad], list[tuple[str, str]]]:
    """Read the stream format: the data object, the five pickles' outcomes, module records."""
    head = file.read(0, min(file.size, MAX_HEAD))
    loader = _LegacyLoader(path)
    loads: list[PickleLoad] = []
    pos = 0
    names = ("magic number", "protocol version", "sys info", "data", "storage keys")
    for i, what in enumerate(names):
        load = run_pickle(head, f"pickle {i + 1} ({what})", loader if i == 3 else None,
                          start=pos, keep_going=keep_going)
        loads.append(load)
        if load.error is not None:
            return None, loads, loader.modules
        pos = load.end
    magic, proto, _sys_info, data, keys = (load.value for load in loads)
    try:
        if type(magic) is not int or magic != MAGIC_NUMBER:
            raise UnreadableCheckpoint("invalid magic number: not a torch legacy file", path=path)
        if type(proto) is not int or proto != PROTOCOL_VERSION:
            raise UnreadableCheckpoint(f"unsupported legacy protocol version {str(proto)[:40]}", path=path)
        _place_storages(path, file, loader, keys, pos)
    except CkptError as exc:
        if not keep_going:
            raise
        # a scan must still see what the five pickles named (a payload in pickle 2 or 5)
        loads[-1].error = exc
        return None, loads, loader.modules
    return data, loads, loader.modules


def _place_storages(path: Path, file: FileSource, loader: _LegacyLoader, keys: Any, pos: int) -> None:
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CorruptPickle("legacy storage key list is malformed")
    for key in keys:
        storage = loader.storages.get(key)
        if storage is None:
            raise UnreadableCheckpoint(f"storage key {key!r} was never declared", path=path)
        if pos + 8 > file.size:
            raise TruncatedFile(f"storage {key!r} is missing: the file ends early", path=path)
        (numel,) = struct.unpack("<q", file.read(pos, 8))
        d = by_name(storage.dtype)
        nbytes = storage.nbytes
        if d is None or numel < 0 or numel * d.itemsize != nbytes:
            raise CorruptPickle(f"storage {key!r}: its size header disagrees with its declaration")
        if pos + 8 + nbytes > file.size:
            raise TruncatedFile(f"storage {key!r} runs past the end of the file", path=path)
        storage.source, storage.offset = file, pos + 8
        pos += 8 + nbytes
    for storage in loader.storages.values():
        if storage.source is None and "@" in storage.key:
            root = loader.storages.get(storage.key.split("@", 1)[0])
            if root is not None and root.source is not None:
                storage.source, storage.offset = root.source, root.offset + storage.offset
