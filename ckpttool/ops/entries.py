"""Section entries that are not one plain tensor (``CompositeTensor``): described, kept, dropped.

Every operation that writes a state_dict takes its plain tensors through ``writable_tensors``, which
refuses (naming the key) to leave out a composite entry the user did not exclude with ``--drop``;
inspect and diff describe them with ``describe``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

from ckpttool.errors import OutputRefused
from ckpttool.io.tensor_findings import KIND_WORDS
from ckpttool.model import CompositeTensor, StateDict, TensorRef

__all__ = ["describe", "part_summary", "writable_tensors", "matches_drop", "KIND_WORDS"]



def part_summary(t: TensorRef) -> dict[str, Any]:
    return {"shape": list(t.shape), "dtype": t.dtype, "nbytes": t.nbytes}


def describe(entry: CompositeTensor) -> dict[str, Any]:
    """The JSON form of a composite entry: what it is, its logical dtype/shape, parts and state."""
    out: dict[str, Any] = {"shape": list(entry.shape) if entry.shape is not None else None,
                           "dtype": entry.dtype, "nbytes": entry.nbytes, "type": entry.kind,
                           "decoded": entry.decoded,
                           "parts": {k: part_summary(t) for k, t in entry.parts.items()},
                           "params": entry.params}
    if entry.note:
        out["note"] = entry.note
    return out


def matches_drop(key: str, patterns: Sequence[str]) -> bool:
    """True when ``key`` matches one of the ``--drop`` patterns (a glob, or ``re:REGEX``)."""
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.search(pattern[3:], key):
                return True
        elif fnmatch.fnmatchcase(key, pattern):
            return True
    return False


def writable_tensors(sd: StateDict, drop: Sequence[str] = (), *, target: str = "the output"
                     ) -> tuple[dict[str, TensorRef], list[str]]:
    """The plain tensors to write and the keys left out by ``drop``.

    Raises:
        OutputRefused: a composite entry (quantized, sparse, DTensor...) would be left out or
            altered and no ``--drop`` pattern names it.
    """
    dropped = [k for k in [*sd.tensors, *sd.composites] if drop and matches_drop(k, drop)]
    kept_composites = [k for k in sd.composites if k not in dropped]
    if kept_composites:
        key = kept_composites[0]
        entry = sd.composites[key]
        more = f" (and {len(kept_composites) - 1} more)" if len(kept_composites) > 1 else ""
        raise OutputRefused(
            f"tensor {key!r}{more} is a {KIND_WORDS.get(entry.kind, entry.kind)} ({entry.dtype}), which "
            f"{target} cannot hold without changing it",
            hint=f"exclude it explicitly (convert --drop {key!r}; globs and re:REGEX work), or keep the torch file")
    return {k: t for k, t in sd.tensors.items() if k not in dropped}, dropped
