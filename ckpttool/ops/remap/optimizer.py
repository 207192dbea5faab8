"""Carry a PyTorch optimizer state along a remap.

``optimizer.state_dict()`` names parameters by position: ``param_groups[*]['params']`` hold ids
numbered in group order, and ``state`` is keyed by those ids. Which id is which model key is not
stored, so it is inferred: the model's parameters in ``parameters()`` order (all of them, the
trainable ones, or those the trainer did not freeze), split into the groups by the usual recipes
(``param_groups``). A recipe counts only when the group sizes fit and every state tensor has its
parameter's shape; when no recipe, or two different ones, fit, the optimizer is left as it was
with a finding. Dropped parameters then drop their state; the rest are renumbered in the new
model's parameter order, group by group, as ``state_dict()`` of the new model's optimizer would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import Finding, StateDict, TensorRef
from ckpttool.modules import is_buffer_name
from ckpttool.ops.remap.param_groups import ParamContext, candidates

__all__ = ["OptimizerRemap", "parameter_keys", "remap_optimizer", "infer_ids"]



@dataclass
class OptimizerRemap:
    """The rewritten optimizer dict (None when left unchanged) and what happened."""

    value: dict[str, Any] | None
    findings: list[Finding] = field(default_factory=list)
    moved: int = 0
    dropped: int = 0
    recipe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"remapped": self.value is not None, "recipe": self.recipe, "states_kept": self.moved,
                "states_dropped": self.dropped}


def parameter_keys(sd: StateDict) -> tuple[list[str], bool]:
    """The model's parameter keys in ``parameters()`` order, tied tensors once; and whether it was a guess."""
    guessed = sd.parameters is None
    seen: set[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = set()
    out: list[str] = []
    for key, t in sd.items():
        if guessed and is_buffer_name(key):
            continue
        if not guessed and key not in sd.parameters:  # type: ignore[operator]
            continue
        ident = (id(t.storage), t.storage_offset, t.shape, t.stride)
        if ident in seen:  # a tied weight: parameters() yields it once
            continue
        seen.add(ident)
        out.append(key)
    return out, guessed


def _fits(ids: list[Any], keys: list[str], state: Mapping[Any, Any], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Every non-scalar state tensor has the shape of the parameter its id is assigned to."""
    for pid, key in zip(ids, keys):
        entry = state.get(pid)
        if not isinstance(entry, dict):
            continue
        for value in entry.values():
            if isinstance(value, TensorRef) and value.numel > 1 and tuple(value.shape) != tuple(shapes[key]):
                return False
    return True


def _parameter_lists(params: list[str], guessed: bool, n_ids: int, sd: StateDict,
                     ctx: ParamContext) -> list[list[str]]:
    """The parameter lists an optimizer of ``n_ids`` ids may have been built from."""
    lists = [params]
    if not guessed:  # frozen parameters are often left out of the optimizer
        lists.append([k for k in params if sd[k].requires_grad])
    if ctx.frozen:
        lists.append([k for k in params if not any(f in k for f in ctx.frozen)])
    out: list[list[str]] = []
    for keys in lists:
        if len(keys) == n_ids and keys not in out:
            out.append(keys)
    return out


def infer_ids(opt: Mapping[str, Any], sd: StateDict,
              ctx: ParamContext | None = None) -> tuple[dict[Any, str] | None, str, list[Finding]]:
    """Which model key each optimizer id stands for; (None, reason, findings) when that is not certain."""
    groups, state = opt.get("param_groups"), opt.get("state")
    if not isinstance(groups, list) or not isinstance(state, dict) or not all(
            isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        return None, "not a torch optimizer state_dict (state + param_groups)", []
    ids = [pid for g in groups for pid in g["params"]]
    named = [n for g in groups for n in g.get("param_names") or ()]
    if len(named) == len(ids) and len(set(ids)) == len(ids) and all(n in sd for n in named):
        return dict(zip(ids, named)), "param_names", []
    params, guessed = parameter_keys(sd)
    findings = []
    if guessed:
        findings.append(Finding("remap.optimizer-guess", "info",
                                "the model's parameters were told apart from its buffers by name (running_*, "
                                "num_batches_tracked are buffers); the optimizer state was checked against them",
                                where="optimizer"))
    ctx = ctx or ParamContext()
    lists = _parameter_lists(params, guessed, len(ids), sd, ctx)
    if not lists or len(set(ids)) != len(ids):
        return None, f"it holds {len(ids)} parameter ids and the model has {len(params)} parameters", findings
    shapes = {k: tuple(sd[k].shape) for k in params}
    fitting: dict[tuple[str, ...], str] = {}
    for keys_in_order in lists:
        for recipe, keys in candidates(keys_in_order, groups, set(sd), shapes, ctx):
            if _fits(ids, keys, state, shapes):
                fitting.setdefault(tuple(keys), recipe + ("" if keys_in_order is params else ", frozen left out"))
    if len(fitting) != 1:
        why = ("no grouping recipe fits its group sizes and state shapes" if not fitting else
               f"{len(fitting)} groupings fit equally ({', '.join(fitting.values())})")
        return None, why, findings
    keys, recipe = next(iter(fitting.items()))
    return dict(zip(ids, keys)), recipe, findings


def remap_optimizer(opt: Mapping[str, Any], sd: StateDict, forward: Mapping[str, str],
                    new_order: Sequence[str] | None, where: str = "optimizer",
                    ctx: ParamContext | None = None) -> OptimizerRemap:
    """The optimizer dict with state moved to the new parameter positions (see module docstring).

    ``forward`` maps old key -> new key for kept keys; ``new_order`` is the new model's key order
    (None: the remapped keys keep the old order).
    """
    id_to_key, recipe, findings = infer_ids(opt, sd, ctx)
    if id_to_key is None:
        findings.append(Finding("remap.optimizer-unmapped", "warn",
                                f"optimizer state left as it was: {recipe}", where=where,
                                hint="use --drop-optimizer to leave it out of the output"))
        return OptimizerRemap(None, findings)
    rank = {k: i for i, k in enumerate(new_order or [forward[k] for k in sd if k in forward])}
    state, new_state, new_groups = opt["state"], {}, []
    next_id, moved, dropped = 0, 0, 0
    for group in opt["param_groups"]:
        kept = [(forward[id_to_key[pid]], pid) for pid in group["params"] if id_to_key[pid] in forward]
        dropped += sum(1 for pid in group["params"] if id_to_key[pid] not in forward and pid in state)
        kept.sort(key=lambda item: rank.get(item[0], len(rank)))
        params = []
        for _, pid in kept:
            if pid in state:
                new_state[next_id] = state[pid]
                moved += 1
            params.append(next_id)
            next_id += 1
        new_group = {**group, "params": params}
        if isinstance(group.get("param_names"), list):
            new_group["param_names"] = [name for name, _ in kept]
        new_groups.append(new_group)
    out = {k: v for k, v in opt.items()}
    out["state"], out["param_groups"] = new_state, new_groups
    return OptimizerRemap(out, findings, moved, dropped, recipe)
