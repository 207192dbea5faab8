"""The cyclic garbage collector held off while a pickle is read.

A pickle of a big checkpoint makes millions of containers that all stay alive (the memo holds
them), and each allocation burst sets off a collection that walks everything made so far: on a
100k-entry DCP ``.metadata`` the collector took half of the read. Nothing the VM builds becomes
cyclic garbage beyond what its input bounds, so the collector resumes once the read is over.

What was made meanwhile is handed to the oldest generation (``freeze`` then ``unfreeze``, two list
splices): left in the youngest, the first collection after the read would walk all of it at once.
It is still collected as usual by the next full collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold off the cyclic collector inside the block; leave it as it was after (nesting is fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:  # never unfreeze what the program froze itself
                gc.freeze()
                gc.unfreeze()
            gc.enable()
