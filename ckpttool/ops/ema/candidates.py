"""Every EMA a checkpoint holds, each with the raw weights it is measured against and its counters.

The layout recognisers name the main one (the ``ema`` section, which may be a LitEma or an EMA
submodule inside the model's own state_dict: then the raw weights are that state_dict without it);
other EMA keys of a training dict, a Lightning SWA callback beside an EMA callback, or a LitEma whose
names cannot be mapped back are candidates too, so ``--list`` shows them and ``--source`` picks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ckpttool.layouts.common import EMA_KEYS
from ckpttool.layouts.ema_packages import EmaMatch, align_to_model, match_ema
from ckpttool.layouts.ema_submodule import Mirror
from ckpttool.layouts.stable_diffusion import LitEmaMap, find_litema, map_litema
from ckpttool.model import Checkpoint, Section, StateDict, Stub, TensorRef
from ckpttool.tensors import scalar_value
from ckpttool.tree import get_path

__all__ = ["EmaCandidate", "find_candidates"]

_WHY = {
    "yolov5": "YOLOv5 ModelEMA: the pickled module under 'ema', with its 'updates' counter",
    "ultralytics": "ultralytics saves 'model': None; the weights are the ModelEMA module under 'ema'",
    "timm": "timm CheckpointSaver writes the ModelEma weights as 'state_dict_ema' (keys already clean)",
    "mmengine": "mmengine EMAHook swaps the EMA into 'state_dict' at save time; 'ema_state_dict' "
                "holds the raw weights ('module.' prefix) and 'steps'",
    "averaged-model": "torch.optim.swa_utils.AveragedModel state: 'module.' keys with 'n_averaged'",
    "stable-diffusion": "LitEma buffers (dot-less parameter names with decay and num_updates), mapped "
                        "one to one back onto the model keys",
    "ema-pytorch": "ema-pytorch EMA state: 'ema_model.*' beside 'online_model.*', with 'step'",
}


@dataclass
class EmaCandidate:
    """One EMA found in a checkpoint, under the model's keys."""

    source: str
    layout: str
    reason: str
    ema: StateDict
    model: StateDict | None = None
    model_source: str | None = None
    scope: str = ""
    updates: int | None = None
    updates_key: str | None = None
    decay: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def top_key(self) -> str:
        return self.source.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        dtypes = sorted({t.dtype for t in self.ema.tensors.values()})
        return {"source": self.source, "layout": self.layout, "reason": self.reason,
                "tensors": len(self.ema), "dtypes": dtypes, "model_source": self.model_source,
                "updates": self.updates, "updates_key": self.updates_key, "decay": self.decay,
                "problems": list(self.problems)}


def _number(value: Any) -> int | float | None:
    """A counter or decay as a Python number; a float32 tensor's value shown with float32's digits."""
    if isinstance(value, TensorRef):
        single = value.dtype in ("float32", "float16")
        value = scalar_value(value)
        if single and isinstance(value, float):
            value = float(f"{value:.7g}")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _counter(tree: Any, *path: Any) -> tuple[int | None, str | None]:
    n = _number(get_path(tree, path))
    return (int(n), ".".join(map(str, path))) if n is not None else (None, None)


def _timm_decay(tree: Any) -> float | None:
    args = tree.get("args") if isinstance(tree, dict) else None
    attrs = args.attributes if isinstance(args, Stub) else args if isinstance(args, dict) else {}
    value = attrs.get("model_ema_decay") if attrs.get("model_ema") is not False else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _primary(ckpt: Checkpoint, ema: Section) -> EmaCandidate:
    model = ckpt.sections.get("model")
    raw = model.state_dict if model is not None and model.source != ema.source else None
    if isinstance(ema.value, LitEmaMap | Mirror) and raw is not None:  # the EMA lives inside the model's dict
        raw = _without(raw, ema.value.ema_prefix if isinstance(ema.value, LitEmaMap) else ema.value.prefix)
    ema_sd = align_to_model(ema.state_dict or StateDict(), raw)
    cand = EmaCandidate(ema.source, ckpt.layout, _WHY.get(ckpt.layout, ""), ema_sd, raw,
                        model.source if raw is not None else None)
    tree = ckpt.tree
    if isinstance(ema.value, LitEmaMap):
        cand.layout, cand.reason = "stable-diffusion", _WHY["stable-diffusion"]
        _litema_counters(cand, ema.value)
    elif isinstance(ema.value, Mirror):
        _mirror(cand, ema.value, ckpt.layout)
    elif ckpt.layout in ("yolov5", "ultralytics"):
        cand.updates, cand.updates_key = _counter(tree, "updates")
    elif ckpt.layout == "averaged-model":
        cand.updates, cand.updates_key = _counter(tree, "n_averaged")
    elif ckpt.layout == "mmengine":
        cand.updates, cand.updates_key = _counter(tree, "ema_state_dict", "steps")
    elif ckpt.layout == "timm":
        cand.decay = _timm_decay(tree)
    elif ckpt.layout == "lightning":
        _lightning(cand, tree)
    elif ckpt.layout in ("training-dict", "ema-pytorch"):
        found = match_ema(ema.value, raw)
        if found is not None:
            _package(cand, found, ema.source.split(".", 1)[0] if ckpt.layout == "training-dict" else "")
    return cand


