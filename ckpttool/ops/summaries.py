"""Readable summaries of the non-tensor sections: optimizer, scheduler, scaler.

Types are guessed from the state a class leaves behind (``momentum_buffer`` → SGD,
``exp_avg``/``exp_avg_sq`` → Adam), since a state_dict does not record its class.
"""

from __future__ import annotations

from typing import Any

from ckpttool.jsonable import to_jsonable
from ckpttool.model import Stub, TensorRef
from ckpttool.tensors import scalar_value

__all__ = ["optimizer_summary", "scheduler_summary", "scaler_summary", "guess_optimizer",
           "guess_scheduler"]

_OPTIMIZER_STATE = (
    ({"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}, "Adam/AdamW (amsgrad)"),
    ({"exp_avg", "exp_inf"}, "Adamax"),
    ({"exp_avg", "exp_avg_sq"}, "Adam/AdamW"),
    ({"square_avg", "acc_delta"}, "Adadelta"),
    ({"square_avg"}, "RMSprop"),
    ({"sum"}, "Adagrad"),
    ({"prev", "step_size"}, "Rprop"),
    ({"eta", "mu", "ax"}, "ASGD"),
    ({"momentum_buffer"}, "SGD"),
    ({"exp_avg"}, "Lion"),
)

_SCHEDULER_KEYS = (
    ({"_schedulers", "_milestones"}, "SequentialLR"),
    ({"_schedulers"}, "ChainedScheduler"),
    ({"total_steps", "max_lrs"}, "OneCycleLR"),
    ({"T_0", "T_mult"}, "CosineAnnealingWarmRestarts"),
    ({"T_max", "eta_min"}, "CosineAnnealingLR"),
    ({"max_lrs", "step_size_up"}, "CyclicLR"),
    ({"base_lrs", "max_lrs", "total_size"}, "CyclicLR"),
    ({"mode", "patience"}, "ReduceLROnPlateau"),
    ({"milestones", "gamma"}, "MultiStepLR"),
    ({"step_size", "gamma"}, "StepLR"),
    ({"start_factor", "end_factor"}, "LinearLR"),
    ({"power", "total_iters"}, "PolynomialLR"),
    ({"factor", "total_iters"}, "ConstantLR"),
    ({"lr_lambdas"}, "LambdaLR/MultiplicativeLR"),
    ({"gamma"}, "ExponentialLR"),
)


def _number(value: Any) -> Any:
    if isinstance(value, TensorRef):
        return scalar_value(value) if value.numel == 1 else f"tensor{list(value.shape)}"
    return to_jsonable(value, max_depth=2, max_items=16)


def guess_optimizer(optimizer: dict[Any, Any]) -> str:
    """The optimizer class the state most likely came from, or ``unknown``."""
    state = optimizer.get("state")
    keys: set[str] = set()
    if isinstance(state, dict):
        for entry in list(state.values())[:64]:
            if isinstance(entry, dict):
                keys |= {k for k in entry if isinstance(k, str)}
    groups = optimizer.get("param_groups")
    group = groups[0] if isinstance(groups, list) and groups and isinstance(groups[0], dict) else {}
    for needed, name in _OPTIMIZER_STATE:
        if needed <= keys:
            if name == "Adam/AdamW" and group.get("decoupled_weight_decay") is True:
                return "AdamW"
            return name
    if "nesterov" in group or "dampening" in group:
        return "SGD"
    if "betas" in group:
        return "Adam/AdamW"
    return "unknown"


def optimizer_summary(optimizer: Any) -> dict[str, Any]:
    """Type, param groups (size and hyper-parameters) and how many params carry state."""
    if not isinstance(optimizer, dict):
        return {"type": "unknown"}
    groups_out = []
    groups = optimizer.get("param_groups")
    for group in groups if isinstance(groups, list) else []:
        if not isinstance(group, dict):
            continue
        params = group.get("params")
        entry: dict[str, Any] = {"params": len(params) if isinstance(params, list) else None}
        for key, value in group.items():
            if key != "params" and isinstance(key, str):
                entry[key] = _number(value)
        groups_out.append(entry)
    state = optimizer.get("state")
    with_state = len(state) if isinstance(state, dict) else 0
    state_keys: set[str] = set()
    if isinstance(state, dict):
        for entry in list(state.values())[:64]:
            if isinstance(entry, dict):
                state_keys |= {k for k in entry if isinstance(k, str)}
    return {"type": guess_optimizer(optimizer), "param_groups": groups_out,
            "params": sum(g["params"] or 0 for g in groups_out), "params_with_state": with_state,
            "state_keys": sorted(state_keys)}


def guess_scheduler(scheduler: dict[Any, Any]) -> str:
    keys = {k for k in scheduler if isinstance(k, str)}
    for needed, name in _SCHEDULER_KEYS:
        if needed <= keys:
            return name
    return "unknown"


def scheduler_summary(scheduler: Any) -> dict[str, Any]:
    """Type, last_epoch, base_lrs, last lr and the scalar settings of a scheduler state."""
    if not isinstance(scheduler, dict):
        return {"type": "unknown"}
    out: dict[str, Any] = {"type": guess_scheduler(scheduler)}
    for key, value in scheduler.items():
        if isinstance(key, str) and key not in ("_schedulers", "lr_lambdas", "optimizer"):
            out[key] = _number(value)
    return out


def scaler_summary(scaler: Any) -> dict[str, Any]:
    """GradScaler state: scale, growth tracker and factors."""
    if isinstance(scaler, Stub) and scaler.qualname.endswith("LossScaler"):  # DeepSpeed's, read as a stand-in
        return {"type": scaler.qualname.rsplit(".", 1)[-1],
                **{k: _number(v) for k, v in scaler.attributes.items() if isinstance(k, str)}}
    if not isinstance(scaler, dict):
        return {}
    return {k: _number(v) for k, v in scaler.items() if isinstance(k, str)}
