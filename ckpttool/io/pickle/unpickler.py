"""A pickle virtual machine that builds inert data and never runs anything the file names.

Why our own VM rather than a ``pickle.Unpickler`` subclass: the C unpickler cannot bound tuple
depth (a deep tuple used as a dict key segfaults CPython when hashed) and cannot see FRAME
boundaries, the two differentials that fooled existing scanners. This VM reads protocols 0-5
opcode by opcode, exactly as ``torch.load`` would consume them (same stop position, so the next
pickle of a legacy stream starts at the same byte), and:

- resolves every global to a ``GlobalRef``; calls to allow-listed data constructors are
  re-implemented as pure code (``ckpttool.io.pickle.rebuild``), every other call builds a ``Stub``;
- records each global with its class (``data``/``stub``/``dangerous``) for ``scan``;
- bounds tuple depth, stack/memo size and output size by the length of the input.

Nothing here imports torch or numpy.
"""

from __future__ import annotations

import _compat_pickle
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import CorruptPickle, ExpansionLimit, NestingLimit, TruncatedFile
from ckpttool.io.pickle.gc_pause import paused_gc
from ckpttool.io.pickle.globals_policy import GlobalKind, classify
from ckpttool.io.pickle.memo import Memo
from ckpttool.io.pickle.method_ref import GETATTR, is_method_reference, is_method_stub
from ckpttool.io.pickle.opcodes import HANDLERS, PUSHED_CONSTANTS, Opcodes
from ckpttool.io.pickle.rebuild import call_global
from ckpttool.io.pickle.rebuilt import LOSSY_CALLS, rebuilt
from ckpttool.model import GlobalRef, PickledDict, Stub

__all__ = ["PickleResult", "SafeUnpickler", "MAX_TUPLE_DEPTH"]

MAX_TUPLE_DEPTH = 256
# Allow-listed calls whose first argument's elements get hashed (set members, OrderedDict pairs).
_HASHING_CALLS = frozenset({"set", "frozenset", "OrderedDict"})
# Allow-listed calls that call their first argument while loading.
_CALLS_FIRST_ARG = frozenset({"torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type"})

@dataclass
class PickleResult:
    """What one pickle gave: the value, where it ended, and every global it named."""

    value: Any
    end: int
    globals: Counter[tuple[str, str]] = field(default_factory=Counter)
    kinds: dict[tuple[str, str], GlobalKind] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)
    method_refs: list[str] = field(default_factory=list)

PersistentLoad = Callable[[Any], Any]

