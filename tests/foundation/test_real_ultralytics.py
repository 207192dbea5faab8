"""Files the real ultralytics trainer wrote (fixtures/gpu, see make_ultralytics_fixture.py)."""

from __future__ import annotations

import json
from pathlib import Path

import ckpttool
from tests.conftest import FIXTURES, run_cli
from tests.oracle import digest, torch_load

LAST = FIXTURES / "gpu" / "ultralytics_real_last.pt"
FINAL = FIXTURES / "gpu" / "ultralytics_real_final.pt"


def test_layout_and_sections() -> None:
    ckpt = ckpttool.open(LAST)
    assert ckpt.layout == "ultralytics"
    assert ckpt.section("model").source == "ema"  # 'model' is None in ultralytics checkpoints
    assert ckpt.section("optimizer").value["param_groups"]


def test_extracted_ema_is_the_pickled_ema_module_state_dict(tmp_path: Path) -> None:
    out = tmp_path / "ema.safetensors"
    proc = run_cli("extract-ema", LAST, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    expected = torch_load(LAST)["ema"].state_dict()
    ours = ckpttool.open(out).state_dict()
    assert list(ours) == list(expected)
    assert all(ours[k].digest() == digest(v) for k, v in expected.items())


def test_resume_start_epoch_follows_ultralytics(tmp_path: Path) -> None:
    saved = torch_load(LAST)
    proc = run_cli("validate-resume", LAST, "--epochs", "4", "--json")
    report = json.loads(proc.stdout)
    assert report["start_epoch"] == saved["epoch"] + 1
    final = run_cli("validate-resume", FINAL, "--epochs", "4", "--json")
    assert final.returncode == 1
    assert any(c["code"] == "resume.not-resumable" and c["status"] == "fail"
               for c in json.loads(final.stdout)["checks"])
