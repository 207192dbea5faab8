"""What torch itself sees in a checkpoint: every tensor ``torch.load`` builds, inner tensors included.

Used as the oracle of the "nothing silently dropped" invariant: the tensors torch rebuilds
(walked through containers, pickled objects' ``__dict__``, and into subclasses, quantized, sparse
and nested tensors through torch's own ``int_repr`` / ``__reduce_ex__``) against the tensors
ckpttool lists (plain entries and the parts of composite ones).
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

Signature = tuple[str, tuple[int, ...], str]


def signature(t: torch.Tensor) -> Signature:
    """dtype name, shape and sha256 of the C-order bytes of a plain tensor."""
    t = t.detach().cpu().contiguous()
    raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
    return str(t.dtype).removeprefix("torch."), tuple(t.shape), hashlib.sha256(raw.numpy().tobytes()).hexdigest()


def _is_plain(t: torch.Tensor) -> bool:
    return (type(t) in (torch.Tensor, torch.nn.Parameter) and t.layout == torch.strided and not t.is_quantized
            and not t.is_nested)


def _inner(t: torch.Tensor) -> list[Any]:
    """The tensors a non-plain tensor is made of, as torch reports or pickles them."""
    if t.is_quantized:
        out: list[Any] = [t.int_repr()]
        if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                           torch.per_channel_affine_float_qparams):
            out += [t.q_per_channel_scales(), t.q_per_channel_zero_points()]
        return out
    if type(t).__name__ == "DTensor":
        return [t._local_tensor, *(v for v in vars(t.device_mesh).values() if isinstance(v, torch.Tensor))]
    fn, args = t.__reduce_ex__(2)[:2]
    if fn is torch._tensor._rebuild_from_type_v2:
        func, _cls, inner_args, state = args
        found: list[Any] = []
        if func in (torch._utils._rebuild_tensor_v2, torch._utils._rebuild_tensor_v3):
            found.append(t.as_subclass(torch.Tensor))
        else:
            found.append(inner_args)
        return [*found, state]
    return [args]


def torch_tensors(root: Any) -> list[Signature]:
    """Signatures of every distinct plain tensor torch built under ``root`` (each object once)."""
    seen: set[int] = set()
    alive: list[Any] = []  # int_repr() and friends are new objects: kept so that no id is reused
    out: list[Signature] = []
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        alive.append(obj)
        if isinstance(obj, torch.Tensor):
            if _is_plain(obj):
                out.append(signature(obj))
            else:
                stack.extend(_inner(obj))
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type | types.ModuleType):
            stack.extend(vars(obj).values())
    return out


class Tagged(torch.Tensor):
    """Stands for ``mylib.tensors.Tagged`` (fixtures/tensor_subclasses.pt) when torch loads it."""


class PackedWeight(torch.Tensor):
    """Stands for ``mylib.tensors.PackedWeight``: a wrapper subclass with inner tensors."""

    @staticmethod
    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - torch rebuilds it itself
        raise TypeError("rebuilt by torch only")

    @classmethod
    def __torch_dispatch__(cls, func: Any, types_: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten.detach.default:
            return args[0]
        raise NotImplementedError(func)


@contextmanager
def fixture_classes() -> Iterator[None]:
    """``mylib.tensors`` in ``sys.modules`` while torch loads the subclass fixture."""
    pkg, mod = types.ModuleType("mylib"), types.ModuleType("mylib.tensors")
    pkg.tensors = mod  # type: ignore[attr-defined]
    for cls in (Tagged, PackedWeight):
        cls.__module__ = "mylib.tensors"
        setattr(mod, cls.__name__, cls)
    saved = {k: sys.modules.get(k) for k in ("mylib", "mylib.tensors")}
    sys.modules.update({"mylib": pkg, "mylib.tensors": mod})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
