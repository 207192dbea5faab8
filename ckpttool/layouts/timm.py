"""timm's ``CheckpointSaver``: ``state_dict``, ``state_dict_ema``, ``arch``, ``args``, ``version``."""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, as_state_dict, section, top_keys
from ckpttool.layouts.common import resume_sections
from ckpttool.layouts.ema_packages import align_to_model


def recognise(tree: Any) -> Layout | None:
    keys = top_keys(tree)
    if "state_dict" not in keys or not ({"arch", "state_dict_ema"} & keys):
        return None
    sd = as_state_dict(tree["state_dict"])
    if sd is None:
        return None
    layout = Layout("timm", resume_sections(tree), reason="state_dict with " +
                    ", ".join(sorted({"arch", "state_dict_ema"} & keys)))
    layout.sections["model"] = section("model", "state_dict", tree["state_dict"], sd)
    for key in ("state_dict_ema", "state_dict_ema1"):
        ema = as_state_dict(tree.get(key)) if key in keys else None
        if ema is not None:
            layout.sections["ema"] = section("ema", key, tree[key], align_to_model(ema, sd))
            break
    return layout
