"""Verification of a written file by reading it back with ckpttool's own reader.

Every tensor must come back with the dtype, shape and view it was written with, its bytes must
equal the bytes that were meant (the source streamed again and compared chunk by chunk with what
the reader returns: exact, and cheaper than hashing both sides), containers must hold the same
keys, plain values must be equal, and safetensors metadata must be present as written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, VerificationFailed
from ckpttool.io.buffers import Ring, same_tensor_bytes
from ckpttool.io.write.aliases import ALIASES_KEY, VIEWS_KEY
from ckpttool.io.write.pickle_writer import Expected, StubPart
from ckpttool.io.write.torch_zip import Written
from ckpttool.model import GlobalRef, Storage, Stub, TensorRef
from ckpttool.progress import ProgressSink, counted
from ckpttool.tree import get_path

__all__ = ["verify_written", "same_bytes"]


def _pieces(stream: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    return (p for p in stream if len(p))


def same_bytes(a: Iterable[bytes | memoryview], b: Iterable[bytes | memoryview]) -> bool:
    """True when two chunked byte streams hold the same bytes, whatever their chunking."""
    ia, ib = _pieces(a), _pieces(b)
    pa: bytes | memoryview = b""
    pb: bytes | memoryview = b""
    while True:
        if not len(pa):
            pa = next(ia, b"")
        if not len(pb):
            pb = next(ib, b"")
        if not len(pa) or not len(pb):
            return not len(pa) and not len(pb)
        if len(pa) == len(pb):
            if pa != pb if isinstance(pa, bytes) and isinstance(pb, bytes) else bytes(pa) != bytes(pb):
                return False
            pa = pb = b""
            continue
        n = min(len(pa), len(pb))
        if bytes(memoryview(pa)[:n]) != bytes(memoryview(pb)[:n]):
            return False
        pa, pb = memoryview(pa)[n:], memoryview(pb)[n:]


def _storage_bytes(storage: Storage) -> Iterator[bytes]:
    assert storage.source is not None
    return storage.source.chunks(storage.offset, storage.nbytes)


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
    elif e.kind == "stub":
        ok = isinstance(got, Stub) and got.qualname == e.value
    elif e.kind == "global":
        ok = isinstance(got, GlobalRef) and got.fullname == e.value
    else:
        t: TensorRef = e.value
        ok = (isinstance(got, TensorRef) and got.dtype == t.dtype and got.shape == t.shape
              and (got.stride == t.stride or got.numel == 0) and got.storage_offset == t.storage_offset
              and got.storage.key == e.storage_key)
        if ok:
            storages.setdefault(got.storage.key, got.storage)
    return None if ok else f"{where} did not read back as written"


def _resolve(tree: Any, path: tuple[Any, ...]) -> Any:
    """``get_path`` that also steps into a stand-in's recorded call arguments, state, items and entries."""
    if not any(isinstance(p, StubPart) for p in path):
        return get_path(tree, path)
    obj = tree
    for i, key in enumerate(path):
        if isinstance(key, StubPart):
            if not isinstance(obj, Stub):
                return None
            if key.name == "args":
                obj = obj.origin[2] if obj.origin is not None else obj.args
            else:
                obj = getattr(obj, key.name)
        else:
            obj = get_path(obj, path[i:i + 1])
    return obj


def _verify_torch(tree: Any, written: Written, progress: ProgressSink | None = None) -> None:
    storages: dict[str, Storage] = {}
    for e in written.expected:
        problem = _check(e, _resolve(tree, e.path), storages)
        if problem:
            raise VerificationFailed(problem)
    if set(storages) != set(written.sources):
        raise VerificationFailed("the storages read back are not the ones written")
    for key, meant in written.sources.items():
        if not same_bytes(counted(_storage_bytes(storages[key]), progress), meant()):
            raise VerificationFailed(f"storage {key} read back with different bytes")


def _recorded_names(metadata: dict[str, str]) -> set[str]:
    """The tied names and views the metadata records (the reader puts them back beside the rest)."""
    names: set[str] = set()
    for key in (ALIASES_KEY, VIEWS_KEY):
        try:
            value = json.loads(metadata.get(key) or "{}")
        except ValueError:
            continue
        if isinstance(value, dict):
            names |= {k for k in value if isinstance(k, str)}
    return names


def _verify_safetensors(tree: Any, metadata: dict[str, str], written: Written,
                        progress: ProgressSink | None = None) -> None:
    if not isinstance(tree, dict):
        raise VerificationFailed("the tensors read back are not the ones written")
    stored = [k for k in tree if k in written.sources]
    restored = set(tree) - set(written.sources)
    if set(stored) != set(written.sources) or not restored <= _recorded_names(metadata):
        raise VerificationFailed("the tensors read back are not the ones written")
    ring = Ring(2)
    for key, meant in written.sources.items():
        got = tree[key]
        if (got.dtype, got.shape) != written.dtypes[key]:
            raise VerificationFailed(f"tensor {key!r} read back differently")
        source = written.refs.get(key)
        same = (same_tensor_bytes(got, source, ring, progress) if isinstance(got, TensorRef) and source is not None
                else same_bytes(counted(got.chunks(), progress), meant()))
        if not same:
            raise VerificationFailed(f"tensor {key!r} read back differently")
    if metadata != (written.metadata or {}):
        raise VerificationFailed("the metadata read back is not the metadata written")


def verify_written(path: Path, fmt: str, written: Written, progress: ProgressSink | None = None) -> None:
    """Re-read ``path`` and raise ``VerificationFailed`` unless it holds exactly ``written``.

    ``progress`` is told each chunk of tensor bytes read back.
    """
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
            _verify_safetensors(read.tree, read.members.get("__metadata__", {}), written, progress)
        else:
            _verify_torch(read.tree, written, progress)
    except VerificationFailed as exc:
        exc.path = path
        raise
