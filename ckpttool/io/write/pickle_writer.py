"""The ``data.pkl`` of a torch archive, written as ``torch.save`` writes it, without importing torch.

Protocol 2, tensors as ``torch._utils._rebuild_tensor_v2`` over a persistent id
``('storage', torch.<Type>Storage, key, 'cpu', numel)`` (``_rebuild_tensor_v3`` over an
``UntypedStorage`` for dtypes without a storage class, as torch does for float8 and uint16),
parameters through ``_rebuild_parameter``, ``OrderedDict`` with its ``_metadata`` set by BUILD.

Stand-ins the reader made of foreign objects (``Stub``, ``GlobalRef``, numpy scalars and paths
kept as ``Rebuilt*`` values) are written back as the calls that built them (GLOBAL, REDUCE or
NEWOBJ, then APPENDS, SETITEMS and BUILD as in the input), so a rewrite gives ``torch.load`` the
objects it read. A global ckpttool classes as dangerous is never written: the tree is refused,
naming it (``--sanitize`` turns such objects into plain data first).

The emitter is iterative (the trees come from untrusted files) and memoises dicts, lists and
tensors by identity, so shared objects stay shared and cycles terminate.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.dtypes import by_name
from ckpttool.errors import OutputRefused, ResourceLimit, UnsafeContent
from ckpttool.io.pickle.globals_policy import classify
from ckpttool.io.pickle.method_ref import is_method_stub
from ckpttool.io.pickle.rebuilt import REBUILT
from ckpttool.io.write.tensor_input import is_torch_tensor
from ckpttool.model import GlobalRef, PickledDict, Storage, Stub, TensorRef
from ckpttool.tree import MAX_NODES

__all__ = ["PickleResult", "Expected", "pickle_tree", "Transform", "StubPart"]

Path_ = tuple[Any, ...]
Transform = Callable[[Any, "Path_ | None"], Any]


@dataclass(frozen=True)
class StubPart:
    """A step into a stand-in in a verification path: its ``args``, ``state``, ``items`` or ``entries``."""

    name: str

    def __str__(self) -> str:
        return f"<{self.name}>"


@dataclass
class Expected:
    """What the re-read tree must hold at ``path``: a container shape, a leaf, a tensor or a stand-in."""

    path: Path_
    kind: str  # dict | list | tuple | leaf | tensor | stub | global
    value: Any = None
    storage_key: str | None = None


@dataclass
class PickleResult:
    """The pickle bytes, the storages it references (in key order) and what verification checks."""

    data: bytes
    storages: list[Storage]
    expected: list[Expected] = field(default_factory=list)
    tensors: int = 0


def _long(value: int) -> bytes:
    if value == 0:
        return b"\x8a\x00"
    n = (value.bit_length() >> 3) + 1
    raw = value.to_bytes(n, "little", signed=True)
    if value < 0 and n > 1 and raw[-1] == 0xFF and raw[-2] & 0x80:
        raw = raw[:-1]
    if len(raw) < 256:
        return b"\x8a" + bytes([len(raw)]) + raw
    return b"\x8b" + struct.pack("<i", len(raw)) + raw


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(1 << 31) <= value < (1 << 31):
        return b"J" + struct.pack("<i", value)
    return _long(value)


def _str(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


_VALUE, _OP, _MEMO, _GLOBAL = 0, 1, 2, 3  # what a walk-stack entry is: a value, raw opcodes, a memo put, a global


class _Emitter:
    def __init__(self, adapt: Callable[[Any], TensorRef], transform: Transform | None = None) -> None:
        self.out = bytearray(b"\x80\x02")
        self.adapt = adapt
        self.transform = transform
        self.memo = 0
        self.memo_ids: dict[int, int] = {}
        self.globals: dict[str, int] = {}
        self.storage_keys: dict[int, str] = {}
        self.storages: list[Storage] = []
        self.expected: list[Expected] = []
        self.tensors = 0
        self.keep: list[Any] = []  # objects whose id() is memoised must outlive the dump
        self.pending: set[int] = set()  # stand-ins whose constructor is being written

    # -- memo -------------------------------------------------------------------------------
    def put(self) -> int:
        idx = self.memo
        self.memo += 1
        self.out += b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx)
        return idx

    def get(self, idx: int) -> None:
        self.out += b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx)

    def global_(self, module: str, name: str) -> None:
        full = f"{module}\n{name}\n"
        if full in self.globals:
            self.get(self.globals[full])
            return
        if not full.isascii() or not (module + name).isprintable() or not module or not name:
            # a name read from a hostile STACK_GLOBAL: a newline in it would inject opcodes into the output
            raise OutputRefused(f"a pickled global has a name a checkpoint cannot hold: {module!r}.{name!r}")
        self.out += b"c" + full.encode("ascii")
        self.globals[full] = self.put()

    def empty_ordered_dict(self) -> None:
        self.global_("collections", "OrderedDict")
        self.out += b")R"
        self.put()

    # -- tensors ----------------------------------------------------------------------------
    def storage_pid(self, t: TensorRef, path: Path_) -> str:
        st = t.storage
        if st.source is None or st.location == "meta":
            raise OutputRefused(f"tensor {_show(path)} has no data (a meta tensor)")
        key = self.storage_keys.get(id(st))
        if key is None:
            key = str(len(self.storages))
            self.storage_keys[id(st)] = key
            self.storages.append(st)
        d = by_name(st.dtype)
        if d is None:
            raise OutputRefused(f"tensor {_show(path)} has unknown dtype {st.dtype!r}")
        self.out += b"(" + _str("storage")
        if d.storage_class and st.dtype == t.dtype:
            self.global_("torch", d.storage_class)
            numel = st.nbytes // d.itemsize
        else:
            self.global_("torch.storage", "UntypedStorage")
            numel = st.nbytes
        self.out += _str(key) + _str("cpu") + _int(numel) + b"tQ"
        return key

    def tensor(self, t: TensorRef, path: Path_) -> str:
        d = by_name(t.dtype)
        st_d = by_name(t.storage.dtype)
        if d is None or st_d is None:
            raise OutputRefused(f"tensor {_show(path)} has unknown dtype {t.dtype!r}")
        v3 = not (d.storage_class and t.dtype == t.storage.dtype)
        if t.is_parameter:
            self.global_("torch._utils", "_rebuild_parameter")
        self.global_("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        self.out += b"("
        key = self.storage_pid(t, path)
        self.out += _int(t.storage_offset)  # in elements of the tensor's dtype, for v2 and v3 alike
        for dims in (t.shape, t.stride):
            self.tuple_of_ints(dims)
        self.out += b"\x88" if t.requires_grad and not t.is_parameter else b"\x89"
        self.empty_ordered_dict()
        if v3:
            self.global_("torch", t.dtype)
        self.out += b"tR"
        if t.is_parameter:
            self.out += b"\x88" if t.requires_grad else b"\x89"
            self.empty_ordered_dict()
            self.out += b"\x87R"
        self.tensors += 1
        return key

    def tuple_of_ints(self, values: tuple[int, ...]) -> None:
        body = b"".join(_int(v) for v in values)
        n = len(values)
        self.out += b")" if n == 0 else body + b"\x85\x86\x87"[n - 1:n] if n <= 3 else b"(" + body + b"t"

    # -- the walk ---------------------------------------------------------------------------
    def dump(self, root: Any) -> None:
        stack: list[tuple[int, Any, Path_ | None]] = [(_VALUE, root, ())]
        budget = MAX_NODES
        while stack:
            is_op, obj, path = stack.pop()
            if is_op == _OP:
                self.out += obj
                continue
            if is_op == _MEMO:  # a stand-in's constructor is out: later references get it from the memo
                self.pending.discard(id(obj))
                self.memo_ids[id(obj)] = self.put()
                self.keep.append(obj)
                continue
            if is_op == _GLOBAL:
                self.global_(obj.module, obj.name)
                continue
            budget -= 1
            if budget < 0:
                raise ResourceLimit(f"the tree to write has more than {MAX_NODES} nodes")
            self.value(obj, path, stack)

    def value(self, obj: Any, path: Path_ | None, stack: list[tuple[int, Any, Path_ | None]]) -> None:
        if self.transform is not None:
            obj = self.transform(obj, path)
        if type(obj) in REBUILT:  # a numpy scalar, torch.Size, a path: the call that made it
            if path is not None:
                self.expected.append(Expected(path, "leaf", obj))
            self.call(obj.origin, None, stack)
            return
        if obj is None or isinstance(obj, bool | int | float | str | bytes | complex):
            self.leaf(obj, path)
            return
        if id(obj) in self.memo_ids:  # only kept-alive dicts, lists and tensors are memoised
            self.get(self.memo_ids[id(obj)])
            return
        if isinstance(obj, TensorRef) or is_torch_tensor(obj):
            ref = obj if isinstance(obj, TensorRef) else self.adapt(obj)
            key = self.tensor(ref, path or ())
            self.memo_ids[id(obj)] = self.put()
            self.keep.append(obj)
            if path is not None:
                self.expected.append(Expected(path, "tensor", ref, key))
            return
        if isinstance(obj, dict):
            self.dict_(obj, path, stack)
            return
        if isinstance(obj, Stub):
            self.stub(obj, path, stack)
            return
        if isinstance(obj, GlobalRef):
            self.check_global(obj, path)
            if path is not None:
                self.expected.append(Expected(path, "global", obj.fullname))
            self.global_(obj.module, obj.name)
            return
        if isinstance(obj, list):
            self.out += b"]"
            self.memo_ids[id(obj)] = self.put()
            self.keep.append(obj)
            if path is not None:
                self.expected.append(Expected(path, "list", len(obj)))
            if obj:
                stack.append((_OP, b"e", None))
                for i in range(len(obj) - 1, -1, -1):
                    stack.append((_VALUE, obj[i], None if path is None else (*path, i)))
                stack.append((_OP, b"(", None))
            return
        if isinstance(obj, tuple):  # torch.Size included
            n = len(obj)
            if path is not None:
                self.expected.append(Expected(path, "tuple", n))
            if n == 0:
                self.out += b")"
                return
            stack.append((_OP, b"\x85\x86\x87"[n - 1:n] if n <= 3 else b"t", None))
            for i in range(n - 1, -1, -1):
                stack.append((_VALUE, obj[i], None if path is None else (*path, i)))
            if n > 3:
                stack.append((_OP, b"(", None))
            return
        if isinstance(obj, set | frozenset):
            self.global_("builtins", "set" if isinstance(obj, set) else "frozenset")
            stack.append((_OP, b"\x85R", None))
            stack.append((_VALUE, list(obj), None))
            return
        self.special(obj, path)

    # -- stand-ins: the calls and state the reader recorded -----------------------------------
    def check_global(self, ref: GlobalRef, path: Path_ | None) -> None:
        if classify(ref.module, ref.name) == "dangerous":
            raise UnsafeContent(f"{_show(path)} refers to {ref.fullname}, which can run code; it is not written",
                                hint="pass --sanitize to write such objects as plain data (dangerous ones removed)")

    def call(self, origin: tuple[bytes, Any, tuple[Any, ...], Any], path: Path_ | None,
             stack: list[tuple[int, Any, Path_ | None]], trusted: bool = False) -> None:
        """Push ``func args OPCODE`` (NEWOBJ_EX with its keyword arguments) for the walk to emit."""
        op, func, args, kwargs = origin
        stack.append((_OP, op, None))
        if op == b"\x92":
            stack.append((_VALUE, kwargs or {}, None))
        stack.append((_VALUE, tuple(args), None if path is None else (*path, StubPart("args"))))
        if isinstance(func, GlobalRef):  # the callable itself: never handed to the transform
            if not trusted:
                self.check_global(func, path)
            stack.append((_GLOBAL, func, None))
        else:
            stack.append((_VALUE, func, None))

    def stub(self, obj: Stub, path: Path_ | None, stack: list[tuple[int, Any, Path_ | None]]) -> None:
        if obj.dangerous:
            name = obj.origin[1].fullname if obj.origin and isinstance(obj.origin[1], GlobalRef) else obj.qualname
            raise UnsafeContent(f"{_show(path)} is built by {name.split('(', 1)[0]}, which can run code; "
                                "it is not written",
                                hint="pass --sanitize to write such objects as plain data (dangerous ones removed)")
        if id(obj) in self.pending:
            raise OutputRefused(f"{_show(path)} is a pickled {obj.qualname} whose constructor arguments "
                                "contain the object itself; it cannot be written")
        self.pending.add(id(obj))
        origin = obj.origin or _default_origin(obj, path)
        if path is not None:
            self.expected.append(Expected(path, "stub", obj.qualname))

        def part(name: str, *more: Any) -> Path_ | None:
            return None if path is None else (*path, StubPart(name), *more)

        if obj.state is not None:
            stack.append((_OP, b"b", None))
            stack.append((_VALUE, obj.state, part("state")))
        if obj.entries:
            stack.append((_OP, b"u", None))
            for key, value in reversed(list(obj.entries.items())):
                stack.append((_VALUE, value, part("entries", key)))
                stack.append((_VALUE, key, None))
            stack.append((_OP, b"(", None))
        if obj.items:
            stack.append((_OP, b"e", None))
            for i in range(len(obj.items) - 1, -1, -1):
                stack.append((_VALUE, obj.items[i], part("items", i)))
            stack.append((_OP, b"(", None))
        stack.append((_MEMO, obj, None))
        self.call(origin, path, stack, trusted=is_method_stub(obj))

    def dict_(self, obj: dict[Any, Any], path: Path_ | None,
              stack: list[tuple[int, Any, Path_ | None]]) -> None:
        attrs: dict[str, Any] = dict(obj.attrs) if isinstance(obj, PickledDict) else dict(getattr(obj, "__dict__", {}))
        ordered = (obj.ordered if isinstance(obj, PickledDict) else isinstance(obj, OrderedDict)) or bool(attrs)
        if ordered:
            self.global_("collections", "OrderedDict")
            self.out += b")R"
        else:
            self.out += b"}"
        self.memo_ids[id(obj)] = self.put()
        self.keep.append(obj)
        if path is not None:
            self.expected.append(Expected(path, "dict", list(obj)))
        if attrs:
            stack.append((_OP, b"b", None))
            stack.append((_VALUE, attrs, None))
        if obj:
            stack.append((_OP, b"u", None))
            for key, value in reversed(list(obj.items())):
                stack.append((_VALUE, value, None if path is None else (*path, key)))
                stack.append((_VALUE, key, None))
            stack.append((_OP, b"(", None))

    def leaf(self, obj: Any, path: Path_ | None) -> None:
        if obj is None:
            self.out += b"N"
        elif obj is True or obj is False:
            self.out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            self.out += _int(int(obj))
        elif isinstance(obj, float):
            self.out += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, str):
            self.out += _str(str(obj))
        elif isinstance(obj, bytes):
            self.global_("_codecs", "encode")
            self.out += _str(obj.decode("latin1")) + _str("latin1") + b"\x86R"
        else:  # complex
            self.global_("builtins", "complex")
            self.out += b"G" + struct.pack(">d", obj.real) + b"G" + struct.pack(">d", obj.imag) + b"\x86R"
        if path is not None and not isinstance(obj, complex):  # the reader rebuilds complex lossily
            self.expected.append(Expected(path, "leaf", obj))

    def special(self, obj: Any, path: Path_ | None) -> None:
        mod = type(obj).__module__
        if mod == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
            self.leaf(obj.item(), path)
            return
        if mod == "torch" and type(obj).__name__ == "dtype":
            self.global_("torch", str(obj).removeprefix("torch."))
            return
        if mod == "torch" and type(obj).__name__ == "device":
            self.global_("torch", "device")
            self.out += _str(str(obj)) + b"\x85R"
            return
        where = _show(path) if path is not None else "a dict key or attribute"
        raise OutputRefused(f"{where} is a {type(obj).__qualname__}, which a torch checkpoint written for "
                            "weights_only loading cannot hold", hint="pass plain data (dict, list, numbers, str)")


def _show(path: Path_ | None) -> str:
    if path is None:
        return "a value inside a pickled object"
    if not path:
        return "the root object"
    return ".".join(str(p) for p in path)


def _default_origin(obj: Stub, path: Path_ | None) -> tuple[bytes, GlobalRef, tuple[Any, ...], None]:
    """``qualname(*args)`` for a stand-in made in code rather than read from a pickle."""
    module, _, name = obj.qualname.rpartition(".")
    if not module or "(" in obj.qualname:
        raise OutputRefused(f"{_show(path)} is a {obj.qualname} object whose origin is unknown; it cannot be written")
    return b"R", GlobalRef(module, name), tuple(obj.args), None


def pickle_tree(tree: Any, adapt: Callable[[Any], TensorRef], transform: Transform | None = None) -> PickleResult:
    """Pickle ``tree`` as torch's ``data.pkl``; ``adapt`` turns torch tensors into ``TensorRef``s.

    ``transform(value, path)`` (path None under dict keys) may replace any value before it is
    written; it must return the same replacement for the same object, so sharing survives.
    """
    em = _Emitter(adapt, transform)
    em.dump(tree)
    em.out += b"."
    return PickleResult(bytes(em.out), em.storages, em.expected, em.tensors)
