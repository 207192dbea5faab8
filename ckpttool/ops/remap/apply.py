"""Apply remap rules to a whole checkpoint tree: every section holding the model's keys, the optimizer.

Everything else in the checkpoint is kept as it is, pickled objects included (the writer emits them
again as they were read). A pickled module stays a module of its class with its tensors renamed in
place; only a rename that moves tensors under another parent module turns it into a state_dict, with
a finding. The tree is rebuilt iteratively around the replaced nodes, so shared objects stay shared
and nothing recurses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import ResourceLimit
from ckpttool.layouts.base import as_state_dict
from ckpttool.model import Checkpoint, Finding, PickledDict, StateDict, Stub, TensorRef
from ckpttool.module_rewrite import rewrite_module
from ckpttool.modules import module_state_dict
from ckpttool.ops.remap.optimizer import OptimizerRemap, remap_optimizer
from ckpttool.ops.remap.param_groups import ParamContext, module_classes, ultralytics_frozen
from ckpttool.ops.remap.plan import RemapPlan, plan
from ckpttool.ops.remap.rules import Rule, under
from ckpttool.tree import MAX_NODES, children

__all__ = ["SectionChange", "Applied", "apply_rules"]

DROP = object()  # stands for a node left out of the output (--drop-optimizer)


@dataclass
class SectionChange:
    """One state_dict the remap rewrote: where it sits and how many keys it kept, renamed, dropped."""

    kind: str
    source: str
    kept: int
    renamed: int
    dropped: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "kept": self.kept, "renamed": self.renamed,
                "dropped": self.dropped}


@dataclass
class Applied:
    tree: Any
    sections: list[SectionChange] = field(default_factory=list)
    optimizers: list[OptimizerRemap] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _prefixes(value: Any, sd: StateDict) -> list[str]:
    """Each prefix under which the dict holds all of ``sd``'s keys (``module.`` for AveragedModel).

    ema-pytorch keeps ``ema_model.*`` and ``online_model.*`` side by side: both are the model's.
    Other tensors in the dict (AveragedModel's ``n_averaged``) are not the model's and are kept.
    """
    if not isinstance(value, dict) or not len(sd):
        return []
    first, out = next(iter(sd)), []
    for key in value:
        if isinstance(key, str) and key.endswith(first) and (key == first or key[-len(first) - 1] == "."):
            prefix = key[: len(key) - len(first)]
            if all(isinstance(value.get(prefix + k), TensorRef) for k in sd):
                out.append(prefix)
    return out


def _metadata(meta: Mapping[str, Any], p: RemapPlan, prefix: str) -> dict[str, Any]:
    """torch's per-module ``_metadata`` with module paths renamed as the keys were."""
    base = prefix[:-1]
    moved: dict[str, str] = {}
    for r in p.mapping:
        moved.setdefault(r.src.rpartition(".")[0], r.dst.rpartition(".")[0])
    gone = {k.rpartition(".")[0] for k, _ in p.dropped} - set(moved)
    for src, dst in list(moved.items()):  # containers without tensors of their own move with their children
        while "." in src and "." in dst:
            src, s_leaf = src.rsplit(".", 1)
            dst, d_leaf = dst.rsplit(".", 1)
            if s_leaf != d_leaf or moved.setdefault(src, dst) != dst:
                break
    out: dict[str, Any] = {}
    for path, value in meta.items():
        rel = under(path, base) if isinstance(path, str) else None
        if rel is None:
            out[path] = value
        elif rel not in gone:
            new = moved.get(rel) or _under_moved(rel, moved)
            out[f"{base}.{new}" if base and new else base or new] = value
    return out


def _under_moved(path: str, moved: Mapping[str, str]) -> str:
    """A module without tensors (an Identity, a Dropout) goes where its nearest moved ancestor goes."""
    head, rest = path, ""
    while "." in head:
        head, leaf = head.rsplit(".", 1)
        rest = f".{leaf}{rest}"
        if head in moved:
            return moved[head] + rest
    return path


def _new_state_dict(value: Any, sd: StateDict, p: RemapPlan, order: Sequence[str] | None
                    ) -> PickledDict | Stub | None:
    """The remapped value of one section (a tensor dict or a pickled module); None if it cannot tell."""
    fwd = p.forward
    rank = {k: i for i, k in enumerate(order or ())}
    moved = sorted(((fwd[k], sd[k]) for k in sd if k in fwd), key=lambda kv: rank.get(kv[0], len(rank)))
    out = PickledDict(ordered=True)
    if isinstance(value, Stub):
        module = rewrite_module(value, fwd)
        if module is not None and (not rank or list(_module_keys(module)) == [k for k, _ in moved]):
            return module
        out.update(moved)
        return out
    prefixes = _prefixes(value, sd)
    if not prefixes:
        return None
    if isinstance(value, PickledDict):  # a plain dict stays plain, an OrderedDict ordered
        out.ordered = value.ordered
    new_of = {pre + k: pre + fwd[k] for pre in prefixes for k in sd if k in fwd}
    model_keys = {pre + k for pre in prefixes for k in sd}
    for key, item in value.items():  # entries that are not the model's (n_averaged, steps) stay as they were
        if key not in model_keys:
            out[key] = item
        elif key in new_of and not rank:
            out[new_of[key]] = item
    if rank:
        old_of = {v: k for k, v in new_of.items()}
        out.update((pre + k, value[old_of[pre + k]]) for pre in prefixes for k, _ in moved)
    meta = value.attrs.get("_metadata") if isinstance(value, PickledDict) else None
    if isinstance(meta, dict):
        for pre in prefixes:
            meta = _metadata(meta, p, pre)
        out.attrs["_metadata"] = PickledDict(meta, ordered=True)
    return out


def _state_dict_nodes(ckpt: Checkpoint) -> list[tuple[str, str, Any, StateDict]]:
    """(kind, source, node, state_dict) for each section with tensors, plus copies elsewhere in the tree.

    A copy is any other dict with the model's keys (a second EMA, a callback's averaged weights).
    """
    out: list[tuple[str, str, Any, StateDict]] = []
    seen: set[int] = set()
    for kind, sec in ckpt.sections.items():
        if sec.state_dict is not None and id(sec.value) not in seen:
            seen.add(id(sec.value))
            out.append((kind, sec.source or "(root)", sec.value, sec.state_dict))
    if "model" not in ckpt.sections or ckpt.sections["model"].state_dict is None:
        return out
    model = ckpt.sections["model"].state_dict
    for path, node in _data_nodes(ckpt.tree):
        if id(node) not in seen and len(node) >= len(model):
            sd = as_state_dict(node)
            if sd is not None and (list(sd) == list(model) or _prefixes(node, model)):
                seen.add(id(node))
                out.append(("model-copy", path, node, sd if list(sd) == list(model) else model))
    return out


def _data_nodes(root: Any) -> Iterator[tuple[str, dict[Any, Any]]]:
    """Every dict reachable through dicts, lists and tuples (not inside pickled objects), once each."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", root)]
    budget = MAX_NODES
    while stack:
        path, obj = stack.pop()
        budget -= 1
        if budget < 0:
            raise ResourceLimit("the checkpoint tree is too large to search")
        if not isinstance(obj, dict | list | tuple) or id(obj) in seen:
            continue
        seen.add(id(obj))
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        stack += [(f"{path}.{k}" if path else str(k), v) for k, v in items if isinstance(v, dict | list | tuple)]
        if isinstance(obj, dict):
            yield path, obj


def _not_remapped(kind: str, source: str, p: RemapPlan, order: Sequence[str] | None) -> Finding:
    """A section whose layout keeps tensors in its own way (by position, renamed buffers): left as it is."""
    if not p.dropped and order is None:
        return Finding("remap.section-kept", "info", f"the {kind} weights at {source} are not stored by key; "
                       "they are kept as they are (no key was dropped, so they still line up)", where=source)
    return Finding("remap.section-skipped", "warn", f"the {kind} weights at {source} are not stored by key and "
                   "were not remapped; they no longer line up with the remapped model", where=source,
                   hint="drop that entry, or remap a file that holds it as a state_dict")


def _optimizers(ckpt: Checkpoint) -> list[tuple[str, dict[str, Any]]]:
    """Every optimizer state_dict: the optimizer section, and each of Lightning's ``optimizer_states``."""
    tree = ckpt.tree
    if isinstance(tree, dict) and isinstance(tree.get("optimizer_states"), list):
        return [(f"optimizer_states.{i}", o) for i, o in enumerate(tree["optimizer_states"]) if isinstance(o, dict)]
    sec = ckpt.sections.get("optimizer")
    return [(sec.source, sec.value)] if sec is not None and isinstance(sec.value, dict) else []


def _param_context(ckpt: Checkpoint) -> ParamContext:
    """Module classes of a pickled model, and what an ultralytics trainer froze (left out of its groups)."""
    model = ckpt.sections.get("model")
    classes = module_classes(model.value) if model is not None else {}
    tree = ckpt.tree
    frozen = ultralytics_frozen(tree.get("train_args")) if ckpt.layout == "ultralytics" and isinstance(
        tree, dict) else ()
    return ParamContext(classes, frozen, prefer=f"{ckpt.layout} groups")


def apply_rules(ckpt: Checkpoint, rules: Sequence[Rule], model_plan: RemapPlan, *,
                new_order: Sequence[str] | None = None, drop_optimizer: bool = False) -> Applied:
    """The checkpoint tree with ``rules`` applied to every state_dict and the optimizer carried along."""
    replace: dict[int, Any] = {}
    result = Applied(tree=None)
    for kind, source, node, sd in _state_dict_nodes(ckpt):
        p = model_plan if kind == "model" else plan(sd, rules)
        p.check()
        new = _new_state_dict(node, sd, p, new_order)
        if new is None:
            result.findings.append(_not_remapped(kind, source, p, new_order))
            continue
        replace[id(node)] = new
        result.sections.append(SectionChange(kind, source, len(p.mapping), len(p.renamed), len(p.dropped)))
        if isinstance(node, Stub) and not isinstance(new, Stub):
            why = ("it is a TorchScript module, whose code is not rewritten" if node.qualname.startswith("__torch__.")
                   else "the renames move tensors under other modules, which the class cannot hold")
            result.findings.append(Finding(
                "remap.pickled-module", "warn",
                f"{source} was a pickled {node.qualname}; {why}, so it is written as its state_dict (the class "
                "and attributes outside the state_dict are not kept)", where=source))
    model = ckpt.sections.get("model")
    for source, opt in _optimizers(ckpt):
        if drop_optimizer:
            replace[id(opt)] = DROP
            result.findings.append(Finding("remap.optimizer-dropped", "info",
                                           f"optimizer state at {source} left out (--drop-optimizer)", where=source))
            continue
        if model is None or model.state_dict is None:
            continue
        done = remap_optimizer(opt, model.state_dict, model_plan.forward, new_order, where=source,
                               ctx=_param_context(ckpt))
        result.optimizers.append(done)
        result.findings += done.findings
        if done.value is not None:
            replace[id(opt)] = done.value
    result.tree = _rebuild(ckpt.tree, replace)
    return result


def _module_keys(module: Stub) -> list[str]:
    return list(module_state_dict(module))


def _rebuild(root: Any, replace: dict[int, Any]) -> Any:
    """A copy of the container skeleton of ``root`` with nodes swapped by identity (post-order, iterative)."""
    built: dict[int, Any] = {}
    stack: list[tuple[Any, str, bool]] = [(root, "", False)]
    budget = MAX_NODES
    while stack:
        node, path, ready = stack.pop()
        key = id(node)
        if key in built or not isinstance(node, dict | list | tuple | Stub):
            continue
        budget -= 1
        if budget < 0:
            raise ResourceLimit("the checkpoint tree is too large to rebuild")
        if key in replace:
            built[key] = replace[key]
        elif isinstance(node, Stub):  # kept as it was read; the writer emits it again
            continue
        elif not ready:
            stack.append((node, path, True))
            stack += [(v, f"{path}.{k}" if path else str(k), False) for k, v in children(node)]
        else:
            built[key] = _copy(node, built)
    return built.get(id(root), root)


def _copy(node: Any, built: dict[int, Any]) -> Any:
    def get(v: Any) -> Any:
        return built.get(id(v), v) if isinstance(v, dict | list | tuple | Stub) else v

    if isinstance(node, dict):
        out: Any = PickledDict(ordered=node.ordered) if isinstance(node, PickledDict) else (
            OrderedDict() if isinstance(node, OrderedDict) else {})
        if isinstance(node, PickledDict):
            out.attrs = dict(node.attrs)
        out.update((k, get(v)) for k, v in node.items() if get(v) is not DROP)
        return out
    if isinstance(node, list):
        return [get(v) for v in node if get(v) is not DROP]
    return tuple(get(v) for v in node)
