"""A Hugging Face Trainer ``checkpoint-N/`` folder written with DeepSpeed (a real Trainer run, see
fixtures/make_deepspeed_fixtures.py): the DeepSpeed weights are read, with the Trainer's state beside them.

Expected values: DeepSpeed's own consolidation recorded in the manifest when the folder was made,
the Trainer's ``model.safetensors`` and ``trainer_state.json`` read with safetensors and json, and
``scheduler.pt`` read with ``torch.load``.
"""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors.torch import load_file

from ckpttool.ops.convert import ConvertOptions, convert
from tests.conftest import run_cli
from tests.deepspeed.helpers import DS, MANIFEST, rows
from tests.deepspeed.test_deepspeed_convert import _rows, _with_aliases

CASE = MANIFEST["trainer_cases"]["hf_trainer_zero2"]
FOLDER = DS / "hf_trainer_zero2" / "checkpoint-3"
STATE = json.loads((FOLDER / "trainer_state.json").read_text())


def test_the_fixture_is_what_the_trainer_wrote():
    got = {str(p.relative_to(FOLDER)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(FOLDER.rglob("*")) if p.is_file()}
    assert got == CASE["files"]
    assert {"latest", "trainer_state.json", "training_args.bin", "model.safetensors", "scheduler.pt"} <= set(got)


def test_inspect_sees_the_deepspeed_sections_and_the_trainer_state():
    r = run_cli("inspect", FOLDER, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "deepspeed" and doc["layout"] == "deepspeed"
    tensors = doc["sections"]["model"]["tensors"]
    assert [(k, v["shape"], v["dtype"]) for k, v in tensors.items()] == \
        [(e["key"], e["shape"], e["dtype"]) for e in CASE["fp32_state_dict"]]
    assert doc["sections"]["optimizer"]["type"] == "AdamW"
    assert doc["meta"]["global_steps"] == CASE["global_steps"]
    assert doc["meta"]["global_step"] == STATE["global_step"] and doc["meta"]["epoch"] == STATE["epoch"]
    scheduler = torch.load(FOLDER / "scheduler.pt", weights_only=True)  # the Trainer's own, DeepSpeed saved none
    assert CASE["lr_scheduler"] is None
    assert doc["sections"]["scheduler"]["last_epoch"] == scheduler["last_epoch"]
    assert doc["sections"]["scheduler"]["base_lrs"] == scheduler["base_lrs"]


def test_convert_writes_deepspeeds_fp32_weights_bit_for_bit(tmp_path):
    out = tmp_path / "model.safetensors"
    result = convert(FOLDER, out)
    assert result.content == "model" and result.input_format == "deepspeed"
    assert _rows(_with_aliases(out)) == rows(CASE["fp32_state_dict"])


def test_model16_is_the_16_bit_copy_the_trainer_saved(tmp_path):
    out = tmp_path / "model16.safetensors"
    convert(FOLDER, out, ConvertOptions(section="model16"))
    got = _with_aliases(out)
    trainer = load_file(FOLDER / "model.safetensors")  # written by save_pretrained, lm_head tied to wte
    assert set(trainer) <= set(got) and len(trainer) >= len(got) - 1  # at most the tied name left out
    assert all(torch.equal(got[k], t) and got[k].dtype == t.dtype for k, t in trainer.items())


def test_validate_resume_counts_by_the_trainer_state_and_checks_the_deepspeed_optimizer():
    r = run_cli("validate-resume", FOLDER, "--epochs", "2", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["layout"] == "deepspeed"
    per_epoch = STATE["max_steps"] // STATE["num_train_epochs"]
    assert doc["epochs_done"] == STATE["global_step"] // per_epoch
    assert doc["old_total_epochs"] == STATE["num_train_epochs"]
    checks = {c["code"]: c for c in doc["checks"]}
    assert checks["resume.optimizer-state"]["status"] == "pass"
    assert "HF Trainer" in doc["schedule"]["convention"]
