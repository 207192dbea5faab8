"""torch's pre-0.4 tar format, built here byte for byte as that torch wrote it, read as torch reads it."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import pytest
import torch

import ckpttool
from tests.conftest import run_cli
from tests.oracle import digest


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _record(*items: bytes) -> bytes:
    """A protocol-2 pickle of a tuple whose items are already-pickled opcode strings."""
    return b"\x80\x02(" + b"".join(items) + b"t."


def _str(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_tar_checkpoint(path: Path, payload: bytes | None = None) -> dict[str, torch.Tensor]:
    """``{'w': 2x3 float32, 'b': float32 view into the same storage}`` in the tar format."""
    values = torch.arange(8, dtype=torch.float32)
    storages = pickle.dumps(1, protocol=2)
    storages += _record(_int(0), _str("cpu"), _global("torch", "FloatStorage"))
    storages += struct.pack("<q", 8) + values.numpy().tobytes()
    storages += pickle.dumps([], protocol=2)
    tensors = pickle.dumps(2, protocol=2)
    for key, size, stride, offset in ((10, (2, 3), (3, 1), 0), (11, (2,), (1,), 6)):
        tensors += _record(_int(key), _int(0), _global("torch", "FloatTensor"))
        tensors += struct.pack("<i", len(size)) + b"\0" * 4
        tensors += struct.pack(f"<{len(size)}q", *size) + struct.pack(f"<{len(stride)}q", *stride)
        tensors += struct.pack("<q", offset)
    main = b"\x80\x02}(" + _str("w") + _str("10") + b"Q" + _str("b") + _str("11") + b"Q"
    if payload is not None:
        main += _str("evil") + payload
    main += b"u."
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", sys_info), ("pickle", main), ("storages", storages), ("tensors", tensors)):
            _member(tar, name, data)
    return {"w": values[:6].reshape(2, 3), "b": values[6:8]}


def test_tar_format_reads_like_torch(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    expected = make_tar_checkpoint(path)
    theirs = torch.load(path, weights_only=False)
    ckpt = ckpttool.open(path)
    assert ckpt.format == "torch-tar"
    sd = ckpt.state_dict()
    assert list(sd) == list(theirs) == ["w", "b"]
    for key, ref in sd.items():
        assert list(ref.shape) == list(theirs[key].shape)
        assert ref.digest() == digest(theirs[key]) == digest(expected[key])
    assert sd["w"].storage is sd["b"].storage


def test_tar_payload_is_found_and_never_run(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    make_tar_checkpoint(path, payload=_global("os", "system") + b"(" + _str("touch pwned") + b"tR")
    proc = run_cli("scan", path, "--json", cwd=tmp_path)
    assert proc.returncode == 1
    assert not (tmp_path / "pwned").exists()
    assert '"os.system"' in proc.stdout


@pytest.mark.parametrize("cut", [600, 1500, 2500])
def test_truncated_tar_is_an_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "old.pt"
    make_tar_checkpoint(path)
    path.write_bytes(path.read_bytes()[:cut])
    proc = run_cli("inspect", path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
