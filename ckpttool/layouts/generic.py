"""A generic training dict: a model state_dict under a usual key, optimizer/scheduler/scaler, EMA."""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout
from ckpttool.layouts.common import EMA_KEYS, MODEL_KEYS, first_state_dict, resume_sections


def recognise(tree: Any) -> Layout | None:
    if not isinstance(tree, dict):
        return None
    model = first_state_dict(tree, MODEL_KEYS, "model")
    if model is None:
        return None
    layout = Layout("training-dict", resume_sections(tree), reason=f"model weights under {model.source!r}")
    layout.sections["model"] = model
    ema = first_state_dict(tree, EMA_KEYS, "ema")
    if ema is not None:
        layout.sections["ema"] = ema
    return layout
