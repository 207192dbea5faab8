"""What every layout recogniser shares: the result type and how a value becomes a state_dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import CompositeTensor, GlobalRef, PickledDict, Section, StateDict, Stub, TensorRef
from ckpttool.modules import is_module, module_state_dict

__all__ = ["Layout", "as_state_dict", "strip_prefix", "section", "top_keys", "is_state_dict", "packed_entry"]


@dataclass
class Layout:
    """A recognised layout: its name, its sections, and the metadata keys worth showing."""

    name: str
    sections: dict[str, Section] = field(default_factory=dict)
    reason: str = ""


def packed_entry(value: Any) -> CompositeTensor | None:
    """A tuple of tensors under one state_dict key (an eager quantized layer's ``_packed_params``).

    torch keeps the tuple as the value of that key; it is one entry whose parts are the tuple's
    tensors (a quantized tensor's own parts under ``0.int_repr``...).
    """
    if not isinstance(value, tuple | list) or not value or len(value) > 8:
        return None
    if not all(isinstance(v, TensorRef | CompositeTensor | type(None)) for v in value):
        return None
    if not any(isinstance(v, CompositeTensor) for v in value):
        return None
    parts: dict[str, TensorRef] = {}
    params: dict[str, Any] = {}
    for i, v in enumerate(value):
        if isinstance(v, TensorRef):
            parts[str(i)] = v
        elif isinstance(v, CompositeTensor):
            parts.update({f"{i}.{k}": t for k, t in v.parts.items()})
            params[str(i)] = {"kind": v.kind, "dtype": v.dtype, "shape": list(v.shape or []), **v.params}
        else:
            params[str(i)] = None
    first = next(v for v in value if v is not None)
    return CompositeTensor("packed_params", "tuple", first.dtype, first.shape, parts, params,
                           decoded=all(v.decoded for v in value if isinstance(v, CompositeTensor)),
                           note="a tuple of tensors torch keeps under one key (quantized layer params)")


def _entry(value: Any) -> TensorRef | CompositeTensor | None:
    if isinstance(value, TensorRef | CompositeTensor):
        return value
    return packed_entry(value)


def is_state_dict(value: Any) -> bool:
    """A mapping whose values are (mostly) tensors: at least one, and no containers."""
    if not isinstance(value, dict) or not value:
        return False
    tensors = sum(_entry(v) is not None for v in value.values())
    others = [v for v in value.values() if _entry(v) is None]
    return tensors > 0 and all(isinstance(v, int | float | bool | str | type(None) | Stub | GlobalRef)
                               and not is_module(v) for v in others)


def as_state_dict(value: Any, script: Any = None) -> StateDict | None:
    """A ``StateDict`` from a tensor mapping or a pickled module; None for anything else."""
    if is_module(value):
        return module_state_dict(value, script)
    if not is_state_dict(value):
        return None
    tensors = {str(k): v for k, v in value.items() if isinstance(v, TensorRef)}
    composites = {str(k): e for k, e in ((k, _entry(v)) for k, v in value.items())
                  if isinstance(e, CompositeTensor)}
    extras = {str(k): v for k, v in value.items() if _entry(v) is None}
    meta = value.attrs.get("_metadata") if isinstance(value, PickledDict) else None
    return StateDict(tensors=tensors, extras=extras,
                     version_metadata=dict(meta) if isinstance(meta, dict) else None, composites=composites)


def strip_prefix(sd: StateDict, prefix: str, *, drop: tuple[str, ...] = ()) -> StateDict:
    """The same state_dict with ``prefix`` removed from keys that have it; ``drop`` keys removed."""
    def cut(k: str) -> str:
        return k[len(prefix):] if k.startswith(prefix) else k
    tensors = {cut(k): v for k, v in sd.tensors.items() if k not in drop}
    params = frozenset(cut(k) for k in sd.parameters) if sd.parameters is not None else None
    composites = {cut(k): v for k, v in sd.composites.items() if k not in drop}
    return StateDict(tensors=tensors, parameters=params, extras=sd.extras,
                     version_metadata=sd.version_metadata, composites=composites)


def section(kind: str, source: str, value: Any, sd: StateDict | None = None) -> Section:
    return Section(kind=kind, source=source, value=value, state_dict=sd)


def top_keys(tree: Any) -> set[str]:
    return {k for k in tree if isinstance(k, str)} if isinstance(tree, dict) else set()
