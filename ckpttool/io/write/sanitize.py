"""Rewriting a pickled tree so ``torch.load(weights_only=True)`` accepts it, one reported change at a time.

Pickled ``nn.Module`` objects become their state_dicts (plain tensors, in ``state_dict()`` order),
``argparse.Namespace`` and similar records become dicts of their attributes, references to
callables (method references included) become their names, and objects that carry nothing loadable
are dropped. Numpy scalars, ``torch.Size``, devices and paths become the plain numbers, tuples and
strings the reader shows. Without ``--sanitize`` a rewrite keeps all of them as they were.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ckpttool.io.pickle.method_ref import is_method_stub
from ckpttool.io.pickle.rebuilt import REBUILT, plain_value
from ckpttool.model import GlobalRef, PickledDict, Stub, TensorRef
from ckpttool.modules import is_module, module_state_dict

__all__ = ["Change", "Sanitizer"]


@dataclass(frozen=True)
class Change:
    """One rewrite: where, what it was, what it became."""

    path: str
    was: str
    now: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "was": self.was, "now": self.now}


_RECORDS = ("argparse.Namespace", "types.SimpleNamespace", "easydict.EasyDict", "omegaconf.dictconfig.DictConfig")


@dataclass
class Sanitizer:
    """A transform for ``write_checkpoint``: called on every value, returns its replacement."""

    tensor_fn: Callable[[TensorRef], TensorRef] | None = None
    changes: list[Change] = field(default_factory=list)
    _done: dict[int, Any] = field(default_factory=dict)
    _keep: list[Any] = field(default_factory=list)

    def __call__(self, obj: Any, path: tuple[Any, ...] | None) -> Any:
        if type(obj) in REBUILT:  # a numpy scalar, torch.Size, a path: its plain value
            plain = plain_value(obj)
            where = ".".join(str(p) for p in path) if path else "a key"
            self.changes.append(Change(where, obj.origin[1].fullname, f"{type(plain).__name__} {plain!r}"[:80]))
            return plain
        if not isinstance(obj, Stub | GlobalRef):
            return obj
        if id(obj) in self._done:
            return self._done[id(obj)]
        where = ".".join(str(p) for p in path) if path else ("the root" if path == () else "a key")
        new, now = self._replace(obj)
        self.changes.append(Change(where, f"{obj.qualname if isinstance(obj, Stub) else obj.fullname}", now))
        self._done[id(obj)] = new
        self._keep.append(obj)
        return new

    def _replace(self, obj: Stub | GlobalRef) -> tuple[Any, str]:
        if isinstance(obj, GlobalRef):
            return obj.fullname, "its name as a string"
        if obj.dangerous:
            return None, "removed (it would run code on load)"
        if is_method_stub(obj):
            target, name = obj.args
            return f"{target.fullname}.{name}", "its name as a string"
        if is_module(obj):
            sd = module_state_dict(obj)
            out = PickledDict(ordered=True)
            for key, t in sd.tensors.items():
                t = self.tensor_fn(t) if self.tensor_fn is not None else t
                out[key] = replace(t, is_parameter=False, requires_grad=False)
            if sd.version_metadata:
                out.attrs["_metadata"] = OrderedDict(sd.version_metadata)
            return out, f"state_dict ({len(out)} tensors)"
        if obj.qualname.endswith("multiarray._reconstruct"):
            values = _ndarray_list(obj)
            if values is not None:
                return values, f"list (a numpy array of {_count(values)} values)"
        if obj.qualname in _RECORDS or (obj.attributes and not obj.args):
            attrs = obj.attributes
            return dict(attrs), f"dict ({len(attrs)} entries)"
        if obj.qualname.startswith(("datetime.", "pathlib.", "decimal.", "uuid.")) and obj.args:
            from ckpttool.jsonable import to_jsonable

            text = str(to_jsonable(obj))
            return text, f"string {text[:60]!r}"
        if obj.entries and not obj.items:
            return dict(obj.entries), f"dict ({len(obj.entries)} entries)"
        if obj.items and not obj.entries:
            return list(obj.items), f"list ({len(obj.items)} items)"
        return None, "removed (no weights_only equivalent)"



_MAX_ARRAY = 1_000_000


def _ndarray_list(obj: Stub) -> list[Any] | None:
    """A pickled numpy array (``_reconstruct`` + state) as nested Python lists, or None if unreadable."""
    state = obj.state
    if not (isinstance(state, tuple) and len(state) == 5):
        return None
    _, shape, dtype, fortran, data = state
    if not (isinstance(dtype, Stub) and dtype.args and isinstance(dtype.args[0], str) and isinstance(data, bytes)
            and isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        return None
    order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "<"
    code = dtype.args[0]
    if code[:1] not in "iufb" or order not in ("<", ">", "|", "="):
        return None
    import numpy as np

    try:
        dt = np.dtype(code).newbyteorder(">" if order == ">" else "<")
        count = 1
        for n in shape:
            count *= n
        if count > _MAX_ARRAY or count * dt.itemsize != len(data):
            return None
        arr = np.frombuffer(data, dtype=dt).reshape(shape, order="F" if fortran is True else "C")
    except (TypeError, ValueError):
        return None
    return arr.tolist()


def _count(values: list[Any]) -> int:
    n = 0
    stack: list[Any] = [values]
    while stack:
        for v in stack.pop():
            if isinstance(v, list):
                stack.append(v)
            else:
                n += 1
    return n
