"""A diffusers pipeline folder: one section per component, named after its folder (``unet``, ``vae``...).

The folder reader marks the tree with the components it read (``attrs["diffusers"]``); each
component's weights are a state_dict, so diff, inspect and convert can pick one by name.
"""

from __future__ import annotations

from typing import Any

from ckpttool.io.formats.diffusers_folder import MARKER
from ckpttool.layouts.base import Layout, as_state_dict, section
from ckpttool.model import PickledDict


def recognise(tree: Any) -> Layout | None:
    if not isinstance(tree, PickledDict) or MARKER not in tree.attrs:
        return None
    sections = {}
    for name in tree.attrs[MARKER]:
        sd = as_state_dict(tree.get(name))
        if sd is not None:
            sections[name] = section(name, name, tree[name], sd)
    if not sections:
        return None
    return Layout("diffusers-pipeline", sections, reason="model_index.json and component folders")
