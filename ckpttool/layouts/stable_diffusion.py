"""Stable-Diffusion-style checkpoints: a LitEma (CompVis ``ldm/modules/ema.py``) inside ``state_dict``.

``LitEma(self.model)`` registers one buffer per trainable parameter of ``model``, named after the
parameter with its dots removed (``diffusion_model.input_blocks.0.0.weight`` becomes
``diffusion_modelinput_blocks00weight``), plus ``decay`` and ``num_updates``; as the submodule
``model_ema`` its keys read ``model_ema.<dot-less name>``. Dropping dots can make two names one, so
the mapping back is accepted only when every shadow names exactly one model key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.layouts import lightning
from ckpttool.layouts.base import Layout, as_state_dict, section
from ckpttool.model import StateDict, TensorRef

__all__ = ["LitEmaMap", "find_litema", "map_litema", "recognise"]

_COUNTERS = ("decay", "num_updates")


@dataclass
class LitEmaMap:
    """A LitEma mapped back onto the model keys (``tensors``), or the reasons it could not be."""

    ema_prefix: str
    model_prefix: str | None
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    decay: TensorRef | None = None
    num_updates: TensorRef | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.tensors)


def find_litema(sd: StateDict) -> list[str]:
    """Prefixes (``model_ema.``) under which ``sd`` holds a LitEma's ``decay`` and ``num_updates``."""
    prefixes = []
    for key in sd:
        if key.endswith(".num_updates"):
            prefix = key[: -len("num_updates")]
            if prefix + "decay" in sd.tensors:
                prefixes.append(prefix)
    return prefixes


def _model_prefixes(ema_prefix: str, keys: list[str]) -> list[str]:
    """Where the tracked module probably lives: ``model_ema.`` → ``model.`` first, then every top module."""
    stem = ema_prefix[:-1]
    guesses = [stem[: -len("_ema")] + "." if stem.endswith("_ema") else "model."]
    guesses += sorted({k.split(".", 1)[0] + "." for k in keys if "." in k} - set(guesses))
    return [*guesses, ""]


def map_litema(sd: StateDict, ema_prefix: str) -> LitEmaMap:
    """Map the LitEma under ``ema_prefix`` back onto the model keys of ``sd``, one to one."""
    shadows = {k[len(ema_prefix):]: t for k, t in sd.tensors.items()
               if k.startswith(ema_prefix) and k[len(ema_prefix):] not in _COUNTERS}
    model_keys = [k for k in sd if not k.startswith(ema_prefix)]
    result = LitEmaMap(ema_prefix, None, decay=sd.tensors.get(ema_prefix + "decay"),
                       num_updates=sd.tensors.get(ema_prefix + "num_updates"))
    for prefix in _model_prefixes(ema_prefix, model_keys):
        index: dict[str, list[str]] = {}
        for k in model_keys:
            if k.startswith(prefix):
                index.setdefault(k[len(prefix):].replace(".", ""), []).append(k)
        if shadows and all(s in index for s in shadows):
            result.model_prefix = prefix
            break
    else:
        result.problems.append(f"no module of the model has parameters whose dot-less names are the "
                               f"{len(shadows)} shadows under {ema_prefix!r}")
        return result
    for shadow, tensor in shadows.items():
        targets = index[shadow]
        if len(targets) > 1:
            result.problems.append(f"{ema_prefix}{shadow} could be any of {', '.join(targets)} "
                                   "(removing dots made their names equal)")
        elif sd[targets[0]].shape != tensor.shape:
            result.problems.append(f"{ema_prefix}{shadow} has shape {list(tensor.shape)} but "
                                   f"{targets[0]} has {list(sd[targets[0]].shape)}")
        else:
            result.tensors[targets[0]] = tensor
    return result


def _weights(tree: Any) -> tuple[str, StateDict] | None:
    if isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict):
        sd = as_state_dict(tree["state_dict"])
        return ("state_dict", sd) if sd is not None else None
    sd = as_state_dict(tree)
    return ("", sd) if sd is not None and isinstance(tree, dict) else None


def recognise(tree: Any) -> Layout | None:
    weights = tree.get("state_dict") if isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict) else tree
    if not isinstance(weights, dict) or not any(isinstance(k, str) and k.endswith(".num_updates") for k in weights):
        return None
    found = _weights(tree)
    if found is None:
        return None
    source, sd = found
    prefixes = find_litema(sd)
    if not prefixes:
        return None
    layout = lightning.recognise(tree) or Layout("stable-diffusion")
    layout.name = "stable-diffusion"
    layout.reason = f"a LitEma ({prefixes[0]}decay, {prefixes[0]}num_updates) beside the model weights"
    where = f"{source}." if source else ""
    layout.sections["model"] = section("model", source, tree.get(source) if source else tree, sd)
    layout.sections.pop("ema", None)
    mapped = map_litema(sd, prefixes[0])
    if mapped.ok:
        layout.sections["ema"] = section("ema", f"{where}{prefixes[0]}*", mapped, StateDict(mapped.tensors))
    return layout
