"""Pairing keys and comparing them, section by section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import Checkpoint, TensorRef
from ckpttool.ops.diff.align import AlignedKeys, Alignment, align_keys
from ckpttool.ops.diff.component import component_views
from ckpttool.ops.diff.composite import compare_composite
from ckpttool.ops.diff.group import group_entries
from ckpttool.ops.diff.meta import compare_plain
from ckpttool.ops.diff.result import DiffResult, SectionDiff, TensorDiff
from ckpttool.ops.diff.rules import FailRule, evaluate
from ckpttool.ops.diff.sections import SideView, kind_of, section_names, view_of
from ckpttool.ops.diff.values import ByteComparer, compare_values
from ckpttool.progress import ProgressSink

__all__ = ["DiffOptions", "ProgressSink", "diff_checkpoints"]


@dataclass(frozen=True, slots=True)
class DiffOptions:
    """What to compare and what counts as equal.

    Attributes:
        section: ``model``, ``ema``, ``optimizer``, ``scheduler``, ``scaler``, ``meta`` or ``all``.
        rtol, atol: ``torch.isclose`` tolerances deciding "equal within tolerance".
        alignment: key renames applied before pairing (model-like sections only).
        ignore_dtype: a dtype change alone (values within tolerance) does not make the files differ.
        fail_on: CI rules; when given they alone decide failure.
        group_depth: roll entries up by module prefix of this depth.
    """

    section: str = "model"
    rtol: float = 1e-5
    atol: float = 1e-8
    alignment: Alignment = field(default_factory=Alignment)
    ignore_dtype: bool = False
    fail_on: tuple[FailRule, ...] = ()
    group_depth: int | None = None


@dataclass(slots=True)
class _Pair:
    key: str
    key_a: str | None
    key_b: str | None


def _pairs(va: SideView, vb: SideView, alignment: Alignment) -> tuple[list[_Pair], AlignedKeys, int]:
    """Aligned names in A's order then B's leftovers, A's alignment outcome, and how many keys were renamed."""
    keys_a = [*va.tensors, *(k for k in va.composites if k not in va.tensors)]  # composites renamed alike
    keys_b = [*vb.tensors, *(k for k in vb.composites if k not in vb.tensors)]
    if va.aligns or vb.aligns:
        shapes = {k: t.shape for k, t in va.tensors.items()}
        shapes.update({k: c.shape for k, c in va.composites.items() if c.shape is not None})
        al_a = align_keys(keys_a, alignment, side="a", shapes=shapes)
        map_b = align_keys(keys_b, alignment, side="b").names
    else:
        al_a, map_b = AlignedKeys(names={k: k for k in keys_a}), {k: k for k in keys_b}
    map_a = al_a.names
    renamed = sum(new != old for new, old in map_a.items()) + sum(new != old for new, old in map_b.items())
    pairs = [_Pair(new, old, map_b.get(new)) for new, old in map_a.items()]
    pairs += [_Pair(new, None, old) for new, old in map_b.items() if new not in map_a]
    return pairs, al_a, renamed


def _compare(pair: _Pair, ta: TensorRef | None, tb: TensorRef | None, kind: str, options: DiffOptions,
             progress: ProgressSink | None, comparer: ByteComparer) -> TensorDiff:
    key_a = pair.key_a if pair.key_a != pair.key else None
    if ta is None or tb is None:
        return TensorDiff(pair.key, "only_a" if tb is None else "only_b", kind,
                          dtype_a=ta.dtype if ta else None, dtype_b=tb.dtype if tb else None,
                          shape_a=ta.shape if ta else None, shape_b=tb.shape if tb else None, key_a=key_a)
    entry = TensorDiff(pair.key, "shape", kind, ta.dtype, tb.dtype, ta.shape, tb.shape, key_a=key_a)
    if ta.shape != tb.shape:
        return entry
    identical, stats = compare_values(ta, tb, options.rtol, options.atol,
                                      progress.advance if progress is not None else None, comparer)
    entry.stats = stats
    entry.status = "identical" if identical else "close" if stats.within_tolerance else "changed"
    return entry


def _compare_entries(pair: _Pair, a: SideView, b: SideView, kind: str, options: DiffOptions,
                     comparer: ByteComparer) -> TensorDiff:
    """A composite entry (quantized, DTensor...) against its namesake, or against a plain tensor."""
    ca = a.composites.get(pair.key_a) if pair.key_a else None
    cb = b.composites.get(pair.key_b) if pair.key_b else None
    key_a = pair.key_a if pair.key_a != pair.key else None
    if ca is not None and cb is not None:
        return compare_composite(pair.key, ca, cb, kind, options.rtol, options.atol, comparer, key_a=key_a)
    present = ca or cb
    assert present is not None
    other = (b.tensors.get(pair.key_b) if pair.key_b else None) if ca is not None else \
        (a.tensors.get(pair.key_a) if pair.key_a else None)
    if other is None:
        return TensorDiff(pair.key, "only_a" if ca is not None else "only_b", kind,
                          dtype_a=ca.dtype if ca else None, dtype_b=cb.dtype if cb else None,
                          shape_a=ca.shape if ca else None, shape_b=cb.shape if cb else None,
                          entry_type=present.kind, key_a=key_a)
    return TensorDiff(pair.key, "shape", kind, ca.dtype if ca else other.dtype, cb.dtype if cb else other.dtype,
                      ca.shape if ca else other.shape, cb.shape if cb else other.shape,
                      entry_type=f"{ca.kind if ca else 'plain'}/{cb.kind if cb else 'plain'}",
                      note="a plain tensor on one side, a composite tensor on the other")


@dataclass(slots=True)
class _Planned:
    result: SectionDiff
    a: SideView
    b: SideView
    work: list[tuple[_Pair, TensorRef | None, TensorRef | None]]
    composite_work: list[_Pair] = field(default_factory=list)


