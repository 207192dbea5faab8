"""``extract-ema``: pick the EMA, check it, and write it as the model's own state_dict.

Checks, as findings: the EMA equals the raw weights (``ema.identical-to-model``, error: nothing is
written); its keys cannot be mapped onto the model one to one or shapes differ (error); it differs
in dtype from the model, covers only part of the model's parameters, or its update counter says it
was barely updated (warnings); buffers copied from the raw model (info).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import SectionNotFound, UsageError
from ckpttool.model import Checkpoint, Finding, StateDict
from ckpttool.ops.ema.candidates import EmaCandidate, find_candidates
from ckpttool.ops.ema.coverage import Coverage, assemble
from ckpttool.ops.ema.distance import Distance, ema_distance
from ckpttool.ops.ema.findings import check
from ckpttool.ops.ema.publish import publish_tree
from ckpttool.progress import ProgressSink

__all__ = ["EmaResult", "EmaList", "list_ema", "extract_ema", "select", "DTYPE_ALIASES"]

DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "float16": "float16", "bf16": "bfloat16",
                 "bfloat16": "bfloat16", "fp32": "float32", "float": "float32", "float32": "float32",
                 "fp64": "float64", "float64": "float64"}


@dataclass
class EmaList:
    """``--list``: every EMA candidate, nothing written."""

    path: Path
    layout: str
    candidates: list[EmaCandidate]
    sections: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "path": str(self.path), "layout": self.layout,
                "candidates": [c.to_dict() | {"default": i == 0} for i, c in enumerate(self.candidates)]}


@dataclass
class EmaResult:
    """What ``extract_ema`` found, checked and wrote."""

    path: Path
    candidate: EmaCandidate
    output: Path | None
    coverage: Coverage
    distance: Distance | None
    findings: list[Finding] = field(default_factory=list)
    written: bool = False
    sha256: str | None = None
    tensors: int = 0
    nbytes: int = 0
    format: str | None = None
    dtype: str | None = None
    into_checkpoint: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        dist = self.distance.to_dict() if self.distance is not None else {"max_abs": None, "rel_l2": None}
        return {"schema_version": 1, "source": c.source, "layout": c.layout,
                "output": str(self.output) if self.output is not None and self.written else None,
                "sha256": self.sha256, "tensors": self.tensors, "updates": c.updates, "distance": dist,
                "findings": [f.to_dict() for f in self.findings],
                "path": str(self.path), "reason": c.reason, "written": self.written, "format": self.format,
                "nbytes": self.nbytes, "decay": c.decay, "updates_key": c.updates_key,
                "model_source": c.model_source, "dtype": self.dtype, "into_checkpoint": self.into_checkpoint,
                "coverage": self.coverage.to_dict(), "notes": list(self.notes),
                "most_changed": [t.to_dict() for t in _most_changed(self.distance)]}


def _most_changed(distance: Distance | None, n: int = 5) -> list[Any]:
    if distance is None:
        return []
    ranked = [t for t in distance.tensors if t.rel_l2 is not None]
    return sorted(ranked, key=lambda t: t.rel_l2 or 0.0, reverse=True)[:n]


def _no_ema(ckpt: Checkpoint) -> SectionNotFound:
    have = ", ".join(k for k in ckpt.sections if k != "meta") or "none"
    if ckpt.layout in ("state_dict", "pickled-module", "torchscript") or not isinstance(ckpt.tree, dict):
        hint = "the file holds one set of weights only; the EMA, if training kept one, is in another file"
    else:
        keys = [str(k) for k in ckpt.tree][:12]
        hint = (f"top-level keys: {', '.join(keys)}; an EMA is looked for under ema/model_ema/state_dict_ema/"
                "ema_state_dict, LitEma model_ema.*, ema-pytorch/torch-ema states and weight-averaging callbacks")
    return SectionNotFound(f"no EMA weights found in this {ckpt.layout} checkpoint (sections: {have})",
                           path=ckpt.path, hint=hint)


def list_ema(ckpt: Checkpoint) -> EmaList:
    """Every EMA candidate in ``ckpt`` (the default first); raises ``SectionNotFound`` when none."""
    candidates = find_candidates(ckpt)
    if not candidates:
        raise _no_ema(ckpt)
    return EmaList(ckpt.path, ckpt.layout, candidates, [k for k in ckpt.sections if k != "meta"])


def select(ckpt: Checkpoint, source: str | None = None) -> EmaCandidate:
    """The default candidate, or the one whose source (or its top-level key) is ``source``."""
    candidates = list_ema(ckpt).candidates
    if source is None:
        return candidates[0]
    for c in candidates:
        if source in (c.source, c.top_key, c.source.removesuffix(".*"), c.source.removesuffix("*")):
            return c
    raise UsageError(f"no EMA candidate {source!r} in this checkpoint",
                     hint="candidates: " + ", ".join(c.source for c in candidates))


def extract_ema(ckpt: Checkpoint, output: Path | None, *, source: str | None = None, dtype: str | None = None,
                into_checkpoint: bool = False, strip_optimizer: bool = False, force: bool = False,
                sanitize: bool = False, progress: ProgressSink | None = None) -> EmaResult:
    """Find, check and (when the checks pass and ``output`` is given) write the EMA of ``ckpt``.

    ``progress`` is told the EMA bytes checked against the raw weights and the tensor bytes to write
    and read back, then each chunk of the three passes.

    Raises:
        SectionNotFound: the checkpoint holds no EMA.
        UsageError: bad option combinations or an unknown ``source``/``dtype``.
        OutputRefused: ``output`` exists (without ``force``) or is the input.
    """
    if strip_optimizer and not into_checkpoint:
        raise UsageError("--strip-optimizer only applies with --into-checkpoint")
    if sanitize and not into_checkpoint:
        raise UsageError("--sanitize only applies with --into-checkpoint (a state_dict holds plain data already)")
    if into_checkpoint and output is not None and output.suffix.lower() == ".safetensors":
        raise UsageError("--into-checkpoint writes a nested training dict: use a .pt/.pth/.ckpt output")
    target_dtype = _dtype(dtype)
    cand = select(ckpt, source)
    weights, coverage = assemble(cand.ema, cand.model, cand.scope)
    distance = (ema_distance(cand.ema, cand.model, progress) if cand.model is not None and cand.ema.tensors
                else None)
    result = EmaResult(ckpt.path, cand, output, coverage, distance, dtype=target_dtype,
                       into_checkpoint=into_checkpoint, tensors=len(weights))
    result.findings = check(cand, coverage, distance)
    if output is None or not result.ok:
        return result
    _write(ckpt, result, weights, strip_optimizer, force, sanitize, progress)
    return result


def _dtype(dtype: str | None) -> str | None:
    if dtype is None:
        return None
    name = DTYPE_ALIASES.get(dtype.lower().removeprefix("torch."))
    if name is None:
        raise UsageError(f"unknown --dtype {dtype!r}", hint="use fp16, bf16, fp32 or fp64")
    return name


def _cast(weights: dict[str, Any], dtype: str) -> dict[str, Any]:
    """Floating tensors as ``dtype`` torch tensors; everything else unchanged."""
    import torch

    from ckpttool.dtypes import is_floating

    target = getattr(torch, dtype)
    return {k: v.to_torch().to(target) if is_floating(v.dtype) and v.dtype != dtype else v
            for k, v in weights.items()}


def _write(ckpt: Checkpoint, result: EmaResult, weights: dict[str, Any], strip_optimizer: bool,
           force: bool, sanitize: bool = False, progress: ProgressSink | None = None) -> None:
    from ckpttool.io.write.checkpoint import write_checkpoint

    assert result.output is not None
    from ckpttool.ops.entries import writable_tensors

    writable_tensors(result.candidate.ema, target="the extracted weights")  # no entry left out silently
    if result.dtype is not None:
        weights = _cast(weights, result.dtype)
    tree: dict[str, Any] = weights
    if result.into_checkpoint:
        tree, result.notes = publish_tree(ckpt, weights, strip_optimizer=strip_optimizer, sanitize=sanitize)
    written = write_checkpoint(tree, result.output, inputs=(ckpt.path,), force=force,
                               metadata={"format": "pt", "ckpttool.ema_source": result.candidate.source,
                                         "ckpttool.ema_layout": result.candidate.layout,
                                         "ckpttool.ema_input": ckpt.path.name}, progress=progress)
    result.written = True
    result.sha256, result.format, result.nbytes = written.sha256, written.format, written.nbytes
    result.output = written.path


def ema_state_dict(ckpt: Checkpoint, source: str | None = None) -> StateDict:
    """The EMA of ``ckpt`` under the model's keys, buffers filled from the model (library helper)."""
    cand = select(ckpt, source)
    weights, _ = assemble(cand.ema, cand.model, cand.scope)
    return StateDict(weights, composites=dict(cand.ema.composites))
