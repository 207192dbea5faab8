"""``--fix``: a copy of the checkpoint whose scheduler state fits the new run, written atomically.

Only patches with one clear meaning are made:

* CosineAnnealingLR: ``T_max`` = the new run's steps. torch steps it in chainable form
  (``lr *= (1 + cos(pi*t/T)) / (1 + cos(pi*(t-1)/T))``), so the LR stays continuous at the resume
  point and reaches ``eta_min`` exactly at the new end.
* OneCycleLR: its LR is a closed form of ``last_epoch / total_steps``, so raising ``total_steps``
  alone would jump. We keep the fraction done: ``T' = R / (1 - L/T)``, ``L' = T' - R`` for the ``R``
  steps the new run still makes, and move the phase ends with the same ``pct_start``.

Everything but the scheduler state is written as it was read: pickled ``nn.Module`` objects
(YOLOv5 ``model``/``ema``), namespaces and other foreign objects stay what they were. With
``sanitize`` the copy is weights-only loadable instead: modules become their state_dicts, other
foreign objects plain dicts (reported).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ckpttool.errors import OutputRefused, ResourceLimit, UsageError
from ckpttool.io.pickle.rebuilt import plain_value
from ckpttool.model import GlobalRef, PickledDict, Stub
from ckpttool.modules import is_module, module_state_dict
from ckpttool.ops.resume.result import Check
from ckpttool.ops.resume.torch_schedulers import identify
from ckpttool.progress import ProgressSink
from ckpttool.tree import MAX_NODES

__all__ = ["patch_scheduler", "plain_tree", "write_fixed"]


def patch_scheduler(state: dict[str, Any], new_units: int) -> tuple[dict[str, Any], str]:
    """The scheduler state patched for a run of ``new_units`` scheduler steps, and what changed.

    Raises:
        UsageError: when this scheduler has no well-defined patch.
    """
    kind = identify(state)
    out = dict(state)  # shallow: only top-level values are replaced (never deep-copy an untrusted tree)
    if kind == "CosineAnnealingLR":
        old = state.get("T_max")
        out["T_max"] = new_units
        return out, f"CosineAnnealingLR T_max {old} → {new_units}"
    if kind == "OneCycleLR":
        return _patch_one_cycle(out, new_units)
    raise UsageError(f"--fix patches CosineAnnealingLR and OneCycleLR states; this checkpoint's scheduler is "
                     f"{kind or 'not a torch scheduler'}",
                     hint="use the fixes listed in the report (keep the old total, or the continuation expression)")


def _patch_one_cycle(out: dict[str, Any], new_units: int) -> tuple[dict[str, Any], str]:
    total, last = int(out["total_steps"]), int(out["last_epoch"])
    remaining = new_units - last
    frac = last / total
    if remaining <= 0 or frac >= 1:
        raise UsageError(f"OneCycleLR is at step {last} of {total}: no remaining cycle to stretch over the new run")
    new_total = math.ceil(remaining / (1 - frac))
    new_last = new_total - remaining
    phases = [dict(p) for p in out["_schedule_phases"]]
    pct = (float(phases[0]["end_step"]) + 1) / total
    phases[0]["end_step"] = float(pct * new_total) - 1
    if len(phases) == 3:
        phases[1]["end_step"] = float(2 * pct * new_total) - 2
    phases[-1]["end_step"] = new_total - 1
    out.update(total_steps=new_total, last_epoch=new_last, _schedule_phases=phases)
    if isinstance(out.get("_step_count"), int):
        out["_step_count"] = out["_step_count"] + (new_last - last)
    return out, (f"OneCycleLR total_steps {total} → {new_total}, last_epoch {last} → {new_last} "
                 f"(same fraction {frac:.4f} done; {remaining} steps left)")


def plain_tree(root: Any) -> tuple[Any, list[str]]:
    """``root`` rebuilt from plain containers: module stubs → state_dicts, other stubs → dicts.

    Iterative and memoised by identity (shared values stay shared); a cycle is refused.
    """
    notes: list[str] = []
    memo: dict[int, Any] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    budget = MAX_NODES
    while stack:
        obj, ready = stack.pop()
        if id(obj) in memo:
            continue
        budget -= 1
        if budget < 0:
            raise ResourceLimit("the checkpoint tree is too large to copy")
        if is_module(obj):
            memo[id(obj)] = dict(module_state_dict(obj).tensors)
            notes.append(f"pickled module {obj.qualname} written as its state_dict")
            continue
        kids = _kids(obj)
        if kids is None:
            memo[id(obj)] = _leaf(obj, notes)
            continue
        if not ready:
            stack.append((obj, True))
            stack.extend((v, False) for v in kids if id(v) not in memo)
            continue
        if any(id(v) not in memo for v in kids):
            raise OutputRefused("the checkpoint tree has a cycle; it cannot be written as plain data")
        memo[id(obj)] = _rebuild(obj, memo, notes)
    return memo[id(root)], notes


def _kids(obj: Any) -> list[Any] | None:
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, Stub):
        if obj.qualname == "collections.Counter":
            return list(obj.args[0].values()) if obj.args and isinstance(obj.args[0], dict) else []
        return list(obj.attributes.values())
    return None


def _rebuild(obj: Any, memo: dict[int, Any], notes: list[str]) -> Any:
    if isinstance(obj, PickledDict):
        new = PickledDict(ordered=obj.ordered)
        new.attrs = dict(obj.attrs)
        new.update((k, memo[id(v)]) for k, v in obj.items())
        return new
    if isinstance(obj, dict):
        return {k: memo[id(v)] for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(memo[id(v)] for v in obj) if type(obj) in (list, tuple) else [memo[id(v)] for v in obj]
    assert isinstance(obj, Stub)
    if obj.qualname == "collections.Counter":
        src = obj.args[0] if obj.args and isinstance(obj.args[0], dict) else {}
        return {k: memo[id(v)] for k, v in src.items()}
    notes.append(f"{obj.qualname} object written as a dict of its attributes")
    return {k: memo[id(v)] for k, v in obj.attributes.items()}


def _leaf(obj: Any, notes: list[str]) -> Any:
    if isinstance(obj, GlobalRef):
        notes.append(f"reference to {obj.fullname} written as its name")
        return obj.fullname
    return plain_value(obj)


def _set_path(tree: Any, source: str, value: Any) -> None:
    parts: list[Any] = [int(p) if p.isdigit() else p for p in source.split(".")]
    node = tree
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def _path_copy(root: Any, source: str) -> Any:
    """``root`` with the containers on the way to ``source`` copied (the rest shared, never mutated)."""
    def copy(node: Any) -> Any:
        if isinstance(node, PickledDict):
            out = PickledDict(node, ordered=node.ordered)
            out.attrs = dict(node.attrs)
            return out
        if isinstance(node, dict | list) and type(node) in (dict, list):
            return type(node)(node)
        raise UsageError(f"cannot patch the scheduler at {source!r}: it sits inside a {type(node).__name__}")

    out = copy(root)
    node = out
    parts: list[Any] = [int(p) if p.isdigit() else p for p in source.split(".")]
    for p in parts[:-1]:
        try:
            node[p] = copy(node[p])
        except (KeyError, IndexError, TypeError) as exc:
            raise UsageError(f"cannot find the scheduler at {source!r} in the checkpoint ({exc})") from None
        node = node[p]
    return out


def write_fixed(tree: Any, source: str, patched: dict[str, Any], output: Path, *, inputs: list[Path],
                force: bool, sanitize: bool = False, progress: ProgressSink | None = None
                ) -> tuple[dict[str, Any], list[Check]]:
    """Write ``tree`` with the scheduler at ``source`` replaced by ``patched``; returns what was written.

    ``progress`` is told the tensor bytes written and read back by the verification.
    """
    from ckpttool.io.write.checkpoint import TORCH_SUFFIXES, write_checkpoint

    if output.suffix.lower() not in TORCH_SUFFIXES:  # the writer's own hint would offer .safetensors too
        raise UsageError("a resumable checkpoint needs a torch format: name the output .pt, .pth or .ckpt")
    new_tree, notes = plain_tree(tree) if sanitize else (_path_copy(tree, source), [])
    if not isinstance(new_tree, dict):
        raise UsageError("only dict checkpoints can be patched")
    try:
        _set_path(new_tree, source, patched)
    except (KeyError, IndexError, TypeError) as exc:
        raise UsageError(f"cannot find the scheduler at {source!r} in the checkpoint ({exc})") from None
    written = write_checkpoint(new_tree, output, inputs=inputs, force=force, progress=progress)
    checks = [Check("resume.fix-converted", "warn", "; ".join(sorted(set(notes))),
                    "load the model with model.load_state_dict(ckpt['model']) instead of ckpt['model'].float()")] \
        if notes else []
    return written.to_dict(), checks


def units_needed(new_total: int, steps_per_epoch: int) -> int:
    """Scheduler steps the new run makes from epoch 0 to its end."""
    return new_total * steps_per_epoch
