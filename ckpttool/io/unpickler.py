"""A pickle virtual machine that builds inert data and never runs anything the file names.

Why our own VM rather than a ``pickle.Unpickler`` subclass: the C unpickler cannot bound tuple
depth (a deep tuple used as a dict key segfaults CPython when hashed) and cannot see FRAME
boundaries, the two differentials that fooled existing scanners. This VM reads protocols 0-5
opcode by opcode, exactly as ``torch.load`` would consume them (same stop position, so the next
pickle of a legacy stream starts at the same byte), and:

- resolves every global to a ``GlobalRef``; calls to allow-listed data constructors are
  re-implemented as pure code (``ckpttool.io.rebuild``), every other call builds a ``Stub``;
- records each global with its class (``data``/``stub``/``dangerous``) for ``scan``;
- bounds tuple depth, stack/memo size and output size by the length of the input.

Nothing here imports torch or numpy.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import CorruptPickle, ResourceLimit, TruncatedFile
from ckpttool.io.globals_policy import GlobalKind, classify
from ckpttool.io.rebuild import call_global
from ckpttool.model import GlobalRef, PickledDict, Stub

__all__ = ["PickleResult", "SafeUnpickler", "MAX_TUPLE_DEPTH"]

MAX_TUPLE_DEPTH = 256
MAX_INT_BYTES = 1700  # 13 600 bits: about 4100 decimal digits, under str()'s 4300-digit limit
_MARK = object()
# Allow-listed calls whose first argument's elements get hashed (set members, OrderedDict pairs).
_HASHING_CALLS = frozenset({"set", "frozenset", "OrderedDict"})


@dataclass
class PickleResult:
    """What one pickle gave: the value, where it ended, and every global it named."""

    value: Any
    end: int
    globals: Counter[tuple[str, str]] = field(default_factory=Counter)
    kinds: dict[tuple[str, str], GlobalKind] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)


PersistentLoad = Callable[[Any], Any]


class SafeUnpickler:
    """Unpickle one pickle from ``data`` starting at ``start``.

    Args:
        data: the bytes holding the pickle (more may follow it).
        persistent_load: how to turn a persistent id into a value (storages for torch files).
        start: offset of the pickle's first opcode.
    """

    def __init__(self, data: bytes | memoryview, persistent_load: PersistentLoad | None = None,
                 start: int = 0) -> None:
        self.data = memoryview(data)
        self._find = data.find if isinstance(data, bytes | bytearray) else None
        self.pos = start
        self.persistent_load = persistent_load
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.frame_end: int | None = None
        self.proto = 0
        self.result = PickleResult(None, start)
        self._tuple_shape: dict[int, tuple[int, int]] = {}  # id -> (depth, logical size) of nested tuples
        self._keepalive: list[Any] = []
        self._budget = max(1_000_000, 4 * (len(self.data) - start))
        # Hashing a tuple walks all of its logical elements, and memo reuse makes a 2 KB tuple DAG
        # with 2^60 of them: every dict key and set member is charged its logical size.
        self._hash_budget = max(10_000_000, 16 * (len(self.data) - start))

    # ----- reading primitives -------------------------------------------------
    def _take(self, n: int) -> memoryview:
        if n < 0:
            raise CorruptPickle(f"negative length {n} at byte {self.pos}")
        end = self.pos + n
        if end > len(self.data):
            raise TruncatedFile(f"pickle data ends inside an opcode at byte {self.pos}")
        if self.frame_end is not None and self.pos < self.frame_end < end:
            raise CorruptPickle(f"an opcode straddles the end of a FRAME at byte {self.frame_end}")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def _line(self) -> bytes:
        limit = min(len(self.data), self.pos + 65536)
        if self._find is not None:  # search in place: copying 64 KB per text opcode is quadratic
            end = self._find(b"\n", self.pos, limit)
            end = end - self.pos if end >= 0 else -1
        else:
            end = bytes(self.data[self.pos:limit]).find(b"\n")
        if end < 0:
            raise TruncatedFile(f"unterminated text argument at byte {self.pos}")
        return bytes(self._take(end + 1)[:-1])

    def _u(self, fmt: str, n: int) -> int:
        pos = self.pos
        if pos + n > len(self.data) or (self.frame_end is not None and pos < self.frame_end < pos + n):
            self._take(n)  # raises the precise error
        self.pos = pos + n
        return struct.unpack_from(fmt, self.data, pos)[0]

    # ----- stack helpers ------------------------------------------------------
    def _pop(self) -> Any:
        if not self.stack:
            raise CorruptPickle(f"stack underflow at byte {self.pos}")
        return self.stack.pop()

    def _pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise CorruptPickle(f"MARK expected at byte {self.pos}")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _top(self) -> Any:
        if not self.stack:
            raise CorruptPickle(f"stack underflow at byte {self.pos}")
        return self.stack[-1]

    def _tuple(self, items: list[Any]) -> tuple[Any, ...]:
        depth, size = 1, len(items)
        for item in items:
            if type(item) is tuple:
                d, n = self._tuple_shape.get(id(item), (1, len(item)))
                depth = max(depth, d + 1)
                size += n
        if depth > MAX_TUPLE_DEPTH:
            raise ResourceLimit(f"tuples nested deeper than {MAX_TUPLE_DEPTH} levels")
        value = tuple(items)
        if depth > 1:
            self._tuple_shape[id(value)] = (depth, size)
            self._keepalive.append(value)
        return value

    def _charge_hashes(self, keys: Any) -> None:
        """Pay for hashing (and comparing) ``keys`` before they go into a dict or set."""
        cost = 0
        for key in keys:
            if type(key) is tuple:
                cost += 2 * self._tuple_shape.get(id(key), (1, len(key)))[1]
            else:
                cost += 1
        self._hash_budget -= cost
        if self._hash_budget < 0:
            raise ResourceLimit("dict keys or set members that share their elements need too much "
                                "hashing for the size of the pickle")

    def _spend(self, n: int = 1) -> None:
        self._budget -= n
        if self._budget < 0:
            raise ResourceLimit("the pickle builds more objects than its size allows")

    # ----- globals and calls --------------------------------------------------
    def _global(self, module: Any, name: Any) -> GlobalRef:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CorruptPickle("a global's module and name must be strings")
        if self.proto < 3:  # Python 2 names, mapped as pickle's fix_imports (torch.load's default) does
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        self.result.globals[key] += 1
        if key not in self.result.kinds:
            self.result.kinds[key] = classify(module, name)
        return GlobalRef(module, name)

    def _is_dangerous(self, ref: GlobalRef) -> bool:
        return self.result.kinds.get((ref.module, ref.name)) == "dangerous"

    def _call(self, func: Any, args: Any, kwargs: dict[str, Any] | None = None) -> Any:
        self._spend()
        if not isinstance(args, tuple):
            args = (args,) if args is not None else ()
        if isinstance(func, GlobalRef):
            kind = self.result.kinds.get((func.module, func.name), "stub")
            if kind == "data":
                if func.name in _HASHING_CALLS and args and isinstance(args[0], list | tuple):
                    self._charge_hashes(args[0])
                value = call_global(func.fullname, args, kwargs or {})
                # tuples built by a call (builtins.tuple) are tracked like TUPLE's: depth and size
                return self._tuple(list(value)) if type(value) is tuple else value
            return Stub(func.fullname, args, dangerous=kind == "dangerous")
        if isinstance(func, Stub):
            return Stub(f"{func.qualname}(...)", args, dangerous=func.dangerous)
        raise CorruptPickle(f"cannot call a {type(func).__name__} (byte {self.pos})")

    # ----- main loop ------------------------------------------------------------
    def load(self) -> PickleResult:
        """Run the VM to STOP and return the value with what was learned on the way."""
        table = [None if h is None else h.__get__(self) for h in _TABLE]
        data = self.data
        size = len(data)
        memo = self.memo
        unpack_from = struct.unpack_from
        while True:
            pos = self.pos
            frame_end = self.frame_end
            if frame_end is not None and pos >= frame_end:
                self.frame_end = frame_end = None
            if pos >= size:
                raise TruncatedFile("pickle data ends before its STOP opcode")
            op = data[pos]
            # Fast paths for the opcodes that make up most of a state_dict pickle. Each is taken only
            # when its whole argument lies before the data end and any FRAME end; otherwise the
            # generic handler below runs and reports the precise error.
            limit = size if frame_end is None else frame_end
            if op == 0x72 and pos + 5 <= limit and self.stack:  # LONG_BINPUT
                memo[unpack_from("<I", data, pos + 1)[0]] = self.stack[-1]
                self.pos = pos + 5
                continue
            if op == 0x68 and pos + 2 <= limit and data[pos + 1] in memo:  # BINGET
                self.stack.append(memo[data[pos + 1]])
                self.pos = pos + 2
                continue
            if op == 0x4B and pos + 2 <= limit:  # BININT1
                self.stack.append(data[pos + 1])
                self.pos = pos + 2
                continue
            if op == 0x4D and pos + 3 <= limit:  # BININT2
                self.stack.append(unpack_from("<H", data, pos + 1)[0])
                self.pos = pos + 3
                continue
            if op == 0x28:  # MARK
                self.metastack.append(self.stack)
                self.stack = []
                self.pos = pos + 1
                continue
            if op == 0x89 or op == 0x88 or op == 0x29 or op == 0x4E:  # NEWFALSE NEWTRUE EMPTY_TUPLE NONE
                self.stack.append(_CONSTANTS[op])
                self.pos = pos + 1
                continue
            self.pos = pos + 1
            handler = table[op]
            if handler is None:
                raise CorruptPickle(f"unknown pickle opcode 0x{op:02x} at byte {pos}")
            if handler():
                break
        self.result.value = self._pop()
        self.result.end = self.pos
        return self.result

    # Each handler returns True only for STOP.
    def op_proto(self) -> None:
        proto = self._take(1)[0]
        if proto > 5:
            raise CorruptPickle(f"unsupported pickle protocol {proto}")
        self.proto = proto

    def op_frame(self) -> None:
        length = self._u("<Q", 8)
        if self.pos + length > len(self.data):
            raise TruncatedFile("a pickle FRAME runs past the end of the data")
        self.frame_end = self.pos + length

    def op_stop(self) -> bool:
        return True

    def op_mark(self) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def op_pop(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def op_pop_mark(self) -> None:
        self._pop_mark()

    def op_dup(self) -> None:
        self.stack.append(self._top())

    def _push(self, value: Any) -> None:
        self._budget -= 1
        if self._budget < 0:
            self._spend(0)
        self.stack.append(value)

    def op_none(self) -> None:
        self._push(None)

    def op_newtrue(self) -> None:
        self._push(True)

    def op_newfalse(self) -> None:
        self._push(False)

    def op_int(self) -> None:
        line = self._line()
        if line == b"00":
            self._push(False)
        elif line == b"01":
            self._push(True)
        else:
            self._push(_parse_int(line))

    def op_binint(self) -> None:
        self._push(self._u("<i", 4))

    def op_binint1(self) -> None:
        self._push(self._u("<B", 1))

    def op_binint2(self) -> None:
        self._push(self._u("<H", 2))

    def op_long(self) -> None:
        self._push(_parse_int(self._line().rstrip(b"L")))

    def op_long1(self) -> None:
        n = self._take(1)[0]
        self._push(int.from_bytes(self._take(n), "little", signed=True))

    def op_long4(self) -> None:
        n = self._u("<i", 4)
        if n > MAX_INT_BYTES:
            # past ~4300 digits str() refuses (CPython's guard), and every report, message and key
            # path would fail on it; no checkpoint needs an integer that large
            raise ResourceLimit(f"an integer of {n} bytes (at most {MAX_INT_BYTES})")
        self._push(int.from_bytes(self._take(n), "little", signed=True))

    def op_float(self) -> None:
        try:
            self._push(float(self._line()))
        except ValueError as exc:
            raise CorruptPickle(f"bad FLOAT literal at byte {self.pos}") from exc

    def op_binfloat(self) -> None:
        self._push(self._u(">d", 8))

    def op_string(self) -> None:
        line = self._line()
        if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
            raw = codecs.escape_decode(line[1:-1])[0]
        else:
            raise CorruptPickle(f"bad STRING literal at byte {self.pos}")
        self._push(_decode_py2(raw))

    def op_binstring(self) -> None:
        n = self._u("<i", 4)
        self._push(_decode_py2(bytes(self._take(n))))

    def op_short_binstring(self) -> None:
        n = self._take(1)[0]
        self._push(_decode_py2(bytes(self._take(n))))

    def op_unicode(self) -> None:
        self._push(self._line().decode("raw-unicode-escape"))

    def _utf8(self, n: int) -> None:
        try:
            self._push(str(self._take(n), "utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            raise CorruptPickle(f"invalid UTF-8 string at byte {self.pos}") from exc

    def op_short_binunicode(self) -> None:
        self._utf8(self._take(1)[0])

    def op_binunicode(self) -> None:
        self._utf8(self._u("<I", 4))

    def op_binunicode8(self) -> None:
        self._utf8(self._u("<Q", 8))

    def op_binbytes(self) -> None:
        self._push(bytes(self._take(self._u("<I", 4))))

    def op_short_binbytes(self) -> None:
        self._push(bytes(self._take(self._take(1)[0])))

    def op_binbytes8(self) -> None:
        self._push(bytes(self._take(self._u("<Q", 8))))

    def op_bytearray8(self) -> None:
        self._push(bytearray(self._take(self._u("<Q", 8))))

    def op_buffer(self) -> None:
        raise CorruptPickle("out-of-band pickle buffers are not allowed in a checkpoint")

    def op_empty_tuple(self) -> None:
        self._push(())

    def op_tuple(self) -> None:
        self._push(self._tuple(self._pop_mark()))

    def op_tuple1(self) -> None:
        self.stack.append(self._tuple([self._pop()]))

    def op_tuple2(self) -> None:
        b, a = self._pop(), self._pop()
        self.stack.append(self._tuple([a, b]))

    def op_tuple3(self) -> None:
        c, b, a = self._pop(), self._pop(), self._pop()
        self.stack.append(self._tuple([a, b, c]))

    def op_empty_list(self) -> None:
        self._push([])

    def op_list(self) -> None:
        self._push(self._pop_mark())

    def op_empty_dict(self) -> None:
        self._push(PickledDict())

    def op_dict(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise CorruptPickle("DICT with an odd number of items")
        self._charge_hashes(items[0::2])
        d = PickledDict()
        for i in range(0, len(items), 2):
            _setitem(d, items[i], items[i + 1])
        self._push(d)

    def op_empty_set(self) -> None:
        self._push(set())

    def op_frozenset(self) -> None:
        items = self._pop_mark()
        self._charge_hashes(items)
        self._push(_hashable_container(frozenset, items))

    def op_append(self) -> None:
        value = self._pop()
        if isinstance(self._top(), set):
            self._charge_hashes([value])
        _append(self._top(), [value])

    def op_appends(self) -> None:
        items = self._pop_mark()
        if isinstance(self._top(), set):
            self._charge_hashes(items)
        _append(self._top(), items)

    def op_setitem(self) -> None:
        value, key = self._pop(), self._pop()
        self._charge_hashes([key])
        _setitems(self._top(), [key, value])

    def op_setitems(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise CorruptPickle("SETITEMS with an odd number of items")
        self._charge_hashes(items[0::2])
        _setitems(self._top(), items)

    def op_additems(self) -> None:
        items = self._pop_mark()
        self._charge_hashes(items)
        target = self._top()
        if isinstance(target, set):
            try:
                target.update(items)
            except TypeError as exc:
                raise CorruptPickle("unhashable set member") from exc
        elif isinstance(target, Stub):
            target.items.extend(items)
        else:
            raise CorruptPickle(f"ADDITEMS on a {type(target).__name__}")

    # memo
    def _put(self, index: int) -> None:
        if index < 0:
            raise CorruptPickle("negative memo index")
        if not self.stack:
            raise CorruptPickle(f"stack underflow at byte {self.pos}")
        self.memo[index] = self.stack[-1]  # at most one entry per opcode: bounded by the data size

    def _get(self, index: int) -> None:
        try:
            self.stack.append(self.memo[index])
        except KeyError:
            raise CorruptPickle(f"memo key {index} not found at byte {self.pos}") from None

    def op_put(self) -> None:
        self._put(_parse_int(self._line()))

    def op_binput(self) -> None:
        self._put(self._u("<B", 1))

    def op_long_binput(self) -> None:
        self._put(self._u("<I", 4))

    def op_memoize(self) -> None:
        self._put(len(self.memo))

    def op_get(self) -> None:
        self._get(_parse_int(self._line()))

    def op_binget(self) -> None:
        self._get(self._u("<B", 1))

    def op_long_binget(self) -> None:
        self._get(self._u("<I", 4))

    # globals, calls, objects
    def op_global(self) -> None:
        module = self._line().decode("utf-8", "replace")
        name = self._line().decode("utf-8", "replace")
        self._push(self._global(module, name))

    def op_stack_global(self) -> None:
        name, module = self._pop(), self._pop()
        self._push(self._global(module, name))

    def op_reduce(self) -> None:
        args, func = self._pop(), self._pop()
        self.stack.append(self._call(func, args))

    def op_newobj(self) -> None:
        args, cls = self._pop(), self._pop()
        self.stack.append(self._call(cls, args))

    def op_newobj_ex(self) -> None:
        kwargs, args, cls = self._pop(), self._pop(), self._pop()
        self.stack.append(self._call(cls, args, kwargs if isinstance(kwargs, dict) else None))

    def op_inst(self) -> None:
        module = self._line().decode("utf-8", "replace")
        name = self._line().decode("utf-8", "replace")
        args = self._pop_mark()
        cls = self._global(module, name)
        self.stack.append(self._call(cls, tuple(args)))

    def op_obj(self) -> None:
        items = self._pop_mark()
        if not items:
            raise CorruptPickle("OBJ without a class")
        self.stack.append(self._call(items[0], tuple(items[1:])))

    def op_build(self) -> None:
        state = self._pop()
        _build(self._top(), state)

    def op_ext(self, size: int) -> None:
        code = self._u({1: "<B", 2: "<H", 4: "<i"}[size], size)
        self.result.anomalies.append(f"extension code {code} (copyreg registry) used")
        # pickle resolves the code through copyreg's registry to any global: name that lookup
        key = ("copyreg", "_inverted_registry")
        self.result.globals[key] += 1
        self.result.kinds[key] = "dangerous"
        self._push(Stub(f"copyreg.extension[{code}]", (), dangerous=True))

    def op_persid(self) -> None:
        pid = self._line().decode("ascii", "replace")
        self._push(self._persistent(pid))

    def op_binpersid(self) -> None:
        self.stack.append(self._persistent(self._pop()))

    def _persistent(self, pid: Any) -> Any:
        if self.persistent_load is None:
            raise CorruptPickle("persistent id in a pickle that cannot have one")
        return self.persistent_load(pid)


def _parse_int(line: bytes) -> int:
    try:
        return int(line)
    except ValueError as exc:
        raise CorruptPickle(f"bad integer literal {line[:20]!r}") from exc


def _decode_py2(raw: bytes) -> str | bytes:
    """Python 2 ``str`` values: decoded as torch.load does (utf-8), else kept as bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _hashable_container(kind: type, items: list[Any]) -> Any:
    try:
        return kind(items)
    except TypeError as exc:
        raise CorruptPickle("unhashable member in a set") from exc


