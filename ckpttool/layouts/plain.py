"""A bare state_dict (``torch.save(model.state_dict())``), or a whole pickled module."""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, as_state_dict, section
from ckpttool.modules import is_module


def recognise(tree: Any) -> Layout | None:
    sd = as_state_dict(tree)
    if sd is None:
        return None
    name = "pickled-module" if is_module(tree) else "state_dict"
    return Layout(name, {"model": section("model", "", tree, sd)},
                  reason="the file is a whole module" if is_module(tree) else "every value is a tensor")
