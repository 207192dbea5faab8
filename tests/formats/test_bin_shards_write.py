"""convert --max-shard-size to a Hugging Face .bin shard set, checked with torch.load on every shard."""

from __future__ import annotations

import json

import pytest
import torch

import ckpttool
from tests.conftest import FIXTURES, run_cli

TIED = FIXTURES / "gpu" / "hf_tied_state_dict.pt"


def _load_set(index_path):
    index = json.loads(index_path.read_text())
    merged = {}
    for shard in sorted(set(index["weight_map"].values())):
        part = torch.load(index_path.parent / shard, weights_only=True)
        assert all(index["weight_map"][k] == shard for k in part)
        merged.update(part)
    return index, merged


@pytest.mark.parametrize("name", ["pytorch_model.bin.index.json", "pytorch_model.bin"])
def test_shards_hold_every_tensor_bit_for_bit(tmp_path, name):
    src = FIXTURES / "model1_state_dict.pt"
    result = run_cli("convert", src, "-o", tmp_path / name, "--max-shard-size", "60KB", "--json")
    assert result.returncode == 0, result.stderr
    index, merged = _load_set(tmp_path / "pytorch_model.bin.index.json")
    expected = torch.load(src, weights_only=True)
    assert len(set(index["weight_map"].values())) > 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*set(index["weight_map"].values()), "pytorch_model.bin.index.json"])
    assert list(merged) == list(expected)
    assert all(torch.equal(merged[k], v) and merged[k].dtype == v.dtype for k, v in expected.items())
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in expected.values())
    report = json.loads(result.stdout)
    assert report["format"] == "sharded" and len(report["shards"]) == len(set(index["weight_map"].values()))


def test_tied_weights_stay_in_one_shard_and_shared(tmp_path):
    out = tmp_path / "pytorch_model.bin"
    assert run_cli("convert", TIED, "-o", out, "--max-shard-size", "8KB").returncode == 0
    index, merged = _load_set(tmp_path / "pytorch_model.bin.index.json")
    wm = index["weight_map"]
    a, b = "bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"
    assert wm[a] == wm[b]
    part = torch.load(tmp_path / wm[a], weights_only=True)
    assert part[a].data_ptr() == part[b].data_ptr()
    expected = torch.load(TIED, weights_only=True)
    # tied keys travel together, so the key order across shards can differ from the source's
    assert sorted(merged) == sorted(expected) and all(torch.equal(merged[k], v) for k, v in expected.items())


def test_small_state_dict_is_one_file(tmp_path):
    result = run_cli("convert", FIXTURES / "bn_state_dict.pt", "-o", tmp_path / "pytorch_model.bin.index.json",
                     "--max-shard-size", "1GB")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["pytorch_model.bin"]
    expected = torch.load(FIXTURES / "bn_state_dict.pt", weights_only=True)
    got = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert list(got) == list(expected) and all(torch.equal(got[k], v) for k, v in expected.items())


def test_round_trip_through_safetensors_shards(tmp_path):
    src = FIXTURES / "hf" / "bin_shards"
    st = tmp_path / "st"
    st.mkdir()
    assert run_cli("convert", src, "-o", st / "model.safetensors", "--max-shard-size", "4KB").returncode == 0
    back = tmp_path / "back"
    back.mkdir()
    assert run_cli("convert", st, "-o", back / "pytorch_model.bin", "--max-shard-size", "4KB").returncode == 0
    a, b = ckpttool.open(src).state_dict(), ckpttool.open(back).state_dict()
    assert list(a) == list(b)
    assert all(a[k].digest() == b[k].digest() and a[k].dtype == b[k].dtype for k in a)


def test_shards_of_a_torch_name_that_is_not_bin_are_refused(tmp_path):
    result = run_cli("convert", FIXTURES / "bn_state_dict.pt", "-o", tmp_path / "out.pt", "--max-shard-size", "1KB")
    assert result.returncode == 2
    assert "pytorch_model.bin" in result.stderr and result.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_existing_shard_is_not_overwritten_without_force(tmp_path):
    (tmp_path / "pytorch_model.bin.index.json").write_bytes(b"keep")
    result = run_cli("convert", FIXTURES / "model1_state_dict.pt", "-o", tmp_path / "pytorch_model.bin",
                     "--max-shard-size", "60KB")
    assert result.returncode == 2, result.stdout
    assert (tmp_path / "pytorch_model.bin.index.json").read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pytorch_model.bin.index.json"]
