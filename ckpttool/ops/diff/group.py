"""``--group-by module``: roll entries up by module prefix so a 1,000-tensor diff reads as a dozen lines."""

from __future__ import annotations

from collections.abc import Iterable

from ckpttool.ops.diff.result import GroupRow, TensorDiff

__all__ = ["module_of", "group_entries"]

_STATUSES = ("identical", "close", "changed", "shape", "only_a", "only_b", "not_compared")


def module_of(key: str, depth: int) -> str:
    """The first ``depth`` components of ``key``'s module path (``backbone.0.weight`` → ``backbone``)."""
    parts = key.split(".")
    module = parts[:-1] if len(parts) > 1 else parts
    return ".".join(module[:max(depth, 1)])


def group_entries(entries: Iterable[tuple[str, TensorDiff]], depth: int) -> list[GroupRow]:
    """One row per module prefix, in first-seen order; ``entries`` are (section, entry) pairs."""
    rows: dict[str, list[TensorDiff]] = {}
    for section, e in entries:
        group = module_of(e.key, depth)
        rows.setdefault(group if section == "model" else f"{section}.{group}", []).append(e)
    return [_row(name, items) for name, items in rows.items()]


def _row(name: str, items: list[TensorDiff]) -> GroupRow:
    counts = {s: sum(e.status == s for e in items) for s in _STATUSES}
    counts["dtype_changed"] = sum(e.dtype_changed for e in items)
    measured = [e.stats for e in items if e.stats is not None]
    max_abs = [s.max_abs for s in measured if s.max_abs is not None]
    cosine = [s.cosine for s in measured if s.cosine is not None]
    return GroupRow(group=name, tensors=len(items), counts=counts, max_abs=max(max_abs) if max_abs else None,
                    min_cosine=min(cosine) if cosine else None, mismatched=sum(s.mismatched for s in measured))
