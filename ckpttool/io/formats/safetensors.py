"""safetensors: the header only; every tensor located by its byte range, read on demand.

Stricter than the safetensors crate where the crate is lenient (duplicate JSON keys, NaN tokens):
a header is at most 100 MB and within the file, valid UTF-8 JSON, each entry a known dtype with a
shape whose element count times itemsize equals its byte range, ranges contiguous from 0 with no
gap or overlap, covering the data exactly to the end of the file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ckpttool.dtypes import by_safetensors
from ckpttool.errors import ResourceLimit, TruncatedFile, UnreadableCheckpoint
from ckpttool.io.source import FileSource
from ckpttool.io.write.aliases import restore
from ckpttool.model import PickledDict, Storage, TensorRef

__all__ = ["read_safetensors", "MAX_HEADER", "looks_like_safetensors"]

MAX_HEADER = 100_000_000


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """True when the first bytes are a safetensors header length followed by ``{``.

    A length past the end of the file still counts: the reader then says what is wrong with the
    header (too long, too large) instead of "unrecognised bytes".
    """
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and n >= 2


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _header(path: Path, file: FileSource) -> tuple[dict[str, Any], int]:
    if file.size < 8:
        raise TruncatedFile("file too short for a safetensors header", path=path)
    (n,) = struct.unpack("<Q", file.read(0, 8))
    if 8 + n > file.size:  # a corrupt or truncated file, not one built to exhaust a reader
        raise TruncatedFile(f"safetensors header of {n} bytes is longer than the file", path=path)
    if n > MAX_HEADER:
        raise ResourceLimit(f"safetensors header declares {n} bytes (limit {MAX_HEADER})", path=path)
    try:
        header = json.loads(file.read(8, n).decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnreadableCheckpoint(f"safetensors header is not valid JSON: {exc}", path=path) from None
    if not isinstance(header, dict):
        raise UnreadableCheckpoint("safetensors header is not a JSON object", path=path)
    return header, 8 + n


def _tensor(path: Path, file: FileSource, name: str, info: Any, base: int) -> TensorRef:
    if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
        raise UnreadableCheckpoint(f"safetensors entry {name!r} is malformed", path=path)
    d = by_safetensors(info.get("dtype", ""))
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if d is None:
        raise UnreadableCheckpoint(f"tensor {name!r} has unknown dtype {info.get('dtype')!r}", path=path)
    if not isinstance(shape, list) or not all(type(s) is int and 0 <= s < 1 << 63 for s in shape) or len(shape) > 64:
        raise UnreadableCheckpoint(f"tensor {name!r} has an invalid shape", path=path)
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and 0 <= o < 1 << 63 for o in offsets) or offsets[0] > offsets[1]):
        raise UnreadableCheckpoint(f"tensor {name!r} has invalid data offsets", path=path)
    numel = 1
    for s in shape:
        numel *= s
    if numel * d.itemsize != offsets[1] - offsets[0]:
        raise UnreadableCheckpoint(
            f"tensor {name!r}: shape {shape} of {d.name} needs {numel * d.itemsize} bytes, "
            f"its range holds {offsets[1] - offsets[0]}", path=path)
    storage = Storage(key=name, dtype=d.name, nbytes=offsets[1] - offsets[0], location="cpu",
                      source=file, offset=base + offsets[0])
    stride: list[int] = []
    acc = 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= s
    return TensorRef(dtype=d.name, shape=tuple(shape), stride=tuple(reversed(stride)), storage=storage)


def read_safetensors(path: Path, file: FileSource) -> tuple[PickledDict, dict[str, str]]:
    """The tensors of a safetensors file, in file order, and its ``__metadata__``."""
    header, base = _header(path, file)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise UnreadableCheckpoint("safetensors __metadata__ must map strings to strings", path=path)
    tensors = {name: _tensor(path, file, name, info, base) for name, info in header.items()}
    ordered = sorted(tensors.items(), key=lambda kv: (kv[1].storage.offset, kv[1].storage.nbytes))
    expected = base
    for name, ref in ordered:
        if ref.storage.offset != expected:
            what = "overlaps another" if ref.storage.offset < expected else "leaves a gap before it"
            raise UnreadableCheckpoint(f"tensor {name!r} {what} in the data section", path=path)
        expected += ref.storage.nbytes
    if expected != file.size:
        raise UnreadableCheckpoint(
            f"safetensors data ends at byte {expected} but the file has {file.size}", path=path)
    # A file ckpttool wrote stored each tied tensor once; its tied names and views come back here,
    # so inspect and diff see the state_dict that was converted.
    restored, _ = restore(dict(ordered), metadata)
    return PickledDict(restored, ordered=True), metadata
