"""``builtins.getattr(SomeClass, 'name')``: a stored method reference, or a way to run code.

mmengine's message hub pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``.
Loading that only looks an attribute up on a class and stores the result. The same global turns
into a code-execution primitive when its target is a dangerous module or builtin
(``getattr(os, 'system')``), when it reaches for a dunder (``__globals__``, ``__subclasses__``),
or when the pickle later calls what it returned. The reader judges the first case a stand-in
and keeps ``getattr`` dangerous in every other one; the writer re-emits only the first case.
"""

from __future__ import annotations

from typing import Any

from ckpttool.io.pickle.globals_policy import classify
from ckpttool.model import GlobalRef, Stub

__all__ = ["GETATTR", "is_method_reference", "is_method_stub"]

GETATTR = frozenset({"builtins.getattr", "__builtin__.getattr"})


def is_method_reference(func: Any, args: Any) -> bool:
    """True for ``getattr(<stand-in class>, '<plain name>')``: a lookup that runs nothing."""
    if not isinstance(func, GlobalRef) or func.fullname not in GETATTR:
        return False
    if not isinstance(args, tuple) or len(args) != 2:
        return False
    target, name = args
    if not isinstance(target, GlobalRef) or not isinstance(name, str) or not name.isidentifier():
        return False
    if name.startswith("__") and name.endswith("__"):
        return False
    return classify(target.module, target.name) == "stub"


def is_method_stub(obj: Any) -> bool:
    """True for the stand-in the reader made of a method reference."""
    return (isinstance(obj, Stub) and not obj.dangerous and obj.origin is not None
            and is_method_reference(obj.origin[1], obj.origin[2]))
