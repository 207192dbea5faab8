"""DeepSpeed ZeRO's flat fp32 partitions turned back into named tensors, lazily.

ZeRO keeps each parameter group's fp32 master weights as one flat vector split across the ranks.
This module computes, for every parameter, which byte ranges of which rank's file hold it, and
returns ordinary ``TensorRef``s over ``AssembledSource``s: nothing is read until a writer or a
comparison streams the bytes, chunk by chunk. The arithmetic follows DeepSpeed's own
``deepspeed/utils/zero_to_fp32.py`` (0.19) so the result is bit for bit what
``get_fp32_state_dict_from_zero_checkpoint`` returns:

- ZeRO-1/2: group ``g`` is the concatenation of every rank's ``single_partition_of_fp32_groups[g]``;
  parameters follow one another in ``param_shapes[g]`` order, each followed by its
  ``param_alignment_paddings`` entry; the group ends padded to a multiple of ``2 * world_size``.
- ZeRO-3: every parameter is split in ``ceil(numel / world_size)``-element slices, one per rank,
  laid out in ``param_shapes`` order across the rank's ``fp32_flat_groups`` (one parameter may
  straddle two groups); a parameter is its ranks' slices concatenated, padding cut off.
- ZeRO-3 frozen parameters are split the same way over ``frozen_param_fragments`` of each rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ckpttool.dtypes import by_name
from ckpttool.errors import UnreadableCheckpoint
from ckpttool.io.assembled import AssembledSource, Piece
from ckpttool.model import ByteSource, Storage, TensorRef

__all__ = ["flat_source", "zero2_params", "zero3_params", "zero3_frozen", "as_float32", "contiguous"]


def contiguous(shape: tuple[int, ...], dtype: str, storage: Storage) -> TensorRef:
    """A C-contiguous tensor of ``shape`` at the start of ``storage``."""
    stride: list[int] = []
    step = 1
    for size in reversed(shape):
        stride.append(step)
        step *= max(size, 1)
    return TensorRef(dtype=dtype, shape=shape, stride=tuple(reversed(stride)), storage=storage,
                     is_parameter=True)


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _piece(t: Any, offset: int, where: str, path: Path) -> Piece:
    """Where the bytes of the flat tensor ``t`` lie, placed at ``offset`` of an assembled buffer."""
    if not isinstance(t, TensorRef) or len(t.shape) != 1 or not t.is_contiguous or t.storage.source is None \
            or t.storage.byteorder != "little":
        raise UnreadableCheckpoint(f"{where} is not a flat tensor with data in the file", path=path)
    return Piece(offset, t.nbytes, t.storage.source, t.storage.offset + t.storage_offset * t.itemsize)


def flat_source(parts: Sequence[Any], where: str, path: Path) -> tuple[AssembledSource, str, int]:
    """One buffer over the flat tensors ``parts`` end to end: the source, its dtype, its element count."""
    dtypes = {getattr(p, "dtype", None) for p in parts}
    if len(dtypes) != 1 or None in dtypes:
        raise UnreadableCheckpoint(f"{where}: the flat partitions do not share one dtype", path=path)
    pieces = []
    offset = 0
    for i, p in enumerate(parts):
        pieces.append(_piece(p, offset, f"{where}[{i}]", path))
        offset += p.nbytes
    dtype = dtypes.pop()
    return AssembledSource(path, pieces, offset), dtype, offset // by_name(dtype).itemsize  # type: ignore[union-attr]


def _param(name: str, shape: tuple[int, ...], dtype: str, source: ByteSource, byte_offset: int) -> TensorRef:
    itemsize = by_name(dtype).itemsize  # type: ignore[union-attr]
    storage = Storage(key=name, dtype=dtype, nbytes=_numel(shape) * itemsize, location="cpu", source=source,
                      offset=byte_offset)
    return contiguous(shape, dtype, storage)


def zero2_params(param_shapes: Sequence[dict[str, tuple[int, ...]]], partitions: Sequence[Sequence[Any]],
                 paddings: Sequence[Sequence[int]] | None, path: Path) -> dict[str, TensorRef]:
    """ZeRO-1/2: ``partitions[rank][group]`` are the ranks' ``single_partition_of_fp32_groups``."""
    world = len(partitions)
    groups = {len(p) for p in partitions}
    if len(groups) != 1 or groups.pop() != len(param_shapes):
        raise UnreadableCheckpoint(f"the ranks hold different numbers of parameter groups than param_shapes "
                                   f"({len(param_shapes)})", path=path)
    if paddings is not None and len(paddings) != len(param_shapes):
        raise UnreadableCheckpoint("param_alignment_paddings does not match param_shapes", path=path)
    out: dict[str, TensorRef] = {}
    align = 2 * world
    for g, shapes in enumerate(param_shapes):
        source, dtype, avail = flat_source([p[g] for p in partitions], f"group {g}", path)
        itemsize = by_name(dtype).itemsize  # type: ignore[union-attr]
        pads = paddings[g] if paddings is not None else None
        if pads is not None and len(pads) != len(shapes):
            raise UnreadableCheckpoint(f"group {g}: {len(pads)} alignment paddings for {len(shapes)} parameters",
                                       path=path)
        offset = 0
        for i, (name, shape) in enumerate(shapes.items()):
            shape = tuple(int(s) for s in shape)
            n = _numel(shape)
            if offset + n > avail:
                raise UnreadableCheckpoint(f"group {g}: {name} ends past the {avail} elements the ranks hold",
                                           path=path)
            out[name] = _param(name, shape, dtype, source, offset * itemsize)
            offset += n + (int(pads[i]) if pads is not None else 0)
        # DeepSpeed's own sanity check: both ends agree once aligned to 2 * world_size elements
        if align * math.ceil(offset / align) != align * math.ceil(avail / align):
            raise UnreadableCheckpoint(f"group {g}: the parameters use {offset} of {avail} elements",
                                       path=path)
    return out


