"""An EMA kept as a submodule of the saved module, mirroring another submodule's keys.

A LightningModule (or any ``nn.Module``) that holds its own EMA saves it in the same state_dict:
``self.ema = EMA(self.model)`` (ema-pytorch: ``ema.ema_model.*`` with ``ema.initted``/``ema.step``),
``self.model_ema = ModelEmaV3(self.model)`` (timm: ``model_ema.module.*``),
``self.ema = AveragedModel(self.model)`` (``ema.module.*`` with ``ema.n_averaged``), or a plain deep
copy (``ema_model.*``). The EMA is accepted when every key under its prefix, with the wrapper part
removed, is a key of exactly one other top-level submodule with the same shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ckpttool.layouts import lightning
from ckpttool.layouts.base import Layout, as_state_dict, section
from ckpttool.model import StateDict, TensorRef

__all__ = ["Mirror", "find_mirrors", "recognise"]

# wrapper part after the EMA attribute -> (package, counter buffer under the attribute)
_WRAPPERS = (("ema_model.", "ema-pytorch", "step"), ("module.", "averaged-model", "n_averaged"),
             ("module.", "timm-model-ema", None), ("", "module-copy", None))


@dataclass
class Mirror:
    """The EMA submodule ``prefix`` (``ema.``) whose ``inner`` part tracks the submodule ``model_prefix``."""

    prefix: str
    inner: str
    model_prefix: str
    package: str
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    counter: TensorRef | None = None
    counter_key: str | None = None


_MAX_EMA_MODULES = 8
_EMA_NAME = re.compile(r"(?:^|_)ema(?:_|$)", re.IGNORECASE)  # ema, model_ema, ema_model, net_ema


def _tops(sd: StateDict) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in sd if "." in k})


def _match(sd: StateDict, prefix: str, inner: str, tops: list[str]) -> tuple[str, dict[str, TensorRef]] | None:
    head = prefix + inner
    tails = {k[len(head):]: t for k, t in sd.tensors.items() if k.startswith(head)}
    if not tails or (inner == "" and any(t.startswith(("ema_model.", "online_model.", "module.")) for t in tails)):
        return None
    first = next(iter(tails))
    for top in tops:
        model_prefix = top + "."
        if model_prefix == prefix or model_prefix + first not in sd.tensors:  # cheap test before the full one
            continue
        hits = {model_prefix + t: v for t, v in tails.items()
                if (m := sd.tensors.get(model_prefix + t)) is not None and m.shape == v.shape}
        if len(hits) == len(tails):
            return model_prefix, hits
    return None


def find_mirrors(sd: StateDict) -> list[Mirror]:
    """Every EMA submodule of ``sd`` (attribute names containing ``ema``) that mirrors another one."""
    tops = _tops(sd)
    out = []
    for top in [t for t in tops if _EMA_NAME.search(t)][:_MAX_EMA_MODULES]:
        prefix = top + "."
        for inner, package, counter in _WRAPPERS:
            if counter and prefix + counter not in sd.tensors:
                continue
            found = _match(sd, prefix, inner, tops)
            if found is not None:
                key = prefix + counter if counter else None
                out.append(Mirror(prefix, inner, found[0], package, found[1],
                                  sd.tensors.get(key) if key else None, key))
                break
    return out


def recognise(tree: Any) -> Layout | None:
    weights = tree.get("state_dict") if isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict) else tree
    if not isinstance(weights, dict) or not any(isinstance(k, str) and "." in k and _EMA_NAME.search(k.split(".", 1)[0])
                                                for k in weights):
        return None
    sd = as_state_dict(weights)
    mirrors = find_mirrors(sd) if sd is not None else []
    if sd is None or not mirrors:
        return None
    source = "state_dict" if weights is not tree else ""
    layout = lightning.recognise(tree) or Layout("state_dict")
    if "ema" in layout.sections:  # a weight-averaging callback's EMA comes first
        return None
    m = mirrors[0]
    layout.reason = (f"an EMA submodule {m.prefix}{m.inner}* mirroring {m.model_prefix}* "
                     f"({'a ' + layout.name + ' checkpoint' if layout.name != 'state_dict' else 'a state_dict'})")
    layout.sections["model"] = section("model", source, weights, sd)
    where = f"{source}." if source else ""
    layout.sections["ema"] = section("ema", f"{where}{m.prefix}{m.inner}*", m, StateDict(m.tensors))
    return layout
