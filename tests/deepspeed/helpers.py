"""The committed DeepSpeed fixture folders and DeepSpeed's own answers for them (MANIFEST.json).

Every expected value here was recorded by fixtures/make_deepspeed_fixtures.py with the real
library: ``get_fp32_state_dict_from_zero_checkpoint`` for the fp32 weights, ``torch.load`` of the
model states file for the 16-bit module weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
DS = ROOT / "fixtures" / "deepspeed"
MANIFEST: dict[str, Any] = json.loads((DS / "MANIFEST.json").read_text())
CASES: dict[str, dict[str, Any]] = MANIFEST["cases"]
NAMES = sorted(CASES)
ZERO12 = [n for n in NAMES if CASES[n]["stage"] <= 2]
ZERO3 = [n for n in NAMES if CASES[n]["stage"] == 3]


def torch_sha(t: Any) -> str:
    """sha256 of a torch tensor's C-order bytes, as the manifest records it."""
    import torch

    t = t.detach().contiguous().reshape(-1)
    return hashlib.sha256(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()


def rows(entries: list[dict[str, Any]]) -> list[tuple[str, list[int], str, str]]:
    return [(e["key"], e["shape"], e["dtype"], e["sha256"]) for e in entries]


def expected_fp32(name: str) -> list[tuple[str, list[int], str, str]]:
    """DeepSpeed's consolidation, plus for ZeRO-1 the frozen parameters ckpttool adds from the module;
    for a folder without ZeRO, the module weights as saved.

    ckpttool puts them where ZeRO-2's record puts them (after the buffers), with the values the
    16-bit module holds for them.
    """
    case = CASES[name]
    if case["stage"] == 0:  # no ZeRO partitions: DeepSpeed's consolidation refuses; ckpttool gives the module
        return rows(case["module"])
    out = rows(case["fp32_state_dict"])
    if case["stage"] != 1:
        return out
    module = {r[0]: r for r in rows(case["module"])}
    frozen = [module[k] for k in case["frozen_params"]]
    nbuf = len(case["buffer_names"])
    return out[:nbuf] + frozen + out[nbuf:]
