"""DCP folders written by real gloo process groups, read by ckpttool without torch's reader."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch

import ckpttool
from ckpttool.io.formats.dcp_metadata import TensorEntry, read_metadata
from ckpttool.tree import walk
from tests.dcp.conftest import FOLDERS, dcp_load_full


def _tensors(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    meta = read_metadata(folder)
    return {k: (e.dtype, e.shape) for k, e in meta.entries.items() if isinstance(e, TensorEntry)}


@pytest.mark.parametrize("name", FOLDERS)
def test_every_tensor_matches_dcp_load(dcp_folders: dict[str, Path], name: str) -> None:
    folder = dcp_folders[name]
    want = dcp_load_full(folder, _tensors(folder))
    meta = read_metadata(folder)
    ckpt = ckpttool.open(folder)
    assert ckpt.format == "dcp"
    seen = 0
    for fqn, expected in want.items():
        ref = ckpt.tree
        for key in meta.paths[fqn]:
            ref = ref[key]
        got = ref.to_torch()
        assert got.dtype == expected.dtype and got.shape == expected.shape, fqn
        assert torch.equal(got, expected), fqn
        raw = expected.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        assert ref.digest() == hashlib.sha256(raw).hexdigest(), fqn
        seen += 1
    assert seen == len(want) >= 2


def test_chunks_from_several_ranks_are_assembled(dcp_folders: dict[str, Path]) -> None:
    meta = read_metadata(dcp_folders["mesh2d"])
    a = meta.entries["model.a"]
    assert isinstance(a, TensorEntry) and len(a.chunks) == 4
    assert len({c.item.relative_path for c in a.chunks}) == 4
    shard1 = read_metadata(dcp_folders["shard1"]).entries["model.w"]
    assert isinstance(shard1, TensorEntry) and [c.offsets for c in shard1.chunks] == [(0, 0), (0, 5)]


def test_small_read_windows_give_the_same_bytes(dcp_folders: dict[str, Path]) -> None:
    folder = dcp_folders["mesh2d"]
    ckpt = ckpttool.open(folder)
    for key in ("a", "b", "c"):
        ref = ckpt.tree["model"][key]
        whole = ref.to_torch().contiguous().view(torch.uint8).reshape(-1).numpy().tobytes()
        for chunk in (1, 3, 7, 64):
            assert b"".join(ref.chunks(chunk)) == whole
        src = ref.storage.source
        assert src.read(5, 11) == whole[5:16]


def test_plain_values_come_back_as_torch_saved_them(dcp_folders: dict[str, Path]) -> None:
    import torch.distributed.checkpoint as dcp

    folder = dcp_folders["shard0"]
    state: dict = {"epoch": None, "args": {"lr": None, "name": None}}
    dcp.load(state, checkpoint_id=folder, no_dist=True)
    tree = ckpttool.open(folder).tree
    assert tree["epoch"] == state["epoch"] == 3
    assert tree["args"] == state["args"]


def test_fsdp_optimizer_state_is_a_section(dcp_folders: dict[str, Path]) -> None:
    ckpt = ckpttool.open(dcp_folders["fsdp"])
    assert "optimizer" in ckpt.sections and "model" in ckpt.sections
    assert sorted(ckpt.state_dict("model").tensors) == ["0.bias", "0.weight", "2.bias", "2.weight"]


def test_reading_the_structure_imports_no_torch(dcp_folders: dict[str, Path]) -> None:
    import subprocess

    code = ("import sys, ckpttool; c = ckpttool.open(sys.argv[1]); "
            "assert c.tree['model']['a'].shape == (5, 7); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(dcp_folders["mesh2d"])], check=True, timeout=120)


def test_no_tensor_is_left_out(dcp_folders: dict[str, Path]) -> None:
    folder = dcp_folders["fsdp"]
    n = sum(isinstance(v, ckpttool.model.TensorRef) for _, v in walk(ckpttool.open(folder).tree))
    assert n == len(_tensors(folder))
