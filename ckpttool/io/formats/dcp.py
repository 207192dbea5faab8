"""``torch.distributed.checkpoint`` folders (``.metadata`` + ``*.distcp``), read without torch.

- ``.metadata`` goes through ckpttool's safe VM (``dcp_metadata``): every tensor's dtype, global
  shape and chunks, every non-tensor entry, nested back into the original tree with the
  planner's paths.
- Each tensor becomes one lazy ``TensorRef`` over a ``BoxSource``: its chunks, saved by any number
  of ranks (``Shard(0)``, ``Shard(1)``, 2-D meshes, uneven last shards), are read straight from
  the ``*.distcp`` items that ``.metadata`` names, chunk by chunk, only when asked for
  (``dcp_items``). No call into torch's DCP reader: no full ``pickle`` of ``.metadata``, no
  whole-model buffer.
- Non-tensor entries are small ``torch.save`` archives; they are read when the folder is opened,
  through the same safe VM as any ``.pt``, so inspect shows them and scan sees their globals.

A ``.metadata`` naming classes torch's DCP writer never pickles is flagged by the VM like any
pickle, and its tensor data is refused (``UnsafeContent``): the folder is not what it claims.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, UnreadableCheckpoint, UnsafeContent
from ckpttool.io.boxes import Box, BoxSource
from ckpttool.io.formats.dcp_items import DataFiles, open_chunk, read_value
from ckpttool.io.formats.dcp_metadata import (
    MAX_METADATA,
    BytesEntry,
    DcpMetadata,
    TensorEntry,
    foreign_globals,
    read_metadata,
)
from ckpttool.model import CHUNK_BYTES, PickledDict, Storage, Stub, TensorRef

__all__ = ["read_dcp", "DcpSource", "load_dcp_values", "write_dcp", "check_loadable", "BYTES_ITEM",
           "MAX_METADATA", "contiguous_stride", "tensor_ref"]

BYTES_ITEM = "torch.distributed.checkpoint.metadata.BytesStorageMetadata"


def check_loadable(folder: Path, meta: DcpMetadata | None = None) -> None:
    """Refuse the tensor data of a folder whose ``.metadata`` names classes DCP never writes."""
    meta = meta or read_metadata(folder)
    bad = foreign_globals(meta.load)
    if bad:
        raise UnsafeContent(f"DCP .metadata references {', '.join(bad[:5])}, which torch's DCP writer never "
                            "pickles: ckpttool will not trust where it says the data is", path=folder,
                            hint="inspect/scan it; it is not a folder torch wrote as it stands")


class DcpSource:
    """The C-order bytes of one DCP tensor, assembled from its chunks on first read."""

    def __init__(self, meta: DcpMetadata, files: DataFiles, entry: TensorEntry) -> None:
        self.path = meta.folder
        self.meta, self.files, self.entry = meta, files, entry
        self._boxes: BoxSource | None = None

    def boxes(self) -> BoxSource:
        if self._boxes is None:
            from ckpttool.dtypes import by_name

            check_loadable(self.path, self.meta)
            e = self.entry
            itemsize = by_name(e.dtype).itemsize  # type: ignore[union-attr] - the metadata reader checked it
            self._boxes = BoxSource(self.path, e.shape, itemsize, [
                Box(c.offsets, c.sizes, partial(open_chunk, self.files, c.item, e.dtype, c.sizes, e.fqn))
                for c in e.chunks])
        return self._boxes

    def read(self, offset: int, length: int) -> bytes:
        return self.boxes().read(offset, length)

    def readinto(self, offset: int, view: memoryview) -> None:
        self.boxes().readinto(offset, view)

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        return self.boxes().chunks(offset, length, chunk)


def contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride: list[int] = []
    acc = 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= s
    return tuple(reversed(stride))


def tensor_ref(meta: DcpMetadata, files: DataFiles, entry: TensorEntry) -> TensorRef:
    """The lazy tensor of one entry: its bytes come from its chunks, read on demand."""
    from ckpttool.dtypes import by_name

    numel = 1
    for s in entry.shape:
        numel *= s
    nbytes = numel * by_name(entry.dtype).itemsize  # type: ignore[union-attr]
    storage = Storage(key=entry.fqn, dtype=entry.dtype, nbytes=nbytes, location="cpu",
                      source=DcpSource(meta, files, entry))
    return TensorRef(dtype=entry.dtype, shape=entry.shape, stride=contiguous_stride(entry.shape), storage=storage)


def _place(root: PickledDict, path: tuple[Any, ...], value: Any) -> None:
    node: Any = root
    for key in path[:-1]:
        nxt = node.get(key) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            nxt = PickledDict()
            node[key] = nxt
        node = nxt
    node[path[-1]] = value


def _listify(root: PickledDict) -> PickledDict:
    """Dicts whose keys are exactly the ints 0..n-1 (``param_groups``) become lists again."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        for key, value in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(value, dict):
                if value and all(type(k) is int for k in value) and sorted(value) == list(range(len(value))):
                    value = [value[i] for i in range(len(value))]
                    node[key] = value
                stack.append(value)
    return root


def read_dcp(folder: Path) -> Any:
    """The tree of a DCP folder (see the module docstring)."""
    from ckpttool.io import TreeRead

    meta = read_metadata(folder)
    files = DataFiles(folder)
    tree = PickledDict(ordered=True)
    loads = [meta.load]
    anomalies: list[str] = []
    unread: list[str] = []
    for fqn, entry in meta.entries.items():
        if isinstance(entry, TensorEntry):
            value: Any = tensor_ref(meta, files, entry)
        else:
            try:
                value, vloads = read_value(files, entry.item, fqn)
            except CkptError as exc:
                anomalies.append(f"DCP value {fqn!r} could not be read: {exc.message}")
                value = Stub(BYTES_ITEM, (fqn,))
                unread.append(fqn)
            else:
                for load in vloads:
                    load.where = f"{entry.item.relative_path}:{fqn}/{load.where}"
                loads.extend(vloads)
        _place(tree, meta.paths[fqn], value)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return TreeRead(folder, "dcp", _listify(tree), size, loads, anomalies,
                    members={"dcp_values": unread, "dcp": meta})


def load_dcp_values(folder: Path, fqns: list[str]) -> dict[str, Any]:
    """The non-tensor entries ``fqns`` of a DCP folder, read by the safe VM (an error if one cannot be)."""
    if not fqns:
        return {}
    meta = read_metadata(folder)
    files = DataFiles(folder)
    out: dict[str, Any] = {}
    for fqn in fqns:
        entry = meta.entries.get(fqn)
        if not isinstance(entry, BytesEntry):
            raise UnreadableCheckpoint(f"DCP folder has no value {fqn!r}", path=folder)
        out[fqn] = read_value(files, entry.item, fqn)[0]
    return out


def write_dcp(state: dict[str, Any], output: Path, *, inputs: tuple[Path, ...] = (), force: bool = False) -> int:
    """Save ``state`` (tensors and plain values) as a DCP folder at ``output``; returns its size.

    Streamed, verified and atomic: see ``ckpttool.io.write.dcp``.
    """
    from ckpttool.io.write.dcp import write_dcp_folder

    return write_dcp_folder(state, output, inputs=inputs, force=force).nbytes
