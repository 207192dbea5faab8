"""A zip central-directory reader that sees what torch's reader sees, and says where others differ.

Python's ``zipfile`` disagrees with torch's miniz reader on hostile archives (it reads the last of
two same-named entries, raises on CRC or name mismatches): every known scanner bypass is such a
disagreement. This reader takes each entry's data offset from its local header, as miniz does,
refuses duplicate names, and reports local/central name mismatches as anomalies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from ckpttool.errors import ResourceLimit, TruncatedFile, UnreadableCheckpoint
from ckpttool.io.source import DeflatedSource, FileSource

__all__ = ["ZipEntry", "ZipIndex", "read_zip_index"]

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
MAX_ENTRIES = 1_000_000


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One archive member: where its bytes start in the file and how they are stored."""

    name: str
    method: int
    compressed_size: int
    size: int
    data_offset: int


@dataclass
class ZipIndex:
    """The members of an archive by name, in central-directory order."""

    path: Path
    file: FileSource
    entries: dict[str, ZipEntry]
    anomalies: list[str] = field(default_factory=list)

    def source(self, entry: ZipEntry) -> tuple[FileSource | DeflatedSource, int]:
        """A byte source for ``entry`` and the offset of its first byte in that source."""
        if entry.method == 0:
            return self.file, entry.data_offset
        if entry.method == 8:
            return DeflatedSource(self.file, entry.data_offset, entry.compressed_size, entry.size), 0
        raise UnreadableCheckpoint(f"zip member {entry.name!r} uses compression method {entry.method}",
                                   path=self.path)

    def read(self, name: str, limit: int) -> bytes:
        """The whole member ``name``, refusing members larger than ``limit`` bytes."""
        entry = self.entries[name]
        if entry.size > limit:
            raise ResourceLimit(f"zip member {name!r} declares {entry.size} bytes", path=self.path)
        src, offset = self.source(entry)
        return src.read(offset, entry.size)


def _find_eocd(file: FileSource) -> int:
    tail_len = min(file.size, 65536 + 22)
    tail = file.read(file.size - tail_len, tail_len)
    pos = tail.rfind(_EOCD)
    if pos < 0:
        raise UnreadableCheckpoint("zip archive has no end-of-central-directory record "
                                   "(truncated?)", path=file.path)
    return file.size - tail_len + pos


def _zip64_dir(file: FileSource, eocd: int) -> tuple[int, int]:
    loc = eocd - 20
    if loc < 0 or file.read(loc, 4) != _EOCD64_LOCATOR:
        raise UnreadableCheckpoint("zip64 archive without its locator", path=file.path)
    (rec_offset,) = struct.unpack("<Q", file.read(loc + 8, 8))
    rec = file.read(rec_offset, 56)
    if rec[:4] != _EOCD64:
        raise UnreadableCheckpoint("zip64 end record not found where its locator says", path=file.path)
    count, _size, offset = struct.unpack("<QQQ", rec[32:56])
    return count, offset


def _zip64_extra(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos:pos + 4])
        body = extra[pos + 4:pos + 4 + length]
        if tag == 1:
            vals = [size, csize, offset]
            idx = 0
            for i, v in enumerate(vals):
                if v == 0xFFFFFFFF and idx + 8 <= len(body):
                    vals[i] = struct.unpack("<Q", body[idx:idx + 8])[0]
                    idx += 8
            return vals[0], vals[1], vals[2]
        pos += 4 + length
    return size, csize, offset


def read_zip_index(path: Path, file: FileSource | None = None) -> ZipIndex:
    """Parse the central directory of the zip at ``path`` (no member data is read)."""
    file = file or FileSource(path)
    eocd = _find_eocd(file)
    rec = file.read(eocd, 22)
    _, _, _, _, count, _, dir_offset, _ = struct.unpack("<IHHHHIIH", rec)
    if count == 0xFFFF or dir_offset == 0xFFFFFFFF:
        count, dir_offset = _zip64_dir(file, eocd)
    if count > MAX_ENTRIES:
        raise ResourceLimit(f"zip archive declares {count} entries", path=path)
    if dir_offset > eocd:
        raise TruncatedFile("zip central directory lies past the end of the file", path=path)
    index = ZipIndex(path=path, file=file, entries={})
    directory = file.read(dir_offset, min(file.size, eocd) - dir_offset) if dir_offset <= eocd else b""
    pos = 0
    for _ in range(count):
        head = directory[pos:pos + 46]
        if len(head) < 46 or head[:4] != _CENTRAL:
            raise UnreadableCheckpoint("zip central directory is corrupt", path=path)
        (method, csize, size, nlen, xlen, clen, local) = struct.unpack("<6xH8xIIHHH8xI", head[4:46])
        name_bytes = directory[pos + 46:pos + 46 + nlen]
        extra = directory[pos + 46 + nlen:pos + 46 + nlen + xlen]
        size, csize, local = _zip64_extra(extra, size, csize, local)
        name = name_bytes.decode("utf-8", "replace")
        pos += 46 + nlen + xlen + clen
        if name in index.entries:
            raise UnreadableCheckpoint(f"zip archive has two entries named {name!r}; "
                                       "readers disagree on which one counts", path=path)
        index.entries[name] = _entry(file, index, name, name_bytes, method, csize, size, local)
    return index


def _entry(file: FileSource, index: ZipIndex, name: str, name_bytes: bytes, method: int, csize: int,
           size: int, local: int) -> ZipEntry:
    if local + 30 > file.size:
        raise TruncatedFile(f"zip member {name!r} lies past the end of the file", path=file.path)
    head = file.read(local, min(30 + len(name_bytes), file.size - local))
    if head[:4] != _LOCAL:
        raise UnreadableCheckpoint(f"zip member {name!r} has no local header", path=file.path)
    nlen, xlen = struct.unpack("<HH", head[26:30])
    local_name = head[30:30 + nlen] if nlen == len(name_bytes) else file.read(local + 30, nlen)
    if local_name != name_bytes:
        local_name = local_name.decode("utf-8", "replace")
        index.anomalies.append(f"zip member {name!r} is called {local_name!r} in its local header")
    data_offset = local + 30 + nlen + xlen
    stored = csize if method else size
    if data_offset + stored > file.size:
        raise TruncatedFile(f"zip member {name!r} runs past the end of the file", path=file.path)
    return ZipEntry(name, method, csize, size, data_offset)
