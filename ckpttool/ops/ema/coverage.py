"""Which model keys get an EMA value, which are copied from the raw model, and what does not fit.

The output keeps the model's keys in the model's order. A key the EMA covers takes the EMA tensor;
a buffer the EMA does not track (torch-ema and LitEma track parameters only) is copied from the
raw model; a parameter without an EMA value is copied too but is reported, as is every EMA key
the model does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.dtypes import is_floating
from ckpttool.model import StateDict, TensorRef
from ckpttool.modules import is_buffer_name

__all__ = ["Coverage", "assemble"]


@dataclass
class Coverage:
    """EMA keys vs model keys."""

    ema_keys: int = 0
    model_keys: int = 0
    from_ema: int = 0
    buffers_copied: list[str] = field(default_factory=list)
    parameters_missing: list[str] = field(default_factory=list)
    out_of_scope: int = 0
    extra: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ema_keys": self.ema_keys, "model_keys": self.model_keys, "from_ema": self.from_ema,
                "buffers_copied": list(self.buffers_copied), "parameters_missing": list(self.parameters_missing),
                "out_of_scope": self.out_of_scope, "extra": list(self.extra),
                "shape_mismatch": list(self.shape_mismatch)}


def _is_parameter(model: StateDict, key: str) -> bool:
    kind = model.kind_of(key)
    if kind is not None:
        return kind == "parameter"
    return is_floating(model[key].dtype) and not is_buffer_name(key)


def assemble(ema: StateDict, model: StateDict | None, scope: str = "") -> tuple[dict[str, TensorRef], Coverage]:
    """The output state_dict (model keys, EMA values where there are some) and its coverage."""
    cov = Coverage(ema_keys=len(ema))
    if model is None:
        cov.model_keys = cov.from_ema = len(ema)
        return dict(ema.tensors), cov
    cov.model_keys = len(model)
    out: dict[str, TensorRef] = {}
    for key, raw in model.tensors.items():
        value = ema.tensors.get(key)
        if value is not None and value.shape != raw.shape:
            cov.shape_mismatch.append(key)
        if value is not None:
            out[key] = value
            cov.from_ema += 1
            continue
        out[key] = raw
        if not key.startswith(scope):
            cov.out_of_scope += 1
        elif _is_parameter(model, key):
            cov.parameters_missing.append(key)
        else:
            cov.buffers_copied.append(key)
    cov.extra = [k for k in ema if k not in model.tensors]
    return out, cov
