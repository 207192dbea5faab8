"""Layout recognisers: which keys of a checkpoint hold the model, the EMA, the optimizer...

One small recogniser per layout, tried in the order of ``RECOGNISERS`` (most specific first);
adding a layout means adding one module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ckpttool.layouts import (
    averaged,
    deepspeed,
    diffusers,
    ema_packages,
    ema_submodule,
    generic,
    lightning,
    mmengine,
    peft,
    plain,
    stable_diffusion,
    standalone,
    timm,
    torch_export,
    yolo,
)
from ckpttool.layouts.base import Layout, section
from ckpttool.layouts.meta import collect_meta
from ckpttool.model import SECTION_KINDS, Checkpoint
from ckpttool.modules import ScriptClassInfo, is_module, module_state_dict

__all__ = ["recognise", "RECOGNISERS", "Layout"]

RECOGNISERS: tuple[tuple[str, Callable[[Any], Layout | None]], ...] = (
    ("deepspeed", deepspeed.recognise),
    ("torch-export", torch_export.recognise),
    ("diffusers-pipeline", diffusers.recognise),
    ("peft-adapter", peft.recognise),
    ("stable-diffusion", stable_diffusion.recognise),
    ("ema-pytorch", ema_packages.recognise),
    ("ema-submodule", ema_submodule.recognise),
    ("lightning", lightning.recognise),
    ("mmengine", mmengine.recognise),
    ("timm", timm.recognise),
    ("yolo", yolo.recognise),
    ("averaged-model", averaged.recognise),
    ("plain", plain.recognise),
    ("training-dict", generic.recognise),
    ("standalone", standalone.recognise),
)


def recognise(ckpt: Checkpoint, script: ScriptClassInfo | None = None) -> Layout:
    """Fill ``ckpt.layout``, ``ckpt.sections`` and ``ckpt.meta`` from its tree."""
    layout = Layout("unknown", reason="no known layout matched")
    if script is not None and is_module(ckpt.tree):
        sd = module_state_dict(ckpt.tree, script)
        layout = Layout("torchscript", {"model": section("model", "", ckpt.tree, sd)},
                        reason="a scripted module")
    for _, fn in RECOGNISERS if layout.name == "unknown" else ():
        found = fn(ckpt.tree)
        if found is not None:
            layout = found
            break
    ckpt.layout = layout.name
    order = {kind: i for i, kind in enumerate(SECTION_KINDS)}
    ckpt.sections = dict(sorted(layout.sections.items(), key=lambda kv: order.get(kv[0], len(order))))
    ckpt.meta = collect_meta(ckpt.tree, layout)
    if "meta" not in ckpt.sections and ckpt.meta:
        ckpt.sections["meta"] = section("meta", "", ckpt.meta)
    return layout
