"""The metadata a report shows: top-level scalars and small config dicts, outside the sections."""

from __future__ import annotations

from typing import Any

from ckpttool.jsonable import to_jsonable
from ckpttool.layouts.base import Layout
from ckpttool.model import Stub, TensorRef
from ckpttool.modules import is_module

__all__ = ["collect_meta"]

_CONFIG_KEYS = ("opt", "hyper_parameters", "hparams", "args", "train_args", "config", "cfg", "meta",
                "hyp", "loops", "trainer_state", "adapter_config")
_SKIP = ("state_dict", "optimizer_states", "lr_schedulers", "callbacks", "message_hub")


def _is_small(value: Any) -> bool:
    if isinstance(value, TensorRef):
        return value.numel == 1
    return value is None or isinstance(value, bool | int | float | str)


def collect_meta(tree: Any, layout: Layout) -> dict[str, Any]:
    """Top-level scalars and config dicts of ``tree`` not already in a section."""
    if not isinstance(tree, dict) or layout.name in ("state_dict", "averaged-model"):
        return {}
    used = {s.source.split(".", 1)[0] for s in layout.sections.values() if s.source}
    meta: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or key in used or key in _SKIP:
            continue
        if _is_small(value):
            meta[key] = to_jsonable(value)
        elif key in _CONFIG_KEYS and (isinstance(value, dict) or (isinstance(value, Stub) and not is_module(value))):
            meta[key] = to_jsonable(value, max_depth=4, max_items=200)
    return meta
