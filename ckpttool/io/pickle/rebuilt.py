"""Plain values that a pickle built through a class call, remembering that call.

The reader turns a few allow-listed calls into plain Python values (a numpy scalar into a float,
``torch.Size`` into a tuple, a ``pathlib`` path or ``torch.device`` into a string) so that reports
and checks can use them. A rewrite must give back what ``torch.load`` would have built, so these
values are subclasses of the plain type that carry the call (``origin``) for the writer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RebuiltFloat", "RebuiltInt", "RebuiltStr", "RebuiltTuple", "REBUILT", "rebuilt", "plain_value",
           "LOSSY_CALLS"]

# The allow-listed calls whose pure stand-in returns a plain value of another type than torch.load's.
LOSSY_CALLS = frozenset({
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "torch.Size", "torch.device",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
})


class RebuiltFloat(float):
    """A float read from a class call (``numpy.float64``)."""

    __slots__ = ("origin",)


class RebuiltInt(int):
    """An int read from a class call (``numpy.int64``)."""

    origin: Any


class RebuiltStr(str):
    """A string read from a class call (``pathlib.PosixPath``, ``torch.device``)."""

    origin: Any


class RebuiltTuple(tuple):  # type: ignore[type-arg]
    """A tuple read from a class call (``torch.Size``)."""

    origin: Any


REBUILT = (RebuiltFloat, RebuiltInt, RebuiltStr, RebuiltTuple)
_KINDS: dict[type, type] = {float: RebuiltFloat, int: RebuiltInt, str: RebuiltStr, tuple: RebuiltTuple}


def rebuilt(value: Any, origin: Any) -> Any:
    """``value`` as its ``Rebuilt*`` subclass carrying ``origin``; other values unchanged."""
    kind = _KINDS.get(type(value))
    if kind is None:
        return value
    out = kind(value)
    out.origin = origin
    return out


def plain_value(value: Any) -> Any:
    """The plain float, int, str or tuple of a ``Rebuilt*`` value (what weights_only output holds)."""
    kind = type(value)
    if kind in REBUILT:
        return kind.__mro__[1](value)
    return value
