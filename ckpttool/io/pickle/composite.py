"""Rebuilders for tensors that are not one strided view: quantized, sparse, nested, subclasses.

torch rebuilds them with its own functions (``_rebuild_qtensor``, ``_rebuild_sparse_tensor``,
``_rebuild_nested_tensor``, ``_rebuild_from_type_v2`` + ``_rebuild_wrapper_subclass``). Each becomes
a ``CompositeTensor`` whose parts are ordinary ``TensorRef``s over the file's storages, so every
tensor torch would load is an entry of its section. A rebuild function ckpttool does not know, or a
subclass it cannot interpret, still becomes one (``decoded=False``) with the tensors found in its
arguments and state: never a silent ``Stub``.
"""

from __future__ import annotations

from typing import Any

from ckpttool.dtypes import by_name, packed_nbytes
from ckpttool.errors import CorruptPickle
from ckpttool.io.pickle.strided import ints, strided_tensor
from ckpttool.model import CompositeTensor, GlobalRef, Storage, Stub, TensorRef, merged_state

__all__ = ["COMPOSITE_IMPLS", "unknown_rebuild", "is_rebuild_name", "DTENSOR_CLASSES"]

_INT_REPR = {"qint8": "int8", "quint8": "uint8", "qint32": "int32", "quint4x2": "uint8",
             "quint2x4": "uint8"}
_PER_TENSOR = ("per_tensor_affine", "per_tensor_symmetric")
_PER_CHANNEL = ("per_channel_affine", "per_channel_symmetric", "per_channel_affine_float_qparams")
DTENSOR_CLASSES = frozenset({"torch.distributed.tensor.DTensor", "torch.distributed.tensor._api.DTensor",
                             "torch.distributed._tensor.api.DTensor", "torch.distributed._tensor.DTensor"})
_PLAIN_CLASSES = frozenset({"torch.Tensor", "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer"})
_NJT = "torch.nested._internal.nested_tensor.NestedTensor"
_COMPRESSED = {"sparse_csr": ("crow_indices", "col_indices"), "sparse_csc": ("ccol_indices", "row_indices"),
               "sparse_bsr": ("crow_indices", "col_indices"), "sparse_bsc": ("ccol_indices", "row_indices")}


def is_rebuild_name(fullname: str) -> bool:
    """True for torch's tensor-rebuild functions (``torch._utils._rebuild_*``)."""
    return fullname.startswith(("torch._utils._rebuild_", "torch._tensor._rebuild_"))


def _name(value: Any) -> str:
    """``per_tensor_affine`` from ``torch.per_tensor_affine`` (a global or its string)."""
    if isinstance(value, GlobalRef):
        return value.name
    return str(value).removeprefix("torch.")


def plain(obj: Any, depth: int = 6) -> Any:
    """A plain-data description of pickled state: tensors by dtype and shape, stubs by class."""
    if depth < 0:
        return "…"
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, TensorRef):
        return f"tensor({obj.dtype}, {list(obj.shape)})"
    if isinstance(obj, CompositeTensor):
        return repr(obj)
    if isinstance(obj, GlobalRef):
        return obj.fullname
    if isinstance(obj, dict):
        return {str(k): plain(v, depth - 1) for k, v in list(obj.items())[:64]}
    if isinstance(obj, list | tuple):
        return [plain(v, depth - 1) for v in obj[:64]]
    if isinstance(obj, set | frozenset):
        return sorted((plain(v, depth - 1) for v in list(obj)[:64]), key=repr)
    if isinstance(obj, Stub):
        out: dict[str, Any] = {"class": obj.qualname}
        if obj.attributes:
            out["state"] = plain(obj.attributes, depth - 1)
        elif obj.args:
            out["args"] = plain(list(obj.args), depth - 1)
        return out
    return f"<{type(obj).__name__}>"


