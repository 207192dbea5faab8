"""The items of a DCP folder's ``*.distcp`` files, read without torch.

torch's ``FileSystemWriter`` appends one item per tensor chunk or non-tensor value to a data
file: a whole ``torch.save`` archive (zip) of the chunk or value, or, in the safetensors
serialisation, the chunk's raw bytes. The item's bytes are a window of the file; the archive
inside is read by ckpttool's own zip reader and safe VM like any ``.pt``, so nothing in it runs.
Items written through a stream transform (e.g. zstd compression) are refused by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, TruncatedFile, UnreadableCheckpoint
from ckpttool.io.formats.dcp_metadata import StorageItem
from ckpttool.io.source import FileSource, in_chunks
from ckpttool.model import CHUNK_BYTES, ByteSource, TensorRef

__all__ = ["WindowSource", "DataFiles", "open_chunk", "read_value"]

_ZIP = b"PK\x03\x04"
SMALL_ITEM = 1 << 20  # items up to this size are read with one call and parsed in memory


class WindowSource:
    """``size`` bytes of ``file`` from ``base`` on, addressed from 0 (one item's bytes)."""

    def __init__(self, file: FileSource, base: int, size: int) -> None:
        self.path = file.path
        self.file = file
        self.base = base
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedFile(f"a read of {length} bytes at {offset} is past the end of a "
                                f"{self.size}-byte item", path=self.path)
        return self.file.read(self.base + offset, length)

    def readinto(self, offset: int, view: memoryview) -> None:
        if offset < 0 or offset + len(view) > self.size:
            raise TruncatedFile(f"a read of {len(view)} bytes at {offset} is past the end of a "
                                f"{self.size}-byte item", path=self.path)
        self.file.readinto(self.base + offset, view)

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        return in_chunks(self.read, offset, length, chunk)


class BytesWindow:
    """A small item read whole with one call, so parsing its archive costs no further reads."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.path = path
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedFile(f"a read of {length} bytes at {offset} is past the end of a "
                                f"{self.size}-byte item", path=self.path)
        return self.data[offset:offset + length]

    def readinto(self, offset: int, view: memoryview) -> None:
        if offset < 0 or offset + len(view) > self.size:
            raise TruncatedFile(f"a read of {len(view)} bytes at {offset} is past the end of a "
                                f"{self.size}-byte item", path=self.path)
        view[:] = memoryview(self.data)[offset:offset + len(view)]

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        return in_chunks(self.read, offset, length, chunk)


class DataFiles:
    """One open ``FileSource`` per data file of a folder, shared by all the items in it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, FileSource] = {}

    def window(self, item: StorageItem) -> WindowSource | BytesWindow:
        file = self._files.get(item.relative_path)
        if file is None:
            path = self.folder / item.relative_path
            try:
                file = FileSource(path)
            except OSError as exc:
                raise UnreadableCheckpoint(f"data file {item.relative_path!r}: {exc.strerror or exc}",
                                           path=self.folder) from None
            self._files[item.relative_path] = file
        if item.offset + item.length > file.size:
            raise TruncatedFile(f"an item of {item.length} bytes at {item.offset} runs past the end of "
                                f"{item.relative_path} ({file.size} bytes)", path=file.path)
        if item.transforms:
            raise UnreadableCheckpoint(f"an item in {item.relative_path} was written through "
                                       f"{', '.join(item.transforms)}, which ckpttool does not decode",
                                       path=file.path, hint="re-save it without stream transforms")
        if item.length <= SMALL_ITEM:
            return BytesWindow(file.read(item.offset, item.length), file.path)
        return WindowSource(file, item.offset, item.length)

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _archive(window: WindowSource | BytesWindow, what: str) -> Any:
    from ckpttool.io.formats.torch_zip import read_torch_zip

    try:
        return read_torch_zip(window.path, window)  # type: ignore[arg-type] - a FileSource-like window
    except CkptError as exc:
        raise UnreadableCheckpoint(f"{what}: {exc.message}", path=window.path) from None


_LAYOUTS: dict[bytes, tuple[Any, ...] | None] = {}


