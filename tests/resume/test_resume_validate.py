"""validate-resume end to end on fixtures and on checkpoints made here with real torch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import ckpttool
from ckpttool.errors import UsageError
from ckpttool.ops.resume import ResumeOptions, validate_resume
from tests.conftest import FIXTURES
from tests.resume.helpers import cosine_lf, generic_checkpoint, save_yolov5, tiny_model, yolov5_checkpoint


def _check(result, code):  # type: ignore[no-untyped-def]
    return next(c for c in result.checks if c.code == code)


def test_worked_case_one_cycle_100_to_300_epochs(tmp_path: Path) -> None:
    """The issue's worked case, from first principles.

    YOLOv5 one_cycle(1, lrf, steps) = ((1 - cos(x*pi/steps)) / 2) * (lrf - 1) + 1, lr0 0.01, lrf 0.01.
    After 50 epochs (epochs 0..49, saved 'epoch' 49) training restarts at epoch 50:
      old (steps=100): (1 - cos(pi/2))/2 = 0.5          -> 0.5 * -0.99 + 1 = 0.505     -> lr 0.00505
      new (steps=300): (1 - cos(pi/6))/2 = 0.0669873    -> 1 - 0.99 * 0.0669873 = 0.93368 -> lr 0.0093368
      ratio 1.8489: the "0.00505 -> 0.00934 (x1.85)" of the issue.
    """
    old = 0.01 * (((1 - math.cos(50 * math.pi / 100)) / 2) * (0.01 - 1) + 1)
    new = 0.01 * (((1 - math.cos(50 * math.pi / 300)) / 2) * (0.01 - 1) + 1)
    assert round(old, 5) == 0.00505 and round(new, 5) == 0.00934 and round(new / old, 2) == 1.85

    path = tmp_path / "last.pt"
    yolov5_checkpoint(path, epochs=100, done=50, lr0=0.01, lrf=0.01)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=300))
    assert (result.layout, result.start_epoch, result.epochs_done, result.new_total_epochs) == ("yolov5", 50, 50, 300)
    assert result.lr["resume_old"] == pytest.approx(old, rel=1e-12)
    assert result.lr["resume_new"] == pytest.approx(new, rel=1e-12)
    assert result.lr["jump"] == pytest.approx(new / old - 1, rel=1e-12)
    assert result.lr["last_trained"] == pytest.approx(0.01 * cosine_lf(100, 0.01)(49), rel=1e-12)
    assert _check(result, "resume.schedule-model").status == "pass"  # the saved lr is what one_cycle gives
    jump = _check(result, "resume.lr-jump")
    assert jump.status == "fail" and "×1.85" in jump.message
    assert "0.00505" in jump.message and "0.009337" in jump.message
    assert not result.ok
    assert any(f.startswith("keep the old total: --epochs 100") for f in result.fixes)
    assert any("last_epoch = 149" in f for f in result.fixes)  # same fraction: 50/100 -> 150/300
    smooth = next(f for f in result.fixes if f.startswith("continue smoothly"))
    assert "0.00505 at epoch 50" in smooth and "0.0001 at epoch 300" in smooth


def test_yolov5_resume_mechanics_match_real_torch(tmp_path: Path) -> None:
    """YOLOv5 builds LambdaLR(lf_new) before loading the optimizer, then sets last_epoch = start - 1:
    the first resumed epoch trains at the saved LR (resume_old), the next at lf_new(start) (resume_new)."""
    path = tmp_path / "last.pt"
    yolov5_checkpoint(path, epochs=100, done=50, lr0=0.01, lrf=0.01)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=300))
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=cosine_lf(300, 0.01))
    opt.load_state_dict(_optimizer_state(path))
    sched.last_epoch = 50 - 1
    first = opt.param_groups[0]["lr"]
    opt.step()
    sched.step()
    second = opt.param_groups[0]["lr"]
    assert first == result.lr["resume_old"]
    assert second == result.lr["resume_new"]


def _optimizer_state(path: Path) -> dict:
    """The optimizer state through ckpttool (the file pickles a class that no longer exists)."""
    sd = ckpttool.open(path).section("optimizer").value
    return {"state": {k: {n: (t.to_torch() if hasattr(t, "to_torch") else t) for n, t in v.items()}
                      for k, v in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


def test_reference_fixture_resumed_with_400_epochs() -> None:
    """model1_train.pt: epoch 4 of 300, cosine lf with lrf 0.2 (opt cos_lr), resumed with --epochs 400."""
    result = validate_resume(ckpttool.open(FIXTURES / "model1_train.pt"), ResumeOptions(epochs=400))
    lf = lambda x, e: ((1 + math.cos(x * math.pi / e)) / 2) * 0.8 + 0.2  # noqa: E731
    assert result.start_epoch == 5 and result.old_total_epochs == 300
    assert result.lr["resume_old"] == pytest.approx(0.01 * lf(5, 300), rel=1e-12)
    assert result.lr["resume_new"] == pytest.approx(0.01 * lf(5, 400), rel=1e-12)
    assert result.lr["jump"] == pytest.approx(lf(5, 400) / lf(5, 300) - 1, rel=1e-9)
    assert _check(result, "resume.lr-jump").status == "pass"
    assert _check(result, "resume.schedule-model").status == "pass"
    d = result.to_dict()
    assert d["schema_version"] == 1 and d["ok"] is True
    assert set(d["lr"]) >= {"last_trained", "resume_old", "resume_new", "jump"}
    assert [5, pytest.approx(0.01 * lf(5, 400))] in d["curve"]["new"]


def test_design_example_epoch_100_of_300_to_400_fails_at_10_35_percent(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    yolov5_checkpoint(path, epochs=300, done=100, lr0=0.01, lrf=0.2, steps=1)
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=400, schedule="cosine", lrf=0.2))
    assert result.lr["last_trained"] == pytest.approx(0.008036, abs=5e-7)
    assert result.lr["resume_old"] == pytest.approx(0.008, abs=1e-12)
    assert result.lr["resume_new"] == pytest.approx(0.008828, abs=5e-7)
    assert result.lr["jump"] == pytest.approx(0.1035, abs=1e-4)  # DESIGN §7 shows 0.1035
    assert not result.ok


def test_stripped_release_is_not_resumable() -> None:
    result = validate_resume(ckpttool.open(FIXTURES / "model1_release.pt"), ResumeOptions(epochs=400))
    check = _check(result, "resume.not-resumable")
    assert check.status == "fail" and "use as pretrained weights" in check.message
    assert not result.ok and result.to_dict()["start_epoch"] is None


def test_new_total_not_above_done_names_both_numbers() -> None:
    result = validate_resume(ckpttool.open(FIXTURES / "model1_train.pt"), ResumeOptions(epochs=3))
    check = _check(result, "resume.epochs")
    assert check.status == "fail" and "3 epochs" in check.message and "5 epochs" in check.message
    assert "fine-tune 3 more epochs" in check.message  # what YOLOv5 itself would do
    again = validate_resume(ckpttool.open(FIXTURES / "model1_train.pt"),
                            ResumeOptions(epochs=3, epochs_mode="additional"))
    assert again.new_total_epochs == 8 and _check(again, "resume.epochs").status == "pass"
    reading = _check(again, "resume.epochs-reading").message
    assert "additional → 8" in reading and "total → 3" in reading


def test_lightning_start_epoch_follows_the_fit_loop() -> None:
    result = validate_resume(ckpttool.open(FIXTURES / "lightning.ckpt"), ResumeOptions(epochs=5))
    # saved epoch 1 = trainer.current_epoch at the end-of-epoch save; epoch_progress.processed = 2
    assert result.start_epoch == 2
    assert "processed = 2" in _check(result, "resume.start-epoch").message
    assert result.schedule["mode"] == "restored"  # Lightning restores StepLR wholesale
    assert result.lr["resume_new"] == 0.0025 and [3, 0.00125] in result.curve["new"]


def test_optimizer_from_another_model_fails_the_shape_check(tmp_path: Path) -> None:
    other = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    other(torch.randn(2, 4)).sum().backward()
    opt.step()
    model = tiny_model()
    torch.save({"epoch": 3, "model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "x.pt")
    result = validate_resume(ckpttool.open(tmp_path / "x.pt"), ResumeOptions(epochs=10, schedule="constant"))
    check = _check(result, "resume.optimizer-shapes")
    assert check.status == "fail" and "0.weight" in check.message


def test_scaler_checks(tmp_path: Path) -> None:
    base = {"epoch": 1, "model": tiny_model().state_dict(),
            "optimizer": torch.optim.SGD(tiny_model().parameters(), lr=0.1).state_dict()}
    cases = {"missing": (None, "warn"), "disabled": ({}, "warn"),
             "inf": ({"scale": float("inf"), "_growth_tracker": 0}, "fail"),
             "collapsed": ({"scale": 2.0 ** -8, "_growth_tracker": 0}, "warn"),
             "healthy": ({"scale": 32768.0, "_growth_tracker": 10}, "pass")}
    for name, (scaler, status) in cases.items():
        tree = dict(base) if scaler is None else {**base, "scaler": scaler}
        torch.save(tree, tmp_path / f"{name}.pt")
        result = validate_resume(ckpttool.open(tmp_path / f"{name}.pt"),
                                 ResumeOptions(epochs=5, schedule="constant", amp=True))
        assert _check(result, "resume.scaler").status == status, name


def test_ema_updates_against_epochs_times_steps(tmp_path: Path) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    save_yolov5(tmp_path / "a.pt", model, opt, epoch=4, updates=15, opt_dict={"epochs": 10})
    ok = validate_resume(ckpttool.open(tmp_path / "a.pt"), ResumeOptions(epochs=20, steps_per_epoch=3))
    assert _check(ok, "resume.ema").status == "pass"
    bad = validate_resume(ckpttool.open(tmp_path / "a.pt"), ResumeOptions(epochs=20, steps_per_epoch=4))
    check = _check(bad, "resume.ema")
    assert check.status == "warn" and "5 epochs × 4 steps = 20" in check.message


def test_per_step_cosine_is_recognised_from_last_epoch(tmp_path: Path) -> None:
    make = lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=40)  # noqa: E731
    generic_checkpoint(tmp_path / "c.pt", make, done=3, steps=4, per_step=True)
    result = validate_resume(ckpttool.open(tmp_path / "c.pt"), ResumeOptions(epochs=10))
    assert result.schedule["steps_per_epoch"] == 4
    assert _check(result, "resume.scheduler-t-max").status == "pass"  # 10 epochs × 4 = 40 = T_max
    assert _check(result, "resume.scheduler-state").status == "pass"


def test_bad_options_raise_usage_errors() -> None:
    ck = ckpttool.open(FIXTURES / "model1_train.pt")
    with pytest.raises(UsageError):
        validate_resume(ck, ResumeOptions(epochs=0))
    with pytest.raises(UsageError):
        validate_resume(ck, ResumeOptions(epochs=10, lr_lambda="os.system('x')"))
    with pytest.raises(UsageError):
        validate_resume(ck, ResumeOptions(epochs=10, schedule="step", step_size=0))


def test_weights_only_file_is_not_resumable() -> None:
    result = validate_resume(ckpttool.open(FIXTURES / "model1_state_dict.safetensors"), ResumeOptions(epochs=10))
    assert _check(result, "resume.not-resumable").status == "fail"


HOSTILE = [
    {"optimizer": {"state": "x", "param_groups": [{"params": 3, "lr": "a"}]}},
    {"optimizer": {"state": {0: {"momentum_buffer": 1}}, "param_groups": [None, {"params": [0, [1]], "lr": None}]}},
    {"optimizer": {"param_groups": [{"params": [0], "lr": 0.1}]}, "scheduler": {"T_max": "ten", "last_epoch": 2}},
    {"optimizer": {"param_groups": [{"params": [0], "lr": 0.1, "initial_lr": 0.1}]},
     "scheduler": {"total_steps": 0, "_schedule_phases": [], "last_epoch": 3, "base_lrs": [0.1]}},
    {"optimizer": {"param_groups": [{"params": [0], "lr": 0.1, "initial_lr": 0.1}]},
     "scheduler": {"T_max": 0, "eta_min": 0, "last_epoch": 3, "base_lrs": [0.1], "_step_count": 4}},
    {"optimizer": {"param_groups": [{"params": [0], "lr": 0.1}]},
     "scheduler": {"_schedulers": [{"T_max": 5}], "_milestones": ["a"], "last_epoch": 1}},
    {"optimizer": {"param_groups": []}, "scheduler": {"step_size": 0, "gamma": 0.1, "last_epoch": 5, "base_lrs": []}},
    {"optimizer": {"param_groups": [{"params": [0], "lr": 0.1}]}, "scaler": {"scale": "big"}, "updates": -4,
     "ema": {"w": 1}},
    {"optimizer": None, "opt": {"epochs": "many", "hyp": "hyp.yaml", "cos_lr": True}},
    {"optimizer": {"param_groups": [{"params": [0], "lr": 0.1}]}, "opt": {"epochs": 0}, "args": [1, 2]},
]


@pytest.mark.parametrize("extra", HOSTILE)
def test_malformed_training_state_gives_checks_or_a_ckpt_error(tmp_path: Path, extra: dict) -> None:
    from ckpttool.errors import CkptError

    torch.save({"epoch": 3, "model": tiny_model().state_dict(), **extra}, tmp_path / "bad.pt")
    ck = ckpttool.open(tmp_path / "bad.pt")
    for opts in (ResumeOptions(epochs=10), ResumeOptions(epochs=10, schedule="cosine", old_epochs=5)):
        try:
            result = validate_resume(ck, opts)
        except CkptError:
            continue
        json.dumps(result.to_dict())  # always serialisable
