"""YOLOv5-style (pickled ``model``/``ema`` modules, ``updates``, ``opt``) and ultralytics-style
(``model: None``, weights in ``ema``, ``train_args``) training dicts."""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, as_state_dict, section, top_keys
from ckpttool.layouts.common import resume_sections
from ckpttool.modules import is_module


def recognise(tree: Any) -> Layout | None:
    keys = top_keys(tree)
    if "model" not in keys or not ({"ema", "updates", "best_fitness"} & keys):
        return None
    model, ema = tree.get("model"), tree.get("ema")
    if not (is_module(model) or is_module(ema)):
        return None
    name = "ultralytics" if "train_args" in keys else "yolov5"
    tells = ", ".join(sorted({"updates", "best_fitness", "train_args"} & keys))
    layout = Layout(name, resume_sections(tree), reason=f"pickled model/ema modules with {tells}")
    ema_sd = as_state_dict(ema) if ema is not None else None
    model_sd = as_state_dict(model) if model is not None else None
    if model_sd is not None:
        layout.sections["model"] = section("model", "model", model, model_sd)
    elif ema_sd is not None:
        layout.sections["model"] = section("model", "ema", ema, ema_sd)
    if ema_sd is not None:
        layout.sections["ema"] = section("ema", "ema", ema, ema_sd)
    return layout
