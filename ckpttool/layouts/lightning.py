"""Lightning ``.ckpt``: ``state_dict``, ``optimizer_states``, ``lr_schedulers``, ``loops``, ``callbacks``.

Weight-averaging callbacks swap weights at save time: the averaged weights sit in ``state_dict``
and the raw ones in ``current_model_state``; the SWA callback keeps ``average_model_state`` in
its callback state.
"""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, as_state_dict, section, top_keys


def _swa_state(tree: dict[Any, Any]) -> tuple[str, Any] | None:
    callbacks = tree.get("callbacks")
    if not isinstance(callbacks, dict):
        return None
    for name, state in callbacks.items():
        if isinstance(state, dict) and as_state_dict(state.get("average_model_state")) is not None:
            return f"callbacks.{name}.average_model_state", state["average_model_state"]
    return None


def recognise(tree: Any) -> Layout | None:
    keys = top_keys(tree)
    if not ({"pytorch-lightning_version", "lightning_version"} & keys) and not (
            {"state_dict", "optimizer_states", "loops"} <= keys):
        return None
    layout = Layout("lightning", reason="pytorch-lightning_version / optimizer_states / loops keys")
    sd = as_state_dict(tree.get("state_dict"))
    raw = as_state_dict(tree.get("current_model_state"))
    if raw is not None and sd is not None:
        layout.sections["model"] = section("model", "current_model_state", tree["current_model_state"], raw)
        layout.sections["ema"] = section("ema", "state_dict", tree["state_dict"], sd)
    elif sd is not None:
        layout.sections["model"] = section("model", "state_dict", tree["state_dict"], sd)
        swa = _swa_state(tree)
        if swa is not None:
            layout.sections["ema"] = section("ema", swa[0], swa[1], as_state_dict(swa[1]))
    for kind, key in (("optimizer", "optimizer_states"), ("scheduler", "lr_schedulers")):
        value = tree.get(key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            layout.sections[kind] = section(kind, f"{key}.0", value[0])
    return layout
