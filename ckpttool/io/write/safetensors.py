"""safetensors written tensor by tensor: the header first, then each tensor's bytes in header order.

Tensors are laid out widest element type first (a stable sort, so keys of one width keep their
order) so that every tensor starts at an offset aligned to its element size, as the safetensors
library itself arranges them. Strided views are written contiguous. Dtypes the format has no code
for (complex32, complex128, quantized types) are refused, all named in one message that says what
to do instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ckpttool.dtypes import by_name
from ckpttool.errors import OutputRefused
from ckpttool.io.buffers import Ring, tensor_views
from ckpttool.io.write.aliases import ALIASES_KEY, ORDER_KEY, VIEWS_KEY, alias_metadata, dedupe
from ckpttool.io.write.tensor_input import TensorAdapter, is_torch_tensor
from ckpttool.io.write.torch_zip import Written
from ckpttool.io.write.zip_writer import Sink
from ckpttool.model import TensorRef
from ckpttool.progress import ProgressSink, counted

__all__ = ["write_safetensors", "safetensors_layout"]


def safetensors_layout(tensors: Mapping[str, Any]) -> dict[str, TensorRef]:
    """The tensors as ``TensorRef``s in file order, refusing what safetensors cannot hold."""
    adapt = TensorAdapter()
    refs: dict[str, TensorRef] = {}
    lacking = [(k, v.dtype) for k, v in tensors.items() if isinstance(v, TensorRef)
               and (by_name(v.dtype) is None or by_name(v.dtype).safetensors is None)]  # type: ignore[union-attr]
    if lacking:
        names = ", ".join(f"{k!r} ({d})" for k, d in lacking[:8]) + (" …" if len(lacking) > 8 else "")
        raise OutputRefused(f"safetensors has no type for {names}",
                            hint="convert them with --dtype, exclude them with --drop, or write a torch (.pt) file")
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise OutputRefused(f"safetensors keys must be strings, not {key!r}")
        if is_torch_tensor(value):
            value = adapt(value)
        if not isinstance(value, TensorRef):
            raise OutputRefused(f"{key!r} is a {type(value).__name__}: safetensors holds only tensors",
                                hint="put other values in the metadata, or write a torch file")
        d = by_name(value.dtype)
        if d is None or d.safetensors is None:
            raise OutputRefused(f"tensor {key!r} is {value.dtype}, which safetensors has no type for",
                                hint="convert it with --dtype, or write a torch (.pt) file instead")
        if value.numel and (value.storage.source is None or value.storage.location == "meta"):
            raise OutputRefused(f"tensor {key!r} has no data (a meta tensor)")
        refs[key] = value
    order = sorted(refs, key=lambda k: -refs[k].itemsize)
    return {k: refs[k] for k in order}


def _stored_once(refs: dict[str, TensorRef], order: list[str], metadata: dict[str, str] | None
                 ) -> tuple[dict[str, TensorRef], dict[str, str] | None]:
    """Tied tensors and views written once, the caller's key order kept, both recorded in the metadata.

    safetensors can hold neither sharing nor an order of its own; the reader (``aliases.restore``)
    puts the tied names, views and order back. A caller that recorded them already (convert does,
    to report them) is left alone.
    """
    if metadata and metadata.keys() & {ALIASES_KEY, VIEWS_KEY, ORDER_KEY}:
        return refs, metadata
    deduped = dedupe({k: refs[k] for k in order})
    unique = {k: deduped.tensors[k] for k in refs if k in deduped.tensors}  # file order
    extra = alias_metadata(order, list(unique), deduped)
    if not extra:
        return refs, metadata
    return unique, {**(metadata or {}), **extra}


def write_safetensors(tensors: Mapping[str, Any], sink: Sink, metadata: dict[str, str] | None,
                      progress: ProgressSink | None = None) -> Written:
    """Write the flat ``tensors`` mapping and ``metadata`` to ``sink`` as one safetensors file.

    ``progress`` is told the tensor bytes to write once the header is known, then each chunk.
    """
    refs, metadata = _stored_once(safetensors_layout(tensors), list(tensors), metadata)
    header: dict[str, Any] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise OutputRefused("safetensors metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    pos = 0
    for key, ref in refs.items():
        code = by_name(ref.dtype).safetensors  # type: ignore[union-attr] - checked in the layout
        header[key] = {"dtype": code, "shape": list(ref.shape), "data_offsets": [pos, pos + ref.nbytes]}
        pos += ref.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-(len(raw)) % 8)
    sink.write(len(raw).to_bytes(8, "little") + raw)
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    if progress is not None:
        progress.start(pos)
    ring = Ring(2)  # the sink may still hash one piece while the next is read
    for key, ref in refs.items():
        for piece in counted(tensor_views(ref, ring), progress):
            sink.write(piece)
        shapes[key] = (ref.dtype, ref.shape)
    return Written(tensors=len(refs), sources={k: r.chunks for k, r in refs.items()}, metadata=dict(metadata or {}),
                   dtypes=shapes, refs=dict(refs))
