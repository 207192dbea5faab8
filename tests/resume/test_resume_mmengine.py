"""mmengine param_schedulers: predicted LRs equal what real mmengine schedulers give after a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ckpttool
from ckpttool.ops.resume import ResumeOptions, validate_resume
from tests.conftest import FIXTURES
from tests.resume.helpers import tiny_model

sched_mod = pytest.importorskip("mmengine.optim.scheduler")


def _schedulers(opt: torch.optim.Optimizer, end: int) -> list:  # type: ignore[type-arg]
    return [sched_mod.LinearLR(opt, start_factor=0.1, begin=0, end=3),
            sched_mod.CosineAnnealingLR(opt, T_max=end - 3, eta_min=1e-4, begin=3, end=end),
            sched_mod.MultiStepLR(opt, milestones=[5, 8], gamma=0.5, begin=0, end=end)]


def _step(opt: torch.optim.Optimizer, schedulers: list) -> None:  # type: ignore[type-arg]
    opt.step()
    for s in schedulers:
        s.step()


@pytest.mark.filterwarnings("ignore")
def test_restored_mmengine_schedulers_match_mmengine(tmp_path: Path) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheds = _schedulers(opt, end=10)
    for _ in range(6):
        _step(opt, scheds)
    torch.save({"meta": {"epoch": 6, "iter": 6}, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                "param_schedulers": [s.state_dict() for s in scheds], "message_hub": {}}, tmp_path / "epoch_6.pth")
    result = validate_resume(ckpttool.open(tmp_path / "epoch_6.pth"), ResumeOptions(epochs=14))
    assert result.layout == "mmengine" and result.schedule["mode"] == "restored"
    # the real resume: schedulers from the new config (end=14), then the saved states loaded over them
    model2 = tiny_model()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    new = _schedulers(opt2, end=14)
    opt2.load_state_dict(torch.load(tmp_path / "epoch_6.pth", weights_only=False)["optimizer"])
    for s, state in zip(new, torch.load(tmp_path / "epoch_6.pth", weights_only=False)["param_schedulers"]):
        s.load_state_dict(state)
    real = []
    for _ in range(6, 14):
        real.append(opt2.param_groups[0]["lr"])
        _step(opt2, new)
    assert [lr for _, lr in result.full_curve["new"]] == real
    check = next(c for c in result.checks if c.code == "resume.scheduler-t-max")
    assert check.status == "warn" and "stops at step 10" in check.message  # the saved end=10 wins


def test_mmengine_fixture() -> None:
    result = validate_resume(ckpttool.open(FIXTURES / "mmengine_epoch_2.pth"), ResumeOptions(epochs=4))
    assert result.start_epoch == 2 and result.lr["resume_new"] == pytest.approx(0.001)
    ema = next(c for c in result.checks if c.code == "resume.ema")
    assert "ema_state_dict.steps" in ema.message
