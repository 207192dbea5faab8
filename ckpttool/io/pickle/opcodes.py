"""The pickle instruction set: what each opcode does to the safe VM's stack and memo.

``Opcodes`` is the half of ``SafeUnpickler`` that interprets opcodes. The machine itself
(``ckpttool.io.pickle.unpickler``) owns the stack, the memo, the reading primitives, the budgets and the
policy for globals and calls; handlers reach them through ``self``. No handler imports or calls
anything a pickle names: globals go to ``_global``, calls to ``_call``, ``BUILD`` only records state.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

from ckpttool.errors import CorruptPickle, ResourceLimit, TruncatedFile
from ckpttool.model import PickledDict, Stub

__all__ = ["Opcodes", "HANDLERS", "PUSHED_CONSTANTS", "MAX_INT_BYTES"]

MAX_INT_BYTES = 1700  # 13 600 bits: about 4100 decimal digits, under str()'s 4300-digit limit


class Opcodes:
    """Opcode handlers, mixed into ``SafeUnpickler``; each returns True only for STOP."""

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
        self.stack.append(self._call(cls, args, op=b"\x81"))

    def op_newobj_ex(self) -> None:
        kwargs, args, cls = self._pop(), self._pop(), self._pop()
        self.stack.append(self._call(cls, args, kwargs if isinstance(kwargs, dict) else None, op=b"\x92"))

    def op_inst(self) -> None:
        module = self._line().decode("utf-8", "replace")
        name = self._line().decode("utf-8", "replace")
        args = self._pop_mark()
        cls = self._global(module, name)
        self.stack.append(self._call(cls, tuple(args), op=b"R" if args else b"\x81"))

    def op_obj(self) -> None:
        items = self._pop_mark()
        if not items:
            raise CorruptPickle("OBJ without a class")
        self.stack.append(self._call(items[0], tuple(items[1:]), op=b"R" if items[1:] else b"\x81"))

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


_OPS: dict[bytes, Callable[[Opcodes], Any]] = {
    b"\x80": Opcodes.op_proto, b"\x95": Opcodes.op_frame, b".": Opcodes.op_stop,
    b"(": Opcodes.op_mark, b"0": Opcodes.op_pop, b"1": Opcodes.op_pop_mark,
    b"2": Opcodes.op_dup, b"N": Opcodes.op_none, b"\x88": Opcodes.op_newtrue,
    b"\x89": Opcodes.op_newfalse, b"I": Opcodes.op_int, b"J": Opcodes.op_binint,
    b"K": Opcodes.op_binint1, b"M": Opcodes.op_binint2, b"L": Opcodes.op_long,
    b"\x8a": Opcodes.op_long1, b"\x8b": Opcodes.op_long4,
    b"F": Opcodes.op_float, b"G": Opcodes.op_binfloat,
    b"S": Opcodes.op_string, b"T": Opcodes.op_binstring,
    b"U": Opcodes.op_short_binstring, b"V": Opcodes.op_unicode,
    b"\x8c": Opcodes.op_short_binunicode, b"X": Opcodes.op_binunicode,
    b"\x8d": Opcodes.op_binunicode8, b"B": Opcodes.op_binbytes,
    b"C": Opcodes.op_short_binbytes, b"\x8e": Opcodes.op_binbytes8,
    b"\x96": Opcodes.op_bytearray8, b"\x97": Opcodes.op_buffer,
    b"\x98": Opcodes.op_buffer,
    b")": Opcodes.op_empty_tuple, b"t": Opcodes.op_tuple,
    b"\x85": Opcodes.op_tuple1, b"\x86": Opcodes.op_tuple2,
    b"\x87": Opcodes.op_tuple3, b"]": Opcodes.op_empty_list,
    b"l": Opcodes.op_list, b"}": Opcodes.op_empty_dict, b"d": Opcodes.op_dict,
    b"\x8f": Opcodes.op_empty_set, b"\x91": Opcodes.op_frozenset,
    b"a": Opcodes.op_append, b"e": Opcodes.op_appends,
    b"s": Opcodes.op_setitem, b"u": Opcodes.op_setitems,
    b"\x90": Opcodes.op_additems,
    b"p": Opcodes.op_put, b"q": Opcodes.op_binput, b"r": Opcodes.op_long_binput,
    b"\x94": Opcodes.op_memoize, b"g": Opcodes.op_get, b"h": Opcodes.op_binget,
    b"j": Opcodes.op_long_binget,
    b"c": Opcodes.op_global, b"\x93": Opcodes.op_stack_global,
    b"R": Opcodes.op_reduce, b"\x81": Opcodes.op_newobj,
    b"\x92": Opcodes.op_newobj_ex, b"i": Opcodes.op_inst, b"o": Opcodes.op_obj,
    b"b": Opcodes.op_build,
    b"\x82": lambda self: self.op_ext(1), b"\x83": lambda self: self.op_ext(2),
    b"\x84": lambda self: self.op_ext(4),
    b"P": Opcodes.op_persid, b"Q": Opcodes.op_binpersid,
}
PUSHED_CONSTANTS = {0x89: False, 0x88: True, 0x29: (), 0x4E: None}
HANDLERS: list[Callable[[Opcodes], Any] | None] = [None] * 256
for _code, _handler in _OPS.items():
    HANDLERS[_code[0]] = _handler
