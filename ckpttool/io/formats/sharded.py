"""Sharded checkpoints: ``*.safetensors.index.json`` / ``pytorch_model.bin.index.json`` and their shards.

Reading: the index's ``weight_map`` says which shard holds each key; every shard is opened lazily
(headers and pickles only) and the tensors are merged into one state_dict, in shard order (and
with the tied names ckpttool recorded in the index put back). Shard names must stay inside the
index's folder. Writing: tensors are packed in order into shards of at
most ``max_shard_size`` bytes (a bigger tensor gets a shard of its own), each shard written and
verified atomically, then the index; a failure removes the shards already written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import CkptError, OutputRefused, ResourceLimit, UnreadableCheckpoint, UsageError
from ckpttool.io.write.aliases import restore
from ckpttool.io.write.atomic import check_target, commit, temporary_output
from ckpttool.io.write.safetensors import safetensors_layout
from ckpttool.model import PickledDict, TensorRef

if TYPE_CHECKING:  # pragma: no cover
    from ckpttool.io import TreeRead
    from ckpttool.io.write.checkpoint import WriteResult

__all__ = ["read_sharded", "find_index", "write_sharded", "parse_size", "shard_paths", "MAX_INDEX_BYTES"]

MAX_INDEX_BYTES = 100_000_000
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def parse_size(text: str) -> int:
    """``2GB`` (10^9), ``500MiB`` (2^20) or a byte count, as bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise UsageError(f"cannot read the size {text!r}", hint="write it like 2GB, 500MB or 1GiB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise UsageError("the shard size must be positive")
    return size


# -- reading -----------------------------------------------------------------------------------

def find_index(folder: Path) -> Path | None:
    """The index file of a folder of shards, if it has exactly one (or a standard one)."""
    for name in INDEX_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.index.json"))
    return found[0] if len(found) == 1 else None


def _load_index(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise ResourceLimit(f"the index is {size} bytes (limit {MAX_INDEX_BYTES})", path=path)
    try:
        index = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnreadableCheckpoint(f"the shard index is not valid JSON: {exc}", path=path) from None
    wm = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise UnreadableCheckpoint("the shard index has no weight_map of names to files", path=path)
    return index


def _shard_file(folder: Path, name: str, index_path: Path) -> Path:
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not name:
        raise UnreadableCheckpoint(f"the index names a shard outside its folder: {name!r}", path=index_path)
    return folder / rel


def read_sharded(index_path: Path) -> TreeRead:
    """Every shard named by the index at ``index_path``, merged into one lazy state_dict."""
    from ckpttool.io import TreeRead, read_tree

    index = _load_index(index_path)
    weight_map: dict[str, str] = index["weight_map"]
    folder = index_path.parent
    tree = PickledDict(ordered=True)
    loads: list[Any] = []
    anomalies: list[str] = []
    size = index_path.stat().st_size
    shards: list[str] = []
    for name in sorted(set(weight_map.values())):
        file = _shard_file(folder, name, index_path)
        try:
            read = read_tree(file)
        except CkptError as exc:
            exc.message = f"shard {name}: {exc.message}"
            raise
        shards.append(name)
        size += read.size
        loads.extend(read.loads)
        anomalies.extend(f"{name}: {a}" for a in read.anomalies)
        part = read.tree if isinstance(read.tree, dict) else {}
        for key, value in part.items():
            if weight_map.get(key) == name:
                tree[key] = value
            elif isinstance(value, TensorRef):
                anomalies.append(f"shard {name} holds {key!r}, which the index does not map to it")
    missing = [k for k in weight_map if k not in tree]
    if missing:
        raise UnreadableCheckpoint(f"{len(missing)} tensor(s) of the index are missing from their shards "
                                   f"(first: {missing[0]!r} in {weight_map[missing[0]]})", path=index_path)
    meta = index.get("metadata") if isinstance(index.get("metadata"), dict) else {}
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    restored, _ = restore({k: v for k, v in tree.items() if isinstance(v, TensorRef)}, metadata)
    if len(restored) > len(tree):  # ckpttool-written shards: tied names and views back in place
        tree = PickledDict(restored, ordered=True)
    return TreeRead(index_path, "sharded", tree, size, loads, anomalies,
                    members={"__metadata__": metadata, "shards": shards})


# -- writing -----------------------------------------------------------------------------------

def _plan(tensors: Mapping[str, TensorRef], max_size: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    used = 0
    for key, t in tensors.items():
        if shards[-1] and used + t.nbytes > max_size:
            shards.append([])
            used = 0
        shards[-1].append(key)
        used += t.nbytes
    return shards


def shard_paths(output: Path, count: int) -> tuple[list[Path], Path]:
    """``model-00001-of-00003.safetensors``... and ``model.safetensors.index.json`` for ``output``."""
    stem = output.name.removesuffix(".safetensors")
    paths = [output.with_name(f"{stem}-{i:05d}-of-{count:05d}.safetensors") for i in range(1, count + 1)]
    return paths, output.with_name(f"{output.name}.index.json")


def write_sharded(tensors: Mapping[str, Any], output: Path, max_shard_size: int, *,
                  metadata: dict[str, str] | None = None, inputs: tuple[Path, ...] = (),
                  force: bool = False, jobs: int = 1, progress: Any = None
                  ) -> tuple[WriteResult, list[WriteResult]]:
    """Write ``tensors`` as safetensors shards beside ``output`` plus the standard index.

    A state_dict that fits in one shard is written as ``output`` itself, with no index, as the
    Hugging Face tools do. Returns the index (or single file) result and every shard's result.
    """
    from ckpttool.io.write.checkpoint import WriteResult, write_checkpoint

    if output.is_dir():
        output = output / "model.safetensors"
    if output.suffix != ".safetensors":
        raise UsageError("sharded output is safetensors: name it like model.safetensors")
    from ckpttool.io.write.earlier_set import earlier_set, remove_earlier

    refs = safetensors_layout(tensors)
    plan = _plan(refs, max_shard_size)
    paths, index_path = shard_paths(output, len(plan))
    earlier = earlier_set(output, index_path, inputs, force)
    if len(plan) == 1:
        single = write_checkpoint(dict(tensors), output, inputs=inputs, force=force, metadata=metadata,
                                  progress=progress)
        remove_earlier(earlier, keep=[output])
        return single, [single]
    for p in [*paths, index_path]:
        check_target(p, inputs, force)
    weight_map = {k: path.name for keys, path in zip(plan, paths) for k in keys}
    meta: dict[str, Any] = {"total_size": sum(t.nbytes for t in refs.values())}
    meta.update(metadata or {})
    data = json.dumps({"metadata": meta, "weight_map": weight_map}, indent=2, ensure_ascii=False).encode()
    from ckpttool.io.write.shard_set import write_shard_set

    done, index = write_shard_set(
        [{k: refs[k] for k in keys} for keys in plan], paths, inputs=inputs, force=force, jobs=jobs,
        progress=progress, publish=lambda: _write_index(index_path, data + b"\n", weight_map, force),
        replaces=earlier)
    return WriteResult(index_path, index[0], "sharded", len(refs), index[1]), done


def _write_index(path: Path, data: bytes, weight_map: dict[str, str], force: bool) -> tuple[str, int]:
    with temporary_output(path) as (tmp, sink):
        sink.write(data)
        os.fsync(sink.fd)
        if _load_index(tmp)["weight_map"] != weight_map:
            raise OutputRefused("the index did not read back as written", path=path)
        commit(tmp, path, force)
        return sink.hexdigest(), sink.position
