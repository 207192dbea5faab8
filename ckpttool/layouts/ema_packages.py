"""EMA states written by EMA packages, mapped onto the model's own keys.

What each library really saves (read from its source):

* ema-pytorch ``EMA.state_dict()``: buffers ``initted`` and ``step``, then ``online_model.*`` (the
  raw model, unless ``include_online_model=False``) and ``ema_model.*`` (a deep copy of the model).
* torch-ema ``ExponentialMovingAverage.state_dict()``: ``decay``, ``num_updates``, ``shadow_params``
  (a list in the order of the parameters the EMA was built from: no names) and ``collected_params``.
* ``torch.optim.swa_utils.AveragedModel.state_dict()``: ``module.*`` plus the ``n_averaged`` buffer.
* anything else under an EMA key is a state_dict or pickled module (timm ``state_dict_ema``, a
  deep-copied model), possibly under a wrapper prefix (``module.``, ``_orig_mod.``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ckpttool.dtypes import is_floating
from ckpttool.layouts.base import Layout, as_state_dict, section, strip_prefix
from ckpttool.model import StateDict, TensorRef
from ckpttool.modules import is_buffer_name
from ckpttool.tensors import scalar_value

__all__ = ["EmaMatch", "match_ema", "ema_pytorch_file", "positional_map", "align_to_model", "recognise"]

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_orig_mod.module.", "module._orig_mod.")
_MAX_ALIGN_CELLS = 20_000_000


@dataclass
class EmaMatch:
    """An EMA found in a value: its tensors under the model's keys and what the package recorded."""

    state_dict: StateDict
    package: str
    reason: str
    updates: int | None = None
    decay: float | None = None
    online: StateDict | None = None
    problems: list[str] = field(default_factory=list)


