"""Running one pickle through the safe VM and keeping what it revealed, even when it fails.

A parse error after a payload must not hide the payload: the globals met before the error are
kept and reported alongside the error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import CkptError
from ckpttool.io.pickle.globals_policy import GlobalKind
from ckpttool.io.pickle.unpickler import PersistentLoad, SafeUnpickler

__all__ = ["PickleLoad", "run_pickle"]


@dataclass
class PickleLoad:
    """One pickle's outcome: value (None on error), where it ended, globals and their classes."""

    where: str
    value: Any
    end: int
    globals: Counter[tuple[str, str]] = field(default_factory=Counter)
    kinds: dict[tuple[str, str], GlobalKind] = field(default_factory=dict)
    anomalies: list[str] = field(default_factory=list)
    error: CkptError | None = None
    method_refs: list[str] = field(default_factory=list)


def run_pickle(data: bytes | memoryview, where: str, persistent_load: PersistentLoad | None = None,
               *, start: int = 0, keep_going: bool = False) -> PickleLoad:
    """Unpickle ``data`` from ``start``; with ``keep_going`` an error is recorded, not raised."""
    vm = SafeUnpickler(data, persistent_load, start)
    try:
        result = vm.load()
    except CkptError as exc:
        if not keep_going:
            raise
        partial = vm.result
        return PickleLoad(where, None, vm.pos, partial.globals, partial.kinds, partial.anomalies, exc)
    except (RecursionError, MemoryError, OverflowError, ValueError, TypeError) as exc:
        from ckpttool.errors import CorruptPickle

        err = CorruptPickle(f"{where}: {type(exc).__name__} while unpickling")
        if not keep_going:
            raise err from exc
        partial = vm.result
        return PickleLoad(where, None, vm.pos, partial.globals, partial.kinds, partial.anomalies, err)
    return PickleLoad(where, result.value, result.end, result.globals, result.kinds, result.anomalies,
                      method_refs=result.method_refs)