def tensors_in(obj: Any, prefix: str = "", budget: int = 10_000) -> dict[str, TensorRef]:
    """Every ``TensorRef`` below ``obj`` (composites' parts included), keyed by its dotted path."""
    found: dict[str, TensorRef] = {}
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(prefix, obj)]
    while stack and budget > 0:
        budget -= 1
        path, value = stack.pop()
        if isinstance(value, TensorRef):
            found.setdefault(path or "data", value)
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, CompositeTensor):
            kids: list[tuple[Any, Any]] = list(value.parts.items())
        elif isinstance(value, dict):
            kids = list(value.items())
        elif isinstance(value, list | tuple):
            kids = list(enumerate(value))
        elif isinstance(value, Stub):
            kids = list(value.attributes.items()) or [(i, a) for i, a in enumerate(value.args)]
        else:
            continue
        for key, kid in reversed(kids):
            stack.append((f"{path}.{key}" if path else str(key), kid))
    return found


def _rebuild_qtensor(storage: Any, offset: Any, size: Any, stride: Any, qparams: Any,
                     requires_grad: Any = False, *_: Any) -> CompositeTensor:
    if not isinstance(storage, Storage) or not isinstance(qparams, tuple) or not qparams:
        raise CorruptPickle("bad _rebuild_qtensor arguments")
    qdtype = storage.dtype
    shape = ints(size, "size")
    scheme = _name(qparams[0])
    if qdtype in ("quint4x2", "quint2x4"):
        numel = 1
        for s in shape:
            numel *= s
        packed = packed_nbytes(qdtype, numel)
        if packed > storage.nbytes or type(offset) is not int or offset != 0:
            raise CorruptPickle(f"a {qdtype} tensor of {shape} does not fit its {storage.nbytes}-byte storage")
        int_repr = strided_tensor(storage, 0, (packed,), (1,), dtype="uint8")
    else:
        int_repr = strided_tensor(storage, offset, size, stride, dtype=_INT_REPR.get(qdtype, qdtype))
    parts = {"int_repr": int_repr}
    params: dict[str, Any] = {"qscheme": scheme}
    if scheme in _PER_TENSOR and len(qparams) >= 3:
        params["scale"], params["zero_point"] = qparams[1], qparams[2]
        if not isinstance(params["scale"], float | int) or not isinstance(params["zero_point"], int):
            raise CorruptPickle("a per-tensor quantized tensor needs a number scale and zero point")
    elif scheme in _PER_CHANNEL and len(qparams) >= 4:
        scales, zero_points, axis = qparams[1], qparams[2], qparams[3]
        if not isinstance(scales, TensorRef) or not isinstance(zero_points, TensorRef) or type(axis) is not int:
            raise CorruptPickle("a per-channel quantized tensor needs scale and zero point tensors and an axis")
        parts["scales"], parts["zero_points"] = scales, zero_points
        params["axis"] = axis
    else:
        return CompositeTensor("quantized", "torch._utils._rebuild_qtensor", qdtype, shape, parts,
                               {"qscheme": scheme, "qparams": plain(qparams)}, decoded=False,
                               note=f"quantization scheme {scheme} is not decoded")
    if qdtype in ("quint4x2", "quint2x4"):
        params["packed"] = f"{qdtype}: {2 if qdtype == 'quint4x2' else 4} elements per byte of int_repr"
    return CompositeTensor("quantized", "torch._utils._rebuild_qtensor", qdtype, shape, parts, params,
                           note="requires_grad" if requires_grad is True else "")


def _get_layout(name: Any = None, *_: Any) -> str:
    """``torch.serialization._get_layout('torch.sparse_csr')``: the layout's name."""
    if not isinstance(name, str):
        raise CorruptPickle("bad layout name")
    return name.removeprefix("torch.")


def _rebuild_sparse_tensor(layout: Any, data: Any) -> CompositeTensor:
    kind = _name(layout)
    if not isinstance(data, tuple | list):
        raise CorruptPickle("bad _rebuild_sparse_tensor arguments")
    fn = "torch._utils._rebuild_sparse_tensor"
    if kind == "sparse_coo" and len(data) in (3, 4):
        indices, values, size = data[0], data[1], data[2]
        names: tuple[str, ...] = ("indices", "values")
        found = (indices, values)
        params: dict[str, Any] = {"is_coalesced": data[3] if len(data) == 4 else None}
    elif kind in _COMPRESSED and len(data) == 4:
        compressed, plain_, values, size = data
        names = (*_COMPRESSED[kind], "values")
        found = (compressed, plain_, values)
        params = {}
    else:
        return unknown_rebuild(fn, (layout, data), note=f"sparse layout {kind} is not decoded")
    if not all(isinstance(t, TensorRef) for t in found):
        return unknown_rebuild(fn, (layout, data), note=f"a {kind} tensor with parts that are not plain tensors")
    return CompositeTensor(kind, fn, found[-1].dtype, ints(size, "size"), dict(zip(names, found)), params)


