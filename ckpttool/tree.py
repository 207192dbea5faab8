"""Walking object trees from untrusted pickles: iteratively, by identity, within a node budget.

Memo reuse can build DAGs with 2^60 logical leaves in a 2 KB file, and cycles: recursive walks
would hang or overflow. Every walk in ckpttool goes through ``walk``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ckpttool.errors import NestingLimit, ResourceLimit
from ckpttool.model import Stub

__all__ = ["walk", "children", "join", "MAX_NODES", "MAX_DEPTH", "get_path"]

MAX_NODES = 5_000_000
MAX_DEPTH = 400


def join(path: str, key: Any) -> str:
    """Dotted path of ``key`` under ``path`` (non-string keys shown as ``[repr]``)."""
    try:
        part = key if isinstance(key, str) else f"[{key!r}]" if not isinstance(key, int) else str(key)
    except ValueError:  # an integer past CPython's 4300-digit guard on str()
        part = "[<huge int>]"
    if isinstance(part, str) and len(part) > 200:
        part = part[:200] + "…"
    return f"{path}.{part}" if path else part


def children(obj: Any) -> Iterator[tuple[Any, Any]]:
    """The (key, value) pairs directly below ``obj`` in the tree."""
    if isinstance(obj, dict):
        yield from obj.items()
    elif isinstance(obj, list | tuple):
        yield from enumerate(obj)
    elif isinstance(obj, Stub):
        yield from obj.attributes.items()
        yield from obj.entries.items()
        yield from enumerate(obj.items)
        if not obj.attributes and obj.args:
            yield from (("args", a) for a in obj.args)


def walk(root: Any, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH
         ) -> Iterator[tuple[str, Any]]:
    """Every distinct container and leaf under ``root`` once, with the first path reaching it."""
    seen: set[int] = set()
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    budget = max_nodes
    while stack:
        path, obj, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ResourceLimit(f"the object tree has more than {max_nodes} nodes")
        if isinstance(obj, dict | list | tuple | Stub):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if depth > max_depth:
                raise NestingLimit(f"the object tree nests deeper than {max_depth} levels")
        yield path, obj
        if isinstance(obj, dict | list | tuple | Stub):
            kids = list(children(obj))
            for key, value in reversed(kids):
                stack.append((join(path, key), value, depth + 1))


def get_path(root: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` (keys/indices/attribute names) below ``root``, or None."""
    obj = root
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, Stub):
            obj = obj.attributes.get(key, obj.entries.get(key))
        elif isinstance(obj, list | tuple) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj

