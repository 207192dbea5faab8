"""mmengine ``Runner`` checkpoints: ``meta``, ``state_dict``, ``optimizer``, ``message_hub``.

With ``EMAHook`` the saved ``state_dict`` holds the EMA weights and ``ema_state_dict`` the raw
model, ``module.``-prefixed with a ``steps`` counter (the hook swaps them before saving).
"""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, as_state_dict, section, strip_prefix, top_keys
from ckpttool.layouts.common import resume_sections


def recognise(tree: Any) -> Layout | None:
    keys = top_keys(tree)
    if not ({"meta", "state_dict"} <= keys and ({"message_hub", "param_schedulers"} & keys)):
        return None
    sd = as_state_dict(tree["state_dict"])
    layout = Layout("mmengine", resume_sections(tree), reason="meta + state_dict + message_hub")
    schedulers = tree.get("param_schedulers")
    if isinstance(schedulers, list) and schedulers and isinstance(schedulers[0], dict):
        layout.sections["scheduler"] = section("scheduler", "param_schedulers.0", schedulers[0])
    raw = as_state_dict(tree.get("ema_state_dict"))
    if raw is not None and sd is not None:
        model = strip_prefix(raw, "module.", drop=("steps",))
        layout.sections["model"] = section("model", "ema_state_dict", tree["ema_state_dict"], model)
        layout.sections["ema"] = section("ema", "state_dict", tree["state_dict"], sd)
    elif sd is not None:
        layout.sections["model"] = section("model", "state_dict", tree["state_dict"], sd)
    return layout
