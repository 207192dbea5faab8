"""The ``remap`` command: wrapper soup, formats, refusals; errors are one line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ckpttool.cli import main
from tests.conftest import FIXTURES, run_cli

SD1 = FIXTURES / "model1_state_dict.pt"


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("fixture", ["model1_wrapper_soup.pt", "model1_module_prefixed.pt",
                                     "model1_orig_mod_prefixed.pt"])
def test_wrapper_soup_stripped(tmp_path, fixture):
    out = tmp_path / "plain.pt"
    assert main(["remap", str(FIXTURES / fixture), "-o", str(out), "--preset", "wrappers"]) == 0
    got, want = _load(out), _load(SD1)
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_wrapper_soup_leaves_submodule_alone(tmp_path):
    src = tmp_path / "soup.pt"
    torch.save({"module._orig_mod.submodule.weight": torch.ones(2), "_orig_mod.module.conv1.bias": torch.zeros(2),
                "submodule.module.weight": torch.ones(1)}, src)
    out = tmp_path / "out.pt"
    assert main(["remap", str(src), "-o", str(out), "--preset", "wrappers"]) == 0
    assert list(_load(out)) == ["submodule.weight", "conv1.bias", "submodule.module.weight"]


def test_averaged_model_keeps_n_averaged_and_prefix(tmp_path):
    out = tmp_path / "avg.pt"
    assert main(["remap", str(FIXTURES / "model1_averaged_ema.pt"), "-o", str(out), "--to", "sequential",
                 "--layout", str(FIXTURES / "model1_to_model2.toml")]) == 0
    got, orig = _load(out), _load(FIXTURES / "model1_averaged_ema.pt")
    assert torch.equal(got["n_averaged"], orig["n_averaged"])
    assert torch.equal(got["module.backbone.3.weight"], orig["module.conv2.weight"])
    assert "module.conv_a.weight" not in got


def test_safetensors_stays_safetensors(tmp_path):
    out = tmp_path / "m2.safetensors"
    assert main(["remap", str(FIXTURES / "model1_state_dict.safetensors"), "-o", str(out), "--to", "sequential",
                 "--layout", str(FIXTURES / "model1_to_model2.toml")]) == 0
    got, want = load_file(out), _load(FIXTURES / "model2_state_dict.pt")
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert main(["remap", str(SD1), "-o", str(tmp_path / "x.safetensors"), "--add-prefix", "a"]) == 2


def test_safetensors_shards_stay_safetensors(tmp_path):
    """A folder of safetensors shards is remapped to one safetensors file, never silently to a pickle."""
    shards = FIXTURES / "gpu" / "hf_sharded_safetensors"
    out = tmp_path / "m.safetensors"
    assert main(["remap", str(shards), "-o", str(out), "--add-prefix", "x"]) == 0
    got = load_file(out)
    assert got and all(k.startswith("x.") for k in got)
    proc = run_cli("remap", str(shards), "-o", str(tmp_path / "m.pt"), "--add-prefix", "x")
    assert proc.returncode == 2 and "safetensors" in proc.stderr
    assert not (tmp_path / "m.pt").exists()


def test_existing_output_needs_force_and_input_is_never_the_output(tmp_path, capsys):
    out = tmp_path / "out.pt"
    out.write_bytes(b"keep me")
    assert main(["remap", str(SD1), "-o", str(out), "--add-prefix", "net"]) == 2
    assert out.read_bytes() == b"keep me"
    assert "--force" in capsys.readouterr().err
    assert main(["remap", str(SD1), "-o", str(out), "--add-prefix", "net", "--force"]) == 0
    assert next(iter(_load(out))) == "net.conv1.weight"
    copy = tmp_path / "in.pt"
    copy.write_bytes(SD1.read_bytes())
    assert main(["remap", str(copy), "-o", str(copy), "--add-prefix", "net", "--force"]) == 2
    assert copy.read_bytes() == SD1.read_bytes()


def _refused(tmp_path, *args: str, match: str) -> None:
    out = tmp_path / "out.pt"
    proc = run_cli("remap", str(SD1), "-o", str(out), *args)
    assert proc.returncode == 2, proc.stderr
    assert match in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_bad_rules_file(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]]\nregex = '('\nreplace = 'x'\n")
    _refused(tmp_path, "--rules", str(rules), match="invalid regex")
    rules.write_text("[[rule\n")
    _refused(tmp_path, "--rules", str(rules), match="is not valid TOML")


def test_unknown_layout_names(tmp_path):
    layout = tmp_path / "layout.toml"
    layout.write_text('[sequential]\nbackbone = ["conv1", "relu", "pool", "convv2"]\n')
    _refused(tmp_path, "--to", "sequential", "--layout", str(layout), match="convv2")


def test_collision(tmp_path):
    _refused(tmp_path, "--map", "conv1=conv2", match="would all become conv2.weight")


def test_bad_option_combinations(tmp_path):
    _refused(tmp_path, "--to", "sequential", match="--to and --layout go together")
    _refused(tmp_path, "--like", str(SD1), "--model", "x:y", match="one of --to, --like and --model")
    _refused(tmp_path, "--model", "no_such_module_xyz:Net", match="ModuleNotFoundError")
    proc = run_cli("remap", str(SD1), "--add-prefix", "a")
    assert proc.returncode == 2 and "-o OUTPUT is required" in proc.stderr


def test_dry_run_json_contract(capsys):
    assert main(["remap", str(FIXTURES / "model1_module_prefixed.pt"), "--strip-prefix", "module",
                 "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1
    assert doc["mapping"][0] == {"from": "module.conv1.weight", "to": "conv1.weight",
                                 "reason": "strip-prefix module"}
    assert doc["dropped"] == [] and doc["findings"] == [] and doc["output"] is None


def test_human_output_shows_reasons():
    proc = run_cli("remap", str(SD1), "--to", "sequential", "--layout", str(FIXTURES / "model1_to_model2.toml"),
                   "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "backbone.0.weight" in proc.stdout and "layout backbone[0]" in proc.stdout
    assert "dropped" in proc.stdout and "nothing written" in proc.stdout


def test_help_has_an_example():
    proc = run_cli("remap", "--help")
    assert proc.returncode == 0 and "ckpttool remap old.pt -o new.pt --to sequential" in proc.stdout


@pytest.mark.parametrize("fixture, paths", [
    ("lightning_ema.ckpt", [("state_dict",), ("current_model_state",)]),
    ("ema_pytorch.pt", [("model",), ("ema", "ema_model."), ("ema", "online_model.")]),
    ("timm_checkpoint.pth.tar", [("state_dict",), ("state_dict_ema",)]),
    ("generic_train.pt", [("model_state_dict",), ("model_ema",)]),
])
def test_every_section_holding_the_model_is_renamed(tmp_path, fixture, paths):
    out = tmp_path / "out.pt"
    assert main(["remap", str(FIXTURES / fixture), "-o", str(out), "--add-prefix", "net"]) == 0
    orig, new = torch.load(FIXTURES / fixture, weights_only=False), torch.load(out, weights_only=False)
    assert set(new) == set(orig)
    for key, *prefix in paths:
        pre = prefix[0] if prefix else ""
        old_keys = [k[len(pre):] for k, v in orig[key].items() if k.startswith(pre) and torch.is_tensor(v)]
        for k in old_keys:
            assert torch.equal(new[key][f"{pre}net.{k}"], orig[key][pre + k]), (key, k)
        assert not any(pre + k in new[key] for k in old_keys)
