"""A streaming zip writer that lays out records as torch's ``PyTorchStreamWriter`` does.

Records are stored (never compressed), each one's data aligned to 64 bytes by an ``FB`` padding
extra field in its local header (so ``torch.load(mmap=True)`` can map storages in place), CRC and
sizes in a data descriptor after the data (so the file is written strictly front to back, in
pieces, never seeking back), zip64 fields where sizes or offsets pass 4 GiB, and a zip64 end
record as torch always writes one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ZipStreamWriter", "Sink", "ALIGNMENT"]

ALIGNMENT = 64
_U32 = 0xFFFFFFFF
_FLAGS = 0x0808  # data descriptor follows the data; names are UTF-8
_DOS_DATE = 0x21  # 1980-01-01: fixed, so the same tree gives the same bytes


class Sink(Protocol):
    """Where the bytes go: a sequential writer that knows its position."""

    position: int

    def write(self, data: bytes | memoryview) -> None:
        """Write ``data``; its buffer may still be read until the next ``write`` returns, not later."""

    def begin_crc(self) -> None: ...

    def end_crc(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    name: bytes
    offset: int
    size: int
    crc: int


class ZipStreamWriter:
    """Appends stored records under ``<root>/`` to ``sink`` and finishes with the central directory.

    ``ZIP64_AT``: sizes and offsets from this value up get zip64 fields (4 GiB; tests lower it to
    check with small files that torch reads the zip64 form).
    """

    ZIP64_AT = _U32

    def __init__(self, sink: Sink, root: str) -> None:
        self.sink = sink
        self.root = root
        self.entries: list[_Entry] = []

    def add(self, name: str, pieces: Iterable[bytes | memoryview], size: int) -> int:
        """Write the record ``name`` from ``pieces`` (``size`` bytes in all); returns its CRC-32."""
        full = f"{self.root}/{name}".encode()
        offset = self.sink.position
        big = size >= self.ZIP64_AT
        zip64 = struct.pack("<HHQQ", 1, 16, 0, 0) if big else b""
        before = 30 + len(full) + len(zip64) + 4
        pad = (ALIGNMENT - (offset + before) % ALIGNMENT) % ALIGNMENT
        extra = zip64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
        sizes = _U32 if big else 0
        self.sink.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if big else 20, _FLAGS, 0, 0,
                                    _DOS_DATE, 0, sizes, sizes, len(full), len(extra)) + full + extra)
        self.sink.begin_crc()
        written = 0
        for piece in pieces:
            written += len(piece)
            self.sink.write(piece)
        crc = self.sink.end_crc()
        if written != size:
            raise ValueError(f"record {name!r}: {written} bytes written, {size} declared")
        if big:
            self.sink.write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
        else:
            self.sink.write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.entries.append(_Entry(full, offset, size, crc))
        return crc

    def add_bytes(self, name: str, data: bytes) -> int:
        return self.add(name, [data], len(data))

    def close(self) -> None:
        """Write the central directory and the end records."""
        start = self.sink.position
        for e in self.entries:
            fields: list[int] = []
            size = e.size
            if e.size >= self.ZIP64_AT:
                fields += [e.size, e.size]
                size = _U32
            offset = e.offset
            if e.offset >= self.ZIP64_AT:
                fields.append(e.offset)
                offset = _U32
            extra = struct.pack("<HH", 1, 8 * len(fields)) + struct.pack(f"<{len(fields)}Q", *fields) if fields else b""
            need = 45 if fields else 20
            self.sink.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, need, _FLAGS, 0, 0, _DOS_DATE,
                                        e.crc, size, size, len(e.name), len(extra), 0, 0, 0, 0, offset)
                            + e.name + extra)
        end = self.sink.position
        count = len(self.entries)
        self.sink.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, end - start, start))
        self.sink.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
        self.sink.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                                    min(end - start, _U32), min(start, _U32), 0))
