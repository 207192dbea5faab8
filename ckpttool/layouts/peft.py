"""A PEFT adapter folder: the adapter weights are the model section; rank, alpha, targets the metadata."""

from __future__ import annotations

from typing import Any

from ckpttool.io.formats.peft_folder import MARKER
from ckpttool.layouts.base import Layout, as_state_dict, section
from ckpttool.model import PickledDict


def recognise(tree: Any) -> Layout | None:
    if not isinstance(tree, PickledDict) or MARKER not in tree.attrs:
        return None
    sd = as_state_dict(tree.get("adapter"))
    if sd is None:
        return None
    return Layout("peft-adapter", {"model": section("model", "adapter", tree["adapter"], sd)},
                  reason="adapter_config.json beside the adapter weights")
