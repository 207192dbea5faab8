"""Pieces read into reused buffers and hashed on a worker thread: the sha256 and the bytes hold."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ckpttool.errors import VerificationFailed
from ckpttool.io import buffers
from ckpttool.io.write import checkpoint as write_mod
from ckpttool.io.write.atomic import HashingSink
from ckpttool.io.write.checkpoint import write_checkpoint


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"a": torch.randn(300_001, generator=gen), "b": torch.randn(70_000, generator=gen).half(),
            "c": torch.arange(10), "d": torch.randn(64, 1024, generator=gen)[:, ::2]}


def _lazy(tmp_path: Path, sd: dict[str, torch.Tensor]) -> dict:
    """``sd`` saved by torch and read back lazily, so its bytes come from the file piece by piece."""
    from ckpttool.io import read_tree

    src = tmp_path / "in" / "sd.pt"
    src.parent.mkdir()
    torch.save(sd, src)
    return dict(read_tree(src).tree)


def test_pieces_hashed_on_the_worker_match_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buffers, "BUFFER_BYTES", 1 << 16)  # pieces large enough for the hashing thread
    sd = _state()
    out = tmp_path / "x.safetensors"
    result = write_checkpoint(_lazy(tmp_path, sd), out)
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    got = load_file(out)
    for k, v in sd.items():
        assert torch.equal(got[k], v)


def test_a_byte_changed_on_the_way_out_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buffers, "BUFFER_BYTES", 1 << 16)
    real = HashingSink.write
    seen = []

    def flip(self: HashingSink, data: bytes) -> None:
        raw = bytes(data)
        if len(raw) == 1 << 16:
            seen.append(1)
            if len(seen) == 3:  # the third full buffer of tensor data
                raw = raw[:100] + bytes([raw[100] ^ 1]) + raw[101:]
        real(self, raw)

    monkeypatch.setattr(HashingSink, "write", flip)
    with pytest.raises(VerificationFailed, match="read back differently"):
        write_checkpoint(_lazy(tmp_path, _state()), tmp_path / "x.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


@pytest.mark.parametrize("back", [7, 300_000])
def test_a_byte_changed_on_disk_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, back: int) -> None:
    monkeypatch.setattr(buffers, "BUFFER_BYTES", 1 << 16)
    real = write_mod.verify_written

    def corrupt(path: Path, kind: str, written: object, progress: object = None) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            at = os.fstat(fd).st_size - back
            os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0x80]), at)
        finally:
            os.close(fd)
        real(path, kind, written, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(write_mod, "verify_written", corrupt)
    with pytest.raises(VerificationFailed, match="read back differently"):
        write_checkpoint(_lazy(tmp_path, _state()), tmp_path / "x.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


def test_ring_buffers_grow_only_as_far_as_the_pieces_need() -> None:
    ring = buffers.Ring(2, size=1 << 20)
    small = [ring.take(100) for _ in range(4)]
    assert all(len(v) == 100 for v in small)
    assert all(len(v.obj) == 1 << 16 for v in small)  # not the full 1 MiB for 100-byte pieces
    a, b = ring.take(300_000), ring.take(300_000)
    assert len(a) == len(b) == 300_000 and a.obj is not b.obj  # the two turns never share memory
    a[:] = b"\x01" * len(a)
    b[:] = b"\x02" * len(b)
    assert bytes(a[:1]) == b"\x01"
    assert len(ring.take(5 << 20)) == 1 << 20  # never past the ring's size: a reader takes what it got


def test_small_then_large_tensors_write_through_grown_buffers(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    sd = {"tiny": torch.arange(7), "big": torch.randn(400_000, generator=gen),
          "mid": torch.randn(20_000, generator=gen)}
    out = tmp_path / "m.safetensors"
    result = write_checkpoint(_lazy(tmp_path, sd), out)
    got = load_file(str(out))
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