def _rebuild_nested_tensor(buffer: Any, sizes: Any, strides: Any, offsets: Any) -> CompositeTensor:
    parts = {"buffer": buffer, "sizes": sizes, "strides": strides, "storage_offsets": offsets}
    fn = "torch._utils._rebuild_nested_tensor"
    if not all(isinstance(t, TensorRef) for t in parts.values()):
        return unknown_rebuild(fn, (buffer, sizes, strides, offsets))
    components = sizes.shape[0] if sizes.shape else 0
    return CompositeTensor("nested", fn, buffer.dtype, None, parts,
                           {"layout": "strided", "components": components})


def _rebuild_wrapper_subclass(cls: Any, dtype: Any, size: Any, stride: Any = None, offset: Any = 0,
                              layout: Any = None, device: Any = None, requires_grad: Any = False,
                              *_: Any) -> CompositeTensor:
    """The outer tensor of a wrapper subclass: logical dtype and shape, no data of its own."""
    qualname = cls.fullname if isinstance(cls, GlobalRef) else "unknown"
    d = by_name(dtype.name) if isinstance(dtype, GlobalRef) else None
    shape = ints(size, "size") if isinstance(size, tuple | list) else None
    params: dict[str, Any] = {"class": qualname}
    if isinstance(device, str):
        params["device"] = device
    return CompositeTensor("subclass", "torch._utils._rebuild_wrapper_subclass", d.name if d else "unknown",
                           shape, {}, params, decoded=False, note=f"tensor subclass {qualname}")


def _dtensor(outer: CompositeTensor, state: dict[str, Any]) -> CompositeTensor:
    local = state.get("_local_tensor")
    spec = state.get("_spec")
    attrs = spec.attributes if isinstance(spec, Stub) else {}
    placements = attrs.get("placements")
    mesh = attrs.get("mesh")
    mesh_attrs = mesh.attributes if isinstance(mesh, Stub) else {}
    outer.kind = "dtensor"
    outer.decoded = isinstance(local, TensorRef)
    outer.parts = {"local_shard": local} if isinstance(local, TensorRef) else tensors_in(local, "local_shard")
    outer.parts.update(tensors_in({k: v for k, v in mesh_attrs.items() if isinstance(v, TensorRef)}, "mesh"))
    outer.params.update({
        "placements": [_placement(p) for p in placements] if isinstance(placements, tuple | list) else None,
        "mesh_shape": _mesh_shape(mesh_attrs),
        "mesh_dim_names": plain(mesh_attrs.get("_mesh_dim_names")),
        "mesh_device": mesh_attrs.get("_device_type") if isinstance(mesh_attrs.get("_device_type"), str) else None,
        "rank": mesh_attrs.get("_rank") if type(mesh_attrs.get("_rank")) is int else None,
    })
    outer.note = "the file holds one rank's local shard of this DTensor, not the whole tensor"
    return outer


def _placement(p: Any) -> str:
    """``Shard(dim=0)``, ``Replicate()``, ``Partial(sum)`` from a pickled placement."""
    if not isinstance(p, Stub):
        return str(plain(p))
    short = p.qualname.rsplit(".", 1)[-1]
    attrs = p.attributes or {}
    inner = ", ".join(f"{k}={plain(v)}" for k, v in attrs.items() if not k.startswith("_"))
    if not attrs and p.args:
        inner = ", ".join(str(plain(a)) for a in p.args)
    return f"{short}({inner})"