def _chunk_ref(window: WindowSource | BytesWindow, what: str) -> Any:
    """The tensor a ``torch.save`` archive of one chunk holds (what ``torch.load`` would rebuild).

    Thousands of chunks of a folder pickle the same few ``data.pkl`` (same dtype, shape, record):
    what the safe VM made of one is remembered by its bytes, so each distinct pickle runs once.
    """
    from ckpttool.io.formats.torch_zip import _root_of, _small, _StorageLoader
    from ckpttool.io.formats.zip_index import read_zip_index
    from ckpttool.io.pickle.run import run_pickle

    try:
        index = read_zip_index(window.path, window)  # type: ignore[arg-type] - a FileSource-like window
        root = _root_of(index)
        pkl = index.read(f"{root}/data.pkl", 1 << 20)
        byteorder = _small(index, f"{root}/byteorder") or "little"
        loader = _StorageLoader(index, root, byteorder)
        layout = _LAYOUTS.get(pkl, ())
        if layout == ():
            ref = run_pickle(pkl, f"{root}/data.pkl", loader).value
            layout = None
            if isinstance(ref, TensorRef):
                s = ref.storage
                layout = (ref.dtype, ref.shape, ref.stride, ref.storage_offset, s.key, s.dtype, s.nbytes, s.location)
            if len(_LAYOUTS) > 4096:
                _LAYOUTS.clear()
            _LAYOUTS[pkl] = layout
            return ref
        if layout is None:
            return None
        dtype, shape, stride, offset, key, sdtype, nbytes, location = layout
        record = f"{root}/data/{key}"
        entry = index.entries.get(record)
        if entry is None or entry.size != nbytes:
            raise UnreadableCheckpoint(f"storage record {record!r} is missing or not {nbytes} bytes", path=window.path)
        source, at = index.source(entry)
        from ckpttool.model import Storage

        storage = Storage(key=key, dtype=sdtype, nbytes=nbytes, location=location, source=source, offset=at,
                          byteorder=byteorder)
        return TensorRef(dtype=dtype, shape=shape, stride=stride, storage=storage, storage_offset=offset)
    except CkptError as exc:
        raise UnreadableCheckpoint(f"{what}: {exc.message}", path=window.path) from None


def open_chunk(files: DataFiles, item: StorageItem, dtype: str, sizes: tuple[int, ...], fqn: str
               ) -> tuple[ByteSource, int]:
    """Where the C-order bytes of one saved chunk start: (source, offset)."""
    from ckpttool.dtypes import by_name

    window = files.window(item)
    numel = 1
    for s in sizes:
        numel *= s
    nbytes = numel * by_name(dtype).itemsize  # type: ignore[union-attr] - checked by the metadata reader
    if window.size >= 4 and window.read(0, 4) == _ZIP:
        ref = _chunk_ref(window, f"chunk of {fqn!r}")
        if not isinstance(ref, TensorRef):
            raise UnreadableCheckpoint(f"the item for a chunk of {fqn!r} holds no tensor", path=window.path)
        if ref.dtype != dtype or ref.shape != sizes:
            raise UnreadableCheckpoint(f"a chunk of {fqn!r} holds a {ref.dtype} {list(ref.shape)} tensor, "
                                       f".metadata says {dtype} {list(sizes)}", path=window.path)
        if ref.is_contiguous and ref.storage.byteorder == "little" and ref.storage.source is not None:
            return ref.storage.source, ref.storage.offset + ref.storage_offset * ref.itemsize
        from ckpttool.io.write.tensor_input import MemorySource

        return MemorySource(memoryview(ref.read_bytes()), window.path), 0  # a strided chunk: one chunk in memory
    if window.size != nbytes:
        raise UnreadableCheckpoint(f"the item for a chunk of {fqn!r} is neither a torch.save archive nor "
                                   f"its {nbytes} raw bytes ({window.size} bytes)", path=window.path)
    return window, 0


def read_value(files: DataFiles, item: StorageItem, fqn: str) -> tuple[Any, list[Any]]:
    """A non-tensor value (its tree, as the safe VM rebuilt it) and the pickle loads of its archive."""
    window = files.window(item)
    if window.size < 4 or window.read(0, 4) != _ZIP:
        raise UnreadableCheckpoint(f"the value {fqn!r} is not a torch.save archive", path=window.path)
    zr = _archive(window, f"value {fqn!r}")
    return zr.tree, zr.loads
