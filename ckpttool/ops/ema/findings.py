"""The checks ``extract-ema`` makes, each a ``Finding`` with a stable ``ema.*`` code.

errors (nothing is written, exit 1): ``ema.identical-to-model``, ``ema.unmappable`` (keys that cannot
be mapped onto the model one to one), ``ema.shape-mismatch``, ``ema.empty``;
warnings: ``ema.dtype-differs``, ``ema.incomplete-coverage``, ``ema.extra-keys``, ``ema.few-updates``,
``ema.non-finite``; infos: ``ema.buffers-copied``, ``ema.out-of-scope``, ``ema.no-raw-weights``.
"""

from __future__ import annotations

from ckpttool.dtypes import is_floating
from ckpttool.model import Finding
from ckpttool.ops.ema.candidates import EmaCandidate
from ckpttool.ops.ema.coverage import Coverage
from ckpttool.ops.ema.distance import Distance

__all__ = ["check", "MIN_UPDATES"]

# Fewer updates than this and an EMA (decay 0.99..0.9999) is still mostly its starting point.
MIN_UPDATES = 100


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def check(cand: EmaCandidate, cov: Coverage, distance: Distance | None) -> list[Finding]:
    """Every finding for extracting ``cand``: errors block the write, warnings and infos do not."""
    out = [Finding("ema.unmappable", "error", p, hint="pick another EMA with --source, or remap the keys first",
                   where=cand.source) for p in cand.problems]
    if not cand.ema.tensors and not cand.problems:
        out.append(Finding("ema.empty", "error", "the EMA holds no tensors", where=cand.source))
    if cov.shape_mismatch:
        out.append(Finding("ema.shape-mismatch", "error",
                           f"{len(cov.shape_mismatch)} EMA tensors differ in shape from the model: "
                           f"{_few(cov.shape_mismatch)}", where=cand.source))
    out += _identity(cand, distance)
    out += _coverage(cand, cov)
    out += _dtypes(cand)
    out += _updates(cand)
    return out


def _identity(cand: EmaCandidate, distance: Distance | None) -> list[Finding]:
    if cand.model is None:
        return [Finding("ema.no-raw-weights", "info", "the file holds no raw weights beside the EMA, so the "
                        "distance to them is not measured", where=cand.source)]
    out = []
    if distance is not None and distance.nonfinite_keys:
        keys = distance.nonfinite_keys
        out.append(Finding("ema.non-finite", "warn", f"{len(keys)} EMA tensors hold NaN/Inf where the raw weights "
                           f"are finite: {_few(keys)}", hint="the average diverged; check before shipping it",
                           where=cand.source))
    if distance is not None and distance.all_identical:
        out.append(Finding("ema.identical-to-model", "error",
                           f"the EMA equals the raw weights ({cand.model_source}) in all {distance.compared} "
                           "floating tensors: it was never updated, or the two were saved from the same weights",
                           hint="nothing written; check the EMA callback/hook ran (or use the model weights)",
                           where=cand.source))
    return out


def _coverage(cand: EmaCandidate, cov: Coverage) -> list[Finding]:
    out = []
    if cov.parameters_missing:
        out.append(Finding("ema.incomplete-coverage", "warn",
                           f"{len(cov.parameters_missing)} model parameters have no EMA value and are copied "
                           f"from the raw weights: {_few(cov.parameters_missing)}", where=cand.source))
    if cov.extra:
        out.append(Finding("ema.extra-keys", "warn", f"{len(cov.extra)} EMA keys are not model keys and are "
                           f"left out: {_few(cov.extra)}", where=cand.source))
    if cov.buffers_copied:
        out.append(Finding("ema.buffers-copied", "info", f"{len(cov.buffers_copied)} buffers the EMA does not "
                           f"track are copied from the raw model: {_few(cov.buffers_copied)}", where=cand.source))
    if cov.out_of_scope:
        out.append(Finding("ema.out-of-scope", "info", f"{cov.out_of_scope} keys outside the averaged module "
                           f"({cand.scope!r}) are copied from the raw model", where=cand.source))
    return out


def _dtypes(cand: EmaCandidate) -> list[Finding]:
    if cand.model is None:
        return []
    pairs: dict[tuple[str, str], int] = {}
    for key, t in cand.ema.tensors.items():
        raw = cand.model.tensors.get(key)
        if raw is not None and raw.dtype != t.dtype and is_floating(raw.dtype) and is_floating(t.dtype):
            pairs[(t.dtype, raw.dtype)] = pairs.get((t.dtype, raw.dtype), 0) + 1
    return [Finding("ema.dtype-differs", "warn", f"{n} EMA tensors are {e} where the model's are {r}",
                    hint="use --dtype to choose the output dtype", where=cand.source)
            for (e, r), n in sorted(pairs.items())]


def _updates(cand: EmaCandidate) -> list[Finding]:
    if cand.updates is None or cand.updates >= MIN_UPDATES:
        return []
    decay = f" at decay {cand.decay:g}" if cand.decay is not None else ""
    what = "never updated" if cand.updates == 0 else f"updated only {cand.updates} times{decay}"
    return [Finding("ema.few-updates", "warn", f"the EMA was {what} ({cand.updates_key}); it is still close "
                    "to its starting weights", where=cand.source)]