def _mesh_shape(attrs: dict[str, Any]) -> list[int] | None:
    """The device mesh's shape: its ``mesh`` tensor (older torch) or its layout's shape."""
    mesh = attrs.get("mesh")
    if isinstance(mesh, TensorRef):
        return list(mesh.shape)
    layout = attrs.get("_layout")
    for _ in range(4):
        if not isinstance(layout, Stub):
            break
        la = layout.attributes
        shape = la.get("shape", la.get("sizes"))
        if type(shape) is int:
            return [shape]
        if isinstance(shape, tuple | list) and all(type(s) is int for s in shape):
            return list(shape)
        layout = la.get("axes")
    rank_map = attrs.get("_rank_map")
    return list(rank_map.shape) if isinstance(rank_map, TensorRef) else None


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
    """A tensor subclass: its inner rebuild, then what the class and its ``__dict__`` say."""
    from ckpttool.io.pickle.rebuild import call_global

    if not isinstance(args, tuple):
        raise CorruptPickle("_rebuild_from_type_v2 arguments must be a tuple")
    fname = func.fullname if isinstance(func, GlobalRef) else "unknown"
    inner = call_global(fname, args, {}) if is_rebuild_name(fname) or fname.startswith("torch.") else None
    cls = new_type.fullname if isinstance(new_type, GlobalRef) else "unknown"
    state = merged_state(state)
    if cls in _PLAIN_CLASSES and isinstance(inner, TensorRef | CompositeTensor):
        return inner  # a plain tensor (a Python attribute set on it is all its state holds)
    if isinstance(inner, CompositeTensor) and inner.kind == "subclass":
        outer = inner
    elif isinstance(inner, TensorRef):  # ``as_subclass``: the inner tensor holds the data
        outer = CompositeTensor("subclass", fname, inner.dtype, inner.shape, {"data": inner}, {}, decoded=False)
    else:
        outer = CompositeTensor("subclass", fname, "unknown", None, tensors_in(args, "args"), {}, decoded=False)
    outer.rebuild = "torch._tensor._rebuild_from_type_v2"
    outer.params["class"] = cls
    if cls in DTENSOR_CLASSES:
        return _dtensor(outer, state)
    for key, part in tensors_in(state).items():
        if all(part is not p for p in outer.parts.values()):
            outer.parts[key] = part
    outer.params["state"] = {str(k): plain(v) for k, v in state.items()
                             if not isinstance(v, TensorRef | CompositeTensor)}
    if cls == _NJT or fname == "torch.nested._internal.nested_tensor._rebuild_njt":
        outer.kind, outer.decoded = "nested", True
        outer.params["layout"] = "jagged"
        outer.parts = tensors_in(args[0] if len(args) == 1 else args)
        values = outer.parts.get("values")
        if isinstance(values, TensorRef):
            outer.dtype = values.dtype
    elif cls.startswith("torchao."):
        outer.kind, outer.decoded = "torchao", True
        outer.note = f"torchao {cls.rsplit('.', 1)[-1]}: logical {outer.dtype} {list(outer.shape or [])}, " \
                     "stored as the packed tensors listed"
    else:
        outer.note = f"unknown tensor subclass {cls}: its inner tensors and state are listed, its values " \
                     "are not decoded"
    return outer


def unknown_rebuild(fullname: str, args: tuple[Any, ...], note: str = "") -> CompositeTensor:
    """A tensor torch would rebuild with a function ckpttool does not decode: listed, never dropped."""
    return CompositeTensor("unknown", fullname, "unknown", None, tensors_in(args, "args"),
                           {"args": plain(list(args), 3)}, decoded=False,
                           note=note or f"rebuilt by {fullname}, which ckpttool does not decode")


COMPOSITE_IMPLS = {
    "torch._utils._rebuild_qtensor": _rebuild_qtensor,
    "torch._utils._rebuild_sparse_tensor": _rebuild_sparse_tensor,
    "torch._utils._rebuild_sparse_csr_tensor": _rebuild_sparse_tensor,
    "torch._utils._rebuild_nested_tensor": _rebuild_nested_tensor,
    "torch._utils._rebuild_wrapper_subclass": _rebuild_wrapper_subclass,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.serialization._get_layout": _get_layout,
}