def _setitem(target: dict[Any, Any], key: Any, value: Any) -> None:
    try:
        target[key] = value
    except TypeError as exc:
        raise CorruptPickle(f"unhashable dict key of type {type(key).__name__}") from exc


def _setitems(target: Any, items: list[Any]) -> None:
    if isinstance(target, dict):
        for i in range(0, len(items), 2):
            _setitem(target, items[i], items[i + 1])
    elif isinstance(target, Stub):
        for i in range(0, len(items), 2):
            _setitem(target.entries, items[i], items[i + 1])
    else:
        raise CorruptPickle(f"SETITEM on a {type(target).__name__}")


def _append(target: Any, items: list[Any]) -> None:
    if isinstance(target, list):
        target.extend(items)
    elif isinstance(target, Stub):
        target.items.extend(items)
    elif isinstance(target, set):
        try:
            target.update(items)
        except TypeError as exc:
            raise CorruptPickle("unhashable set member") from exc
    else:
        raise CorruptPickle(f"APPEND on a {type(target).__name__}")


def _build(target: Any, state: Any) -> None:
    """BUILD: record state on stubs and dict attributes; never call ``__setstate__``."""
    if isinstance(target, Stub):
        if target.state is None or not isinstance(target.state, dict) or not isinstance(state, dict):
            target.state = state
        else:
            target.state.update(state)
    elif isinstance(target, PickledDict):
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0]
        if isinstance(state, dict):
            target.attrs.update({k: v for k, v in state.items() if isinstance(k, str)})
    elif hasattr(target, "apply_state"):
        target.apply_state(state)
    elif state is not None and not isinstance(target, (list, set, tuple, str, bytes, int, float)):
        raise CorruptPickle(f"BUILD on a {type(target).__name__}")


