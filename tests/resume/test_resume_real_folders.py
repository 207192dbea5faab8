"""validate-resume on folders real libraries wrote (fixtures/gpu: transformers Trainer on CUDA, fp16)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import FIXTURES, run_cli

TRAINER = FIXTURES / "gpu" / "hf_trainer" / "checkpoint-4"


def test_real_trainer_folder_start_and_state() -> None:
    proc = run_cli("validate-resume", TRAINER, "--epochs", "3", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    state = json.loads((TRAINER / "trainer_state.json").read_text())
    assert report["epochs_done"] == int(state["epoch"])
    assert report["start_epoch"] == int(state["epoch"])
    statuses = {c["code"]: c["status"] for c in report["checks"]}
    assert statuses["resume.optimizer-state"] == "pass"  # AdamW moments for every parameter
    assert statuses["resume.scaler"] == "pass"  # the fp16 GradScaler the Trainer saved


def test_real_cuda_amp_checkpoint_reads_on_cpu(tmp_path: Path) -> None:
    proc = run_cli("validate-resume", FIXTURES / "gpu" / "cuda_amp_train.pt", "--epochs", "300", "--amp", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    checks = {c["code"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["resume.scaler"]["status"] == "pass"
    assert checks["resume.start-epoch"]["status"] == "pass"
