"""A pipeline component against the single file it was extracted to (or saved as).

``diff PIPELINE unet.safetensors --section unet``: the pipeline side has a ``unet`` section, the
single file has only its ``model`` (a bare state_dict is the model). The file is that component's
weights, so the component is compared with the file's model section; the report's source names
say which was compared with which. Anything else missing a section is still an error.
"""

from __future__ import annotations

from ckpttool.model import SECTION_KINDS, Checkpoint
from ckpttool.ops.diff.sections import SideView, view_of

__all__ = ["component_views"]


def _single_model(ckpt: Checkpoint) -> bool:
    """One state_dict and nothing else that holds weights: a file a component could have been saved to."""
    model = ckpt.sections.get("model")
    weights = [k for k in ckpt.sections if k not in ("meta", "optimizer", "scheduler", "scaler")]
    return model is not None and model.state_dict is not None and weights == ["model"]


def component_views(a: Checkpoint, b: Checkpoint, name: str) -> tuple[SideView, SideView] | None:
    """Both views when ``name`` is a component of one side and the other side is one model file, else None."""
    if name in SECTION_KINDS or name in ("meta", "all"):
        return None
    for have, lack, flip in ((a, b, False), (b, a, True)):
        section = have.sections.get(name)
        if section is None or section.state_dict is None or name in lack.sections or not _single_model(lack):
            continue
        comp, model = view_of(have, name), view_of(lack, "model")
        model.source = f"model (the whole file, as {name})"
        return (model, comp) if flip else (comp, model)
    return None
