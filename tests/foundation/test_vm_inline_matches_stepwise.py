"""The VM's inline opcode paths give exactly what the opcode handlers alone give.

``SafeUnpickler`` runs the common opcodes inline for speed; ``inline = False`` sends every opcode
through its handler, the plain statement of the semantics. Every fixture checkpoint, every hostile
and malformed file, and hand-made streams that sit on the edges of the inline paths (FRAME ends,
missing memo keys, unhashable keys, nesting and budget limits) must read the same both ways:
same tree, same globals and classes, same stop position, same error.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Any

import pytest

from ckpttool.errors import CkptError
from ckpttool.io import read_tree
from ckpttool.io.pickle.run import run_pickle
from ckpttool.io.pickle.unpickler import SafeUnpickler
from ckpttool.model import GlobalRef, PickledDict, Stub
from tests.hostile.hostile_corpus import build_corpus
from tests.malformed.malformed_files import crafted, small_archives

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def canon(obj: Any, seen: dict[int, int] | None = None, depth: int = 0) -> Any:
    """A comparable picture of a tree: types, values, sharing and cycles included."""
    seen = {} if seen is None else seen
    if obj is None or type(obj) in (bool, int, str, bytes):
        return obj
    if type(obj) is float:
        return ("float", repr(obj))
    if id(obj) in seen:
        return ("ref", seen[id(obj)])
    if depth > 100:
        return ("deep", type(obj).__name__)
    seen[id(obj)] = len(seen)
    d = depth + 1
    if isinstance(obj, GlobalRef):
        return ("global", obj.fullname)
    if isinstance(obj, Stub):
        return ("stub", obj.qualname, canon(obj.args, seen, d), canon(obj.state, seen, d), canon(obj.items, seen, d),
                canon(obj.entries, seen, d), obj.dangerous, canon(obj.origin, seen, d))
    if isinstance(obj, PickledDict):
        return ("pdict", obj.ordered, [(canon(k, seen, d), canon(v, seen, d)) for k, v in obj.items()],
                canon(obj.attrs, seen, d))
    if isinstance(obj, dict):
        return (type(obj).__name__, [(canon(k, seen, d), canon(v, seen, d)) for k, v in obj.items()])
    if isinstance(obj, list | tuple):
        extra = canon(getattr(obj, "origin", None), seen, d)
        return (type(obj).__name__, [canon(v, seen, d) for v in obj], extra)
    if isinstance(obj, set | frozenset):
        return (type(obj).__name__, sorted(repr(canon(v, seen, d)) for v in obj))
    if isinstance(obj, float | int | str | bytes | bytearray | complex):
        return (type(obj).__name__, repr(obj), canon(getattr(obj, "origin", None), seen, d))
    if dataclasses.is_dataclass(obj):
        fields = {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    elif hasattr(obj, "__dict__"):
        fields = dict(vars(obj))
    else:
        fields = {name: getattr(obj, name, None) for cls in type(obj).__mro__
                  for name in getattr(cls, "__slots__", ()) if name != "__weakref__"}
    return (type(obj).__name__, [(k, canon(v, seen, d)) for k, v in sorted(fields.items())
                                 if not k.startswith("_") or k in ("_rows",)])


def outcome(path: Path) -> Any:
    try:
        read = read_tree(path, keep_going=True)
    except CkptError as exc:
        return ("error", type(exc).__name__, exc.message)
    loads = [(ld.where, canon(ld.value), ld.end, sorted(ld.globals.items()), sorted(ld.kinds.items()),
              ld.anomalies, None if ld.error is None else (type(ld.error).__name__, ld.error.message),
              ld.method_refs) for ld in read.loads]
    return (read.format, canon(read.tree), loads, read.anomalies)


def both_ways(monkeypatch: pytest.MonkeyPatch, fn: Any) -> tuple[Any, Any]:
    fast = fn()
    monkeypatch.setattr(SafeUnpickler, "inline", False)
    slow = fn()
    monkeypatch.setattr(SafeUnpickler, "inline", True)
    return fast, slow


def fixture_paths() -> list[Path]:
    out = [p for p in sorted(FIXTURES.rglob("*")) if p.is_file() and p.suffix not in (".json", ".md", ".py", ".log",
                                                                                        ".sh", ".toml", ".txt")]
    out += [p.parent for p in sorted(FIXTURES.rglob(".metadata"))]
    return out


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixtures_read_the_same_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = both_ways(monkeypatch, lambda: outcome(path))
    assert fast == slow


def test_hostile_and_malformed_files_read_the_same_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = list(build_corpus(tmp_path / "hostile").values()) + list(small_archives(tmp_path / "small").values())
    for case in crafted():
        path = tmp_path / "crafted" / f"{case.name}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(case.data)
        paths.append(path)
    assert len(paths) > 50
    for path in paths:
        fast, slow = both_ways(monkeypatch, lambda p=path: outcome(p))
        assert fast == slow, path.name


def _u8(s: str) -> bytes:
    return b"\x8c" + bytes([len(s.encode())]) + s.encode()


def _frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


_OC = b"\x8c\x0bcollections\x8c\x0bOrderedDict\x93"
EDGES = {
    "string straddles a FRAME end": b"\x80\x04" + _frame(b"\x8c\x05ab") + b"cde.",
    "int straddles a FRAME end": b"\x80\x04" + _frame(b"J\x01\x00") + b"\x00\x00.",
    "get straddles a FRAME end": b"\x80\x04" + _frame(b"N\x94j\x00\x00") + b"\x00\x00.",
    "frame runs past the data": b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.",
    "frames back to back": b"\x80\x04" + _frame(_u8("a") + b"\x94") + _frame(b"h\x00\x86."),
    "missing memo key": b"\x80\x02h\x07.",
    "missing long memo key": b"\x80\x02j\x07\x00\x00\x00.",
    "memoize on an empty stack": b"\x80\x04\x94N.",
    "put on an empty stack": b"\x80\x02q\x00N.",
    "bad utf-8": b"\x80\x04\x8c\x02\xff\xfe.",
    "bad utf-8 long": b"\x80\x04X\x02\x00\x00\x00\xff\xfe.",
    "string past the end": b"\x80\x04X\xff\xff\xff\x7fab.",
    "truncated": b"\x80\x04\x8c\x03ab",
    "no stop": b"\x80\x04N",
    "unknown opcode": b"\x80\x04\xff.",
    "unhashable key": b"\x80\x02}(]K\x01u.",
    "odd setitems": b"\x80\x02}(K\x01u.",
    "setitems without mark": b"\x80\x02}K\x01K\x02u.",
    "setitems on a list": b"\x80\x02](K\x01K\x02u.",
    "setitems with tuple keys": b"\x80\x02}(K\x01K\x02\x86K\x03u.",
    "setitems into an OrderedDict": b"\x80\x04" + _OC + b")R(K\x01K\x02u.",
    "tuple2 of tuples": b"\x80\x02K\x01\x85K\x02\x85\x86\x94h\x00h\x00\x86.",
    "tuple1 underflow": b"\x80\x02\x85.",
    "tuple2 underflow": b"\x80\x02K\x01\x86.",
    "tuple without mark": b"\x80\x02K\x01t.",
    "tuples nested too deep": b"\x80\x02)" + b"\x85" * 300 + b".",
    "tuples nested too deep through pairs": b"\x80\x02)" + b")\x86" * 300 + b".",
    "reduce underflow": b"\x80\x02).",
    "reduce of a non-callable": b"\x80\x02K\x01)R.",
    "build twice on a stub": b"\x80\x04" + _u8("m") + _u8("C") + b"\x93)\x81}(" + _u8("a") + b"K\x01ub}b.",
    "build on a stub with a tuple state": b"\x80\x04" + _u8("m") + _u8("C") + b"\x93)\x81N}\x86b.",
    "build on a dict": b"\x80\x02}}(" + _u8("a") + b"K\x01ub.",
    "build underflow": b"\x80\x04b.",
    "mark then stop": b"\x80\x02(.",
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_edge_streams_read_the_same_both_ways(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = EDGES[name]

    def run() -> Any:
        ld = run_pickle(data, name, None, keep_going=True)
        return (canon(ld.value), ld.end, sorted(ld.globals.items()), sorted(ld.kinds.items()), ld.anomalies,
                None if ld.error is None else (type(ld.error).__name__, ld.error.message))

    fast, slow = both_ways(monkeypatch, run)
    assert fast == slow


def test_edge_streams_fail_where_they_should() -> None:
    """The edges above really are refusals (not cases that happen to read the same by luck)."""
    for name in ("string straddles a FRAME end", "missing memo key", "bad utf-8", "unhashable key",
                 "tuples nested too deep", "tuples nested too deep through pairs", "reduce of a non-callable"):
        assert run_pickle(EDGES[name], name, None, keep_going=True).error is not None, name
    ok = run_pickle(EDGES["frames back to back"], "x", None)
    assert ok.value == ("a", "a")
