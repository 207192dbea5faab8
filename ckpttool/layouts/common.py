"""Sections most training dicts share (optimizer, scheduler, scaler) under their usual names."""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import as_state_dict, section
from ckpttool.model import Section

__all__ = ["resume_sections", "first_state_dict", "MODEL_KEYS", "EMA_KEYS"]

MODEL_KEYS = ("model", "state_dict", "model_state_dict", "model_state", "net", "network", "module",
              "weights")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema", "ema_state_dict", "ema_model", "model_ema_state_dict",
            "ema_state")
_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_state", "optim", "opt_state")
_SCHEDULER_KEYS = ("scheduler", "lr_scheduler", "scheduler_state_dict", "lr_scheduler_state_dict",
                   "sched")
_SCALER_KEYS = ("scaler", "grad_scaler", "amp_scaler", "scaler_state_dict", "amp")


def first_state_dict(tree: dict[Any, Any], keys: tuple[str, ...], kind: str) -> Section | None:
    """The first of ``keys`` in ``tree`` that holds a state_dict or a pickled module."""
    for key in keys:
        value = tree.get(key)
        sd = as_state_dict(value) if value is not None else None
        if sd is not None:
            return section(kind, key, value, sd)
    return None


def resume_sections(tree: dict[Any, Any]) -> dict[str, Section]:
    """optimizer / scheduler / scaler sections, each from the first usual key that is a dict."""
    out: dict[str, Section] = {}
    for kind, keys in (("optimizer", _OPTIMIZER_KEYS), ("scheduler", _SCHEDULER_KEYS),
                       ("scaler", _SCALER_KEYS)):
        for key in keys:
            value = tree.get(key)
            if isinstance(value, dict) and value:
                out[kind] = section(kind, key, value)
                break
    return out