class SafeUnpickler(Opcodes):
    """Unpickle one pickle from ``data`` starting at ``start``.

    Args:
        data: the bytes holding the pickle (more may follow it).
        persistent_load: how to turn a persistent id into a value (storages for torch files).
        start: offset of the pickle's first opcode.
    """

    def __init__(self, data: bytes | memoryview, persistent_load: PersistentLoad | None = None,
                 start: int = 0) -> None:
        self.data = memoryview(data)
        self._raw = data if type(data) is bytes else self.data  # indexing bytes is quicker
        self._find = data.find if isinstance(data, bytes | bytearray) else None
        self.pos = start
        self.persistent_load = persistent_load
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo = Memo()
        self.frame_end: int | None = None
        self.proto = 0
        self.result = PickleResult(None, start)
        self._tuple_shape: dict[int, tuple[int, int]] = {}  # id -> (depth, logical size) of nested tuples
        self._keepalive: list[Any] = []
        self._unsafe_getattr = False  # getattr used other than as a method reference: it stays dangerous
        self._method_stubs: list[Stub] = []
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
        shapes = self._tuple_shape
        for item in items:
            if type(item) is tuple:
                shape = shapes.get(id(item))
                d, n = (1, len(item)) if shape is None else shape
                if d >= depth:
                    depth = d + 1
                size += n
        if depth > MAX_TUPLE_DEPTH:
            raise NestingLimit(f"tuples nested deeper than {MAX_TUPLE_DEPTH} levels")
        value = tuple(items)
        if depth > 1:
            shapes[id(value)] = (depth, size)
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
            raise ExpansionLimit("dict keys or set members that share their elements need too much "
                                "hashing for the size of the pickle")

    def _spend(self, n: int = 1) -> None:
        self._budget -= n
        if self._budget < 0:
            raise ExpansionLimit("the pickle builds more objects than its size allows")

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

    def _call(self, func: Any, args: Any, kwargs: dict[str, Any] | None = None, op: bytes = b"R") -> Any:
        self._spend()
        if not isinstance(args, tuple):
            args = (args,) if args is not None else ()
        origin = (op, func, args, kwargs)  # how the pickle built it, for a rewrite to emit it again
        if isinstance(func, GlobalRef):
            kind = self.result.kinds.get((func.module, func.name), "stub")
            if kind == "data":
                if func.name in _HASHING_CALLS and args and isinstance(args[0], list | tuple):
                    self._charge_hashes(args[0])
                if func.fullname in _CALLS_FIRST_ARG and args and is_method_stub(args[0]):
                    self._unsafe_getattr = True  # torch's rebuild helper calls it while loading
                value = call_global(func.fullname, args, kwargs or {})
                if isinstance(value, Stub):
                    if value.origin is None:
                        value.origin = origin
                    return value
                if func.fullname in LOSSY_CALLS:
                    return rebuilt(value, origin)
                # tuples built by a call (builtins.tuple) are tracked like TUPLE's: depth and size
                return self._tuple(list(value)) if type(value) is tuple else value
            if func.fullname in GETATTR:
                if op == b"R" and kwargs is None and is_method_reference(func, args):
                    self.result.method_refs.append(f"{args[0].fullname}.{args[1]}")
                    ref = Stub(func.fullname, args, origin=origin)
                    self._method_stubs.append(ref)
                    return ref
                self._unsafe_getattr = True
            return Stub(func.fullname, args, dangerous=kind == "dangerous", origin=origin)
        if isinstance(func, Stub):
            called_ref = is_method_stub(func)
            self._unsafe_getattr |= called_ref
            return Stub(f"{func.qualname}(...)", args, dangerous=func.dangerous or called_ref, origin=origin)
        raise CorruptPickle(f"cannot call a {type(func).__name__} (byte {self.pos})")

    def _settle_method_refs(self) -> None:
        """``getattr`` is a stand-in only when every use was a method reference never called."""
        if not self.result.method_refs:
            return
        keys = [k for k in self.result.kinds if f"{k[0]}.{k[1]}" in GETATTR]
        if self._unsafe_getattr or _holds_bare_getattr(self.result.value):
            self.result.method_refs.clear()
            for ref in self._method_stubs:  # the file uses getattr to run code: none of its uses is re-emitted
                ref.dangerous = True
            return
        for key in keys:
            self.result.kinds[key] = "stub"

    # ----- main loop ------------------------------------------------------------
    # Run the common opcodes inline (``_run``); False sends every opcode through its handler
    # (``_run_stepwise``), the plain statement of the semantics the inline paths must match.
    inline = True

    def load(self) -> PickleResult:
        """Run the VM to STOP and return the value with what was learned on the way."""
        with paused_gc():
            if not self.inline:
                self._run_stepwise()
            else:
                self._run()
        self.result.value = self._pop()
        self.result.end = self.pos
        self._settle_method_refs()
        return self.result

    def _run_stepwise(self) -> None:
        """One handler call per opcode, each reading and writing the machine's attributes."""
        table = [None if h is None else h.__get__(self) for h in HANDLERS]
        size = len(self.data)
        while True:
            pos = self.pos
            if self.frame_end is not None and pos >= self.frame_end:
                self.frame_end = None
            if pos >= size:
                raise TruncatedFile("pickle data ends before its STOP opcode")
            op = self.data[pos]
            handler = table[op]
            self.pos = pos + 1
            if handler is None:
                raise CorruptPickle(f"unknown pickle opcode 0x{op:02x} at byte {pos}")
            if handler():
                return

    def _run(self) -> None:
        """The opcode loop, common opcodes inline.

        The opcodes that make up most of a checkpoint's pickle (memo traffic, small ints and
        strings, marks, empty dicts, small tuples, calls, BUILD on a new stub, SETITEMS into a
        dict) run inline on local variables, the most frequent tested first. Each is taken only
        when its whole argument lies before the data end and any FRAME end and its preconditions
        hold; otherwise the opcode's handler runs, with the same effect or the precise error.
        REDUCE and NEWOBJ still go through ``_call`` (the globals policy) and every budget is
        charged as the handlers charge it. Globals, persistent ids and the rest: the handlers.
        """
        table = [None if h is None else h.__get__(self) for h in HANDLERS]
        data = self._raw
        size = len(data)
        memo = self.memo
        slots = memo.slots  # the memo's list: used directly while the memo is dense
        dense = memo.dense
        metastack = self.metastack
        unpack_from = struct.unpack_from
        new_dict = PickledDict
        make_tuple = self._tuple
        call = self._call
        pos = self.pos
        stack = self.stack
        limit = size if self.frame_end is None else self.frame_end
        budget = self._budget
        while True:
            if pos >= limit:  # a FRAME ended, or the data did
                if self.frame_end is not None and pos >= self.frame_end:
                    self.frame_end = None
                limit = size if self.frame_end is None else self.frame_end
                if pos >= size:
                    self.pos = pos
                    raise TruncatedFile("pickle data ends before its STOP opcode")
            op = data[pos]
            if op == 0x94:  # MEMOIZE
                if dense and stack:
                    slots.append(stack[-1])
                    pos += 1
                    continue
            elif op == 0x71:  # BINPUT
                if dense and pos + 2 <= limit and stack and data[pos + 1] <= len(slots):
                    if data[pos + 1] < len(slots):
                        slots[data[pos + 1]] = stack[-1]
                    else:
                        slots.append(stack[-1])
                    pos += 2
                    continue
            elif op == 0x68:  # BINGET
                if dense and pos + 2 <= limit and data[pos + 1] < len(slots):
                    stack.append(slots[data[pos + 1]])
                    pos += 2
                    continue
            elif op == 0x6A:  # LONG_BINGET
                if dense and pos + 5 <= limit:
                    index = unpack_from("<I", data, pos + 1)[0]
                    if index < len(slots):
                        stack.append(slots[index])
                        pos += 5
                        continue
            elif op == 0x8C:  # SHORT_BINUNICODE
                end = pos + 2 + (data[pos + 1] if pos + 1 < limit else 0x100)
                if end <= limit and budget > 0:
                    try:
                        stack.append(str(data[pos + 2:end], "utf-8", "surrogatepass"))
                    except UnicodeDecodeError:
                        pass  # the handler reports it
                    else:
                        budget -= 1
                        pos = end
                        continue
            elif op == 0x58:  # BINUNICODE
                end = pos + 5 + (unpack_from("<I", data, pos + 1)[0] if pos + 5 <= limit else limit)
                if end <= limit and budget > 0:
                    try:
                        stack.append(str(data[pos + 5:end], "utf-8", "surrogatepass"))
                    except UnicodeDecodeError:
                        pass  # the handler reports it
                    else:
                        budget -= 1
                        pos = end
                        continue
            elif op == 0x4B:  # BININT1
                if pos + 2 <= limit:
                    stack.append(data[pos + 1])
                    pos += 2
                    continue
            elif op == 0x28:  # MARK
                metastack.append(stack)
                stack = self.stack = []
                pos += 1
                continue
            elif op == 0x89 or op == 0x88 or op == 0x29 or op == 0x4E:  # NEWFALSE NEWTRUE EMPTY_TUPLE NONE
                stack.append(PUSHED_CONSTANTS[op])
                pos += 1
                continue
            elif op == 0x86:  # TUPLE2
                if len(stack) >= 2:
                    last = stack.pop()
                    first = stack[-1]
                    if type(first) is not tuple and type(last) is not tuple:
                        stack[-1] = (first, last)
                    else:
                        self.pos = pos + 1  # where an error is reported from
                        stack[-1] = make_tuple([first, last])
                    pos += 1
                    continue
            elif op == 0x74:  # TUPLE
                if metastack and budget > 0:
                    self.pos = pos + 1
                    value = make_tuple(stack)
                    stack = self.stack = metastack.pop()
                    stack.append(value)
                    budget -= 1
                    pos += 1
                    continue
            elif op == 0x85:  # TUPLE1
                if stack:
                    last = stack[-1]
                    if type(last) is not tuple:
                        stack[-1] = (last,)
                    else:
                        self.pos = pos + 1
                        stack[-1] = make_tuple([last])
                    pos += 1
                    continue
            elif op == 0x52 or op == 0x81:  # REDUCE NEWOBJ: the call goes through the policy as ever
                if len(stack) >= 2:
                    self.pos = pos + 1
                    self._budget = budget
                    args = stack.pop()
                    stack[-1] = call(stack[-1], args, None, b"R" if op == 0x52 else b"\x81")
                    budget = self._budget
                    pos += 1
                    continue
            elif op == 0x62:  # BUILD on a stub that has no state yet
                if len(stack) >= 2 and type(stack[-2]) is Stub and stack[-2].state is None:
                    state = stack.pop()
                    stack[-1].state = state
                    pos += 1
                    continue
            elif op == 0x75:  # SETITEMS into a dict, keys that are not tuples
                if metastack and metastack[-1] and type(metastack[-1][-1]) is PickledDict and not len(stack) % 2:
                    keys = stack[0::2]
                    if tuple not in map(type, keys) and self._hash_budget >= len(keys):
                        self._hash_budget -= len(keys)
                        try:
                            metastack[-1][-1].update(zip(keys, stack[1::2]))
                        except TypeError:
                            self.pos = pos + 1
                            raise CorruptPickle(f"unhashable dict key of type {_unhashable(keys)}") from None
                        stack = self.stack = metastack.pop()
                        pos += 1
                        continue
            elif op == 0x7D:  # EMPTY_DICT
                if budget > 0:
                    stack.append(new_dict())
                    budget -= 1
                    pos += 1
                    continue
            elif op == 0x4D:  # BININT2
                if pos + 3 <= limit:
                    stack.append(unpack_from("<H", data, pos + 1)[0])
                    pos += 3
                    continue
            elif op == 0x4A:  # BININT
                if pos + 5 <= limit and budget > 0:
                    stack.append(unpack_from("<i", data, pos + 1)[0])
                    budget -= 1
                    pos += 5
                    continue
            elif op == 0x72:  # LONG_BINPUT
                if dense and pos + 5 <= limit and stack:
                    index = unpack_from("<I", data, pos + 1)[0]
                    if index < len(slots):
                        slots[index] = stack[-1]
                        pos += 5
                        continue
                    if index == len(slots):
                        slots.append(stack[-1])
                        pos += 5
                        continue
            # everything else, and every fast path whose preconditions failed: the handler
            handler = table[op]
            if handler is None:
                self.pos = pos + 1
                raise CorruptPickle(f"unknown pickle opcode 0x{op:02x} at byte {pos}")
            self.pos = pos + 1
            self._budget = budget
            if handler():
                return
            pos, stack, budget, dense = self.pos, self.stack, self._budget, memo.dense
            limit = size if self.frame_end is None else self.frame_end

    def _push(self, value: Any) -> None:
        self._budget -= 1
        if self._budget < 0:
            self._spend(0)
        self.stack.append(value)

    def _utf8(self, n: int) -> None:
        try:
            self._push(str(self._take(n), "utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            raise CorruptPickle(f"invalid UTF-8 string at byte {self.pos}") from exc

    # memo
    def _put(self, index: int) -> None:
        if index < 0:
            raise CorruptPickle("negative memo index")
        if not self.stack:
            raise CorruptPickle(f"stack underflow at byte {self.pos}")
        self.memo.put(index, self.stack[-1])  # at most one entry per opcode: bounded by the data size

    def _get(self, index: int) -> None:
        try:
            self.stack.append(self.memo.get(index))
        except KeyError:
            raise CorruptPickle(f"memo key {index} not found at byte {self.pos}") from None

    # globals, calls, objects

    def _persistent(self, pid: Any) -> Any:
        if self.persistent_load is None:
            raise CorruptPickle("persistent id in a pickle that cannot have one")
        return self.persistent_load(pid)


def _unhashable(keys: list[Any]) -> str:
    """The type name of the first key that cannot be hashed (for the error SETITEM reports)."""
    for key in keys:
        try:
            hash(key)
        except TypeError:
            return type(key).__name__
    return "unknown"


def _holds_bare_getattr(root: Any, budget: int = 5_000_000) -> bool:
    """True when ``getattr`` itself sits in the tree (stored, to be called by someone later)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        budget -= 1
        if budget < 0:
            return True  # too large to tell: keep it dangerous
        if isinstance(obj, GlobalRef):
            if obj.fullname in GETATTR:
                return True
            continue
        if not isinstance(obj, dict | list | tuple | set | frozenset | Stub) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
            stack.extend(getattr(obj, "attrs", {}).values())
        elif isinstance(obj, Stub):
            stack.extend((obj.args, obj.state, obj.items, obj.entries))
            if obj.origin is not None and not is_method_reference(obj.origin[1], obj.origin[2]):
                stack.append(obj.origin[1])
        else:
            stack.extend(obj)
    return False
