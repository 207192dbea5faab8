"""Verification of a written file by reading it back with ckpttool's own reader.

Every tensor must come back with the dtype, shape and view it was written with, its bytes must
hash to the digest taken while writing (streamed, chunk by chunk), containers must hold the same
keys, plain values must be equal, and safetensors metadata must be present as written.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, VerificationFailed
from ckpttool.io.pickle_writer import Expected
from ckpttool.io.torch_writer import Written
from ckpttool.model import Storage, TensorRef
from ckpttool.tree import get_path

__all__ = ["verify_written"]


def _digest(storage: Storage) -> str:
    h = hashlib.sha256()
    assert storage.source is not None
    for piece in storage.source.chunks(storage.offset, storage.nbytes):
        h.update(piece)
    return h.hexdigest()


def _same_leaf(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b) and not (isinstance(a, int) and isinstance(b, int) and type(a) is not bool):
        return False
    return bool(a == b)


def _check(e: Expected, got: Any, storages: dict[str, Storage]) -> str | None:
    where = ".".join(str(p) for p in e.path) or "the root"
    if e.kind == "dict":
        ok = isinstance(got, dict) and list(got) == e.value
    elif e.kind == "list":
        ok = isinstance(got, list) and len(got) == e.value
    elif e.kind == "tuple":
        ok = isinstance(got, tuple) and len(got) == e.value
    elif e.kind == "leaf":
        ok = _same_leaf(e.value, got)
    else:
        t: TensorRef = e.value
        ok = (isinstance(got, TensorRef) and got.dtype == t.dtype and got.shape == t.shape
              and (got.stride == t.stride or got.numel == 0) and got.storage_offset == t.storage_offset
              and got.storage.key == e.storage_key)
        if ok:
            storages.setdefault(got.storage.key, got.storage)
    return None if ok else f"{where} did not read back as written"


def _verify_torch(tree: Any, written: Written) -> None:
    storages: dict[str, Storage] = {}
    for e in written.expected:
        problem = _check(e, get_path(tree, e.path), storages)
        if problem:
            raise VerificationFailed(problem)
    if set(storages) != set(written.digests):
        raise VerificationFailed("the storages read back are not the ones written")
    for key, want in written.digests.items():
        if _digest(storages[key]) != want:
            raise VerificationFailed(f"storage {key} read back with different bytes")


def _verify_safetensors(tree: Any, metadata: dict[str, str], written: Written) -> None:
    if not isinstance(tree, dict) or list(tree) != list(written.digests):
        raise VerificationFailed("the tensors read back are not the ones written")
    for key, want in written.digests.items():
        got = tree[key]
        if (got.dtype, got.shape) != written.dtypes[key] or got.digest() != want:
            raise VerificationFailed(f"tensor {key!r} read back differently")
    if metadata != (written.metadata or {}):
        raise VerificationFailed("the metadata read back is not the metadata written")


def verify_written(path: Path, fmt: str, written: Written) -> None:
    """Re-read ``path`` and raise ``VerificationFailed`` unless it holds exactly ``written``."""
    from ckpttool.io import read_tree

    try:
        read = read_tree(path)
    except CkptError as exc:
        raise VerificationFailed(f"the written file does not read back: {exc.message}", path=path) from None
    expected_format = "safetensors" if fmt == "safetensors" else "torch-zip"
    if read.format != expected_format:
        raise VerificationFailed(f"the written file reads back as {read.format}", path=path)
    try:
        if fmt == "safetensors":
            _verify_safetensors(read.tree, read.members.get("__metadata__", {}), written)
        else:
            _verify_torch(read.tree, written)
    except VerificationFailed as exc:
        exc.path = path
        raise
