"""What every layout recogniser shares: the result type and how a value becomes a state_dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import PickledDict, Section, StateDict, Stub, TensorRef
from ckpttool.modules import is_module, module_state_dict

__all__ = ["Layout", "as_state_dict", "strip_prefix", "section", "top_keys", "is_state_dict"]


@dataclass
class Layout:
    """A recognised layout: its name, its sections, and the metadata keys worth showing."""

    name: str
    sections: dict[str, Section] = field(default_factory=dict)
    reason: str = ""


def is_state_dict(value: Any) -> bool:
    """A mapping whose values are (mostly) tensors: at least one, and no containers."""
    if not isinstance(value, dict) or not value:
        return False
    tensors = sum(isinstance(v, TensorRef) for v in value.values())
    others = [v for v in value.values() if not isinstance(v, TensorRef)]
    return tensors > 0 and all(isinstance(v, int | float | bool | str | type(None) | Stub)
                               and not is_module(v) for v in others)


def as_state_dict(value: Any, script: Any = None) -> StateDict | None:
    """A ``StateDict`` from a tensor mapping or a pickled module; None for anything else."""
    if is_module(value):
        return module_state_dict(value, script)
    if not is_state_dict(value):
        return None
    tensors = {str(k): v for k, v in value.items() if isinstance(v, TensorRef)}
    extras = {str(k): v for k, v in value.items() if not isinstance(v, TensorRef)}
    meta = value.attrs.get("_metadata") if isinstance(value, PickledDict) else None
    return StateDict(tensors=tensors, extras=extras,
                     version_metadata=dict(meta) if isinstance(meta, dict) else None)


def strip_prefix(sd: StateDict, prefix: str, *, drop: tuple[str, ...] = ()) -> StateDict:
    """The same state_dict with ``prefix`` removed from keys that have it; ``drop`` keys removed."""
    def cut(k: str) -> str:
        return k[len(prefix):] if k.startswith(prefix) else k
    tensors = {cut(k): v for k, v in sd.tensors.items() if k not in drop}
    params = frozenset(cut(k) for k in sd.parameters) if sd.parameters is not None else None
    return StateDict(tensors=tensors, parameters=params, extras=sd.extras,
                     version_metadata=sd.version_metadata)


def section(kind: str, source: str, value: Any, sd: StateDict | None = None) -> Section:
    return Section(kind=kind, source=source, value=value, state_dict=sd)


def top_keys(tree: Any) -> set[str]:
    return {k for k in tree if isinstance(k, str)} if isinstance(tree, dict) else set()
