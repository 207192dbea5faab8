"""Files that hold one piece of training state on its own: an optimizer, a scheduler or a scaler
state_dict (Hugging Face Trainer's ``optimizer.pt``/``scheduler.pt``/``scaler.pt``, accelerate's
``optimizer.bin``), or an RNG snapshot."""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, section, top_keys

_SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
_RNG_KEYS = {"python", "numpy", "cpu", "cuda", "random_state", "numpy_random_seed", "torch_manual_seed"}


def recognise(tree: Any) -> Layout | None:
    keys = top_keys(tree)
    if not keys:
        return None
    if {"state", "param_groups"} <= keys:
        return Layout("optimizer-state", {"optimizer": section("optimizer", "", tree)},
                      reason="state + param_groups: an optimizer state_dict")
    if "last_epoch" in keys and ({"base_lrs", "_last_lr", "_step_count"} & keys):
        return Layout("scheduler-state", {"scheduler": section("scheduler", "", tree)},
                      reason="last_epoch + base_lrs: an LR scheduler state_dict")
    if keys <= _SCALER_KEYS and "scale" in keys:
        return Layout("scaler-state", {"scaler": section("scaler", "", tree)},
                      reason="scale + growth settings: a GradScaler state_dict")
    if len(keys & _RNG_KEYS) >= 2:
        return Layout("rng-state", reason="python/numpy/cpu/cuda generator states")
    return None
