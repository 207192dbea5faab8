"""Hugging Face ``.bin`` shard sets: ``pytorch_model-00001-of-0000N.bin`` + ``pytorch_model.bin.index.json``.

What ``save_pretrained(safe_serialization=False)`` and ``huggingface_hub.save_torch_state_dict``
write: each shard a ``torch.save`` of an ordered dict of tensors, the index a ``weight_map`` from key
to shard plus ``total_size``. Tensors that share a storage (tied weights, views) go into the same
shard, so each storage is written once and ``torch.load`` gives them back shared, as in the source.
Every shard is written and verified atomically, then the index; a failure removes what was written.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ckpttool.errors import OutputRefused, UsageError
from ckpttool.io.formats.sharded import _write_index
from ckpttool.io.write.atomic import check_target
from ckpttool.io.write.checkpoint import WriteResult, write_checkpoint
from ckpttool.io.write.earlier_set import earlier_set, remove_earlier
from ckpttool.io.write.shard_set import publish_shards
from ckpttool.model import PickledDict, TensorRef
from ckpttool.progress import Planned, ProgressSink

__all__ = ["write_bin_shards", "bin_output", "is_bin_output"]


def is_bin_output(output: Path) -> bool:
    """``pytorch_model.bin`` or ``pytorch_model.bin.index.json``: a name ``--max-shard-size`` shards as .bin."""
    return output.name.endswith(".bin") or output.name.endswith(".bin.index.json")


def bin_output(output: Path) -> Path:
    """The single-file name for ``output`` (``x.bin.index.json`` -> ``x.bin``)."""
    return output.with_name(output.name.removesuffix(".index.json"))


def _storage_bytes(tensors: Mapping[str, TensorRef], keys: list[str]) -> int:
    """The bytes of the distinct storages behind ``keys``: what a shard of them writes."""
    seen = {id(tensors[k].storage): tensors[k] for k in keys}
    return sum(t.storage.nbytes if t.storage.source is not None else t.nbytes for t in seen.values())


def _plan(tensors: Mapping[str, TensorRef], max_size: int) -> list[list[str]]:
    """Keys in shards of at most ``max_size`` bytes of storage, keys sharing a storage kept together."""
    groups: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    for key, t in tensors.items():
        groups.setdefault(id(t.storage), []).append(key)
        sizes[id(t.storage)] = t.storage.nbytes if t.storage.source is not None else t.nbytes
    shards: list[list[str]] = [[]]
    used = 0
    for sid, keys in groups.items():
        if shards[-1] and used + sizes[sid] > max_size:
            shards.append([])
            used = 0
        shards[-1].extend(keys)
        used += sizes[sid]
    return shards


def write_bin_shards(tensors: Mapping[str, TensorRef], output: Path, max_shard_size: int, *,
                     inputs: tuple[Path, ...] = (), force: bool = False, progress: ProgressSink | None = None
                     ) -> tuple[WriteResult, list[WriteResult]]:
    """Write ``tensors`` as ``.bin`` shards beside ``output`` plus their index (one file if it fits).

    ``progress`` is told the whole set's bytes (written and read back) up front, then each chunk.
    """
    if not is_bin_output(output):
        raise UsageError("a .bin shard set is named like pytorch_model.bin or pytorch_model.bin.index.json")
    single = bin_output(output)
    plan = _plan(tensors, max_shard_size)
    order = [k for keys in plan for k in keys]
    index_path = single.with_name(f"{single.name}.index.json")
    earlier = earlier_set(single, index_path, inputs, force)
    if len(plan) == 1:
        one = write_checkpoint(PickledDict({k: tensors[k] for k in order}, ordered=True), single,
                               inputs=inputs, force=force, progress=progress)
        remove_earlier(earlier, keep=[single])
        return one, [one]
    stem = single.name.removesuffix(".bin")
    paths = [single.with_name(f"{stem}-{i:05d}-of-{len(plan):05d}.bin") for i in range(1, len(plan) + 1)]
    for p in [*paths, index_path]:
        check_target(p, inputs, force)
    staging = single.parent / f".ckpttool-part-{secrets.token_hex(4)}"  # the final names, so each archive's
    hidden = [staging / p.name for p in paths]                           # inner folder is named as torch.save's
    done: list[WriteResult] = []
    planned = [2 * _storage_bytes(tensors, keys) for keys in plan]
    if progress is not None:
        progress.start(sum(planned))
    try:
        staging.mkdir()
    except OSError as exc:
        raise OutputRefused(f"cannot create a folder in {single.parent}: {exc.strerror or exc}", path=output) from None
    try:
        for keys, path, h, size in zip(plan, paths, hidden, planned):  # under hidden names until all are written
            r = write_checkpoint(PickledDict({k: tensors[k] for k in keys}, ordered=True), h,
                                 inputs=inputs, force=False,
                                 progress=Planned(progress, size) if progress is not None else None)
            done.append(WriteResult(path, r.sha256, r.format, r.tensors, r.nbytes))
        weight_map = {k: path.name for keys, path in zip(plan, paths) for k in keys}
        meta: dict[str, Any] = {"total_size": sum(t.nbytes for t in tensors.values())}
        data = json.dumps({"metadata": meta, "weight_map": weight_map}, indent=2, ensure_ascii=False).encode()
        sha, nbytes = publish_shards(hidden, paths, force,
                                     lambda: _write_index(index_path, data + b"\n", weight_map, force), earlier)
    finally:
        for h in hidden:
            with contextlib.suppress(OSError):
                h.unlink()
        with contextlib.suppress(OSError):
            staging.rmdir()
    return WriteResult(index_path, sha, "sharded", len(tensors), nbytes), done
