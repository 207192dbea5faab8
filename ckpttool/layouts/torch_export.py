"""A ``torch.export`` archive: the exported program's state_dict is the model, its constants a section.

The reader marks the tree (``attrs["torch-export"]``); ``weights`` is ``ExportedProgram.state_dict``
(parameters and persistent buffers, parameters known by the archive's ``is_param``) and
``constants`` holds lifted tensor constants and non-persistent buffers, which no state_dict has.
"""

from __future__ import annotations

from typing import Any

from ckpttool.io.formats.pt2 import MARKER
from ckpttool.layouts.base import Layout, section
from ckpttool.model import PickledDict, StateDict, TensorRef


def _state_dict(value: Any, *, params: bool) -> StateDict:
    tensors = {str(k): v for k, v in value.items() if isinstance(v, TensorRef)}
    extras = {str(k): v for k, v in value.items() if not isinstance(v, TensorRef)}
    parameters = frozenset(k for k, t in tensors.items() if t.is_parameter) if params else None
    return StateDict(tensors=tensors, parameters=parameters, extras=extras)


def recognise(tree: Any) -> Layout | None:
    if not isinstance(tree, PickledDict) or MARKER not in tree.attrs:
        return None
    weights, constants = tree.get("weights"), tree.get("constants")
    if not isinstance(weights, dict) or not isinstance(constants, dict):
        return None
    sections = {"model": section("model", "weights", weights, _state_dict(weights, params=True))}
    if constants:
        sections["constants"] = section("constants", "constants", constants, _state_dict(constants, params=False))
    return Layout("torch-export", sections, reason="a torch.export archive's weights and constants")
