"""``torch.optim.swa_utils.AveragedModel.state_dict()``: ``module.``-prefixed keys plus ``n_averaged``."""

from __future__ import annotations

from typing import Any

from ckpttool.layouts.base import Layout, as_state_dict, section, strip_prefix


def recognise(tree: Any) -> Layout | None:
    if not isinstance(tree, dict) or "n_averaged" not in tree:
        return None
    sd = as_state_dict(tree)
    others = [k for k in tree if k != "n_averaged"]
    if sd is None or not others or not all(isinstance(k, str) and k.startswith("module.") for k in others):
        return None
    ema = strip_prefix(sd, "module.", drop=("n_averaged",))
    return Layout("averaged-model", {"ema": section("ema", "module.*", tree, ema),
                                     "meta": section("meta", "n_averaged", {"n_averaged": tree["n_averaged"]})},
                  reason="module.-prefixed tensors with an n_averaged counter")