_OPS: dict[bytes, Callable[[SafeUnpickler], Any]] = {
    b"\x80": SafeUnpickler.op_proto, b"\x95": SafeUnpickler.op_frame, b".": SafeUnpickler.op_stop,
    b"(": SafeUnpickler.op_mark, b"0": SafeUnpickler.op_pop, b"1": SafeUnpickler.op_pop_mark,
    b"2": SafeUnpickler.op_dup, b"N": SafeUnpickler.op_none, b"\x88": SafeUnpickler.op_newtrue,
    b"\x89": SafeUnpickler.op_newfalse, b"I": SafeUnpickler.op_int, b"J": SafeUnpickler.op_binint,
    b"K": SafeUnpickler.op_binint1, b"M": SafeUnpickler.op_binint2, b"L": SafeUnpickler.op_long,
    b"\x8a": SafeUnpickler.op_long1, b"\x8b": SafeUnpickler.op_long4,
    b"F": SafeUnpickler.op_float, b"G": SafeUnpickler.op_binfloat,
    b"S": SafeUnpickler.op_string, b"T": SafeUnpickler.op_binstring,
    b"U": SafeUnpickler.op_short_binstring, b"V": SafeUnpickler.op_unicode,
    b"\x8c": SafeUnpickler.op_short_binunicode, b"X": SafeUnpickler.op_binunicode,
    b"\x8d": SafeUnpickler.op_binunicode8, b"B": SafeUnpickler.op_binbytes,
    b"C": SafeUnpickler.op_short_binbytes, b"\x8e": SafeUnpickler.op_binbytes8,
    b"\x96": SafeUnpickler.op_bytearray8, b"\x97": SafeUnpickler.op_buffer,
    b"\x98": SafeUnpickler.op_buffer,
    b")": SafeUnpickler.op_empty_tuple, b"t": SafeUnpickler.op_tuple,
    b"\x85": SafeUnpickler.op_tuple1, b"\x86": SafeUnpickler.op_tuple2,
    b"\x87": SafeUnpickler.op_tuple3, b"]": SafeUnpickler.op_empty_list,
    b"l": SafeUnpickler.op_list, b"}": SafeUnpickler.op_empty_dict, b"d": SafeUnpickler.op_dict,
    b"\x8f": SafeUnpickler.op_empty_set, b"\x91": SafeUnpickler.op_frozenset,
    b"a": SafeUnpickler.op_append, b"e": SafeUnpickler.op_appends,
    b"s": SafeUnpickler.op_setitem, b"u": SafeUnpickler.op_setitems,
    b"\x90": SafeUnpickler.op_additems,
    b"p": SafeUnpickler.op_put, b"q": SafeUnpickler.op_binput, b"r": SafeUnpickler.op_long_binput,
    b"\x94": SafeUnpickler.op_memoize, b"g": SafeUnpickler.op_get, b"h": SafeUnpickler.op_binget,
    b"j": SafeUnpickler.op_long_binget,
    b"c": SafeUnpickler.op_global, b"\x93": SafeUnpickler.op_stack_global,
    b"R": SafeUnpickler.op_reduce, b"\x81": SafeUnpickler.op_newobj,
    b"\x92": SafeUnpickler.op_newobj_ex, b"i": SafeUnpickler.op_inst, b"o": SafeUnpickler.op_obj,
    b"b": SafeUnpickler.op_build,
    b"\x82": lambda self: self.op_ext(1), b"\x83": lambda self: self.op_ext(2),
    b"\x84": lambda self: self.op_ext(4),
    b"P": SafeUnpickler.op_persid, b"Q": SafeUnpickler.op_binpersid,
}
_CONSTANTS = {0x89: False, 0x88: True, 0x29: (), 0x4E: None}
_TABLE: list[Callable[[SafeUnpickler], Any] | None] = [None] * 256
for _code, _handler in _OPS.items():
    _TABLE[_code[0]] = _handler
