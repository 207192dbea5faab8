"""Pure re-implementations of the allow-listed globals a checkpoint pickle may call.

Each function takes the pickled arguments and returns an inert value: tensors become
``TensorRef``s over the storage the reader located (``CompositeTensor``s: see ``composite``),
``OrderedDict`` a ``PickledDict``, numpy
scalars Python numbers. Arguments are validated with Python integers (sizes, strides, offsets)
so a hostile file cannot make a view reach outside its storage.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ckpttool.dtypes import by_name, by_storage_class
from ckpttool.errors import CorruptPickle
from ckpttool.io.pickle.composite import COMPOSITE_IMPLS, is_rebuild_name, unknown_rebuild
from ckpttool.io.pickle.strided import ints as _ints
from ckpttool.io.pickle.strided import strided_tensor as _tensor
from ckpttool.model import CompositeTensor, GlobalRef, PickledDict, Storage, Stub, TensorRef

__all__ = ["call_global", "dtype_of_global"]


def dtype_of_global(ref: Any) -> str | None:
    """The dtype name a ``torch.float32`` or ``torch.FloatStorage`` global stands for."""
    if not isinstance(ref, GlobalRef):
        return None
    d = by_name(ref.name) if ref.module == "torch" else None
    if d is None:
        d = by_storage_class(ref.name)
    return d.name if d else None


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> TensorRef:
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, _hooks: Any = None, _metadata: Any = None,
                       ) -> TensorRef:
    return _tensor(storage, offset, size, stride, requires_grad=requires_grad)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       _hooks: Any, dtype: Any, _metadata: Any = None) -> TensorRef:
    name = dtype_of_global(dtype)
    if name is None:
        raise CorruptPickle(f"tensor dtype {dtype!r} is not a torch dtype")
    return _tensor(storage, offset, size, stride, dtype=name, requires_grad=requires_grad)


def _rebuild_parameter(data: Any, requires_grad: Any = True, _hooks: Any = None,
                       _state: Any = None) -> Any:
    if isinstance(data, TensorRef):
        data.is_parameter = True
        data.requires_grad = requires_grad is True
    elif isinstance(data, CompositeTensor):
        data.params["parameter"] = True
    return data


def _rebuild_meta(dtype: Any, size: Any, stride: Any, requires_grad: Any = False) -> TensorRef:
    name = dtype_of_global(dtype) or "float32"
    shape = _ints(size, "size")
    storage = Storage(key="meta", dtype=name, nbytes=0, location="meta", source=None)
    return TensorRef(dtype=name, shape=shape, stride=_ints(stride, "stride"), storage=storage)


def _ordered_dict(*args: Any) -> PickledDict:
    d = PickledDict(ordered=True)
    if args and isinstance(args[0], list | tuple):
        for pair in args[0]:
            if isinstance(pair, list | tuple) and len(pair) == 2:
                d[pair[0]] = pair[1]
    return d


def _codecs_encode(obj: Any, encoding: Any = "utf-8", *_: Any) -> bytes:
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise CorruptPickle("unsupported _codecs.encode call")
    try:
        return obj.encode(encoding)
    except UnicodeEncodeError as exc:
        raise CorruptPickle("bad _codecs.encode payload") from exc


def _device(*args: Any) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    if len(args) == 2 and isinstance(args[0], str) and type(args[1]) is int:
        return f"{args[0]}:{args[1]}"
    raise CorruptPickle("bad torch.device arguments")


def _size(*args: Any) -> tuple[int, ...]:
    return _ints(args[0] if args else (), "size")


def _reconstructor(cls: Any, base: Any = None, state: Any = None) -> Any:
    name = cls.fullname if isinstance(cls, GlobalRef) else "unknown"
    stub = Stub(name, ())
    if state is not None:
        stub.args = (state,)
    return stub


def _newobj(cls: Any, *args: Any) -> Stub:
    return Stub(cls.fullname if isinstance(cls, GlobalRef) else "unknown", args)


def _set(*args: Any) -> set[Any]:
    try:
        return set(args[0]) if args else set()
    except TypeError as exc:
        raise CorruptPickle("unhashable set member") from exc


def _frozenset(*args: Any) -> frozenset[Any]:
    return frozenset(_set(*args))


def _plain(kind: type) -> Callable[..., Any]:
    def build(*args: Any) -> Any:
        if not args:
            return kind()
        value = args[0]
        if isinstance(value, kind):
            return value
        if kind in (int, float, complex) and isinstance(value, int | float | str):
            try:
                return kind(value)
            except (ValueError, OverflowError) as exc:
                raise CorruptPickle(f"bad {kind.__name__} literal") from exc
        if kind in (bytes, bytearray) and isinstance(value, bytes | bytearray | list):
            if isinstance(value, list) and not all(type(v) is int and 0 <= v < 256 for v in value):
                raise CorruptPickle("bad bytes literal")
            return kind(value)
        if kind in (list, tuple) and isinstance(value, list | tuple):
            return kind(value)
        raise CorruptPickle(f"unsupported {kind.__name__}() call")
    return build


_NUMPY_SCALAR = {"f8": "<d", "f4": "<f", "f2": "<e", "i8": "<q", "i4": "<i", "i2": "<h", "i1": "<b",
                 "u8": "<Q", "u4": "<I", "u2": "<H", "u1": "<B", "b1": "<?"}


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy scalars (``np.float64(0.5)`` in a YOLO ``best_fitness``) as Python numbers."""
    code = None
    if isinstance(dtype, Stub) and dtype.args and isinstance(dtype.args[0], str):
        code = dtype.args[0].lstrip("<>|=")
        state = dtype.state
        big = isinstance(state, tuple) and len(state) > 1 and state[1] == ">"
    else:
        big = False
    fmt = _NUMPY_SCALAR.get(code or "")
    if fmt is None or not isinstance(data, bytes) or len(data) != struct.calcsize(fmt):
        return Stub("numpy.scalar", (dtype, data))
    if big:
        fmt = ">" + fmt[1:]
    return struct.unpack(fmt, data)[0]


