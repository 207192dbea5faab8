"""Shared and tied tensors in safetensors: stored once, the other names recorded in the metadata.

safetensors cannot say that ``lm_head.weight`` is ``embed.weight``, or that ``w_t`` is ``w.t()``;
writing both would double the bytes and lose the sharing. ``dedupe`` keeps:
- for identical views (a tie), the first name, and records the others in ``ckpttool.aliases``
  (JSON ``{alias: kept name}``);
- for other views of a storage that one contiguous tensor covers whole (a fused ``qkv`` and its
  slices, a weight and its transpose), the covering tensor, and records each view in
  ``ckpttool.views`` (JSON ``{name: [covering name, offset, shape, stride]}``, in elements).
``ckpttool.order`` keeps the original key order when the file's differs. ``restore`` rebuilds the
same state_dict, sharing included, when converting back; views whose bounds do not fit are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import UnreadableCheckpoint
from ckpttool.model import TensorRef

__all__ = ["ALIASES_KEY", "ORDER_KEY", "VIEWS_KEY", "Deduped", "dedupe", "restore", "alias_metadata"]

ALIASES_KEY = "ckpttool.aliases"
VIEWS_KEY = "ckpttool.views"
ORDER_KEY = "ckpttool.order"

View = tuple[str, int, tuple[int, ...], tuple[int, ...]]


@dataclass
class Deduped:
    """The tensors to write, and the names left out as aliases or views of them."""

    tensors: dict[str, TensorRef]
    aliases: dict[str, str] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)


def _covers(t: TensorRef) -> bool:
    return t.is_contiguous and t.storage_offset == 0 and t.nbytes == t.storage.nbytes and t.numel > 0


def dedupe(tensors: Mapping[str, TensorRef]) -> Deduped:
    """Each storage written once: ties become aliases, views of a covering tensor become views."""
    seen: dict[tuple[Any, ...], str] = {}
    cover: dict[int, str] = {}
    for key, t in tensors.items():
        if _covers(t):
            cover.setdefault(id(t.storage), key)
    out = Deduped({})
    for key, t in tensors.items():
        ident = (id(t.storage), t.storage_offset, t.shape, t.stride, t.dtype)
        if t.numel and ident in seen:
            out.aliases[key] = seen[ident]
            continue
        seen.setdefault(ident, key)
        owner = cover.get(id(t.storage))
        if t.numel and owner is not None and owner != key and tensors[owner].dtype == t.dtype:
            out.views[key] = (owner, t.storage_offset, t.shape, t.stride)
            continue
        out.tensors[key] = t
    return out


def alias_metadata(original_order: list[str], written_order: list[str], d: Deduped) -> dict[str, str]:
    """The metadata entries that let ``restore`` rebuild ``original_order`` with its aliases and views."""
    out: dict[str, str] = {}
    if d.aliases:
        out[ALIASES_KEY] = json.dumps(d.aliases, separators=(",", ":"))
    if d.views:
        out[VIEWS_KEY] = json.dumps({k: [o, off, list(sh), list(st)] for k, (o, off, sh, st) in d.views.items()},
                                    separators=(",", ":"))
    if original_order != written_order:
        out[ORDER_KEY] = json.dumps(original_order, separators=(",", ":"))
    return out


def _json(metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata.get(key) or "null")
    except ValueError:
        return None


def _ints(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, list) and len(value) <= 64 and all(type(v) is int and v >= 0 for v in value):
        return tuple(value)
    return None


def _view(key: str, spec: Any, tensors: Mapping[str, TensorRef]) -> TensorRef:
    bad = UnreadableCheckpoint(f"the {VIEWS_KEY} entry for {key!r} does not fit the file")
    if not (isinstance(spec, list) and len(spec) == 4 and spec[0] in tensors and type(spec[1]) is int):
        raise bad
    owner, offset, shape, stride = tensors[spec[0]], spec[1], _ints(spec[2]), _ints(spec[3])
    if shape is None or stride is None or len(shape) != len(stride) or offset < 0:
        raise bad
    if all(shape):
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= owner.numel:
            raise bad
    return TensorRef(dtype=owner.dtype, shape=shape, stride=stride, storage=owner.storage, storage_offset=offset)


def restore(tensors: Mapping[str, TensorRef], metadata: Mapping[str, str]
            ) -> tuple[dict[str, TensorRef], dict[str, str]]:
    """The state_dict a deduplicated file stood for: aliases and views back over their storage, in order.

    Returns the tensors and the aliases restored. Aliases of missing keys and an order that is not a
    permutation are ignored; a view that does not fit its covering tensor is refused.
    """
    raw_views = _json(metadata, VIEWS_KEY)
    views = {k: _view(k, v, tensors) for k, v in raw_views.items()
             if isinstance(k, str) and k not in tensors} if isinstance(raw_views, dict) else {}
    raw = _json(metadata, ALIASES_KEY)
    raw = raw if isinstance(raw, dict) else {}
    aliases = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)
               and (v in tensors or v in views) and k not in tensors and k not in views}
    order = _json(metadata, ORDER_KEY)
    names = set(tensors) | set(aliases) | set(views)
    if not (isinstance(order, list) and len(order) == len(names) and set(order) == names):
        order = [*tensors, *aliases, *views]
    out: dict[str, TensorRef] = {}
    for key in order:
        if key in tensors:
            out[key] = tensors[key]
        elif key in views:
            out[key] = views[key]
        else:
            t = tensors[aliases[key]] if aliases[key] in tensors else views[aliases[key]]
            out[key] = TensorRef(dtype=t.dtype, shape=t.shape, stride=t.stride, storage=t.storage,
                                 storage_offset=t.storage_offset)
    return out, aliases
