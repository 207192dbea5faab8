"""Renaming, dropping and replacing the tensors of a pickled ``nn.Module`` stand-in, keeping the module.

A YOLOv5 or ultralytics checkpoint pickles the whole model: ``torch.load`` gives back a module of
its class with its hyper-parameters and hooks as attributes. A remap (or an EMA published into the
checkpoint) must give back such a module too, with only its tensors changed. The module tree is
copied (shared submodules stay shared), tensors are renamed or dropped where they sit, and child
modules renamed in place under the same parent. A rename that would move a tensor or a module under
another parent has no faithful form (the class builds its children itself): the caller then gets
None and decides (write a state_dict instead, with a finding).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ckpttool.model import PickledDict, Stub, TensorRef
from ckpttool.modules import module_state_dict
from ckpttool.tree import MAX_DEPTH

__all__ = ["rewrite_module"]

_SLOTS = ("_parameters", "_buffers")


def _copy_dict(d: dict[Any, Any]) -> dict[Any, Any]:
    """A shallow copy that stays a plain dict or an OrderedDict (with its attributes) as it was read."""
    if isinstance(d, PickledDict):
        out = PickledDict(d, ordered=d.ordered)
        out.attrs = dict(d.attrs)
        return out
    return dict(d)


def _copy_tree(root: Stub) -> dict[str, Stub] | None:
    """Old module path → a copy of that module (the copies linked to each other), or None."""
    memo: dict[int, Stub] = {}
    by_path: dict[str, Stub] = {}
    stack: list[tuple[str, Stub, int]] = [("", root, 0)]
    while stack:
        path, mod, depth = stack.pop()
        if depth > MAX_DEPTH or not isinstance(mod.state, dict):
            return None
        if id(mod) in memo:  # a shared submodule: one copy, reached under both names
            by_path[path] = memo[id(mod)]
            continue
        new = Stub(mod.qualname, mod.args, mod.dangerous, mod.origin)
        new.items, new.entries = mod.items, mod.entries
        new.state = _copy_dict(mod.state)
        for slot in (*_SLOTS, "_modules"):
            if isinstance(new.state.get(slot), dict):
                new.state[slot] = _copy_dict(new.state[slot])
        memo[id(mod)] = by_path[path] = new
        kids = new.state.get("_modules")
        if isinstance(kids, dict):
            for name, child in kids.items():
                if isinstance(child, Stub):
                    stack.append((f"{path}{name}.", child, depth + 1))
    for path, new in by_path.items():  # link the copies
        kids = new.state.get("_modules")
        if isinstance(kids, dict):
            for name in kids:
                if isinstance(kids[name], Stub):
                    kids[name] = by_path.get(f"{path}{name}.", kids[name])
    return by_path


def _rename_key(d: dict[Any, Any], old: str, new: str) -> None:
    """Rename ``old`` to ``new`` in place, keeping the key's position."""
    items = [(new if k == old else k, v) for k, v in d.items()]
    d.clear()
    d.update(items)


def _new_module_path(path: str, own: list[str], below: list[str], forward: Mapping[str, str]) -> str | None:
    """Where the module at ``path`` (trailing dot) goes; None when its own tensors disagree.

    A module with tensors of its own goes where they go. One without (a container) moves only when
    every key below it changes the same prefix; otherwise it stays and its children move alone.
    """
    if not path:
        return ""
    if own:
        targets = {forward[k].rpartition(".")[0] + "." for k in own if k in forward}
        if len(targets) > 1:
            return None
        return targets.pop() if targets else path
    target: str | None = None
    for key in below:
        new = forward.get(key)
        if new is None:
            continue
        rest = key[len(path):]
        q = new[: len(new) - len(rest)]
        if not new.endswith(rest) or not q.endswith(".") or (target is not None and q != target):
            return path
        target = q
    return path if target is None else target


def rewrite_module(root: Stub, forward: Mapping[str, str],
                   replace_tensor: Callable[[str, TensorRef], Any] | None = None) -> Stub | None:
    """A copy of the module ``root`` whose ``state_dict()`` keys are renamed by ``forward``.

    Keys of ``root``'s state_dict missing from ``forward`` are dropped. ``replace_tensor(new_key,
    old)`` may give the tensor to store instead (EMA weights); it keeps the slot's Parameter flags.
    Returns None when the renames move something under another parent module.
    """
    old_sd = module_state_dict(root)
    by_path = _copy_tree(root)
    if by_path is None:
        return None
    old_keys = list(old_sd)
    under: dict[str, list[str]] = {}  # module path (trailing dot) -> the state_dict keys below it
    for key in old_keys:
        parts = key.split(".")
        for i in range(len(parts)):
            under.setdefault(".".join(parts[:i]) + ("." if i else ""), []).append(key)
    moved: dict[str, str] = {}
    for path in sorted(by_path, key=len, reverse=True):  # deepest first: children before parents
        mod = by_path[path]
        below = under.get(path, [])
        own = [k for k in below if "." not in k[len(path):]]
        new_path = _new_module_path(path, own, below, forward)
        if new_path is None:
            return None
        moved[path] = new_path
        for slot in _SLOTS:
            tensors = mod.state.get(slot)
            if not isinstance(tensors, dict):
                continue
            for name in list(tensors):
                old_key = path + str(name)
                if old_key not in old_sd.tensors or tensors[name] is not old_sd.tensors[old_key]:
                    continue  # a None slot or a non-persistent buffer: not in the state_dict
                new_key = forward.get(old_key)
                if new_key is None:
                    del tensors[name]
                    continue
                leaf = new_key[len(new_path):]
                if not new_key.startswith(new_path) or "." in leaf:
                    return None
                if replace_tensor is not None:
                    old = tensors[name]
                    value = replace_tensor(new_key, old)
                    if isinstance(value, TensorRef) and value is not old:
                        value = replace(value, is_parameter=old.is_parameter, requires_grad=old.requires_grad)
                    tensors[name] = value
                if leaf != name:
                    _rename_key(tensors, name, leaf)
    for path in sorted(by_path, key=len, reverse=True):
        if not path or moved[path] == path:
            continue
        parent_old, _, leaf_old = path[:-1].rpartition(".")
        parent_new, _, leaf_new = moved[path][:-1].rpartition(".")
        parent_old = parent_old + "." if parent_old else ""
        parent_new = parent_new + "." if parent_new else ""
        if moved.get(parent_old) != parent_new:
            return None
        _rename_key(by_path[parent_old].state["_modules"], leaf_old, leaf_new)
    new_root = by_path[""]
    expected = [forward[k] for k in old_keys if k in forward]
    if sorted(module_state_dict(new_root)) != sorted(expected):
        return None
    return new_root
