"""``--into-checkpoint``: a copy of the training checkpoint whose model weights are the EMA.

This is the "publish" step frameworks do by hand (YOLOv5 ``strip_optimizer`` sets ``model = ema``;
Lightning and mmengine already swap the EMA into ``state_dict`` and keep the raw weights aside).
The weights go where the framework loads them from (laid over what is there, so an EMA submodule's
own keys stay), and the raw copies that would swap them back on load (``current_model_state``,
mmengine's ``ema_state_dict``) are dropped. Everything else is written as it was read: a pickled
model (YOLOv5 ``model``) stays a module of its class holding the EMA tensors. With ``sanitize``
foreign objects become plain data instead (pickled modules their state_dict, other objects their
attribute dict), each change reported.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ckpttool.errors import UsageError
from ckpttool.io.pickle.rebuilt import plain_value
from ckpttool.model import Checkpoint, GlobalRef, PickledDict, Stub
from ckpttool.module_rewrite import rewrite_module
from ckpttool.modules import is_module, module_state_dict
from ckpttool.tree import MAX_DEPTH, MAX_NODES, join

__all__ = ["publish_tree"]

# layout -> (key the framework loads weights from, keys that would swap the raw weights back in)
_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lightning": ("state_dict", ("current_model_state", "averaging_state")),
    "mmengine": ("state_dict", ("ema_state_dict",)),
    "stable-diffusion": ("state_dict", ()),
    "yolov5": ("model", ()),
    "ultralytics": ("model", ()),
}


def _target(ckpt: Checkpoint) -> tuple[str, tuple[str, ...]]:
    if ckpt.layout in _TARGETS:
        return _TARGETS[ckpt.layout]
    model = ckpt.sections.get("model")
    if model is None or not model.source or "." in model.source or model.source.endswith("*"):
        raise UsageError(f"--into-checkpoint needs a training checkpoint with its model weights under a "
                         f"top-level key; this {ckpt.layout} file has none",
                         hint="write the EMA as a plain state_dict instead (drop --into-checkpoint)")
    return model.source, ()


def publish_tree(ckpt: Checkpoint, weights: dict[str, Any], *, strip_optimizer: bool, sanitize: bool = False
                 ) -> tuple[dict[str, Any], list[str]]:
    """The training dict with ``weights`` as its model weights; returns (tree, notes on what changed)."""
    if not isinstance(ckpt.tree, dict):
        raise UsageError("--into-checkpoint needs a training checkpoint (a dict at the top level)")
    key, drop = _target(ckpt)
    tree: dict[str, Any] = {k: v for k, v in ckpt.tree.items() if k not in drop}
    if isinstance(ckpt.tree, PickledDict) and not sanitize:  # an OrderedDict root stays one
        kept = PickledDict(tree, ordered=ckpt.tree.ordered)
        kept.attrs = dict(ckpt.tree.attrs)
        tree = kept
    notes = [f"{key!r} replaced by the EMA weights"] + [f"{k!r} dropped (it would restore the raw weights)"
                                                        for k in drop if k in ckpt.tree]
    original = ckpt.tree.get(key)
    module = _into_module(original, weights) if not sanitize and is_module(original) else None
    if module is not None:
        notes[0] = f"{key!r} ({original.qualname}) holds the EMA weights"
    elif not sanitize and is_module(original):
        notes.append(f"{key!r} was a pickled {original.qualname} whose tensors the EMA does not match; "
                     "written as its state_dict")
    tree[key] = module if module is not None else _overlay(original, weights)
    optimizer = ckpt.sections.get("optimizer")
    if strip_optimizer and optimizer is not None:
        top = optimizer.source.split(".", 1)[0]
        tree.pop(top, None)
        notes.append(f"{top!r} dropped (--strip-optimizer)")
    if not sanitize:
        return tree, notes
    plain, changed = plain_copy(tree)
    notes += changed
    return plain, notes


def _into_module(original: Stub, weights: dict[str, Any]) -> Stub | None:
    """A copy of the pickled model with the EMA tensors in its slots; None if they do not fit its keys."""
    keys = list(module_state_dict(original))
    if set(weights) - set(keys):
        return None
    return rewrite_module(original, {k: k for k in keys}, lambda k, old: weights.get(k, old))


def _overlay(original: Any, weights: dict[str, Any]) -> dict[str, Any]:
    """``weights`` laid over the original state_dict: its other entries (an EMA submodule's own keys,
    LitEma buffers) stay, so the checkpoint still loads strictly into the code that wrote it."""
    if not isinstance(original, dict):
        return OrderedDict(weights)
    merged = OrderedDict((k, weights.get(k, v)) for k, v in original.items())
    merged.update((k, v) for k, v in weights.items() if k not in merged)
    return merged


def plain_copy(root: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``root`` the writer accepts: containers and data kept, Stubs turned into plain data.

    Iterative with an identity memo and a node budget (the tree comes from an untrusted file);
    dict keys keep their order (each copy gets its keys first, its values as they are reached).
    """
    changed: dict[str, list[str]] = {}
    memo: dict[int, Any] = {}
    out: dict[str, Any] = dict.fromkeys(root)
    stack: list[tuple[Any, Any, Any, str, int]] = [(out, k, v, join("", k), 1) for k, v in root.items()]
    budget = MAX_NODES
    while stack:
        parent, key, value, path, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > MAX_DEPTH:
            raise UsageError("the checkpoint's object tree is too large or deep to copy")
        if isinstance(value, Stub):
            changed.setdefault(_what(value), []).append(path)
            value = _unstub(value)
        if isinstance(value, dict | list | tuple) and id(value) in memo:
            parent[key] = memo[id(value)]
            continue
        if isinstance(value, dict):
            ordered = isinstance(value, OrderedDict) or getattr(value, "ordered", False)
            copy: Any = OrderedDict.fromkeys(value) if ordered else dict.fromkeys(value)
            memo[id(value)] = copy
            stack += [(copy, k, v, join(path, k), depth + 1) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            copy = _TupleMark([None] * len(value)) if isinstance(value, tuple) else [None] * len(value)
            memo[id(value)] = copy
            stack += [(copy, i, v, join(path, i), depth + 1) for i, v in enumerate(value)]
        else:
            copy = value.fullname if isinstance(value, GlobalRef) else plain_value(value)
        parent[key] = copy
    notes = [f"{len(paths)} {what} written as plain data: {', '.join(paths[:3])}"
             + (f" and {len(paths) - 3} more" if len(paths) > 3 else "") for what, paths in changed.items()]
    return _untuple(out), notes


def _what(stub: Stub) -> str:
    return f"pickled module(s) {stub.qualname}" if is_module(stub) else f"{stub.qualname} object(s)"


def _unstub(stub: Stub) -> Any:
    """A module's state_dict, or another object's attribute dict (its constructor args if it has none)."""
    if is_module(stub):
        return OrderedDict(module_state_dict(stub).tensors)
    return dict(stub.attributes) if stub.attributes else {"args": list(stub.args)}


class _TupleMark(list):  # type: ignore[type-arg]
    """A list that becomes a tuple once its items are filled in."""


def _untuple(root: Any) -> Any:
    """Turn the ``_TupleMark`` placeholders into tuples (bottom-up, iteratively)."""
    order: list[tuple[Any, Any, Any]] = []
    stack: list[Any] = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            if isinstance(v, dict | list):
                order.append((node, k, v))
                stack.append(v)
    converted: dict[int, tuple[Any, ...]] = {}
    for parent, k, v in reversed(order):
        if isinstance(v, _TupleMark):
            converted.setdefault(id(v), tuple(v))
            parent[k] = converted[id(v)]
    return root
