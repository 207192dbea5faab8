"""Hugging Face folders written by the real libraries (fixtures/hf/, see make_hf_fixtures.py):
sharded .bin, diffusers pipelines, PEFT adapters. Expected tensors were recorded by each library's
own loader in fixtures/hf/MANIFEST.json."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import ckpttool
from ckpttool.errors import CkptError
from tests.conftest import FIXTURES, run_cli

HF = FIXTURES / "hf"
MANIFEST = json.loads((HF / "MANIFEST.json").read_text())
FOLDERS = MANIFEST["folders"]
ADAPTERS = ["peft_lora", "peft_lora_b", "peft_lora_bin"]


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def _listing(sd) -> dict[str, dict]:
    return {k: {"dtype": t.dtype, "shape": list(t.shape), "sha256": t.digest()} for k, t in sd.items()}


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
def test_committed_files_match_their_manifest(name):
    path = HF / name
    assert path.is_file(), name
    entry = MANIFEST["files"][name]
    assert path.stat().st_size == entry["bytes"] and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]


def test_no_undeclared_files():
    present = {str(p.relative_to(HF)) for p in HF.rglob("*") if p.is_file() and p.name != "MANIFEST.json"}
    assert present == set(MANIFEST["files"])


# -- sharded .bin -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["bin_shards", "bin_shards/pytorch_model.bin.index.json"])
def test_bin_shards_read_like_sharded_safetensors(target):
    ckpt = ckpttool.open(HF / target)
    assert ckpt.format == "sharded" and ckpt.layout == "state_dict"
    assert _listing(ckpt.state_dict()) == FOLDERS["bin_shards"]["tensors"]
    assert ckpt.members["shards"] == FOLDERS["bin_shards"]["shards"]
    assert not ckpt.dangerous


# -- diffusers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["diffusers_pipeline", "diffusers_sharded"])
def test_diffusers_components_are_sections_named_after_their_folders(folder):
    ckpt = ckpttool.open(HF / folder)
    expected = FOLDERS[folder]["components"]
    assert ckpt.format == "diffusers" and ckpt.layout == "diffusers-pipeline"
    assert set(ckpt.sections) - {"meta"} == set(expected) == {"unet", "vae", "text_encoder"}
    for name, tensors in expected.items():
        assert _listing(ckpt.state_dict(name)) == tensors, name


def test_sharded_component_is_really_sharded():
    assert "diffusion_pytorch_model.safetensors.index.json" in FOLDERS["diffusers_sharded"]["files"]["unet"]
    same = run_cli("diff", HF / "diffusers_pipeline", HF / "diffusers_sharded", "--section", "all", "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["equal"] is True


def test_diffusers_inspect_json_lists_each_component():
    result = run_cli("inspect", HF / "diffusers_pipeline", "--json")
    assert result.returncode == 0, result.stderr
    sections = json.loads(result.stdout)["sections"]
    for name, tensors in FOLDERS["diffusers_pipeline"]["components"].items():
        got = sections[name]["tensors"]
        assert {k: (v["dtype"], v["shape"]) for k, v in got.items()} == \
            {k: (v["dtype"], v["shape"]) for k, v in tensors.items()}


def test_diffusers_diff_and_convert_one_component(tmp_path):
    same = run_cli("diff", HF / "diffusers_pipeline", HF / "diffusers_pipeline", "--section", "unet", "--json")
    assert same.returncode == 0, same.stderr
    assert len(json.loads(same.stdout)["identical"]) == len(FOLDERS["diffusers_pipeline"]["components"]["unet"])
    out = tmp_path / "unet.safetensors"
    result = run_cli("convert", HF / "diffusers_pipeline", "--section", "unet", "-o", out)
    assert result.returncode == 0, result.stderr
    loaded = load_file(out)
    expected = FOLDERS["diffusers_pipeline"]["components"]["unet"]
    assert {k: _sha(v) for k, v in loaded.items()} == {k: v["sha256"] for k, v in expected.items()}


def test_diffusers_unknown_section_is_a_clear_error():
    result = run_cli("diff", HF / "diffusers_pipeline", HF / "diffusers_pipeline", "--section", "unett")
    assert result.returncode == 2
    assert "unet" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["diff", str(HF / "diffusers_pipeline")], ["convert", "-o", "out.safetensors"],
                                     ["remap", "--add-prefix", "x", "-o", "out.pt"]])
def test_diffusers_without_section_says_how_to_pick_a_component(tmp_path, command):
    """A pipeline has no "model": each command's one-line error names the option that picks a component."""
    result = run_cli(command[0], HF / "diffusers_pipeline", *command[1:], cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--section text_encoder" in result.stderr
    assert not list(tmp_path.iterdir())


def test_diffusers_broken_component_names_the_file(tmp_path):
    folder = tmp_path / "pipe"
    shutil.copytree(HF / "diffusers_pipeline", folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CkptError):
        ckpttool.open(folder)
    result = run_cli("inspect", folder)
    assert result.returncode == 2 and result.stderr.startswith("ckpttool: error[")
    assert "vae/diffusion_pytorch_model.safetensors" in result.stderr and result.stderr.count("\n") == 1


# -- PEFT --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ADAPTERS)
def test_peft_adapter_tensors_and_config(name):
    ckpt = ckpttool.open(HF / name)
    facts = FOLDERS[name]
    assert ckpt.format == "peft" and ckpt.layout == "peft-adapter"
    assert _listing(ckpt.state_dict()) == facts["tensors"]
    config = ckpt.meta["config"]
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"]), config["base_model_name_or_path"]) \
        == (facts["r"], facts["lora_alpha"], facts["target_modules"], facts["base_model_name_or_path"])


def test_peft_inspect_shows_rank_alpha_targets_and_base():
    result = run_cli("inspect", HF / "peft_lora")
    assert result.returncode == 0, result.stderr
    facts = FOLDERS["peft_lora"]
    line = next(li for li in result.stdout.splitlines() if li.startswith("adapter"))
    assert f"r={facts['r']}" in line and f"lora_alpha={facts['lora_alpha']}" in line
    assert all(t in line for t in facts["target_modules"]) and facts["base_model_name_or_path"] in line


def test_peft_diff_adapter_against_adapter():
    other = run_cli("diff", HF / "peft_lora", HF / "peft_lora_b", "--json")
    assert other.returncode == 1, other.stderr
    changed = {e["key"] for e in json.loads(other.stdout)["value_changed"]}
    a, b = FOLDERS["peft_lora"]["tensors"], FOLDERS["peft_lora_b"]["tensors"]
    assert changed == {k for k in a if a[k]["sha256"] != b[k]["sha256"]} and changed
    same = run_cli("diff", HF / "peft_lora", HF / "peft_lora_bin", "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["equal"] is True


def test_peft_bin_adapter_scans_clean():
    result = run_cli("scan", HF / "peft_lora_bin" / "adapter_model.bin", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["dangerous"] == []


def test_peft_bad_config_is_one_line_error(tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(HF / "peft_lora", folder)
    (folder / "adapter_config.json").write_text("{not json")
    result = run_cli("inspect", folder)
    assert result.returncode == 2
    assert "adapter_config.json" in result.stderr and result.stderr.count("\n") == 1




@pytest.mark.parametrize("folder", ["peft_lora", "diffusers_pipeline"])
def test_remap_refuses_to_write_a_folder_as_one_torch_file(tmp_path, folder):
    result = run_cli("remap", HF / folder, "-o", tmp_path / "out.pt", "--add-prefix", "x")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_inspect_one_component_and_an_unknown_one():
    result = run_cli("inspect", HF / "diffusers_pipeline", "--section", "vae", "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["sections"]) == {"vae"}
    bad = run_cli("inspect", HF / "diffusers_pipeline", "--section", "vea")
    assert bad.returncode == 2 and "text_encoder, unet, vae" in bad.stderr


def test_peft_adapter_converts_to_the_bin_peft_itself_writes(tmp_path):
    out = tmp_path / "adapter_model.bin"
    result = run_cli("convert", HF / "peft_lora", "-o", out)
    assert result.returncode == 0, result.stderr
    got = torch.load(out, weights_only=True)
    ref = torch.load(HF / "peft_lora_bin" / "adapter_model.bin", weights_only=True)
    assert list(got) == list(ref) and all(torch.equal(got[k], v) for k, v in ref.items())


@pytest.mark.parametrize("folder, component", [("diffusers_pipeline", "vae"), ("diffusers_pipeline", "text_encoder"),
                                               ("diffusers_sharded", "unet")])
def test_one_component_folder_reads_as_its_weights(folder, component):
    ckpt = ckpttool.open(HF / folder / component)
    assert _listing(ckpt.state_dict()) == FOLDERS[folder]["components"][component]


def test_trainer_folder_of_a_peft_run_keeps_the_adapter_config(tmp_path):
    folder = tmp_path / "checkpoint-2"
    shutil.copytree(HF / "peft_lora", folder)
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW(params)
    params[0].grad = torch.ones(2)
    opt.step()
    torch.save(opt.state_dict(), folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"epoch": 1.0, "global_step": 2}))
    ckpt = ckpttool.open(folder)
    assert ckpt.format == "hf-trainer"
    assert _listing(ckpt.state_dict()) == FOLDERS["peft_lora"]["tensors"]
    assert ckpt.meta["adapter_config"]["r"] == FOLDERS["peft_lora"]["r"]
    assert "optimizer" in ckpt.sections
