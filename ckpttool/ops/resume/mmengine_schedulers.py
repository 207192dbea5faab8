"""mmengine ``param_schedulers`` rebuilt from their saved state, stepped like mmengine steps them.

mmengine's schedulers are not torch's: they count ``last_step`` and ``_global_step``, act only while
``begin <= _global_step < end``, and the runner steps *every* scheduler of the list after each
epoch (``by_epoch``) or iteration, all writing the same param-group ``lr``. On resume the runner
builds them from the new config and ``load_state_dict`` overwrites ``T_max``/``end``/... with the
saved values. Formulas follow mmengine 0.10 ``mmengine/optim/scheduler/param_scheduler.py``.
"""

from __future__ import annotations

import math
from typing import Any

from ckpttool.ops.resume.torch_schedulers import Groups, SimScheduler, _counter, number

__all__ = ["identify_mm", "build_mm", "MMChain"]

_BY_KEYS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"T_max", "eta_min_ratio"}), "CosineAnnealingLR"),
    (frozenset({"start_factor", "end_factor", "total_iters"}), "LinearLR"),
    (frozenset({"power", "total_iters", "eta_min"}), "PolyLR"),
    (frozenset({"factor", "total_iters"}), "ConstantLR"),
    (frozenset({"milestones", "gamma"}), "MultiStepLR"),
    (frozenset({"step_size", "gamma"}), "StepLR"),
    (frozenset({"gamma"}), "ExponentialLR"),
)


def identify_mm(state: Any) -> str | None:
    """mmengine's class name for a saved LR param scheduler; None for anything else."""
    if not isinstance(state, dict) or not {"last_step", "base_values", "begin", "end"} <= set(state):
        return None
    if state.get("param_name", "lr") != "lr":
        return None
    keys = {k for k in state if isinstance(k, str)}
    return next((name for needed, name in _BY_KEYS if needed <= keys), None)


class _MMScheduler:
    """One mmengine scheduler: ``step`` advances ``_global_step`` and, inside its window, ``last_step``."""

    def __init__(self, state: dict[str, Any], groups: Groups, kind: str) -> None:
        self.s, self.groups, self.kind = state, groups, kind
        self.last_step = int(state["last_step"])
        self.global_step = int(state.get("_global_step", self.last_step))
        self.begin, self.end = int(state["begin"]), number(state["end"]) or math.inf
        self.base = [number(v) or 0.0 for v in state["base_values"]]
        self.milestones = _counter(state.get("milestones")) if kind == "MultiStepLR" else {}

    def step(self) -> None:
        self.global_step += 1
        if self.begin <= self.global_step < self.end:
            self.last_step += 1
            for g, v in zip(self.groups, self._value(), strict=True):
                g["lr"] = v

    def _f(self, key: str) -> float:
        return float(self.s[key])

    def _value(self) -> list[float]:
        lrs, t = [g["lr"] for g in self.groups], self.last_step
        if self.kind == "StepLR":
            return lrs if t == 0 or t % int(self.s["step_size"]) else [v * self._f("gamma") for v in lrs]
        if self.kind == "MultiStepLR":
            return [v * self._f("gamma") ** self.milestones[t] for v in lrs] if t in self.milestones else lrs
        if self.kind == "ConstantLR":
            total = int(self.s["total_iters"])
            if t == 0:
                return [v * self._f("factor") for v in lrs]
            return [v * (1.0 / self._f("factor")) for v in lrs] if t == total else lrs
        if self.kind == "ExponentialLR":
            return lrs if t == 0 else [v * self._f("gamma") for v in lrs]
        if self.kind == "LinearLR":
            s, e, n = self._f("start_factor"), self._f("end_factor"), int(self.s["total_iters"])
            return [v * s for v in lrs] if t == 0 else [v * (1. + (e - s) / (n * s + (t - 1) * (e - s))) for v in lrs]
        if self.kind == "PolyLR":
            eta, n, p = self._f("eta_min"), int(self.s["total_iters"]), self._f("power")
            return lrs if t == 0 else [(v - eta) * (1 - 1 / (n - t + 1)) ** p + eta for v in lrs]
        return self._cosine(lrs, t)

    def _cosine(self, lrs: list[float], t: int) -> list[float]:
        t_max, ratio = self._f("T_max"), self.s.get("eta_min_ratio")
        etas = [b * float(ratio) if ratio is not None else self._f("eta_min") for b in self.base]
        if t == 0:
            return lrs
        if (t - 1 - t_max) % (2 * t_max) == 0:
            return [v + (b - eta) * (1 - math.cos(math.pi / t_max)) / 2 for v, b, eta in zip(lrs, self.base, etas)]
        return [(1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max)) * (v - eta) + eta
                for v, eta in zip(lrs, etas)]

    def describe(self) -> str:
        skip = {"last_step", "base_values", "_global_step", "_last_value", "verbose", "param_name", "by_epoch",
                "milestones"}
        args = ", ".join(f"{k}={v!r}" for k, v in self.s.items() if k not in skip and not isinstance(v, dict | list))
        ms = f", milestones={sorted(self.milestones)}" if self.milestones else ""
        return f"mmengine {self.kind}({args}{ms})"


class MMChain(SimScheduler):
    """Every scheduler of the list, stepped in order once per unit, as mmengine's ParamSchedulerHook does."""

    kind = "mmengine"

    def __init__(self, states: list[dict[str, Any]], groups: Groups) -> None:
        self.groups = groups
        self.children = [_MMScheduler(s, groups, identify_mm(s) or "") for s in states]
        self.state = states[0]
        self.last_epoch = self.children[0].global_step
        self._step_count = self.last_epoch + 1
        self.base_lrs = self.children[0].base

    def step(self) -> None:
        self.last_epoch += 1
        for child in self.children:
            child.step()

    def describe(self) -> str:
        return " + ".join(c.describe() for c in self.children)


def build_mm(states: list[Any], groups: Groups) -> MMChain:
    """A chain over mmengine scheduler states; LookupError when one cannot be predicted."""
    if not states or any(identify_mm(s) is None for s in states):
        raise LookupError("an mmengine param scheduler of a kind that is not modelled")
    return MMChain([dict(s) for s in states], groups)
