"""convert --max-shard-size --force over an earlier shard set: the earlier set is replaced as a unit.

The folder is read back as the loaders read it (the index's weight_map, each shard loaded by
safetensors / torch.load), and must hold exactly the files the new index names, plus whatever
the earlier index did not name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# bin_shards imported before a test patches sharded._write_index: imported during the patch, it would
# bind the patched function for every later test
import ckpttool.io.write.bin_shards  # noqa: F401
from ckpttool.errors import OutputRefused
from ckpttool.ops.convert import ConvertOptions, convert
from tests.conftest import FIXTURES, run_cli

SRC = FIXTURES / "model1_state_dict.pt"
EXPECTED = torch.load(SRC, weights_only=True)


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _load(folder: Path, index_name: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Every tensor of the set, as transformers reads a sharded folder (index, then each shard named)."""
    weight_map = json.loads((folder / index_name).read_text())["weight_map"]
    merged: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        part = load_file(folder / shard) if shard.endswith(".safetensors") else torch.load(
            folder / shard, weights_only=True)
        assert all(weight_map[k] == shard for k in part)
        merged.update(part)
    return weight_map, merged


def _same_as_source(merged: dict[str, torch.Tensor]) -> None:
    assert sorted(merged) == sorted(EXPECTED)
    assert all(torch.equal(merged[k], v) and merged[k].dtype == v.dtype for k, v in EXPECTED.items())


def _convert(out: Path, size: str, *extra: str):
    return run_cli("convert", SRC, "-o", out, "--max-shard-size", size, *extra)


@pytest.mark.parametrize(("name", "index_name"), [("model.safetensors", "model.safetensors.index.json"),
                                                   ("pytorch_model.bin", "pytorch_model.bin.index.json")])
def test_force_replaces_a_set_of_another_shard_count(tmp_path, name, index_name):
    out = tmp_path / name
    assert _convert(out, "40KB").returncode == 0
    before, _ = _load(tmp_path, index_name)
    (tmp_path / "config.json").write_text("{}")
    stem = name.split(".")[0]
    suffix = name[len(stem):]
    unnamed = tmp_path / f"{stem}-00009-of-00009{suffix}"  # a shard name the earlier index does not hold
    unnamed.write_bytes(b"not part of the set")

    result = _convert(out, "120KB", "--force")
    assert result.returncode == 0, result.stderr
    weight_map, merged = _load(tmp_path, index_name)
    assert len(set(weight_map.values())) < len(set(before.values()))
    _same_as_source(merged)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*set(weight_map.values()), index_name, "config.json", unnamed.name])
    assert unnamed.read_bytes() == b"not part of the set"


@pytest.mark.parametrize(("name", "index_name"), [("model.safetensors", "model.safetensors.index.json"),
                                                   ("pytorch_model.bin", "pytorch_model.bin.index.json")])
def test_one_file_replaces_a_set_and_a_set_replaces_one_file(tmp_path, name, index_name):
    out = tmp_path / name
    assert _convert(out, "40KB").returncode == 0
    assert _convert(out, "1GB", "--force").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # the earlier index and its shards are gone
    single = load_file(out) if name.endswith(".safetensors") else torch.load(out, weights_only=True)
    _same_as_source(single)

    # the other way: a loader prefers the single file over an index, so it must not stay beside the set
    assert _convert(out, "40KB", "--force").returncode == 0
    weight_map, merged = _load(tmp_path, index_name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*set(weight_map.values()), index_name])
    _same_as_source(merged)


@pytest.mark.parametrize("second", ["120KB", "1GB"])
def test_without_force_an_earlier_set_is_refused_and_left_as_it_was(tmp_path, second):
    out = tmp_path / "model.safetensors"
    assert _convert(out, "40KB").returncode == 0
    before = _snapshot(tmp_path)
    result = _convert(out, second)
    assert result.returncode == 2
    assert result.stderr.startswith("ckpttool: error[") and "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before


def test_a_single_file_is_not_silently_left_beside_a_new_set(tmp_path):
    out = tmp_path / "model.safetensors"
    assert _convert(out, "1GB").returncode == 0
    before = _snapshot(tmp_path)
    result = _convert(out, "40KB")
    assert result.returncode == 2 and "exists" in result.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(("name", "target"), [("model.safetensors", "ckpttool.io.formats.sharded._write_index"),
                                               ("pytorch_model.bin", "ckpttool.io.write.bin_shards._write_index")])
def test_a_failure_while_publishing_leaves_the_earlier_set_intact(tmp_path, monkeypatch, name, target):
    out = tmp_path / name
    assert _convert(out, "40KB").returncode == 0
    before = _snapshot(tmp_path)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(target, fail)
    with pytest.raises(OSError, match="disk full"):
        convert(SRC, out, ConvertOptions(max_shard_size=120_000, force=True, jobs=1))
    assert _snapshot(tmp_path) == before  # same files, same bytes, nothing hidden left behind


def test_an_input_among_the_earlier_shards_is_refused(tmp_path):
    out = tmp_path / "model.safetensors"
    assert _convert(out, "40KB").returncode == 0
    before = _snapshot(tmp_path)
    shard = sorted(tmp_path.glob("model-00001-of-*.safetensors"))[0]
    result = run_cli("convert", shard, "-o", out, "--max-shard-size", "1GB", "--force")
    assert result.returncode == 2 and "one of the inputs" in result.stderr
    assert _snapshot(tmp_path) == before


def test_an_unreadable_earlier_index_is_refused_even_with_force(tmp_path):
    out = tmp_path / "model.safetensors"
    assert _convert(out, "40KB").returncode == 0
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    before = _snapshot(tmp_path)
    with pytest.raises(OutputRefused, match="earlier shard index cannot be read"):
        convert(SRC, out, ConvertOptions(max_shard_size=120_000, force=True, jobs=1))
    assert _snapshot(tmp_path) == before
