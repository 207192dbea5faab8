"""Extract the EMA weights of a training checkpoint, whatever framework wrote it, and check them.

``list_ema(ckpt)`` lists every EMA a file holds; ``extract_ema(ckpt, output)`` picks one, checks it
against the raw weights and writes it as a plain state_dict under the model's keys (or, with
``into_checkpoint``, as the model weights of a copy of the training checkpoint).
"""

from __future__ import annotations

from ckpttool.ops.ema.candidates import EmaCandidate, find_candidates
from ckpttool.ops.ema.coverage import Coverage
from ckpttool.ops.ema.distance import Distance
from ckpttool.ops.ema.extract import EmaList, EmaResult, ema_state_dict, extract_ema, list_ema, select

__all__ = ["EmaCandidate", "EmaList", "EmaResult", "Coverage", "Distance", "find_candidates", "list_ema",
           "extract_ema", "select", "ema_state_dict"]
