"""``diff``: compare two checkpoints section by section, streaming tensor bytes in bounded chunks.

Identical tensors cost one chunked byte comparison; differing ones get statistics (max/mean |Δ|,
relative L2, cosine, elements outside tolerance, NaN/Inf counts) computed with numpy in float64.
Non-tensor content is compared with deepdiff. Keys can be aligned first (prefixes, wrappers, maps).
"""

from __future__ import annotations

from pathlib import Path

from ckpttool.ops.diff.align import Alignment, parse_maps
from ckpttool.ops.diff.engine import DiffOptions, ProgressSink, diff_checkpoints
from ckpttool.ops.diff.result import DiffResult, GroupRow, MetaChange, RuleOutcome, SectionDiff, TensorDiff
from ckpttool.ops.diff.rules import FailRule, parse_rule
from ckpttool.ops.diff.sections import SECTION_CHOICES

__all__ = ["diff", "diff_checkpoints", "DiffOptions", "DiffResult", "SectionDiff", "TensorDiff", "MetaChange",
           "RuleOutcome", "GroupRow", "Alignment", "FailRule", "parse_maps", "parse_rule", "ProgressSink",
           "SECTION_CHOICES"]


def diff(a: str | Path, b: str | Path, options: DiffOptions | None = None,
         progress: ProgressSink | None = None) -> DiffResult:
    """Open ``a`` and ``b`` and compare them (see ``diff_checkpoints``)."""
    from ckpttool.io import open_checkpoint

    return diff_checkpoints(open_checkpoint(Path(a)), open_checkpoint(Path(b)), options, progress)
