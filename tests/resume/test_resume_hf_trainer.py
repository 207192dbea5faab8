"""Hugging Face Trainer ``checkpoint-N/`` folders (a replica of ``Trainer._save_checkpoint``'s files).

transformers rebuilds its LambdaLR from the *new* ``max_steps`` and ``scheduler.pt`` restores only
``last_epoch``/``base_lrs``: stretching the run re-scales the linear decay at the resume point.
"""

from __future__ import annotations

import enum
import functools
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpttool.cli import main
from ckpttool.ops.resume import ResumeOptions, validate_resume
from ckpttool.ops.resume.hf_trainer import open_trainer_folder
from tests.resume.helpers import tiny_model


def _linear_with_warmup(current_step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    # transformers.optimization._get_linear_schedule_with_warmup_lr_lambda
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


def _lambda(warmup: int, total: int) -> functools.partial:
    return functools.partial(_linear_with_warmup, num_warmup_steps=warmup, num_training_steps=total)


def _training_args(path: Path, lr: float, warmup: int) -> None:
    """torch.save a TrainingArguments-like object whose classes do not exist when read back."""
    names = ("transformers", "transformers.training_args", "transformers.trainer_utils")
    mods = {n: types.ModuleType(n) for n in names}
    sched_type = enum.Enum("SchedulerType", {"LINEAR": "linear", "COSINE": "cosine"}, type=str)
    sched_type.__module__ = "transformers.trainer_utils"
    mods["transformers.trainer_utils"].SchedulerType = sched_type  # type: ignore[attr-defined]
    args_cls = type("TrainingArguments", (), {"__module__": "transformers.training_args"})
    mods["transformers.training_args"].TrainingArguments = args_cls  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        args = args_cls()
        args.__dict__.update(learning_rate=lr, lr_scheduler_type=sched_type.LINEAR, warmup_steps=warmup,
                             warmup_ratio=0.0, num_train_epochs=3.0)
        torch.save(args, path)
    finally:
        for n in mods:
            del sys.modules[n]


def make_folder(root: Path, *, epochs: int = 3, steps: int = 10, done_steps: int = 20, warmup: int = 5,
                lr: float = 5e-5) -> Path:
    folder = root / f"checkpoint-{done_steps}"
    folder.mkdir()
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lambda(warmup, epochs * steps))
    g = torch.Generator().manual_seed(0)
    for _ in range(done_steps):
        model(torch.randn(2, 4, generator=g)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    torch.save(opt.state_dict(), folder / "optimizer.pt")
    torch.save(sched.state_dict(), folder / "scheduler.pt")
    _training_args(folder / "training_args.bin", lr, warmup)
    (folder / "trainer_state.json").write_text(json.dumps({
        "global_step": done_steps, "epoch": done_steps / steps, "max_steps": epochs * steps,
        "num_train_epochs": epochs, "log_history": [{"step": done_steps, "learning_rate": opt.param_groups[0]["lr"]}],
        "train_batch_size": 2}))
    return folder


def test_trainer_folder_resumed_with_more_epochs_matches_real_lambdalr(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    ckpt = open_trainer_folder(folder)
    assert ckpt.layout == "hf-trainer" and set(ckpt.sections) >= {"model", "optimizer", "scheduler"}
    result = validate_resume(ckpt, ResumeOptions(epochs=6))
    assert (result.start_epoch, result.epochs_done, result.old_total_epochs) == (2, 2, 3)
    assert "global_step 20 // 10" in result.checks[0].message
    old = 5e-5 * (30 - 20) / (30 - 5)
    new = 5e-5 * (60 - 20) / (60 - 5)
    assert result.lr["resume_old"] == pytest.approx(old, rel=1e-12)
    assert result.lr["resume_new"] == pytest.approx(new, rel=1e-12)
    assert next(c for c in result.checks if c.code == "resume.schedule-model").status == "pass"
    assert next(c for c in result.checks if c.code == "resume.lr-jump").status == "fail"  # ×2.18
    # the real resume: the Trainer builds LambdaLR for the new max_steps, then loads both states
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lambda(5, 60))
    opt.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    sched.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    real = {}
    for step in range(20, 60):
        if step % 10 == 0:
            real[step // 10] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    predicted = dict(result.full_curve["new"])
    assert all(predicted[e] == real[e] for e in (3, 4, 5))


def test_trainer_folder_cli(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    assert main(["validate-resume", str(folder), "--epochs", "3", "--json"]) == 0
    assert main(["validate-resume", str(folder), "--epochs", "6", "--no-plot"]) == 1
    (folder / "trainer_state.json").write_text("{not json")
    assert main(["validate-resume", str(folder), "--epochs", "6"]) == 2
