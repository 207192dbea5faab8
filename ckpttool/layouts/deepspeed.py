"""A DeepSpeed checkpoint folder, as ``io/formats/deepspeed.py`` lays it out.

Sections: ``model`` the consolidated fp32 master weights (what DeepSpeed's
``get_fp32_state_dict_from_zero_checkpoint`` returns, frozen parameters included), ``model16``
the 16-bit module weights the engine saved (ZeRO-0/1/2 only: ZeRO-3 saves placeholders),
``optimizer`` rank 0's base optimizer state, ``scheduler`` the engine's ``lr_scheduler``, ``scaler``
the loss scaler.

One ``*_model_states.pt`` file opened on its own (layout ``deepspeed-model-states``) has no fp32
weights (they live in the optimizer files beside it): it offers ``model16`` (unless ZeRO-3 left
only placeholders) and the scheduler, and no ``model`` section, so nothing passes the 16-bit
weights off as the consolidated ones.
"""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, as_state_dict, section
from ckpttool.model import StateDict

__all__ = ["recognise", "MARKERS"]

MARKERS = frozenset({"module", "zero_stage", "world_size", "tag", "files"})
STATES_MARKERS = frozenset({"module", "buffer_names", "param_shapes", "ds_version"})


def _with_kinds(sd: StateDict | None, buffers: list[str]) -> StateDict | None:
    if sd is None:
        return None
    params = frozenset(k for k in sd.tensors if k not in buffers)
    return StateDict(tensors=sd.tensors, parameters=params, extras=sd.extras)


def _buffers(tree: dict[str, Any]) -> list[str]:
    files = tree.get("files")
    first = next(iter(files.values()), None) if isinstance(files, dict) else None
    names = first.get("buffer_names") if isinstance(first, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def _model_states(tree: dict[str, Any]) -> Layout:
    names = tree.get("buffer_names")
    buffers = [str(n) for n in names] if isinstance(names, list) else []
    layout = Layout("deepspeed-model-states", reason="one model states file of a DeepSpeed checkpoint folder")
    sd = as_state_dict(tree["module"]) if isinstance(tree["module"], dict) else None
    placeholders = sd is not None and all(t.numel == 0 for k, t in sd.tensors.items() if k not in buffers)
    if sd is not None and not placeholders:
        layout.sections["model16"] = section("model16", "module", tree["module"], _with_kinds(sd, buffers))
    if tree.get("lr_scheduler") is not None:
        layout.sections["scheduler"] = section("scheduler", "lr_scheduler", tree["lr_scheduler"])
    return layout


def recognise(tree: Any) -> Layout | None:
    if isinstance(tree, dict) and STATES_MARKERS <= set(tree) and "files" not in tree:
        return _model_states(tree)
    if not isinstance(tree, dict) or not MARKERS <= set(tree):
        return None
    buffers = _buffers(tree)
    stage = tree.get("zero_stage")
    layout = Layout("deepspeed", reason=f"DeepSpeed ZeRO-{stage} folder, tag {tree.get('tag')}")
    layout.sections["model"] = section("model", "module", tree["module"],
                                       _with_kinds(as_state_dict(tree["module"]), buffers))
    if isinstance(tree.get("module16"), dict):
        layout.sections["model16"] = section("model16", "module16", tree["module16"],
                                             _with_kinds(as_state_dict(tree["module16"]), buffers))
    for kind, key in (("optimizer", "optimizer"), ("scheduler", "lr_scheduler"), ("scaler", "loss_scaler")):
        if tree.get(key) is not None:
            layout.sections[kind] = section(kind, key, tree[key])
    return layout
