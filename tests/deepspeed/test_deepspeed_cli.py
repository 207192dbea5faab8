"""The commands a user runs on a DeepSpeed folder: inspect, scan, diff, validate-resume."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.deepspeed.helpers import CASES, DS

DEEPSPEED_GLOBALS = {"deepspeed.runtime.fp16.loss_scaler.LossScaler",
                     "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
                     "deepspeed.runtime.zero.config.ZeroStageEnum",
                     "deepspeed.utils.tensor_fragment.fragment_address"}


@pytest.mark.parametrize("name", ["zero2_fp16_2ranks", "zero3_bf16_2ranks"])
def test_inspect_json(name):
    case = CASES[name]
    r = run_cli("inspect", DS / name, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "deepspeed" and doc["layout"] == "deepspeed"
    assert doc["meta"]["zero_stage"] == case["stage"] and doc["meta"]["world_size"] == case["world_size"]
    assert doc["meta"]["global_steps"] == case["global_steps"] and doc["meta"]["epoch"] == 1
    tensors = doc["sections"]["model"]["tensors"]
    assert [(k, v["shape"], v["dtype"]) for k, v in tensors.items()] == \
        [(e["key"], e["shape"], e["dtype"]) for e in case["fp32_state_dict"]]
    assert doc["sections"]["optimizer"]["type"] == "AdamW"
    assert doc["sections"]["scheduler"]["last_batch_iteration"] == case["lr_scheduler"]["last_batch_iteration"]
    assert doc["sections"]["scaler"]["type"] == case["loss_scaler"]
    assert doc["sections"]["scaler"]["cur_scale"] == case["cur_scale"]
    assert not [f for f in doc["findings"] if f["severity"] != "info"]


@pytest.mark.parametrize("name", ["zero1_bf16_2ranks", "zero2_fp16_2ranks", "zero3_fp16_2ranks"])
def test_scan_calls_every_file_clean(name):
    files = sorted((DS / name).rglob("*.pt"))
    r = run_cli("scan", *files, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert [f["status"] for f in doc["files"]] == ["clean"] * len(files)
    met = {g["name"]: g["kind"] for f in doc["files"] for g in f["globals"]}
    assert DEEPSPEED_GLOBALS & set(met) and all(met[g] == "data" for g in DEEPSPEED_GLOBALS & set(met))


def test_diff_two_runs_and_a_folder_against_its_conversion(tmp_path):
    r = run_cli("diff", DS / "zero1_bf16_2ranks", DS / "zero2_bf16_1rank", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["value_changed"]
    out = tmp_path / "m.safetensors"
    assert run_cli("convert", DS / "zero3_bf16_2ranks", "-o", out).returncode == 0
    same = run_cli("diff", DS / "zero3_bf16_2ranks", out, "--json")
    assert same.returncode == 0, same.stdout
    assert json.loads(same.stdout)["equal"] is True


def test_validate_resume_reads_steps_scheduler_and_scaler():
    r = run_cli("validate-resume", DS / "zero2_fp16_2ranks", "--epochs", "4", "--json")
    doc = json.loads(r.stdout)
    assert doc["start_epoch"] == 2  # client state 'epoch' 1, + 1
    notes = " ".join(doc["schedule"]["notes"])
    assert "global_steps 3" in notes and "last_batch_iteration 2 agrees" in notes
    checks = {c["code"]: c for c in doc["checks"]}
    assert "scale 256" in checks["resume.scaler"]["message"]
    assert checks["resume.optimizer"]["status"] == "pass"
    assert "resume.optimizer-shapes" not in checks or checks["resume.optimizer-shapes"]["status"] != "fail"


def test_diff_model16_of_a_folder_against_its_own_states_file():
    folder = DS / "zero2_fp16_2ranks"
    r = run_cli("diff", folder, folder / "global_step3" / "mp_rank_00_model_states.pt", "--section", "model16",
                "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["equal"] is True
