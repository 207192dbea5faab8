"""Resource traps in a pickled object tree: structures built to exhaust whoever loads or walks them.

ckpttool reads these safely (its walks go by identity, within budgets), but the file is not honest
data: a few KB of memo references that a recursive walker, ``json.dumps`` or ``copy.deepcopy``
expands into 2**60 nodes, a plain list or dict that contains itself, nesting deeper than any
recursive tool survives. One pass over the distinct containers finds all three: it computes, for
each container, how many nodes a walker that does not remember what it saw would visit (the sum
over its children, shared ones counted every time) and how deep it nests.

Cycles through pickled objects are normal (a module whose child keeps a reference to its parent);
only a cycle made of plain lists, dicts and tuples alone is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from ckpttool.model import Finding, Stub
from ckpttool.tree import MAX_DEPTH, MAX_NODES

__all__ = ["TreeShape", "tree_shape", "tree_traps", "EXPANSION_MIN", "EXPANSION_RATIO", "NESTING_LIMIT"]

# A naive walk of more than this many nodes, and that many times the distinct ones, is a trap.
EXPANSION_MIN = 10_000_000
EXPANSION_RATIO = 100
# Deeper than ckpttool's own walks go, and than CPython's default recursion limit allows a
# recursive walker (repr, json, deepcopy, load_state_dict) by a wide margin.
NESTING_LIMIT = MAX_DEPTH
_CAP = 1 << 62  # expansion counts stop growing here: 2**60 is a trap, 2**100000 is a slow number

_PLAIN = (dict, list, tuple)
_CONTAINERS = (dict, list, tuple, Stub)


@dataclass(frozen=True)
class TreeShape:
    """What one pass over an object graph learned."""

    containers: int  # distinct non-empty containers (dicts, lists, tuples, stand-ins)
    edges: int  # child slots visited, each once
    expanded: int  # nodes a walk that does not remember what it saw would visit (capped at 2**62)
    depth: int  # longest chain of nested containers; past NESTING_LIMIT the pass stops there
    plain_cycle: bool  # a plain list/dict/tuple reaches itself through plain containers alone
    complete: bool  # False when the graph had more than MAX_NODES containers (not all visited)


def _kids(obj: Any) -> Iterator[Any]:
    """Every value directly below ``obj``, as an iterator that runs in C where it can.

    Dict keys are left out: a key is a hashable tuple, and the reader already charges every key its
    logical size and caps tuple depth when it builds the dict.
    """
    kind = type(obj)
    if kind is list or kind is tuple or kind is dict:
        return iter(obj.values()) if kind is dict else iter(obj)
    if isinstance(obj, dict):
        attrs = getattr(obj, "attrs", None)
        return chain(obj.values(), (attrs,)) if attrs else iter(obj.values())
    if isinstance(obj, Stub):
        return chain((obj.state,), obj.args, obj.items, obj.entries.values())
    return iter(obj)  # a list or tuple subclass


def tree_shape(root: Any, *, max_nodes: int = MAX_NODES) -> TreeShape:
    """Walk the distinct containers under ``root`` once, depth first, without recursion."""
    if not isinstance(root, _CONTAINERS):
        return TreeShape(0, 0, 1, 0, False, True)
    containers = _CONTAINERS
    done: dict[int, tuple[int, int] | None] = {id(root): None}  # None while on the current path
    lookup = done.get
    frames: list[list[Any]] = [[root, _kids(root), 1, 0]]  # node, its children, expanded, depth
    push = frames.append
    edges, plain_back_edge, complete = 0, False, True
    while frames:
        frame = frames[-1]
        for child in frame[1]:
            edges += 1
            if not isinstance(child, containers):
                frame[2] += 1
                continue
            if not child and not getattr(child, "attrs", None):  # empty (module hook dicts): a leaf
                frame[2] += 1
                if not frame[3]:
                    frame[3] = 1
                continue
            seen = lookup(id(child), 0)
            if seen is None:  # a cycle: the child is an ancestor on the current path
                plain_back_edge |= isinstance(child, _PLAIN) and isinstance(frame[0], _PLAIN)
                continue
            if seen:
                frame[2] += seen[0]
                if seen[1] >= frame[3]:
                    frame[3] = seen[1] + 1
                continue
            if len(done) >= max_nodes:
                complete = False
                continue
            done[id(child)] = None
            push([child, _kids(child), 1, 0])
            if len(frames) > NESTING_LIMIT:  # deep enough to call it a trap: stop here
                return TreeShape(len(done), edges, frame[2], len(frames), False, complete)
            break
        else:
            frames.pop()
            expanded = frame[2] if frame[2] < _CAP else _CAP
            done[id(frame[0])] = (expanded, frame[3])
            if frames:
                parent = frames[-1]
                parent[2] += expanded
                if frame[3] >= parent[3]:
                    parent[3] = frame[3] + 1
    root_expanded, root_depth = done[id(root)] or (1, 0)
    cycle = plain_back_edge and _has_plain_cycle(root)
    return TreeShape(len(done), edges, root_expanded, root_depth + 1, cycle, complete)


def _has_plain_cycle(root: Any) -> bool:
    """True if some plain container reaches itself through plain containers alone.

    A back edge found by the full walk may close a loop through a stand-in; this second walk,
    over the plain containers only, decides. It runs only when the first one saw a candidate.
    """
    state: dict[int, bool] = {}  # False while on the current path, True once finished
    for start in _plain_nodes(root):
        if id(start) in state:
            continue
        state[id(start)] = False
        frames: list[tuple[Any, Iterator[Any]]] = [(start, _kids(start))]
        while frames:
            node, kids = frames[-1]
            for child in kids:
                if not isinstance(child, _PLAIN):
                    continue
                mark = state.get(id(child))
                if mark is False:
                    return True
                if mark is None:
                    state[id(child)] = False
                    frames.append((child, _kids(child)))
                    break
            else:
                frames.pop()
                state[id(node)] = True
    return False


def _plain_nodes(root: Any) -> Iterator[Any]:
    """Every distinct plain container reachable from ``root`` (through anything)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if not isinstance(obj, _CONTAINERS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _PLAIN):
            yield obj
        stack.extend(_kids(obj))


