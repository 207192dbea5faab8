"""convert on files real libraries wrote (fixtures/gpu: transformers, torch DCP), torch as the oracle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ckpttool
from ckpttool.ops.convert import ConvertOptions, convert

GPU = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
pytestmark = pytest.mark.skipif(not GPU.is_dir(), reason="fixtures/gpu not present")


def test_dcp_folder_converts_like_torchs_own_dcp_to_torch_save(tmp_path: Path) -> None:
    out = tmp_path / "single.pt"
    convert(GPU / "dcp_checkpoint", out)
    ref = torch.load(GPU / "dcp_reference.pt", weights_only=True, map_location="cpu")
    got = torch.load(out, weights_only=True)
    assert got["epoch"] == ref["epoch"] and list(got["model"]) == list(ref["model"])
    for key, value in ref["model"].items():
        assert got["model"][key].dtype == value.dtype and torch.equal(got["model"][key], value), key


def test_transformers_tied_weights_stored_once_and_restored(tmp_path: Path) -> None:
    src = GPU / "hf_tied_state_dict.pt"
    st = tmp_path / "bert.safetensors"
    result = convert(src, st)
    assert result.aliases == {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                              "cls.predictions.decoder.bias": "cls.predictions.bias"}
    assert set(load_file(st)).isdisjoint(result.aliases)
    back = tmp_path / "bert.pt"
    convert(st, back)
    ref = torch.load(src, weights_only=True, map_location="cpu")
    got = torch.load(back, weights_only=True)
    assert list(got) == list(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    for alias, target in result.aliases.items():
        assert got[alias].untyped_storage().data_ptr() == got[target].untyped_storage().data_ptr()


def test_transformers_shards_become_one_file(tmp_path: Path) -> None:
    folder = GPU / "hf_sharded_safetensors"
    out = tmp_path / "one.safetensors"
    convert(folder, out)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    want: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        want.update(load_file(folder / shard))
    got = load_file(out)
    assert set(got) == set(want) and all(torch.equal(got[k], v) for k, v in want.items())


def test_transformers_trainer_folder(tmp_path: Path) -> None:
    folder = GPU / "hf_trainer" / "checkpoint-4"
    out = tmp_path / "model.safetensors"
    convert(folder, out)
    want = load_file(folder / "model.safetensors")
    got = load_file(out)
    assert set(got) == set(want) and all(torch.equal(got[k], v) for k, v in want.items())
    full = tmp_path / "full.pt"
    result = convert(folder, full, ConvertOptions(sanitize=True))
    loaded = torch.load(full, weights_only=True)
    assert loaded["global_step"] == ckpttool.open(folder).tree["global_step"]
    assert "training_args" in {c.path for c in result.changes}


def test_accelerate_state_folder_sanitized(tmp_path: Path) -> None:
    folder = GPU / "accelerate_state"
    assert ckpttool.open(folder).format == "hf-trainer"
    out = tmp_path / "acc.pt"
    result = convert(folder, out, ConvertOptions(sanitize=True))
    assert [c.now for c in result.changes] == ["list (a numpy array of 624 values)"]
    got = torch.load(out, weights_only=True)
    # torch.save'd by accelerate; a fixture a real library wrote, so trusted for the full unpickler
    ref = torch.load(folder / "random_states_0.pkl", weights_only=False, map_location="cpu")
    assert got["rng_state"]["numpy_random_seed"][1] == ref["numpy_random_seed"][1].tolist()
    want = load_file(folder / "model.safetensors")
    assert all(torch.equal(got["model"][k], v) for k, v in want.items())


def test_tied_safetensors_diff_equal_to_its_source(tmp_path: Path) -> None:
    """A converted file with tied weights reads back with its tied names: diff calls it equal."""
    from ckpttool.cli import main

    source = GPU / "hf_tied_state_dict.pt"
    out = tmp_path / "tied.safetensors"
    assert main(["convert", str(source), "-o", str(out)]) == 0
    sd = ckpttool.open(out).state_dict()
    assert sd["cls.predictions.decoder.weight"].storage is sd["bert.embeddings.word_embeddings.weight"].storage
    assert main(["diff", str(source), str(out), "--json"]) == 0