def zero3_params(param_shapes: Sequence[dict[str, tuple[int, ...]]], flat_groups: Sequence[Sequence[Any]],
                 path: Path) -> dict[str, TensorRef]:
    """ZeRO-3: ``flat_groups[rank]`` are the rank's ``fp32_flat_groups``."""
    world = len(flat_groups)
    ranks = [flat_source(groups, f"rank {r} fp32_flat_groups", path) for r, groups in enumerate(flat_groups)]
    sizes = {n for _, _, n in ranks}
    dtypes = {d for _, d, _ in ranks}
    if len(sizes) != 1 or len(dtypes) != 1:
        raise UnreadableCheckpoint("the ranks' fp32_flat_groups differ in size or dtype", path=path)
    per_rank, dtype = sizes.pop(), dtypes.pop()
    itemsize = by_name(dtype).itemsize  # type: ignore[union-attr]
    merged = {name: shape for shapes in param_shapes for name, shape in shapes.items()}
    out: dict[str, TensorRef] = {}
    offset = 0
    for name, shape in merged.items():
        shape = tuple(int(s) for s in shape)
        n = _numel(shape)
        part = math.ceil(n / world)
        if offset + part > per_rank:
            raise UnreadableCheckpoint(f"{name} ends past the {per_rank} elements each rank holds", path=path)
        pieces = [Piece(r * part * itemsize, part * itemsize, src, offset * itemsize)
                  for r, (src, _, _) in enumerate(ranks)]
        source = AssembledSource(path, pieces, world * part * itemsize)
        out[name] = _param(name, shape, dtype, source, 0)
        offset += part
    if offset != per_rank:  # DeepSpeed's sanity check
        raise UnreadableCheckpoint(f"the parameters use {offset * world} of {per_rank * world} elements",
                                   path=path)
    return out


def zero3_frozen(frozen_shapes: dict[str, tuple[int, ...]], fragments: Sequence[dict[str, Any]],
                 path: Path) -> dict[str, TensorRef]:
    """ZeRO-3 frozen parameters: each rank's fragment concatenated, cut to the parameter's size."""
    out: dict[str, TensorRef] = {}
    for name, shape in frozen_shapes.items():
        shape = tuple(int(s) for s in shape)
        parts = []
        for r, frags in enumerate(fragments):
            if not isinstance(frags, dict) or name not in frags:
                raise UnreadableCheckpoint(f"rank {r} holds no fragment of the frozen parameter {name}", path=path)
            parts.append(frags[name])
        source, dtype, avail = flat_source(parts, f"frozen {name}", path)
        if _numel(shape) > avail:
            raise UnreadableCheckpoint(f"the fragments of {name} hold {avail} of {_numel(shape)} elements",
                                       path=path)
        out[name] = _param(name, shape, dtype, source, 0)
    return out


def as_float32(t: TensorRef) -> TensorRef:
    """``t.float()`` for a floating tensor (DeepSpeed restores 16-bit buffers to fp32), lazily."""
    from ckpttool.io.write.cast import CastSource

    d = by_name(t.dtype)
    if d is None or d.kind != "f" or t.dtype == "float32" or t.storage.source is None:
        return t
    st = t.storage
    new = Storage(key=st.key, dtype="float32", nbytes=st.nbytes // d.itemsize * 4, location=st.location,
                  source=CastSource(st, t.dtype, "float32"))
    return TensorRef(dtype="float32", shape=t.shape, stride=t.stride, storage=new, storage_offset=t.storage_offset,
                     requires_grad=t.requires_grad, is_parameter=t.is_parameter)
