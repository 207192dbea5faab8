"""What each side of a comparison holds for one section: tensors by key, kinds, non-tensor content.

Model and EMA sections come as state_dicts (a plain state_dict is the model section, so a bare
state_dict meets a training dict's model); optimizer/scheduler/scaler sections are trees whose
tensors are keyed by dotted path (``state.0.exp_avg``). A file with no recognised layout is compared
as a whole tree. Parameters and buffers come from the layout where it records them (pickled
modules), else from BatchNorm buffer names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import SectionNotFound
from ckpttool.model import SECTION_KINDS, Checkpoint, CompositeTensor, StateDict, TensorRef
from ckpttool.modules import is_buffer_name
from ckpttool.ops.diff.meta import split_tree

__all__ = ["SideView", "view_of", "section_names", "kind_of", "SECTION_CHOICES"]

SECTION_CHOICES = ("model", "ema", "optimizer", "scheduler", "scaler", "meta", "all")
_STATE_DICT_SECTIONS = ("model", "ema")


@dataclass(slots=True)
class SideView:
    """One side of one section, ready to pair up."""

    source: str | None
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    composites: dict[str, CompositeTensor] = field(default_factory=dict)
    state_dict: StateDict | None = None
    plain: Any = None
    present: bool = True
    aligns: bool = False  # key alignment applies (model-like sections)


def _whole_tree(ckpt: Checkpoint) -> bool:
    return ckpt.layout == "unknown" and not any(k in ckpt.sections for k in _STATE_DICT_SECTIONS)


def view_of(ckpt: Checkpoint, name: str, *, required: bool = True) -> SideView:
    """The ``name`` section of ``ckpt``; a missing one raises ``SectionNotFound`` if ``required``."""
    if name == "meta":
        return SideView(source="", plain=dict(ckpt.meta))
    if name == "model" and _whole_tree(ckpt):
        tensors, plain = split_tree(ckpt.tree)
        return SideView(source="<whole file>", tensors=tensors, plain=_drop_tensors(plain, tensors), aligns=True,
                        composites=_composites(ckpt.tree))
    section = ckpt.sections.get(name)
    if section is None and name == "model" and "ema" in ckpt.sections:
        # A file that holds only averaged weights (AveragedModel, an extracted EMA): its weights are
        # the model to compare; the source says so in the report.
        section = ckpt.sections["ema"]
        section = type(section)(kind="model", source=f"ema {section.source}".strip(), value=section.value,
                                state_dict=section.state_dict)
    if section is None:
        if required:
            have = ", ".join(k for k in ckpt.sections if k != "meta") or "none"
            first = next((k for k in ckpt.sections if k != "meta"), None)
            hint = (f"compare one of its sections with --section {first}, or all with --section all"
                    if name == "model" and first is not None else None)
            raise SectionNotFound(f"no {name} section in this checkpoint (layout {ckpt.layout}; sections: {have})",
                                  path=ckpt.path, hint=hint)
        return SideView(source=None, present=False, plain={})
    if section.state_dict is not None:
        sd = section.state_dict
        from ckpttool.jsonable import to_jsonable

        return SideView(source=section.source, tensors=dict(sd.tensors), state_dict=sd,
                        plain=to_jsonable(sd.extras) if sd.extras else {}, aligns=True,
                        composites=dict(sd.composites))
    tensors, plain = split_tree(section.value)
    return SideView(source=section.source, tensors=tensors, plain=_drop_tensors(plain, tensors),
                    composites=_composites(section.value))


def _composites(tree: Any) -> dict[str, CompositeTensor]:
    from ckpttool.io.tensor_findings import composite_entries

    return dict(composite_entries(tree))


def _drop_tensors(plain: Any, tensors: dict[str, TensorRef]) -> Any:
    """A whole tree that is nothing but tensors has no non-tensor content worth a deepdiff."""
    return {} if "" in tensors else plain


def section_names(a: Checkpoint, b: Checkpoint, requested: str) -> list[str]:
    """The sections to compare: the one requested, or for ``all`` every section either side has."""
    if requested != "all":
        return [requested]
    have = set(a.sections) | set(b.sections)
    if _whole_tree(a) or _whole_tree(b):
        have.add("model")
    names = [k for k in SECTION_KINDS if k in have]
    return names + sorted(have - set(names))


def kind_of(key_a: str | None, key_b: str | None, a: SideView, b: SideView) -> tuple[str, bool]:
    """``parameter``/``buffer`` (or ``tensor`` outside model-like sections), and whether the layout said so."""
    if not a.aligns and not b.aligns:
        return "tensor", True
    for key, side in ((key_a, a), (key_b, b)):
        if key is not None and side.state_dict is not None:
            kind = side.state_dict.kind_of(key)
            if kind is not None:
                return kind, True
    key = key_a if key_a is not None else key_b or ""
    return ("buffer" if is_buffer_name(key) else "parameter"), False
