"""Shared and tied tensors in safetensors: stored once, the other names recorded in the metadata.

safetensors cannot say that ``lm_head.weight`` is ``embed.weight``; writing both would double
the file and lose the tie. ``dedupe`` keeps the first name of each identical view and returns the
others as aliases; the ``ckpttool.aliases`` metadata entry (JSON ``{alias: kept name}``) and
``ckpttool.order`` (the original key order, when the file's differs) let ``restore`` give back the
same state_dict, ties included, when converting back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ckpttool.model import TensorRef

__all__ = ["ALIASES_KEY", "ORDER_KEY", "dedupe", "restore", "alias_metadata"]

ALIASES_KEY = "ckpttool.aliases"
ORDER_KEY = "ckpttool.order"


def dedupe(tensors: Mapping[str, TensorRef]) -> tuple[dict[str, TensorRef], dict[str, str]]:
    """The tensors with each identical view kept once, and ``{alias: kept key}`` for the rest."""
    seen: dict[tuple[Any, ...], str] = {}
    unique: dict[str, TensorRef] = {}
    aliases: dict[str, str] = {}
    for key, t in tensors.items():
        ident = (id(t.storage), t.storage_offset, t.shape, t.stride, t.dtype)
        if t.numel and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen.setdefault(ident, key)
        unique[key] = t
    return unique, aliases


def alias_metadata(original_order: list[str], written_order: list[str], aliases: dict[str, str]) -> dict[str, str]:
    """The metadata entries that let ``restore`` rebuild ``original_order`` with its aliases."""
    out: dict[str, str] = {}
    if aliases:
        out[ALIASES_KEY] = json.dumps(aliases, separators=(",", ":"))
    if original_order != written_order:
        out[ORDER_KEY] = json.dumps(original_order, separators=(",", ":"))
    return out


def _json(metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata.get(key) or "null")
    except ValueError:
        return None


def restore(tensors: Mapping[str, TensorRef], metadata: Mapping[str, str]
            ) -> tuple[dict[str, TensorRef], dict[str, str]]:
    """The state_dict a deduplicated file stood for: aliases back as views of their storage, in order.

    Returns the tensors and the aliases restored. Metadata that does not fit the file (an alias of
    a missing key, an order that is not a permutation) is ignored.
    """
    raw = _json(metadata, ALIASES_KEY)
    aliases = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str) and v in tensors
               and k not in tensors} if isinstance(raw, dict) else {}
    order = _json(metadata, ORDER_KEY)
    names = set(tensors) | set(aliases)
    if not (isinstance(order, list) and len(order) == len(names) and set(order) == names):
        order = [*tensors, *aliases]
    out: dict[str, TensorRef] = {}
    for key in order:
        if key in tensors:
            out[key] = tensors[key]
        else:
            t = tensors[aliases[key]]
            out[key] = TensorRef(dtype=t.dtype, shape=t.shape, stride=t.stride, storage=t.storage,
                                 storage_offset=t.storage_offset)
    return out, aliases