def _number(value: Any) -> float | int | None:
    if isinstance(value, TensorRef):
        value = scalar_value(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    n = _number(value)
    return int(n) if n is not None else None


def _sub(value: dict[Any, Any], prefix: str) -> StateDict:
    tensors = {k[len(prefix):]: v for k, v in value.items()
               if isinstance(k, str) and k.startswith(prefix) and isinstance(v, TensorRef)}
    return StateDict(tensors=tensors)


def ema_pytorch_file(value: Any) -> EmaMatch | None:
    """An ema-pytorch ``EMA.state_dict()`` (``ema_model.*`` with ``initted``/``step``), or None."""
    if not isinstance(value, dict) or not ("initted" in value or "step" in value):
        return None
    ema = _sub(value, "ema_model.")
    if not ema.tensors:
        return None
    online = _sub(value, "online_model.")
    return EmaMatch(ema, "ema-pytorch", "ema-pytorch EMA state: ema_model.* with initted/step",
                    updates=_int(value.get("step")), online=online if online.tensors else None)


def _torch_ema(value: Any, model: StateDict | None) -> EmaMatch | None:
    if not isinstance(value, dict) or not isinstance(value.get("shadow_params"), list | tuple):
        return None
    shadow = list(value["shadow_params"])
    if not shadow or not all(isinstance(t, TensorRef) for t in shadow):
        return None
    match = EmaMatch(StateDict(), "torch-ema", "torch-ema ExponentialMovingAverage state: shadow_params by position",
                     updates=_int(value.get("num_updates")), decay=_number(value.get("decay")))
    if model is None:
        match.problems.append("torch-ema keeps its shadow parameters by position only, and this checkpoint "
                              "has no model state_dict to take their names from")
        return match
    mapping, problems, how = positional_map(shadow, model)
    match.state_dict = StateDict(tensors=mapping)
    match.problems += problems
    match.reason += f" ({how})"
    return match


def _averaged(value: Any) -> EmaMatch | None:
    if not isinstance(value, dict) or "n_averaged" not in value:
        return None
    others = [k for k in value if k != "n_averaged"]
    if not others or not all(isinstance(k, str) and k.startswith("module.") for k in others):
        return None
    return EmaMatch(_sub(value, "module."), "averaged-model",
                    "torch.optim.swa_utils.AveragedModel state: module.* with n_averaged",
                    updates=_int(value.get("n_averaged")))


def match_ema(value: Any, model: StateDict | None) -> EmaMatch | None:
    """The EMA held by ``value`` (any package format above) under ``model``'s keys, or None."""
    for found in (ema_pytorch_file(value), _torch_ema(value, model), _averaged(value)):
        if found is not None:
            if found.package != "torch-ema":
                found.state_dict = align_to_model(found.state_dict, model)
            return found
    sd = as_state_dict(value)
    if sd is None:
        return None
    return EmaMatch(align_to_model(sd, model), "state_dict", "a state_dict under an EMA key")


def align_to_model(sd: StateDict, model: StateDict | None) -> StateDict:
    """``sd`` with a wrapper prefix (``module.``...) removed or added when that makes its keys the model's."""
    keys = set(sd.tensors)
    if model is None:
        for prefix in WRAPPER_PREFIXES:
            if keys and all(k.startswith(prefix) for k in keys):
                return strip_prefix(sd, prefix)
        return sd
    target = set(model.tensors)
    best, best_hits = sd, len(keys & target)
    for prefix in WRAPPER_PREFIXES:
        stripped = {k[len(prefix):] for k in keys if k.startswith(prefix)}
        if len(stripped & target) > best_hits and len(stripped) == len(keys):
            best, best_hits = strip_prefix(sd, prefix), len(stripped & target)
        added = {prefix + k for k in keys}
        if len(added & target) > best_hits:
            best = StateDict({prefix + k: v for k, v in sd.tensors.items()}, extras=sd.extras,
                             parameters=frozenset(prefix + k for k in sd.parameters) if sd.parameters else None)
            best_hits = len(added & target)
    return best


def _parameter_keys(model: StateDict) -> list[str]:
    """The model's parameter keys in order: known ones, else floating tensors not named like buffers."""
    if model.parameters is not None:
        return [k for k in model if k in model.parameters]
    return [k for k, t in model.tensors.items()
            if is_floating(t.dtype) and not is_buffer_name(k)]


def positional_map(shadow: list[TensorRef], model: StateDict) -> tuple[dict[str, TensorRef], list[str], str]:
    """Name the positional ``shadow`` tensors after the model parameters they track.

    Tries the model's parameters in order first; else finds the one way the shadow shapes fit, in
    order, among the model's floating tensors. Two or more ways is an ambiguity: reported, never guessed.
    Returns (mapping, problems, how it was decided).
    """
    params = _parameter_keys(model)
    if [model[k].shape for k in params] == [t.shape for t in shadow]:
        return dict(zip(params, shadow)), [], f"onto the model's {len(params)} parameters in order"
    pool = [k for k, t in model.tensors.items() if is_floating(t.dtype)]
    keys = _unique_embedding([t.shape for t in shadow], [model[k].shape for k in pool])
    if keys is None:
        return {}, [f"the {len(shadow)} shadow parameters do not fit the model's tensors by position in "
                    "exactly one way (shapes differ or repeat ambiguously); refusing to guess"], "unmapped"
    return ({pool[i]: t for i, t in zip(keys, shadow)}, [],
            f"onto the only run of model tensors whose shapes match, in order ({len(shadow)} of {len(pool)})")


def _unique_embedding(needle: list[tuple[int, ...]], hay: list[tuple[int, ...]]) -> list[int] | None:
    """Indices of the only way ``needle`` is a subsequence of ``hay``; None for zero or several ways."""
    n, m = len(hay), len(needle)
    if m > n or n * m > _MAX_ALIGN_CELLS:  # beyond this the table alone would need too much memory
        return None
    # ways[i][j]: ways (capped at 2) to place needle[j:] within hay[i:]
    ways = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        ways[i][m] = 1
    for i in range(n - 1, -1, -1):
        row, below = ways[i], ways[i + 1]
        for j in range(m - 1, -1, -1):
            total = below[j] + (below[j + 1] if hay[i] == needle[j] else 0)
            row[j] = min(total, 2)
    if ways[0][0] != 1:
        return None
    picked, j = [], 0
    for i in range(n):
        if j < m and hay[i] == needle[j] and ways[i + 1][j + 1] == 1:
            picked.append(i)
            j += 1
    return picked


def recognise(tree: Any) -> Layout | None:
    """A file that is an ema-pytorch ``EMA.state_dict()``: EMA in ``ema_model.*``, raw in ``online_model.*``."""
    found = ema_pytorch_file(tree)
    if found is None:
        return None
    layout = Layout("ema-pytorch", reason=found.reason)
    if found.online is not None:
        layout.sections["model"] = section("model", "online_model.*", tree, found.online)
    layout.sections["ema"] = section("ema", "ema_model.*", tree, found.state_dict)
    return layout