def _path(*parts: Any) -> str:
    if not all(isinstance(p, str) for p in parts):
        raise CorruptPickle("bad path parts")
    return "/".join(parts) if parts else "."


def _complex(*args: Any) -> complex:
    if len(args) <= 2 and all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        return complex(*args)
    if len(args) == 1 and isinstance(args[0], str | complex):
        return _plain(complex)(args[0])
    raise CorruptPickle("unsupported complex() call")


def _first_arg(value: Any = None, *_: Any) -> Any:
    return value


_IMPLS: dict[str, Callable[..., Any]] = {
    "torch.jit._pickle.build_intlist": _first_arg, "torch.jit._pickle.build_tensorlist": _first_arg,
    "torch.jit._pickle.build_doublelist": _first_arg, "torch.jit._pickle.build_boollist": _first_arg,
    "torch.jit._pickle.restore_type_tag": _first_arg,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._utils._rebuild_meta_tensor_no_storage": _rebuild_meta,
    "torch.nn.parameter.Parameter": _rebuild_parameter,
    "collections.OrderedDict": _ordered_dict,
    "_codecs.encode": _codecs_encode,
    "torch.device": _device,
    "torch.Size": _size,
    "copyreg._reconstructor": _reconstructor,
    "copy_reg._reconstructor": _reconstructor,
    "copyreg.__newobj__": _newobj,
    "builtins.set": _set, "__builtin__.set": _set,
    "builtins.frozenset": _frozenset, "__builtin__.frozenset": _frozenset,
    "builtins.bytearray": _plain(bytearray), "__builtin__.bytearray": _plain(bytearray),
    "builtins.bytes": _plain(bytes), "builtins.complex": _complex,
    "__builtin__.complex": _complex, "builtins.int": _plain(int),
    "builtins.float": _plain(float), "builtins.str": _plain(str), "builtins.list": _plain(list),
    "builtins.tuple": _plain(tuple), "__builtin__.list": _plain(list),
    "__builtin__.tuple": _plain(tuple),
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "pathlib.Path": _path, "pathlib.PosixPath": _path, "pathlib.WindowsPath": _path,
    "pathlib.PurePosixPath": _path, "pathlib.PureWindowsPath": _path,
    **COMPOSITE_IMPLS,
}


def call_global(fullname: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Apply the pure stand-in of the allow-listed global ``fullname``.

    Globals on the data list without a stand-in (``argparse.Namespace``, ``numpy.dtype``) become
    stubs that record their arguments: plain data a report can show, never a call.
    """
    impl = _IMPLS.get(fullname)
    if impl is None:
        if is_rebuild_name(fullname):  # a tensor all the same: listed as one, never a bare stub
            return unknown_rebuild(fullname, args)
        return Stub(fullname, args)
    try:
        return impl(*args, **kwargs)
    except TypeError as exc:
        raise CorruptPickle(f"bad arguments to {fullname}") from exc