def _plan_section(a: Checkpoint, b: Checkpoint, name: str, options: DiffOptions, required: bool) -> _Planned:
    """Pair the section's keys and compare its non-tensor content; tensor values come later."""
    views = component_views(a, b, name) if required else None  # PIPELINE vs unet.safetensors --section unet
    va, vb = views or (view_of(a, name, required=required), view_of(b, name, required=required))
    result = SectionDiff(name, va.source, vb.source,
                         missing="a" if not va.present else "b" if not vb.present else None)
    pairs, aligned, result.renamed = _pairs(va, vb, options.alignment)
    result.dropped, result.findings = aligned.dropped, aligned.findings
    skip = frozenset(va.tensors) | frozenset(vb.tensors) | frozenset(va.composites) | frozenset(vb.composites)
    if va.present and vb.present:  # a missing section is reported as such, not as a root-level change
        result.meta_changed = compare_plain(va.plain, vb.plain, skip)
    # a pair with a composite on either side (plain on the other included) is compared as a composite
    composite_work = [p for p in pairs if p.key_a in va.composites or p.key_b in vb.composites]
    work = [(p, va.tensors.get(p.key_a) if p.key_a else None, vb.tensors.get(p.key_b) if p.key_b else None)
            for p in pairs if not (p.key_a in va.composites or p.key_b in vb.composites)]
    result.kinds_known = any(v.state_dict is not None and v.state_dict.parameters is not None for v in (va, vb))
    return _Planned(result, va, vb, work, composite_work)


def _compare_over_jobs(planned: list[_Planned], options: DiffOptions, progress: ProgressSink | None,
                       jobs: int) -> list[list[Any]]:
    """Every section's entries, the tensor pairs compared by ``jobs`` worker processes (and the ranks of torchrun)."""
    from ckpttool.parallel import ranks_from_env, run_split
    from ckpttool.parallel.relay import Relay

    work = [(s, pair, ta, tb) for s, p in enumerate(planned) for pair, ta, tb in p.work]
    sizes = [ta.nbytes if ta is not None and tb is not None and ta.shape == tb.shape else 0
             for _, _, ta, tb in work]
    comparers: list[ByteComparer] = []
    relay = Relay(progress) if progress is not None else None  # workers report chunk by chunk
    if progress is not None:  # under torchrun, this rank's share of the bytes
        ranks = ranks_from_env()
        progress.start(sum(sizes[i] for i in (ranks.share(sizes) if ranks is not None else range(len(sizes)))))

    def one(i: int) -> Any:
        s, pair, ta, tb = work[i]
        if not comparers:
            comparers.append(ByteComparer())
        kind, _ = kind_of(pair.key_a, pair.key_b, planned[s].a, planned[s].b)
        return _compare(pair, ta, tb, kind, options, relay, comparers[0])

    done = run_split(one, sizes, jobs, relay)
    for c in comparers:
        c.close()
    out: list[list[Any]] = [[] for _ in planned]
    for (s, _, _, _), entry in zip(work, done):
        out[s].append(entry)
    return out


def diff_checkpoints(a: Checkpoint, b: Checkpoint, options: DiffOptions | None = None,
                     progress: ProgressSink | None = None, jobs: int = 1) -> DiffResult:
    """Compare checkpoint ``b`` against ``a``.

    Args:
        a, b: opened checkpoints (``ckpttool.open``).
        options: what to compare and how; defaults compare the model sections with torch's tolerances.
        progress: told the bytes to read, then each chunk read (the CLI draws a bar from it).
        jobs: worker processes comparing tensors (the result is the same for any number); under torchrun
            the pairs are split over the ranks too, and every rank gets the whole result.

    Returns:
        A ``DiffResult``; ``result.equal`` and ``result.failed`` decide the exit status.

    Raises:
        SectionNotFound: the requested section is missing from either file.
        RemapConflict: alignment sends two keys of one side to the same name.
    """
    options = options or DiffOptions()
    names = section_names(a, b, options.section)
    required = options.section != "all"
    planned = [_plan_section(a, b, name, options, required) for name in names]
    sections: list[SectionDiff] = []
    # plain tensor pairs over worker processes when asked; composites (few, small) always here
    from ckpttool.parallel import ranks_from_env

    split = jobs > 1 or ranks_from_env() is not None
    if progress is not None and not split:
        progress.start(sum(ta.nbytes for p in planned for _, ta, tb in p.work
                           if ta is not None and tb is not None and ta.shape == tb.shape))
    parallel = _compare_over_jobs(planned, options, progress, jobs) if split else None
    comparer = ByteComparer()
    try:
        for s, p in enumerate(planned):
            if parallel is not None:
                p.result.entries.extend(parallel[s])
            for pair, ta, tb in p.work if parallel is None else ():
                kind, _ = kind_of(pair.key_a, pair.key_b, p.a, p.b)
                p.result.entries.append(_compare(pair, ta, tb, kind, options, progress, comparer))
            for pair in p.composite_work:
                kind, _ = kind_of(pair.key_a, pair.key_b, p.a, p.b)
                p.result.entries.append(_compare_entries(pair, p.a, p.b, kind, options, comparer))
            sections.append(p.result)
    finally:
        comparer.close()
    out = DiffResult(a=str(a.path), b=str(b.path), section=options.section, sections=sections,
                     rtol=options.rtol, atol=options.atol, ignore_dtype=options.ignore_dtype)
    flat = [(s.name, e) for s in sections for e in s.entries]
    if options.fail_on:
        out.rules = evaluate(options.fail_on, flat)
    if options.group_depth is not None:
        out.groups, out.group_depth = group_entries(flat, options.group_depth), options.group_depth
    return out
