"""How training code splits a model's parameters into optimizer groups: the recipes ids are inferred by.

``optimizer.state_dict()`` numbers parameters group by group, in the order each group lists them.
A recipe says which parameter lands in which group, in ``parameters()`` order: contiguous blocks,
YOLOv5's ``smart_optimizer`` (bias / weight / norm-weight by leaf name), ultralytics'
``BaseTrainer.build_optimizer`` (``"bias"`` anywhere in the name; weights of ``torch.nn`` norm
layers and ``logit_scale``; the other weights; with MuSGD, matrices and conv filters first go to a
``muon`` group and every group is split into the head's classification branch and the rest), timm's
decay / no-decay split. Group order differs between versions, so every order whose sizes fit is
tried; the shape check in ``optimizer`` decides.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import Stub

__all__ = ["ParamContext", "candidates", "module_classes", "ultralytics_frozen"]

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class ParamContext:
    """What the checkpoint tells beyond keys: module classes (from a pickled model) and frozen names."""

    classes: Mapping[str, str] = field(default_factory=dict)  # module path -> class qualname
    frozen: tuple[str, ...] = ()  # substrings of parameter names the trainer froze (ultralytics)
    prefer: str | None = None  # the recipe named first when several give the same ids (the layout's)


def module_classes(root: Any) -> dict[str, str]:
    """Module path -> qualname for every module of a pickled ``nn.Module`` (empty for anything else)."""
    out: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [("", root)]
    seen: set[int] = set()
    while stack and len(out) < 1_000_000:
        path, mod = stack.pop()
        if not isinstance(mod, Stub) or not mod.is_module or id(mod) in seen:
            continue
        seen.add(id(mod))
        out[path] = mod.qualname
        kids = mod.attributes.get("_modules")
        if isinstance(kids, dict):
            stack += [(f"{path}.{k}" if path else str(k), v) for k, v in kids.items()]
    return out


def ultralytics_frozen(train_args: Any) -> tuple[str, ...]:
    """The name patterns ultralytics' trainer freezes: ``.dfl`` always, ``model.N.`` for ``freeze``."""
    freeze = train_args.get("freeze") if isinstance(train_args, dict) else None
    layers = list(range(freeze)) if isinstance(freeze, int) and not isinstance(freeze, bool) else (
        freeze if isinstance(freeze, list) else [])
    return (*(f"model.{x}." for x in layers), ".dfl")


def _is_norm(module: str, keys: set[str], ctx: ParamContext) -> bool:
    """A ``torch.nn`` normalization layer: by its class when pickled, else by BatchNorm's buffers."""
    qualname = ctx.classes.get(module)
    if qualname is not None:
        return qualname.startswith("torch.nn.") and "Norm" in qualname.rpartition(".")[2]
    return f"{module}.running_mean" in keys


def _yolov5_class(key: str, keys: set[str], shapes: Shapes, ctx: ParamContext) -> str:
    module, _, leaf = key.rpartition(".")
    if leaf == "bias":
        return "bias"
    return "bn" if leaf == "weight" and f"{module}.running_mean" in keys else "weight"


def _ultralytics_class(key: str, keys: set[str], shapes: Shapes, ctx: ParamContext) -> str:
    if "bias" in key:
        return "bias"
    return "bn" if _is_norm(key.rpartition(".")[0], keys, ctx) or "logit_scale" in key else "weight"


def _timm_class(key: str, keys: set[str], shapes: Shapes, ctx: ParamContext) -> str:
    return "no-decay" if len(shapes[key]) <= 1 or key.endswith(".bias") else "decay"


_CLASSIFIERS: tuple[tuple[str, Callable[[str, set[str], Shapes, ParamContext], str]], ...] = (
    ("yolov5 groups", _yolov5_class), ("ultralytics groups", _ultralytics_class), ("timm decay groups", _timm_class))


_MUSGD_KINDS = ("weight", "bn", "bias", "muon")  # build_optimizer's group order with MuSGD
_BOOSTED = ("cv3.", "one2one_cv3.")  # the head's branches MuSGD gives a higher learning rate


def _musgd(params: list[str], groups: list[dict[str, Any]], keys: set[str], shapes: Shapes,
           ctx: ParamContext) -> list[tuple[str, list[str]]]:
    """ultralytics' MuSGD groups: weight, bn, bias, muon, each split into head branch and rest or not."""
    kind = {k: "muon" if len(shapes[k]) in (2, 4) else _ultralytics_class(k, keys, shapes, ctx) for k in params}
    layers = [int(k.split(".")[1]) for k in params if k.startswith("model.") and k.split(".")[1].isdigit()]
    head = f"model.{max(layers)}." if layers else None
    boosted = {k for k in params if (head and any(k.startswith(head + b) for b in _BOOSTED))
               or "proto.semseg" in k or "SemanticSegment" in k}
    if len(groups) == len(_MUSGD_KINDS):
        slots: list[tuple[str, bool | None]] = [(kd, None) for kd in _MUSGD_KINDS]
    elif len(groups) == 2 * len(_MUSGD_KINDS):
        slots = [(kd, b) for kd in _MUSGD_KINDS for b in (True, False)]
    else:
        return []
    lists = [[k for k in params if kind[k] == kd and (b is None or (k in boosted) == b)] for kd, b in slots]
    if any(len(keys_) != len(g["params"]) or g.get("param_group") not in (None, kd)
           for keys_, g, (kd, _) in zip(lists, groups, slots)):
        return []
    return [("ultralytics MuSGD groups", [k for keys_ in lists for k in keys_])]


def candidates(params: list[str], groups: list[dict[str, Any]], all_keys: set[str], shapes: Shapes,
               ctx: ParamContext) -> list[tuple[str, list[str]]]:
    """(recipe, keys in flattened-id order) for every recipe whose group sizes (and labels) fit."""
    sizes = [len(g["params"]) for g in groups]
    labels = [g.get("param_group") for g in groups]  # ultralytics names its groups since 8.3
    out: list[tuple[str, list[str]]] = []
    blocks, start = [], 0
    for n in sizes:
        blocks += params[start:start + n]
        start += n
    out.append(("parameters() order" if len(sizes) == 1 else "contiguous groups", blocks))
    if len(sizes) == 1:
        return out
    if any(g.get("use_muon") or g.get("param_group") == "muon" for g in groups):
        return out + _musgd(params, groups, all_keys, shapes, ctx)
    for name, classify in sorted(_CLASSIFIERS, key=lambda c: c[0] != ctx.prefer):
        classes: dict[str, list[str]] = {}
        for key in params:
            classes.setdefault(classify(key, all_keys, shapes, ctx), []).append(key)
        full = [i for i, n in enumerate(sizes) if n]
        if len(full) != len(classes):
            continue
        for order in itertools.permutations(classes):
            if all(len(classes[lab]) == sizes[g] and labels[g] in (None, lab) for g, lab in zip(full, order)):
                where = dict(zip(full, order))
                out.append((name, [k for g in range(len(sizes)) if g in where for k in classes[where[g]]]))
    return out
