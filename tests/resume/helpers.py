"""Real torch training loops that write checkpoints the way frameworks do, for validate-resume tests."""

from __future__ import annotations

import copy
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def cosine_lf(epochs: int, lrf: float) -> Callable[[int], float]:
    """YOLOv5 ``one_cycle(1, lrf, epochs)`` / the issue's cosine lambda, written out independently."""
    return lambda x: ((1 + math.cos(x * math.pi / epochs)) / 2) * (1 - lrf) + lrf


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def train(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, epochs: int, steps: int, *,
          per_step: bool = False) -> list[float]:
    """Run ``epochs`` × ``steps`` SGD steps; return the LR used in each epoch's first step."""
    g = torch.Generator().manual_seed(1)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            x = torch.randn(3, 4, generator=g)
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return lrs


def yolov5_checkpoint(path: Path, *, epochs: int, done: int, lr0: float, lrf: float, steps: int = 2,
                      cos_lr: bool = True) -> dict[str, Any]:
    """A YOLOv5 ``train.py``-shaped checkpoint after ``done`` epochs of a LambdaLR(lf) run of ``epochs``."""
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=0.937, nesterov=True)
    lf = cosine_lf(epochs, lrf) if cos_lr else (lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lf)
    train(model, opt, sched, done, steps)
    save_yolov5(path, model, opt, epoch=done - 1, updates=done * steps,
                opt_dict={"epochs": epochs, "hyp": {"lr0": lr0, "lrf": lrf}, "cos_lr": cos_lr})
    return {"model": model, "optimizer": opt, "scheduler": sched}


def save_yolov5(path: Path, model: nn.Module, opt: torch.optim.Optimizer | None, *, epoch: int, updates: int,
                opt_dict: dict[str, Any]) -> None:
    """torch.save a YOLOv5 checkpoint dict whose model/ema are pickled modules of a class that is not importable
    afterwards, as with a checkpoint from a foreign repository."""
    mod = types.ModuleType("ckpttool_resume_test_models")
    cls = type("Model", (nn.Sequential,), {"__module__": mod.__name__})
    mod.Model = cls  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    try:
        pickled = copy.deepcopy(model)
        pickled.__class__ = cls
        torch.save({"epoch": epoch, "best_fitness": 0.5, "model": copy.deepcopy(pickled).half(),
                    "ema": copy.deepcopy(pickled).half(), "updates": updates,
                    "optimizer": opt.state_dict() if opt is not None else None, "opt": opt_dict}, path)
    finally:
        del sys.modules[mod.__name__]


def generic_checkpoint(path: Path, make_sched: Callable[[torch.optim.Optimizer], Any], *, done: int, steps: int,
                       per_step: bool = False, lr: float = 0.1, extra: dict[str, Any] | None = None) -> list[float]:
    """A hand-written training loop's checkpoint: model, optimizer, scheduler state, epoch."""
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = make_sched(opt)
    lrs = train(model, opt, sched, done, steps, per_step=per_step)
    torch.save({"epoch": done - 1, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
                "scheduler": sched.state_dict(), **(extra or {})}, path)
    return lrs


def resumed_torch(path: Path, make_sched: Callable[[torch.optim.Optimizer], Any], *, epochs: int, start: int,
                  steps: int, per_step: bool = False) -> tuple[list[float], Exception | None, int]:
    """Resume for real: build model/optimizer/scheduler with the new settings, load the saved states, train.

    Returns the LR of each resumed epoch's first step, the error torch raised (if any) and the global
    step (1-based) after which it was raised.
    """
    ck = torch.load(path, weights_only=True)
    model = tiny_model()
    model.load_state_dict(ck["model_state_dict"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = make_sched(opt)
    opt.load_state_dict(ck["optimizer_state_dict"])
    sched.load_state_dict(ck["scheduler"])
    lrs: list[float] = []
    g = torch.Generator().manual_seed(2)
    step = start * steps
    for _ in range(start, epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            loss = model(torch.randn(3, 4, generator=g)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if per_step:
                try:
                    sched.step()
                except ValueError as exc:
                    return lrs, exc, step
        if not per_step:
            try:
                sched.step()
            except ValueError as exc:
                return lrs, exc, step
    return lrs, None, step
