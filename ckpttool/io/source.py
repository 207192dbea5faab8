"""Byte sources: read ranges of a file (or of a deflated zip member) on demand, in chunks.

Reads use ``os.pread`` on a descriptor opened once, so memory stays bounded by one chunk and the
pages a command touches are only the ones it asked for.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ckpttool.errors import AllocationLimit, InflationLimit, TruncatedFile
from ckpttool.model import CHUNK_BYTES

__all__ = ["FileSource", "DeflatedSource", "MAX_STORAGE_BYTES", "check_storage_size", "in_chunks"]


def in_chunks(read: Callable[[int, int], bytes], offset: int, length: int, chunk: int) -> Iterator[bytes]:
    """``length`` bytes from ``offset`` through ``read(offset, n)``, at most ``chunk`` bytes a call."""
    end = offset + length
    while offset < end:
        n = min(chunk, end - offset)
        yield read(offset, n)
        offset += n

# No machine holds a storage this large (256 TiB); a file declaring one (2**62 elements overflowed
# torch's C++ reader once) is built to make a loader that allocates before it reads run out.
MAX_STORAGE_BYTES = 1 << 48


def check_storage_size(nbytes: int, key: object, path: Path | None = None) -> None:
    """Refuse a storage declaration no honest file makes, before anything is sized from it."""
    if nbytes >= MAX_STORAGE_BYTES:
        raise AllocationLimit(f"storage {key!r} declares {nbytes:,} bytes", path=path)


class FileSource:
    """Ranges of one file, read with ``pread``."""

    def __init__(self, path: Path, size: int | None = None) -> None:
        self.path = path
        self._fd: int | None = None
        self.size = size if size is not None else path.stat().st_size

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedFile(f"a read of {length} bytes at {offset} is past the end of the file",
                                path=self.path)
        parts: list[bytes] = []
        fd = self._descriptor()
        while length:
            piece = os.pread(fd, min(length, 1 << 30), offset)
            if not piece:
                raise TruncatedFile("the file shrank while it was being read", path=self.path)
            parts.append(piece)
            offset += len(piece)
            length -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` from ``offset`` (``preadv`` straight into the caller's memory, no new object)."""
        length = len(view)
        if offset < 0 or offset + length > self.size:
            raise TruncatedFile(f"a read of {length} bytes at {offset} is past the end of the file",
                                path=self.path)
        fd = self._descriptor()
        done = 0
        while done < length:
            n = os.preadv(fd, [view[done:done + (1 << 30)]], offset + done)
            if not n:
                raise TruncatedFile("the file shrank while it was being read", path=self.path)
            done += n

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        return in_chunks(self.read, offset, length, chunk)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except OSError:
            pass


class DeflatedSource:
    """A deflate-compressed zip member, inflated on read with a cap on the output size.

    torch never compresses its records, but other zip writers may; the cap (the size the central
    directory declares, itself bounded by a ratio to the compressed size) defeats zip bombs.
    """

    MAX_RATIO = 1100

    def __init__(self, file: FileSource, offset: int, compressed: int, size: int) -> None:
        self.path = file.path
        self.file = file
        self.offset = offset
        self.compressed = compressed
        self.size = size
        if size > max(compressed, 1) * self.MAX_RATIO:
            raise InflationLimit(
                f"a zip member claims {size} bytes from {compressed} compressed bytes", path=file.path)

    def _inflate(self) -> Iterator[bytes]:
        try:
            yield from self._inflate_raw()
        except zlib.error as exc:
            raise TruncatedFile(f"a compressed zip member is corrupt ({exc})", path=self.path) from None

    def _inflate_raw(self) -> Iterator[bytes]:
        inflater = zlib.decompressobj(-15)
        produced = 0
        for piece in self.file.chunks(self.offset, self.compressed):
            out = inflater.decompress(piece, self.size - produced + 1)
            produced += len(out)
            if produced > self.size:
                raise InflationLimit("a zip member inflates past its declared size", path=self.path)
            yield out
        tail = inflater.flush()
        if produced + len(tail) != self.size:
            raise TruncatedFile("a compressed zip member is corrupt or truncated", path=self.path)
        yield tail

    def read(self, offset: int, length: int) -> bytes:
        return b"".join(self.chunks(offset, length))

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        if offset < 0 or offset + length > self.size:
            raise TruncatedFile("read past the end of a zip member", path=self.path)
        pos = 0
        end = offset + length
        for piece in self._inflate():
            lo, hi = max(offset, pos), min(end, pos + len(piece))
            if lo < hi:
                yield piece[lo - pos:hi - pos]
            pos += len(piece)
            if pos >= end:
                return
