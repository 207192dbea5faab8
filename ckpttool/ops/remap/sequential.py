"""Named layers <-> ``nn.Sequential`` containers, from a layout file.

A layout names each Sequential container and its layers in order, parameter-free ones included,
because ``nn.Sequential`` numbers every child::

    drop = ["conv_a"]                 # modules the Sequential model no longer has (optional)
    stateless = ["act"]               # parameter-free names not obvious from their name (optional)
    [sequential]
    backbone = ["conv1", "relu", "pool", "conv2", "relu", "pool"]   # conv1 -> backbone.0, conv2 -> backbone.3
    head = ["fc1", ["fc5", "relu"]]                                  # nested: fc5 -> head.1.0

Containers may also sit at the top level when there is no ``[sequential]`` table; dotted container
names (``encoder.body``) and dotted layer paths (``layer1.0``) work. ``--to named`` inverts the same file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import UsageError
from ckpttool.ops.remap.rules import ModuleMap, Rule, under

__all__ = ["SequentialLayout", "load_layout", "parse_layout", "to_sequential", "to_named", "module_paths"]

# Names that are parameter-free layers in practice; a layout may list others under ``stateless``.
_STATELESS = re.compile(
    r"^(relu6?|gelu|silu|swish|mish|elu|selu|celu|leaky_?relu|hard_?(swish|sigmoid|tanh)|sigmoid|tanh|softmax|"
    r"log_?softmax|act\w*|activation|nonlin\w*|(max_?|avg_?|adaptive_?(avg|max)_?|global_?)?pool\w*|dropout\w*|"
    r"drop(_?path)?|flatten|unflatten|identity|upsample\w*|pad\w*|zero_?pad\w*|reshape|view|noop|none)\d*$",
    re.IGNORECASE)


@dataclass
class SequentialLayout:
    """``pairs``: (named module path, Sequential path) for every layout entry, containers in file order."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    stateless: set[str] = field(default_factory=set)
    source: str = "layout"


def _containers(table: dict[str, Any], where: str) -> list[tuple[str, list[Any]]]:
    """(dotted container path, entry list) for every array, flattening TOML's dotted-key tables."""
    out: list[tuple[str, list[Any]]] = []
    stack: list[tuple[str, Any]] = [(k, v) for k, v in reversed(list(table.items()))]
    while stack:
        path, value = stack.pop()
        if isinstance(value, list):
            out.append((path, value))
        elif isinstance(value, dict):
            stack += [(f"{path}.{k}", v) for k, v in reversed(list(value.items()))]
        else:
            raise UsageError(f"{where}: {path} must be a list of layer names, not {type(value).__name__}")
    return out


def _entries(container: str, items: list[Any], where: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    stack: list[tuple[str, list[Any], int]] = [(container, items, 0)]
    while stack:
        prefix, seq, i = stack.pop()
        if i >= len(seq):
            continue
        stack.append((prefix, seq, i + 1))
        entry = seq[i]
        if isinstance(entry, list):
            stack.append((f"{prefix}.{i}", entry, 0))
        elif isinstance(entry, str) and entry and all(entry.split(".")):
            pairs.append((entry, f"{prefix}.{i}"))
        else:
            raise UsageError(f"{where}: {prefix}[{i}] must be a layer name or a nested list, got {entry!r}")
    return pairs


def _names(value: Any, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where}: {key} must be a list of module names")
    return list(value)


def parse_layout(data: dict[str, Any], where: str = "layout") -> SequentialLayout:
    """A layout from a parsed TOML document (see the module docstring)."""
    data = dict(data)
    drop = _names(data.pop("drop", []), "drop", where)
    stateless = set(_names(data.pop("stateless", []), "stateless", where))
    table = data.pop("sequential", None)
    if table is not None and data:
        raise UsageError(f"{where}: unknown top-level key(s) {', '.join(data)} beside [sequential]")
    table = data if table is None else table
    if not isinstance(table, dict) or not table:
        raise UsageError(f"{where}: no Sequential container in the layout",
                         hint='write e.g. backbone = ["conv1", "relu", "pool"] under [sequential]')
    layout = SequentialLayout(drop=drop, stateless=stateless, source=where)
    for container, items in _containers(table, where):
        if not all(container.split(".")):
            raise UsageError(f"{where}: {container!r} is not a module path")
        layout.containers.append(container)
        layout.pairs += _entries(container, items, where)
    return layout


def load_layout(path: Path) -> SequentialLayout:
    """A layout from a TOML file; a bad file is a ``UsageError`` naming it."""
    from ckpttool.ops.remap.rules_file import read_toml

    return parse_layout(read_toml(path, "layout file"), str(path))


def module_paths(keys: Iterable[str]) -> set[str]:
    """Every module path that holds a tensor somewhere below it (``a``, ``a.b`` for ``a.b.weight``)."""
    out: set[str] = set()
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts)):
            out.add(".".join(parts[:n]))
    return out


def to_sequential(layout: SequentialLayout, keys: Iterable[str], known_modules: Iterable[str] = ()) -> list[Rule]:
    """Rules moving named layers into their containers, plus drops; unknown names are errors.

    ``known_modules`` are modules the input records without tensors (torch's ``_metadata``), which
    are accepted as parameter-free like the names in ``stateless``.
    """
    have = module_paths(keys)
    known = set(known_modules) | layout.stateless
    entries: dict[str, tuple[str | None, str]] = {}
    unknown: list[str] = []
    for name, seq in layout.pairs:
        if name in have:
            if name in entries:
                raise UsageError(f"{layout.source}: {name} holds tensors and appears twice in the layout")
            entries[name] = (seq, f"layout {seq.rpartition('.')[0]}[{seq.rpartition('.')[2]}]")
        elif name not in known and not _STATELESS.match(name.rpartition(".")[2]):
            unknown.append(f"{name} (at {seq})")
    for name in layout.drop:
        if name not in have:
            unknown.append(f"{name} (in drop)")
    if unknown:
        hint = ("is the input already in Sequential form? try --to named" if not entries else
                "fix the name, or list parameter-free layers under stateless = [...]")
        raise UsageError(f"{layout.source}: layout names match no module of the input: {', '.join(unknown)}",
                         hint=hint)
    for name in layout.drop:  # in the same map, so a drop under a moved module still applies
        entries[name] = (None, "layout drop")
    return [ModuleMap(entries=entries, name="layout")]


def to_named(layout: SequentialLayout, keys: Iterable[str]) -> list[Rule]:
    """Rules moving Sequential children back to their names; indices not in the layout are errors."""
    keys = list(keys)
    have = module_paths(keys)
    missing = [c for c in layout.containers if c not in have]
    if len(missing) == len(layout.containers):
        raise UsageError(f"{layout.source}: no container of the layout ({', '.join(missing)}) is in the input",
                         hint="is the input already in named form? try --to sequential")
    entries = {seq: (name, f"layout {seq} -> {name}") for name, seq in layout.pairs if seq in have}
    rule = ModuleMap(entries=entries, name="layout")
    stray = sorted({key for key in keys if rule.match(key) is None
                    and any(under(key, c) for c in layout.containers)})
    if stray:
        raise UsageError(f"{layout.source}: keys inside a layout container have no layout entry: "
                         f"{', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''}",
                         hint="the layout must list every child of the container, in order")
    return [rule]