def _without(sd: StateDict, prefix: str) -> StateDict:
    """The model's own keys: ``sd`` without the EMA submodule under ``prefix``."""
    return StateDict({k: t for k, t in sd.tensors.items() if not k.startswith(prefix)},
                     parameters=sd.parameters, extras=sd.extras, version_metadata=sd.version_metadata)


def _mirror(cand: EmaCandidate, m: Mirror, layout: str) -> None:
    cand.layout = m.package
    cand.scope = m.model_prefix
    cand.reason = (f"an EMA submodule of the saved {'LightningModule' if layout == 'lightning' else 'module'}: "
                   f"{m.prefix}{m.inner}* mirrors {m.model_prefix}* key for key ({m.package})")
    if m.counter is not None and (n := _number(m.counter)) is not None:
        cand.updates, cand.updates_key = int(n), m.counter_key


def _lightning(cand: EmaCandidate, tree: Any) -> None:
    if cand.source == "state_dict":
        cand.reason = ("Lightning WeightAveraging (EMAWeightAveraging) swapped the averaged weights into "
                       "'state_dict' and the raw ones into 'current_model_state'")
        cand.updates, cand.updates_key = _counter(tree, "averaging_state", "n_averaged")
    else:
        cand.reason = "Lightning StochasticWeightAveraging keeps 'average_model_state' in its callback state"
        parts = cand.source.split(".")
        cand.updates, cand.updates_key = _counter(tree, *parts[:-1], "n_averaged")


def _litema_counters(cand: EmaCandidate, m: LitEmaMap) -> None:
    cand.scope = m.model_prefix or ""
    cand.updates = int(n) if (n := _number(m.num_updates)) is not None else None
    cand.updates_key = m.ema_prefix + "num_updates" if cand.updates is not None else None
    decay = _number(m.decay)
    cand.decay = float(decay) if decay is not None else None


def _package(cand: EmaCandidate, found: EmaMatch, key: str) -> None:
    cand.layout = found.package if found.package != "state_dict" else cand.layout
    if found.package == "state_dict":
        cand.reason = f"the EMA key {key!r} of a training dict holds a state_dict of the model"
    else:
        cand.reason = found.reason + (f" under {key!r}" if key else "")
    cand.updates, cand.decay = found.updates, found.decay
    counter = {"ema-pytorch": "step", "torch-ema": "num_updates", "averaged-model": "n_averaged"}.get(found.package)
    if counter and found.updates is not None:
        cand.updates_key = f"{key}.{counter}" if key else counter
    cand.problems += found.problems


def find_candidates(ckpt: Checkpoint) -> list[EmaCandidate]:
    """The main EMA first (the ``ema`` section), then any other EMA the file holds."""
    out: list[EmaCandidate] = []
    if "ema" in ckpt.sections:
        out.append(_primary(ckpt, ckpt.sections["ema"]))
    model_section = ckpt.sections.get("model")
    model = model_section.state_dict if model_section is not None else None
    tree = ckpt.tree if isinstance(ckpt.tree, dict) else {}
    taken = {c.top_key for c in out} | ({model_section.source.split(".", 1)[0]} if model_section else set())
    for key in EMA_KEYS:
        if key in tree and key not in taken and tree[key] is not None:
            found = match_ema(tree[key], model)
            if found is not None:
                cand = EmaCandidate(key, ckpt.layout, "", found.state_dict, model,
                                    model_section.source if model_section else None)
                _package(cand, found, key)
                out.append(cand)
    out += _litema_candidates(ckpt, {c.source for c in out})
    out += _swa_candidates(ckpt, {c.source for c in out})
    return out


def _litema_candidates(ckpt: Checkpoint, taken: set[str]) -> list[EmaCandidate]:
    """LitEmas not already the main EMA: the ones whose names could not be mapped back, with why."""
    model = ckpt.sections.get("model")
    tree = ckpt.tree
    raw = tree.get("state_dict") if isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict) else tree
    where = "state_dict." if raw is not tree else ""
    if not isinstance(raw, dict):
        return []
    sd = StateDict({k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, TensorRef)})
    out = []
    for prefix in find_litema(sd):
        if f"{where}{prefix}*" in taken:
            continue
        m = map_litema(sd, prefix)
        raw = _without(model.state_dict, prefix) if model is not None and model.state_dict is not None else None
        cand = EmaCandidate(f"{where}{prefix}*", "stable-diffusion", _WHY["stable-diffusion"],
                            StateDict(m.tensors), raw, model.source if model else None, problems=list(m.problems))
        _litema_counters(cand, m)
        out.append(cand)
    return out


def _swa_candidates(ckpt: Checkpoint, taken: set[str]) -> list[EmaCandidate]:
    """A Lightning SWA callback's average next to another EMA (two averages in one file)."""
    callbacks = ckpt.tree.get("callbacks") if isinstance(ckpt.tree, dict) else None
    if ckpt.layout != "lightning" or not isinstance(callbacks, dict):
        return []
    model = ckpt.sections.get("model")
    out = []
    for name, state in callbacks.items():
        source = f"callbacks.{name}.average_model_state"
        found = match_ema(state.get("average_model_state"), None) if isinstance(state, dict) else None
        if found is not None and source not in taken:
            cand = EmaCandidate(source, "lightning", "", found.state_dict,
                                model.state_dict if model else None, model.source if model else None)
            _lightning(cand, ckpt.tree)
            out.append(cand)
    return out
