"""``convert`` of DeepSpeed folders, read back with torch and safetensors (not with ckpttool) and
compared with what DeepSpeed's own consolidation returned when the fixtures were made."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ckpttool.ops.convert import ConvertOptions, convert
from tests.conftest import run_cli
from tests.deepspeed.helpers import CASES, DS, NAMES, ZERO3, ZERO12, expected_fp32, rows, torch_sha


def _rows(sd: dict[str, torch.Tensor]) -> list[tuple[str, list[int], str, str]]:
    return [(k, list(t.shape), str(t.dtype).removeprefix("torch."), torch_sha(t)) for k, t in sd.items()]


def _with_aliases(path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors with the tied names ckpttool recorded put back, in the recorded order."""
    sd = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    for alias, owner in json.loads(meta.get("ckpttool.aliases", "{}")).items():
        sd[alias] = sd[owner]
    order = json.loads(meta["ckpttool.order"]) if "ckpttool.order" in meta else list(sd)
    return {k: sd[k] for k in order}


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_bit_exact(name, tmp_path):
    out = tmp_path / "model.safetensors"
    result = convert(DS / name, out)
    assert result.content == "model"
    assert _rows(_with_aliases(out)) == expected_fp32(name)


@pytest.mark.parametrize("name", ["zero1_bf16_2ranks", "zero3_fp16_2ranks"])
def test_torch_output_keeps_ties(name, tmp_path):
    out = tmp_path / "pytorch_model.bin"
    convert(DS / name, out)
    sd = torch.load(out, map_location="cpu", weights_only=True)
    assert _rows(sd) == expected_fp32(name)
    for alias, owner in CASES[name]["fp32_same_tensor"].items():
        assert sd[alias].data_ptr() == sd[owner].data_ptr()


def test_shard_set(tmp_path):
    name = "zero3_bf16_2ranks"
    result = convert(DS / name, tmp_path / "out", ConvertOptions(max_shard_size=300))
    assert len(result.shards) > 1
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    sd: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        sd.update(load_file(tmp_path / "out" / shard))
    expected = {r[0]: r for r in expected_fp32(name)}
    got = {r[0]: r for r in _rows(sd)}
    tied = CASES[name]["fp32_same_tensor"]
    assert set(got) == set(expected) - set(tied)
    assert all(got[k] == expected[k] for k in got)


@pytest.mark.parametrize("name", ZERO12)
def test_model16_section(name, tmp_path):
    out = tmp_path / "model16.safetensors"
    convert(DS / name, out, ConvertOptions(section="model16"))
    assert _rows(_with_aliases(out)) == rows(CASES[name]["module"])


def test_zero1_note_names_the_frozen_parameters(tmp_path):
    result = convert(DS / "zero1_bf16_2ranks", tmp_path / "m.safetensors")
    assert any("frozen.weight, frozen.bias" in n for n in result.notes)


def test_cli_convert_and_model16_refused_for_zero3(tmp_path):
    ok = run_cli("convert", DS / "zero2_bf16_1rank", "-o", tmp_path / "m.safetensors", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["input_format"] == "deepspeed"
    bad = run_cli("convert", DS / ZERO3[0], "-o", tmp_path / "m16.safetensors", "--section", "model16")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "ckpttool: error[" in bad.stderr and "placeholders" in bad.stderr
    assert not (tmp_path / "m16.safetensors").exists()


def test_cli_never_writes_into_the_input(tmp_path):
    r = run_cli("convert", DS / "zero2_bf16_1rank", "-o",
                DS / "zero2_bf16_1rank" / "global_step3" / "mp_rank_00_model_states.pt", "--force")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_stage0_16bit_note(tmp_path):
    result = convert(DS / "zero0_bf16_1rank", tmp_path / "m.safetensors")
    assert any("not an fp32 master copy" in n for n in result.notes)
    assert not any("master" in n for n in convert(DS / "zero0_fp32_1rank", tmp_path / "n.safetensors").notes)
