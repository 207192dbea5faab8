"""AssembledSource: one buffer from byte ranges of several files, read chunk by chunk."""

from __future__ import annotations

import pytest
import torch

from ckpttool.errors import UnreadableCheckpoint
from ckpttool.io.assembled import AssembledSource, Piece
from ckpttool.io.source import FileSource
from ckpttool.model import Storage, TensorRef


def _files(tmp_path, parts):
    out = []
    for i, data in enumerate(parts):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(b"HDR" + data + b"TAIL")
        out.append(FileSource(p))
    return out


def test_a_tensor_split_over_two_files_reads_as_torch_wrote_it(tmp_path):
    full = torch.arange(1000, dtype=torch.float32)
    raw = full.numpy().tobytes()
    a, b = _files(tmp_path, [raw[:1234], raw[1234:]])
    src = AssembledSource(tmp_path, [Piece(1234, len(raw) - 1234, b, 3), Piece(0, 1234, a, 3)], len(raw))
    ref = TensorRef("float32", (10, 100), (100, 1), Storage("0", "float32", len(raw), "cpu", src))
    assert torch.equal(ref.to_torch(), full.reshape(10, 100))
    for chunk in (1, 7, 1000, 4000, 1 << 20):
        pieces = list(src.chunks(5, 3000, chunk))
        assert b"".join(pieces) == raw[5:3005]
        assert all(len(p) <= chunk for p in pieces)
        assert all(len(p) == chunk for p in pieces[:-1])


def test_holes_are_errors_unless_a_fill_byte_is_given(tmp_path):
    (a,) = _files(tmp_path, [b"abcd"])
    with pytest.raises(UnreadableCheckpoint):
        AssembledSource(tmp_path, [Piece(2, 4, a, 3)], 6)
    src = AssembledSource(tmp_path, [Piece(2, 4, a, 3)], 8, fill=0)
    assert src.read(0, 8) == b"\0\0abcd\0\0"


def test_overlapping_pieces_are_refused(tmp_path):
    (a,) = _files(tmp_path, [b"abcdefgh"])
    with pytest.raises(UnreadableCheckpoint):
        AssembledSource(tmp_path, [Piece(0, 5, a, 3), Piece(4, 4, a, 3)], 8)
