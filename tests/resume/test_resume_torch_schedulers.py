"""Predicted LRs equal what real torch schedulers give when a run is resumed and stepped on.

Each test trains with a real optimizer + scheduler, saves a checkpoint, resumes it for real (new
objects, ``load_state_dict``) and compares every LR with what validate-resume predicted from the
file alone, float for float.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as L  # noqa: N812 - short, as in torch docs

import ckpttool
from ckpttool.ops.resume import ResumeOptions, validate_resume
from ckpttool.ops.resume.torch_schedulers import build, identify
from tests.resume.helpers import cosine_lf, generic_checkpoint, resumed_torch

SCHEDULERS = {
    "CosineAnnealingLR": lambda o: L.CosineAnnealingLR(o, T_max=12, eta_min=0.001),
    "StepLR": lambda o: L.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda o: L.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3),
    "LinearLR": lambda o: L.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=6),
    "ConstantLR": lambda o: L.ConstantLR(o, factor=0.5, total_iters=4),
    "ExponentialLR": lambda o: L.ExponentialLR(o, gamma=0.9),
    "PolynomialLR": lambda o: L.PolynomialLR(o, total_iters=8, power=2.0),
    "SequentialLR": lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, 3), L.CosineAnnealingLR(o, T_max=10)], [3]),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("done", [1, 4])
def test_restored_epoch_scheduler_matches_torch(tmp_path: Path, name: str, done: int) -> None:
    path = tmp_path / "ckpt.pt"
    make = SCHEDULERS[name]
    generic_checkpoint(path, make, done=done, steps=2)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=15))
    assert result.schedule["mode"] == "restored"
    assert result.start_epoch == done
    predicted = [lr for _, lr in result.full_curve["new"]]
    real, error, _ = resumed_torch(path, make, epochs=15, start=done, steps=2)
    assert error is None
    assert predicted == real  # exact: same float operations as torch's chainable get_lr
    assert result.lr["resume_new"] == real[0]


@pytest.mark.parametrize("name", [*sorted(SCHEDULERS), "OneCycleLR", "CosineAnnealingWarmRestarts"])
def test_simulator_steps_like_torch_for_many_steps(name: str) -> None:
    make = {**SCHEDULERS, "OneCycleLR": lambda o: L.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=60),
            "CosineAnnealingWarmRestarts": lambda o: L.CosineAnnealingWarmRestarts(o, 3, 2, 0.01)}[name]
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(params)], lr=0.1, momentum=0.9)
    sched = make(opt)
    for _ in range(7):
        opt.step()
        sched.step()
    state = copy.deepcopy(sched.state_dict())
    assert identify(state) == name
    groups = [{k: g[k] for k in ("lr", "initial_lr", "max_lr", "min_lr") if k in g} for g in opt.param_groups]
    sim = build(state, groups)
    for _ in range(45):
        opt.step()
        sched.step()
        sim.step()
        assert [g["lr"] for g in groups] == [g["lr"] for g in opt.param_groups]


def test_onecycle_overflow_predicted_at_the_step_torch_raises(tmp_path: Path) -> None:
    steps, old_epochs, done, new_epochs = 5, 10, 6, 14
    make = lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=old_epochs * steps)  # noqa: E731
    path = tmp_path / "onecycle.pt"
    generic_checkpoint(path, make, done=done, steps=steps, per_step=True)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=new_epochs))
    real_lrs, error, at_step = resumed_torch(path, make, epochs=new_epochs, start=done, steps=steps, per_step=True)
    assert isinstance(error, ValueError)
    check = next(c for c in result.checks if c.code == "resume.scheduler-overflow")
    assert check.status == "fail"
    assert str(error) in check.message  # torch's exact text
    assert str(error) == f"Tried to step {old_epochs * steps + 1} times. The specified number of total steps is " \
                         f"{old_epochs * steps}"
    assert result.overflow is not None
    assert result.overflow["global_step"] == at_step
    assert result.overflow["epoch"] == (at_step - 1) // steps
    assert [lr for _, lr in result.full_curve["new"]] == real_lrs
    assert not result.ok


def test_onecycle_fix_patch_runs_to_the_end_without_a_jump(tmp_path: Path) -> None:
    from ckpttool.ops.resume.fix import patch_scheduler

    steps, done, new_epochs = 5, 6, 14
    make = lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=10 * steps)  # noqa: E731
    path = tmp_path / "onecycle.pt"
    generic_checkpoint(path, make, done=done, steps=steps, per_step=True)
    ck = torch.load(path, weights_only=True)
    patched, what = patch_scheduler(ckpttool.open(path).section("scheduler").value, new_epochs * steps)
    assert "total_steps 50" in what
    ck["scheduler"] = patched
    torch.save(ck, path)
    lrs, error, _ = resumed_torch(path, make, epochs=new_epochs, start=done, steps=steps, per_step=True)
    assert error is None
    saved = ck["optimizer_state_dict"]["param_groups"][0]["lr"]
    assert lrs[0] == saved
    assert abs(lrs[1] / lrs[0] - 1) < 0.2  # smooth: one epoch of annealing, no jump back up
    assert lrs[-1] < lrs[0]


def test_cosine_t_max_past_warns_and_fix_keeps_lr_continuous(tmp_path: Path) -> None:
    from ckpttool.ops.resume.fix import patch_scheduler

    make = lambda o: L.CosineAnnealingLR(o, T_max=10, eta_min=0.0)  # noqa: E731
    path = tmp_path / "cos.pt"
    generic_checkpoint(path, make, done=4, steps=2)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=25))
    check = next(c for c in result.checks if c.code == "resume.scheduler-t-max")
    assert check.status == "warn" and "T_max 10" in check.message
    new = dict(result.full_curve["new"])
    assert new[20] > new[10]  # torch's cosine rises again past T_max
    ck = torch.load(path, weights_only=True)
    ck["scheduler"], _ = patch_scheduler(ckpttool.open(path).section("scheduler").value, 25)
    torch.save(ck, path)
    lrs, _, _ = resumed_torch(path, make, epochs=25, start=4, steps=2)
    assert lrs[0] == ck["optimizer_state_dict"]["param_groups"][0]["lr"]
    assert all(a > b for a, b in itertools.pairwise(lrs))  # monotone down to the new end
    # the chainable form telescopes: lr_n = lr_L * (1 + cos(pi n / T')) / (1 + cos(pi L / T')) -> 0 at n = T'
    expected = lrs[0] * (1 + math.cos(math.pi * 24 / 25)) / (1 + math.cos(math.pi * 4 / 25))
    assert lrs[-1] == pytest.approx(expected, rel=1e-9)


def test_lambda_cosine_rebuilt_matches_real_resumed_lambdalr(tmp_path: Path) -> None:
    """LambdaLR saves no lambda: the resumed run evaluates the lambda with the new epochs."""
    from tests.resume.helpers import yolov5_checkpoint

    path = tmp_path / "last.pt"
    objs = yolov5_checkpoint(path, epochs=30, done=10, lr0=0.01, lrf=0.2)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=50))
    assert result.layout == "yolov5" and result.start_epoch == 10
    # the real resume: a new LambdaLR with the new lambda, continuing at the saved position
    opt: Any = objs["optimizer"]
    lf_new = cosine_lf(50, 0.2)
    sched = L.LambdaLR(opt, lr_lambda=lf_new, last_epoch=result.start_epoch - 1)
    real = []
    for _ in range(10, 50):
        real.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [lr for _, lr in result.full_curve["new"]] == real
    # what the old run would have used at epoch 10
    assert result.lr["resume_old"] == pytest.approx(0.01 * cosine_lf(30, 0.2)(10), rel=1e-15)
    assert result.lr["resume_old"] == objs["optimizer"].state_dict()["param_groups"][0]["initial_lr"] * \
        cosine_lf(30, 0.2)(10)


def test_rebuild_mode_matches_a_new_scheduler_built_for_the_new_total(tmp_path: Path) -> None:
    """--scheduler rebuild: CosineAnnealingLR(T_max=new total, last_epoch=...) after loading the optimizer.

    torch 2.x keeps the loaded LR when a scheduler is built with last_epoch >= 0 and continues in chainable
    form, so there is no jump: the LR decays from the saved value to eta_min at the new end.
    """
    make = lambda o: L.CosineAnnealingLR(o, T_max=10, eta_min=0.001)  # noqa: E731
    path = tmp_path / "cos.pt"
    generic_checkpoint(path, make, done=3, steps=2)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=20, scheduler="rebuild"))
    assert result.old_total_epochs == 10 and "T_max=20" in result.schedule["new"]
    ck = torch.load(path, weights_only=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(ck["optimizer_state_dict"])
    sched = L.CosineAnnealingLR(opt, T_max=20, eta_min=0.001, last_epoch=3 - 1)  # the last epoch seen
    real = []
    for _ in range(3, 20):
        real.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [lr for _, lr in result.full_curve["new"]] == real
    assert result.lr["jump"] == 0.0
    assert next(c for c in result.checks if c.code == "resume.scheduler-t-max").status == "pass"
