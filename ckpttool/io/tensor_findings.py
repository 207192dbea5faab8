"""Findings about the tensors of a checkpoint that are not plain: what could not be decoded.

Every ``CompositeTensor`` is an entry of its section; the ones ckpttool cannot interpret (an unknown
subclass or rebuild function) and DTensors (one rank's shard only) are also said out loud, once each.
"""

from __future__ import annotations

from typing import Any

from ckpttool.errors import ResourceLimit
from ckpttool.model import CompositeTensor, Finding
from ckpttool.tree import walk

__all__ = ["composite_entries", "tensor_findings", "KIND_WORDS", "refuse_composites"]

KIND_WORDS = {
    "quantized": "quantized tensor", "sparse_coo": "sparse COO tensor", "sparse_csr": "sparse CSR tensor",
    "sparse_csc": "sparse CSC tensor", "sparse_bsr": "sparse BSR tensor", "sparse_bsc": "sparse BSC tensor",
    "nested": "nested tensor", "dtensor": "DTensor", "torchao": "torchao quantized tensor",
    "subclass": "tensor subclass", "packed_params": "packed quantized-layer parameters",
    "unknown": "tensor of an unknown kind",
}


def composite_entries(tree: Any) -> list[tuple[str, CompositeTensor]]:
    """Every distinct ``CompositeTensor`` in the tree with the first path reaching it."""
    seen: set[int] = set()
    out: list[tuple[str, CompositeTensor]] = []
    for path, obj in walk(tree):
        if isinstance(obj, CompositeTensor) and id(obj) not in seen:
            seen.add(id(obj))
            out.append((path, obj))
    return out


def refuse_composites(tree: Any, target: str) -> None:
    """Refuse to write a tree holding composite tensors: the writers cannot reproduce them unchanged.

    Raises:
        OutputRefused: naming the first such entry, with how to exclude it.
    """
    from ckpttool.errors import OutputRefused

    found = composite_entries(tree)
    if not found:
        return
    path, entry = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    raise OutputRefused(
        f"{path or '<root>'!r}{more} is a {KIND_WORDS.get(entry.kind, entry.kind)} ({entry.dtype}), which "
        f"{target} cannot hold without changing it",
        hint="exclude it explicitly: convert --section model --drop PATTERN (a state_dict key glob or "
             "re:REGEX), or keep the original file")


def tensor_findings(tree: Any) -> list[Finding]:
    """``tensor.not-decoded`` and ``tensor.dtensor-shard`` findings for the tree's composites.

    A tree too deep or too large to walk gets none here: every command that walks it refuses it.
    """
    out: list[Finding] = []
    shards = []
    try:
        entries = composite_entries(tree)
    except ResourceLimit:
        return out
    for path, entry in entries:
        if not entry.decoded:
            out.append(Finding(
                "tensor.not-decoded", "warn",
                f"{path or '<root>'} is a {entry.params.get('class', entry.rebuild)} tensor ckpttool does "
                f"not decode: its {len(entry.parts)} inner tensor(s) and state are listed and compared, "
                "its values are not",
                hint="writers refuse it unless it is excluded with --drop", where=path))
        elif entry.kind == "dtensor":
            shards.append(path)
    if shards:
        rank = next((e.params.get("rank") for _, e in entries if e.kind == "dtensor"), None)
        who = f"rank {rank}'s" if rank is not None else "one rank's"
        out.append(Finding(
            "tensor.dtensor-shard", "info",
            f"{len(shards)} DTensor(s) saved with plain torch.save: the file holds {who} local shards, "
            "not the whole tensors",
            hint="gather them with torch.distributed.checkpoint, or save full_tensor() on each rank",
            where=shards[0]))
    return out