def tree_traps(roots: list[tuple[str, Any]]) -> list[Finding]:
    """``resource.*`` findings for the pickled values ``roots`` (where each came from, value)."""
    findings: list[Finding] = []
    for where, root in roots:
        shape = tree_shape(root)
        if shape.depth > NESTING_LIMIT:
            findings.append(Finding(
                "resource.deep-nesting", "error",
                f"containers nest more than {NESTING_LIMIT} levels deep; recursive tools (repr, json, "
                "copy.deepcopy, load_state_dict) fail on it", where=where,
                hint="no checkpoint needs this depth; the file was built to crash whoever walks it"))
        if shape.expanded > max(EXPANSION_MIN, EXPANSION_RATIO * shape.edges):
            size = "more than 2**62" if shape.expanded >= _CAP else f"{shape.expanded:,}"
            findings.append(Finding(
                "resource.memo-explosion", "error",
                f"{shape.containers:,} shared containers expand to {size} nodes for a walker that "
                "copies, prints or serialises them", where=where,
                hint="memo references reused to build an exponential structure from a few bytes"))
        if shape.plain_cycle:
            findings.append(Finding(
                "resource.self-containing", "error",
                "a plain list, dict or tuple contains itself; recursive tools loop or overflow on it",
                where=where, hint="cycles through pickled objects are normal; plain containers never need one"))
        if not shape.complete:
            findings.append(Finding(
                "resource.object-count", "error",
                f"the pickle holds more than {MAX_NODES:,} containers; not all were analysed", where=where))
    return findings
