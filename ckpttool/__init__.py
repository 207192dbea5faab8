"""ckpttool: inspect, compare, migrate and convert PyTorch checkpoints without running their code.

The public API is ``open()`` plus the operations in ``ckpttool.ops``; the command line adds
nothing a library user cannot do.
"""

from __future__ import annotations

from ckpttool.errors import CkptError
from ckpttool.io import open_checkpoint
from ckpttool.model import Checkpoint, Finding, Section, StateDict, Stub, TensorRef

__all__ = ["open", "open_checkpoint", "Checkpoint", "Finding", "Section", "StateDict", "Stub",
           "TensorRef", "CkptError", "__version__"]
__version__ = "0.1.0"

open = open_checkpoint  # noqa: A001 - ckpttool.open(path) is the documented entry point
