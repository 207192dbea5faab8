"""Non-tensor content (epoch, ``opt``, optimizer ``param_groups``, scheduler state) compared with deepdiff.

Values come from untrusted trees, so both sides go through ``to_jsonable`` (budgeted, cycle-safe)
first; tensors inside them are compared as tensors elsewhere, so changes at tensor paths are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ckpttool.jsonable import to_jsonable
from ckpttool.model import TensorRef
from ckpttool.ops.diff.result import MetaChange
from ckpttool.tree import walk

__all__ = ["split_tree", "compare_plain"]

_ADDED = ("dictionary_item_added", "iterable_item_added", "attribute_added", "set_item_added")
_REMOVED = ("dictionary_item_removed", "iterable_item_removed", "attribute_removed", "set_item_removed")


def split_tree(value: Any) -> tuple[dict[str, TensorRef], Any]:
    """The tensors of ``value`` by dotted path, and a JSON-able copy for the non-tensor comparison."""
    tensors = {path: obj for path, obj in walk(value) if isinstance(obj, TensorRef)}
    return tensors, to_jsonable(value, max_nodes=200_000, max_depth=16, max_items=10_000)


def _only_tensors(value: Any, path: str, skip: set[str] | frozenset[str]) -> bool:
    """Every leaf below ``value`` (a JSON-able container found at ``path``) is a tensor path in ``skip``."""
    if not isinstance(value, dict | list) or not value:
        return False
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict | list) and node:
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((f"{where}.{k}", v) for k, v in items)
        elif where not in skip:
            return False
    return True


def _dotted(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


def compare_plain(a: Any, b: Any, skip: set[str] | frozenset[str] = frozenset()) -> list[MetaChange]:
    """Readable changes from ``a`` to ``b`` (JSON-able values), ignoring paths in ``skip``."""
    if a == b:
        return []
    from deepdiff import DeepDiff

    tree = DeepDiff(a, b, view="tree", verbose_level=2, ignore_order=False)
    out: list[MetaChange] = []
    for report, levels in tree.items():
        for level in levels:
            path = _dotted(level.path(output_format="list"))
            if path in skip or any(path.startswith(s + ".") for s in skip):
                continue
            change = "added" if report in _ADDED else "removed" if report in _REMOVED else "changed"
            if change != "changed" and _only_tensors(level.t2 if change == "added" else level.t1, path, skip):
                continue  # a whole container of tensors (optimizer ``state.6``): reported as tensors
            t1 = None if change == "added" else level.t1
            t2 = None if change == "removed" else level.t2
            out.append(MetaChange(path or "<root>", t1, t2, change))
    out.sort(key=lambda m: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in m.path.split(".")])
    return out
