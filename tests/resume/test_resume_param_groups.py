"""Every param group's LR curve (``group_curves``) equals what real torch gives that group."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch.optim import lr_scheduler as L  # noqa: N812 - short, as in torch docs

import ckpttool
from ckpttool.ops.resume import ResumeOptions, validate_resume
from tests.resume.helpers import cosine_lf, tiny_model, train

LRS = (0.1, 0.01)


def _optimizer(model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": model[0].parameters(), "lr": LRS[0]},
                            {"params": model[2].parameters(), "lr": LRS[1]}], lr=LRS[0], momentum=0.9)


def two_group_checkpoint(path: Path, make: Callable[[torch.optim.Optimizer], L.LRScheduler], done: int) -> None:
    """A generic training dict after ``done`` epochs of SGD with two groups (LR 0.1 and 0.01)."""
    model = tiny_model()
    opt = _optimizer(model)
    sched = make(opt)
    train(model, opt, sched, done, 2)
    torch.save({"epoch": done - 1, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
                "scheduler": sched.state_dict()}, path)


def _per_epoch(opt: torch.optim.Optimizer, sched: L.LRScheduler, start: int, end: int) -> list[list[float]]:
    """Each group's LR at the start of epochs ``start..end-1``, stepping the real scheduler once per epoch."""
    out = []
    for _ in range(start, end):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_restored_scheduler_curves_per_group_match_torch(tmp_path: Path) -> None:
    make = lambda o: L.CosineAnnealingLR(o, T_max=12, eta_min=0.001)  # noqa: E731
    path = tmp_path / "two_groups.pt"
    two_group_checkpoint(path, make, done=4)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=15))
    assert result.schedule["mode"] == "restored"
    doc = result.to_dict()
    assert [g["group"] for g in doc["group_curves"]] == [0, 1]

    saved = torch.load(path, weights_only=True)
    model = tiny_model()
    opt = _optimizer(model)
    sched = make(opt)
    opt.load_state_dict(saved["optimizer_state_dict"])
    sched.load_state_dict(saved["scheduler"])
    real = _per_epoch(opt, sched, 4, 15)
    for g in (0, 1):
        assert [lr for _, lr in doc["group_curves"][g]["new"]] == [lrs[g] for lrs in real]  # exact, like torch
    assert doc["group_curves"][0]["new"] == doc["full_curve"]["new"]

    fresh_opt = _optimizer(tiny_model())
    fresh = _per_epoch(fresh_opt, make(fresh_opt), 0, 15)
    for g in (0, 1):
        old = doc["group_curves"][g]["old"]
        assert [e for e, _ in old] == list(range(15))
        assert all(math.isclose(lr, fresh[e][g], rel_tol=1e-9) for e, lr in old)


def test_rebuilt_schedule_scales_each_group_by_its_base_lr(tmp_path: Path) -> None:
    path = tmp_path / "lambda.pt"
    two_group_checkpoint(path, lambda o: L.LambdaLR(o, cosine_lf(10, 0.1)), done=4)
    result = validate_resume(ckpttool.open(path),
                             ResumeOptions(epochs=15, schedule="cosine", lrf=0.1, old_epochs=10))
    assert result.schedule["mode"] == "rebuilt"
    doc = result.to_dict()
    for total, side in ((15, "new"), (10, "old")):
        opt = _optimizer(tiny_model())
        real = _per_epoch(opt, L.LambdaLR(opt, cosine_lf(total, 0.1)), 0, total)
        for g in (0, 1):
            points = doc["group_curves"][g][side]
            assert points and all(math.isclose(lr, real[int(e)][g], rel_tol=1e-12) for e, lr in points)


def test_one_group_has_no_group_curves(tmp_path: Path) -> None:
    result = validate_resume(ckpttool.open(Path(__file__).parents[2] / "fixtures" / "model1_train.pt"),
                             ResumeOptions(epochs=400))
    assert result.to_dict()["group_curves"] == []
