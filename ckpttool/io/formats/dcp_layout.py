"""How a DCP folder's tensors are laid out across ranks: chunk counts, split dimensions, ranks.

Read from the chunk rows of ``.metadata`` alone (no data file is opened); ``inspect`` shows it.
Ranks come from the data file names torch's ``FileSystemWriter`` gives, ``__<rank>_<n>.distcp``.
"""

from __future__ import annotations

import re
from typing import Any

from ckpttool.io.formats.dcp_metadata import DcpMetadata, TensorEntry

__all__ = ["dcp_layout"]

_RANK = re.compile(r"__(\d+)_\d+\.distcp$")


def _rank(relative_path: str) -> int | None:
    m = _RANK.match(relative_path)
    return int(m.group(1)) if m else None


def _placement(entry: TensorEntry) -> dict[str, Any]:
    split: set[int] = set()
    ranks: set[int] = set()
    for chunk in entry.chunks:
        for dim, (o, s, d) in enumerate(zip(chunk.offsets, chunk.sizes, entry.shape)):
            if o != 0 or s != d:
                split.add(dim)
        r = _rank(chunk.item.relative_path)
        if r is not None:
            ranks.add(r)
    return {"chunks": len(entry.chunks), "split_dims": sorted(split), "ranks": sorted(ranks)}


def dcp_layout(meta: DcpMetadata) -> dict[str, Any]:
    """A JSON-ready summary: files, ranks, chunk entries, and each tensor's placement."""
    tensors = {fqn: _placement(e) for fqn, e in meta.entries.items() if isinstance(e, TensorEntry)}
    ranks = sorted({r for f in meta.files if (r := _rank(f)) is not None})
    by_split: dict[str, int] = {}
    for p in tensors.values():
        key = "whole" if p["chunks"] == 1 and not p["split_dims"] else \
            "dims " + ",".join(map(str, p["split_dims"])) if p["split_dims"] else "replicated"
        by_split[key] = by_split.get(key, 0) + 1
    return {"files": len(meta.files), "ranks": ranks, "chunk_entries": sum(p["chunks"] for p in tensors.values()),
            "values": len(meta.entries) - len(tensors), "split": by_split, "tensors": tensors}
