"""A generic training dict: a model state_dict under a usual key, optimizer/scheduler/scaler, EMA.

The EMA may be a plain state_dict or an EMA package's state (ema-pytorch, torch-ema,
``AveragedModel``); ``ema_packages.match_ema`` maps each onto the model's keys.
"""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, section
from ckpttool.layouts.common import EMA_KEYS, MODEL_KEYS, first_state_dict, resume_sections
from ckpttool.layouts.ema_packages import match_ema

_PACKAGE_SOURCE = {"ema-pytorch": ".ema_model.*", "torch-ema": ".shadow_params", "averaged-model": ".module.*"}


def recognise(tree: Any) -> Layout | None:
    if not isinstance(tree, dict):
        return None
    model = first_state_dict(tree, MODEL_KEYS, "model")
    if model is None:
        return None
    layout = Layout("training-dict", resume_sections(tree), reason=f"model weights under {model.source!r}")
    layout.sections["model"] = model
    for key in EMA_KEYS:
        value = tree.get(key)
        found = match_ema(value, model.state_dict) if value is not None else None
        if found is not None and found.state_dict.tensors and not found.problems:
            source = key + _PACKAGE_SOURCE.get(found.package, "")
            layout.sections["ema"] = section("ema", source, value, found.state_dict)
            break
    return layout
