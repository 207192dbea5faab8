"""torch as the oracle: load a trusted fixture for real, even when it pickles classes we lack.

Only for fixtures this repository generated. Classes the file names but that are not importable
become empty ``nn.Module`` subclasses, so the pickled ``__dict__`` restores a working module.
"""

from __future__ import annotations

import hashlib
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from ckpttool.tree import join


class _AnyAttribute(type):
    """Metaclass of stand-ins: ``getattr(StandIn, "anything")`` (pickled bound methods) works."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _AnyAttribute(name, (torch.nn.Module,), {"__module__": module})


lenient_pickle = types.ModuleType("lenient_pickle")
lenient_pickle.Unpickler = _LenientUnpickler  # type: ignore[attr-defined]
lenient_pickle.load = pickle.load  # type: ignore[attr-defined]
lenient_pickle.__name__ = "pickle"


def torch_load(path: Path) -> Any:
    """``torch.load(weights_only=False)`` with unknown classes stood in for (trusted files only)."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=lenient_pickle)


def torch_tensors(root: Any) -> dict[str, torch.Tensor]:
    """Every tensor below ``root`` by the same dotted paths ``ckpttool.tree.walk`` produces."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            out.setdefault(path, obj)
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            items = list(obj.items())
        elif isinstance(obj, list | tuple):
            items = list(enumerate(obj))
        elif isinstance(obj, torch.nn.Module):
            items = list(vars(obj).items())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            items = list(vars(obj).items())
        else:
            continue
        for key, value in reversed(items):
            stack.append((join(path, key), value))
    return out


def digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's C-order bytes (the same bytes ``TensorRef.digest`` hashes)."""
    t = t.detach().contiguous().cpu()
    if t.numel() == 0:
        return hashlib.sha256(b"").hexdigest()
    raw = t.reshape(-1).view(torch.uint8) if t.dtype != torch.bool else t.reshape(-1).to(torch.uint8)
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()
