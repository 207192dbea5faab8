"""Writes that stream through a few reused buffers: bytes, sha256 and verification stay exact.

The buffers are shrunk so that every tensor of the real DCP folders spans many pieces and pieces
straddle the chunks that ranks saved; torch's ``dcp.load`` and ``hashlib`` are the oracles.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpttool.cli import main
from ckpttool.errors import TruncatedFile
from ckpttool.io import buffers
from ckpttool.io.boxes import BoxSource
from ckpttool.io.formats.dcp_metadata import TensorEntry, read_metadata
from ckpttool.io.write import checkpoint as write_mod
from tests.dcp.conftest import dcp_load_full
from tests.dcp.test_boxes import CASES, _boxes


def _full_state(folder: Path) -> dict[str, torch.Tensor]:
    meta = read_metadata(folder)
    shapes = {k: (e.dtype, e.shape) for k, e in meta.entries.items() if isinstance(e, TensorEntry)}
    return dcp_load_full(folder, shapes)  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["shard0", "shard1", "mesh2d"])
@pytest.mark.parametrize("size", [12, 56, 1 << 20])
def test_small_buffers_give_what_dcp_load_gives(name: str, size: int, dcp_folders: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    monkeypatch.setattr(buffers, "BUFFER_BYTES", size)
    folder = dcp_folders[name]
    full = _full_state(folder)
    out = tmp_path / "m.safetensors"
    rc = main(["convert", str(folder), "-o", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert doc["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    got = load_file(out)
    assert sorted(got) == sorted(k.removeprefix("model.") for k in full if k.startswith("model."))
    for k, v in got.items():
        assert torch.equal(v, full[f"model.{k}"])


def test_a_shard_set_through_small_buffers(dcp_folders: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    monkeypatch.setattr(buffers, "BUFFER_BYTES", 20)
    folder = dcp_folders["shard0"]
    full = _full_state(folder)
    out = tmp_path / "hf"
    rc = main(["convert", str(folder), "-o", str(out), "--max-shard-size", "150B", "--jobs", "1", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(doc["shards"]) >= 2
    got: dict[str, torch.Tensor] = {}
    for shard in doc["shards"]:
        path = Path(shard["path"])
        assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        got.update(load_file(path))
    assert sorted(got) == sorted(k.removeprefix("model.") for k in full)
    for k, v in got.items():
        assert torch.equal(v, full[f"model.{k}"])


def test_a_byte_changed_on_disk_before_verification_fails_the_convert(
        dcp_folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buffers, "BUFFER_BYTES", 12)
    real = write_mod.verify_written

    def corrupt(path: Path, kind: str, written: object, progress: object = None) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            end = os.fstat(fd).st_size
            last = os.pread(fd, 1, end - 7)
            os.pwrite(fd, bytes([last[0] ^ 0x40]), end - 7)  # inside the last tensor, many buffers in
        finally:
            os.close(fd)
        real(path, kind, written, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(write_mod, "verify_written", corrupt)
    out = tmp_path / "m.safetensors"
    rc = main(["convert", str(dcp_folders["shard1"]), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 or rc == 1
    assert "read back differently" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("shape", "cuts"), CASES)
def test_boxes_read_into_a_buffer_equal_numpy_slices(shape: tuple[int, ...], cuts: list[list[int]]) -> None:
    full = (np.arange(int(np.prod(shape)), dtype=np.int32) * 7 + 1).reshape(shape)
    src = BoxSource(Path("t"), shape, 4, _boxes(full, cuts))
    want = full.tobytes()
    for a, b in ((0, len(want)), (1, 3), (3, 17), (len(want) // 3, len(want) - 2), (0, 0)):
        if a <= b <= len(want):
            buf = bytearray(b"\xee" * (b - a))
            src.readinto(a, memoryview(buf))
            assert bytes(buf) == want[a:b]
    with pytest.raises(TruncatedFile):
        src.readinto(max(len(want) - 2, 0), memoryview(bytearray(3)))
