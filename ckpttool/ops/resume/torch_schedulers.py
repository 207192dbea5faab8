"""torch LR schedulers rebuilt from their saved ``state_dict``, in pure Python, step for step.

A scheduler's state_dict has no class name, so the class is told from its keys (``T_max`` means
CosineAnnealingLR, ``total_steps`` OneCycleLR...). Each simulator repeats torch's own ``get_lr``
(the chainable form, which multiplies the optimizer's current ``lr``), so the floats it predicts
are the floats torch would produce, rounding included. The "optimizer" is a list of param-group
dicts (``lr``, ``initial_lr``, ``max_lr``, ``min_lr``), shared by the children of a SequentialLR.
Formulas follow torch 2.x ``torch/optim/lr_scheduler.py``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from ckpttool.model import Stub, TensorRef

__all__ = ["identify", "build", "SimScheduler", "SchedulerOverflow", "RECONSTRUCTABLE", "number"]

Groups = list[dict[str, Any]]


class SchedulerOverflow(Exception):
    """What OneCycleLR raises when stepped past ``total_steps`` (same text as torch's ValueError)."""

    def __init__(self, step_num: int, total_steps: int) -> None:
        super().__init__(f"Tried to step {step_num} times. The specified number of total steps is {total_steps}")
        self.step_num, self.total_steps = step_num, total_steps


def number(value: Any) -> float | None:
    """A float from a saved number or a one-element tensor; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, TensorRef) and value.numel == 1:
        from ckpttool.tensors import scalar_value

        v = scalar_value(value)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    return None


def _counter(value: Any) -> dict[int, int]:
    """MultiStepLR keeps ``collections.Counter`` milestones; the reader gives a stub or a dict."""
    if isinstance(value, Stub):
        value = value.args[0] if value.args and isinstance(value.args[0], dict) else value.entries
    if isinstance(value, dict):
        return {int(k): int(v) for k, v in value.items() if isinstance(k, int) and isinstance(v, int)}
    if isinstance(value, list | tuple):
        out: dict[int, int] = {}
        for m in value:
            out[int(m)] = out.get(int(m), 0) + 1
        return out
    return {}


class SimScheduler:
    """Common state of every scheduler: ``last_epoch``, ``_step_count``, ``base_lrs``."""

    kind = "LRScheduler"
    #: the constructor arguments that define the curve, for reports
    params: tuple[str, ...] = ()

    def __init__(self, state: dict[str, Any], groups: Groups) -> None:
        self.state = state
        self.groups = groups
        self.last_epoch = int(state.get("last_epoch", 0))
        sc = state.get("_step_count")
        self._step_count = int(sc) if isinstance(sc, int) else self.last_epoch + 1
        self.base_lrs = [number(v) or 0.0 for v in state.get("base_lrs", [g["lr"] for g in groups])]

    # -- torch's LRScheduler.step / _update_lr ------------------------------------------------
    def step(self) -> None:
        self._step_count += 1
        self.last_epoch += 1
        self._apply(self.get_lr())

    def update_lr_at(self, epoch: int) -> None:
        """``_update_lr(epoch)``: jump to ``epoch`` with the closed form when there is one."""
        self.last_epoch = epoch
        closed = self.closed_form(epoch)
        self._apply(closed if closed is not None else self.get_lr())

    def _apply(self, lrs: list[float]) -> None:
        for g, lr in zip(self.groups, lrs, strict=True):
            g["lr"] = lr

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def closed_form(self, epoch: int) -> list[float] | None:
        """The LR at ``epoch`` from the base LRs (what ``_get_closed_form_lr`` gives), if defined."""
        return None

    def describe(self) -> str:
        args = ", ".join(f"{p}={self.state.get(p)!r}" for p in self.params if p in self.state)
        return f"{self.kind}({args})"

    def _lrs(self) -> list[float]:
        return [g["lr"] for g in self.groups]


class StepLR(SimScheduler):
    kind, params = "StepLR", ("step_size", "gamma")

    def get_lr(self) -> list[float]:
        step_size, gamma = int(self.state["step_size"]), float(self.state["gamma"])
        if self.last_epoch == 0 or self.last_epoch % step_size != 0:
            return self._lrs()
        return [g["lr"] * gamma for g in self.groups]

    def closed_form(self, epoch: int) -> list[float]:
        step_size, gamma = int(self.state["step_size"]), float(self.state["gamma"])
        return [b * gamma ** (epoch // step_size) for b in self.base_lrs]


class MultiStepLR(SimScheduler):
    kind, params = "MultiStepLR", ("gamma",)

    def __init__(self, state: dict[str, Any], groups: Groups) -> None:
        super().__init__(state, groups)
        self.milestones = _counter(state.get("milestones"))

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return self._lrs()
        gamma = float(self.state["gamma"])
        return [g["lr"] * gamma ** self.milestones[self.last_epoch] for g in self.groups]

    def closed_form(self, epoch: int) -> list[float]:
        ms = sorted(m for m, n in self.milestones.items() for _ in range(n))
        return [b * float(self.state["gamma"]) ** bisect_right(ms, epoch) for b in self.base_lrs]

    def describe(self) -> str:
        return f"MultiStepLR(milestones={sorted(self.milestones)}, gamma={self.state.get('gamma')!r})"


class ConstantLR(SimScheduler):
    kind, params = "ConstantLR", ("factor", "total_iters")

    def get_lr(self) -> list[float]:
        factor, total = float(self.state["factor"]), int(self.state["total_iters"])
        if self.last_epoch == 0:
            return [g["lr"] * factor for g in self.groups]
        if self.last_epoch != total:
            return self._lrs()
        return [g["lr"] * (1.0 / factor) for g in self.groups]

    def closed_form(self, epoch: int) -> list[float]:
        factor, total = float(self.state["factor"]), int(self.state["total_iters"])
        return [b * (factor + (epoch >= total) * (1 - factor)) for b in self.base_lrs]


class LinearLR(SimScheduler):
    kind, params = "LinearLR", ("start_factor", "end_factor", "total_iters")

    def get_lr(self) -> list[float]:
        s, e, total = float(self.state["start_factor"]), float(self.state["end_factor"]), int(self.state["total_iters"])
        if self.last_epoch == 0:
            return [g["lr"] * s for g in self.groups]
        if self.last_epoch > total:
            return self._lrs()
        k = 1.0 + (e - s) / (total * s + (self.last_epoch - 1) * (e - s))
        return [g["lr"] * k for g in self.groups]

    def closed_form(self, epoch: int) -> list[float]:
        s, e, total = float(self.state["start_factor"]), float(self.state["end_factor"]), int(self.state["total_iters"])
        return [b * (s + (e - s) * min(total, epoch) / total) for b in self.base_lrs]


class ExponentialLR(SimScheduler):
    kind, params = "ExponentialLR", ("gamma",)

    def get_lr(self) -> list[float]:
        return [g["lr"] * float(self.state["gamma"]) for g in self.groups]

    def closed_form(self, epoch: int) -> list[float]:
        return [b * float(self.state["gamma"]) ** epoch for b in self.base_lrs]


class PolynomialLR(SimScheduler):
    kind, params = "PolynomialLR", ("total_iters", "power")

    def get_lr(self) -> list[float]:
        total, power = int(self.state["total_iters"]), float(self.state["power"])
        if self.last_epoch > total:
            return self._lrs()
        decay = ((1.0 - self.last_epoch / total) / (1.0 - (self.last_epoch - 1) / total)) ** power
        return [g["lr"] * decay for g in self.groups]

    def closed_form(self, epoch: int) -> list[float]:
        total, power = int(self.state["total_iters"]), float(self.state["power"])
        return [b * (1.0 - min(total, epoch) / total) ** power for b in self.base_lrs]


class CosineAnnealingLR(SimScheduler):
    kind, params = "CosineAnnealingLR", ("T_max", "eta_min")

    def get_lr(self) -> list[float]:
        t_max, eta = float(self.state["T_max"]), float(self.state.get("eta_min", 0.0))
        if self._step_count == 1 and self.last_epoch > 0:
            return [eta + (b - eta) * (1 + math.cos(self.last_epoch * math.pi / t_max)) / 2 for b in self.base_lrs]
        if (self.last_epoch - 1 - t_max) % (2 * t_max) == 0:
            return [g["lr"] + (b - eta) * (1 - math.cos(math.pi / t_max)) / 2
                    for b, g in zip(self.base_lrs, self.groups, strict=True)]
        t = self.last_epoch
        ratio = (1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max))
        return [ratio * (g["lr"] - eta) + eta for g in self.groups]

    def closed_form(self, epoch: int) -> list[float]:
        t_max, eta = float(self.state["T_max"]), float(self.state.get("eta_min", 0.0))
        return [eta + (b - eta) * (1 + math.cos(math.pi * epoch / t_max)) / 2 for b in self.base_lrs]


class CosineAnnealingWarmRestarts(SimScheduler):
    kind, params = "CosineAnnealingWarmRestarts", ("T_0", "T_mult", "eta_min")

    def step(self) -> None:
        self._step_count += 1
        t_cur, t_i = int(self.state["T_cur"]) + 1, int(self.state["T_i"])
        if t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * int(self.state.get("T_mult", 1))
        self.state = {**self.state, "T_cur": t_cur, "T_i": t_i}
        self.last_epoch += 1
        self._apply(self.get_lr())

    def get_lr(self) -> list[float]:
        eta, t_cur, t_i = float(self.state.get("eta_min", 0.0)), float(self.state["T_cur"]), float(self.state["T_i"])
        return [eta + (b - eta) * (1 + math.cos(math.pi * t_cur / t_i)) / 2 for b in self.base_lrs]


class OneCycleLR(SimScheduler):
    kind, params = "OneCycleLR", ("total_steps",)

    def get_lr(self) -> list[float]:
        step_num, total = self.last_epoch, int(self.state["total_steps"])
        if step_num > total:
            raise SchedulerOverflow(step_num, total)
        phases = self.state["_schedule_phases"]
        linear = self.state.get("_anneal_func_type") == "linear"
        lrs = []
        for g in self.groups:
            start_step = 0.0
            for i, phase in enumerate(phases):
                end_step = float(phase["end_step"])
                if step_num <= end_step or i == len(phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    a, b = g[phase["start_lr"]], g[phase["end_lr"]]
                    lrs.append((b - a) * pct + a if linear else b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1))
                    break
                start_step = end_step
        return lrs

    def closed_form(self, epoch: int) -> list[float] | None:
        saved = self.last_epoch
        self.last_epoch = epoch
        try:
            return self.get_lr()
        except SchedulerOverflow:
            return None
        finally:
            self.last_epoch = saved

    def describe(self) -> str:
        phases = self.state.get("_schedule_phases") or []
        pct = (float(phases[0]["end_step"]) + 1) / int(self.state["total_steps"]) if phases else float("nan")
        return (f"OneCycleLR(total_steps={self.state.get('total_steps')}, pct_start≈{pct:.3g}, "
                f"anneal={self.state.get('_anneal_func_type', 'cos')}, three_phase={len(phases) == 3})")


class LambdaLR(SimScheduler):
    """LambdaLR with the lambda supplied by the caller: plain lambdas are not saved."""

    kind = "LambdaLR"

    def __init__(self, state: dict[str, Any], groups: Groups, fn: Callable[[int], float] | None = None) -> None:
        super().__init__(state, groups)
        self.fn = fn

    def get_lr(self) -> list[float]:
        if self.fn is None:
            raise LookupError("LambdaLR lambdas are not saved in the checkpoint")
        return [b * self.fn(self.last_epoch) for b in self.base_lrs]

    def closed_form(self, epoch: int) -> list[float] | None:
        return None if self.fn is None else [b * self.fn(epoch) for b in self.base_lrs]


class SequentialLR(SimScheduler):
    kind = "SequentialLR"

    def __init__(self, state: dict[str, Any], groups: Groups, children: list[SimScheduler]) -> None:
        super().__init__(state, groups)
        self.children = children
        self.milestones = [int(m) for m in state.get("_milestones", [])]

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self.milestones, self.last_epoch)
        child = self.children[idx]
        if idx > 0 and self.milestones[idx - 1] == self.last_epoch:
            child.update_lr_at(0)
        else:
            child.step()

    def closed_form(self, epoch: int) -> list[float] | None:
        idx = bisect_right(self.milestones, epoch)
        offset = self.milestones[idx - 1] if idx > 0 else 0
        return self.children[idx].closed_form(epoch - offset)

    def describe(self) -> str:
        return f"SequentialLR([{', '.join(c.describe() for c in self.children)}], milestones={self.milestones})"


_BY_KEYS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"_schedulers", "_milestones"}), "SequentialLR"),
    (frozenset({"_schedulers"}), "ChainedScheduler"),
    (frozenset({"total_steps", "_schedule_phases"}), "OneCycleLR"),
    (frozenset({"T_0", "T_i", "T_cur"}), "CosineAnnealingWarmRestarts"),
    (frozenset({"T_max"}), "CosineAnnealingLR"),
    (frozenset({"mode", "patience", "cooldown"}), "ReduceLROnPlateau"),
    (frozenset({"max_lrs", "total_size"}), "CyclicLR"),
    (frozenset({"lr_lambdas"}), "LambdaLR"),
    (frozenset({"start_factor", "end_factor", "total_iters"}), "LinearLR"),
    (frozenset({"factor", "total_iters"}), "ConstantLR"),
    (frozenset({"power", "total_iters"}), "PolynomialLR"),
    (frozenset({"milestones", "gamma"}), "MultiStepLR"),
    (frozenset({"step_size", "gamma"}), "StepLR"),
    (frozenset({"gamma", "last_epoch", "base_lrs"}), "ExponentialLR"),
)
_CLASSES: dict[str, type[SimScheduler]] = {c.kind: c for c in (
    StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR, CosineAnnealingLR,
    CosineAnnealingWarmRestarts, OneCycleLR)}
RECONSTRUCTABLE = (*_CLASSES, "LambdaLR", "SequentialLR")


def identify(state: Any) -> str | None:
    """torch's class name for a scheduler state_dict, told from its keys; None if not a scheduler."""
    if not isinstance(state, dict):
        return None
    keys = {k for k in state if isinstance(k, str)}
    if "last_epoch" not in keys:  # every torch LRScheduler has it; mmengine's schedulers have last_step
        return None
    for needed, name in _BY_KEYS:
        if needed <= keys:
            return name
    return None


def build(state: dict[str, Any], groups: Groups, lambda_fn: Callable[[int], float] | None = None) -> SimScheduler:
    """A simulator for ``state`` driving ``groups``; raises LookupError when it cannot be rebuilt."""
    kind = identify(state)
    if kind == "SequentialLR":
        children = [build(s, groups, lambda_fn) for s in state["_schedulers"] if isinstance(s, dict)]
        if len(children) != len(state["_schedulers"]) or not children:
            raise LookupError("SequentialLR with an unreadable child scheduler")
        return SequentialLR(state, groups, children)
    if kind == "LambdaLR":
        return LambdaLR(state, groups, lambda_fn)
    if kind not in _CLASSES:
        raise LookupError(f"{kind or 'this scheduler'} cannot be predicted from its saved state")
    return _CLASSES[kind](state, groups)
