"""The pickle memo: a dict from index to value in meaning, a list where the indices allow it.

Pickles number memo entries 0, 1, 2... (``MEMOIZE`` always takes the next number), so a list
holds them in 8 bytes each where a dict takes about 80: on a 100k-entry DCP ``.metadata`` (1.6
million entries) that is 115 MiB less at the peak of the read. The semantics stay exactly a
dict's (what ``pickle`` and ``torch.load`` see): ``put`` adds or replaces, ``get`` of an index never
put raises ``KeyError``, ``len`` counts entries (``MEMOIZE``'s next index). Indices put out of
order leave holes; an index far past the end (a hostile ``LONG_BINPUT 4e9``) goes to a side dict
instead of growing the list.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Memo"]

_HOLE: Any = object()  # a list slot no put has filled
_SLACK = 1024  # holes are allowed while the list stays under twice the entries plus this; else ``far``


class Memo:
    """Index → value. While ``dense`` (every put so far took the next index or replaced one),
    ``slots`` holds them all, without holes: the VM's inline paths use it directly then."""

    __slots__ = ("slots", "far", "dense", "_count")

    def __init__(self) -> None:
        self.slots: list[Any] = []
        self.far: dict[int, Any] = {}
        self.dense = True
        self._count = 0  # entries, kept once no longer dense

    def __len__(self) -> int:
        return len(self.slots) if self.dense else self._count

    def get(self, index: int) -> Any:
        """The value put at ``index``; ``KeyError`` when there is none."""
        slots = self.slots
        if 0 <= index < len(slots):
            value = slots[index]
            if value is not _HOLE:
                return value
        return self.far[index]

    def put(self, index: int, value: Any) -> None:
        """Set ``index`` (a non-negative int) to ``value``, as ``dict.__setitem__`` would."""
        slots = self.slots
        n = len(slots)
        if index < n and slots[index] is not _HOLE:
            slots[index] = value
            return
        if self.dense:
            if index == n:
                slots.append(value)
                return
            self.dense, self._count = False, n
        far = self.far
        if index in far:  # an existing entry: replace it, in the list when the list now covers it
            if index < n:
                del far[index]
                slots[index] = value
            else:
                far[index] = value
            return
        self._count += 1
        if index < n:
            slots[index] = value
        elif index < 2 * self._count + _SLACK:  # the list stays within twice the entries: no blow-up
            slots.extend([_HOLE] * (index - n))
            slots.append(value)
        else:
            far[index] = value
