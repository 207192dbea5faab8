"""Plain JSON values out of untrusted trees, within a node and depth budget.

Reports show metadata (epoch, ``opt``, ``hyper_parameters``) from files that may hold cycles or
memo DAGs; this converter stops at a fixed budget and marks what it cut.
"""

from __future__ import annotations

import math
from typing import Any

from ckpttool.model import GlobalRef, Stub, TensorRef

__all__ = ["to_jsonable", "tensor_summary"]

_NAMESPACES = ("argparse.Namespace", "types.SimpleNamespace")


def tensor_summary(t: TensorRef) -> str:
    return f"tensor({t.dtype}, {list(t.shape)})"


class _Budget:
    def __init__(self, nodes: int) -> None:
        self.nodes = nodes


def _convert(obj: Any, depth: int, budget: _Budget, max_items: int) -> Any:
    budget.nodes -= 1
    if budget.nodes < 0 or depth < 0:
        return "…"
    if obj is None or isinstance(obj, bool | int | str):
        if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > 2**63:
            # past ~4300 digits str() refuses (CPython's guard against quadratic conversion)
            return str(obj) if obj.bit_length() <= 4096 else f"<int of {obj.bit_length()} bits>"
        return obj if not isinstance(obj, str) or len(obj) <= 2000 else obj[:2000] + "…"
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, bytes | bytearray):
        return f"<{len(obj)} bytes>"
    if isinstance(obj, TensorRef):
        if obj.numel == 1 and obj.nbytes <= 16 and obj.storage.source is not None:
            from ckpttool.tensors import scalar_value

            value = scalar_value(obj)
            if value is not None:
                return value
        return tensor_summary(obj)
    if isinstance(obj, GlobalRef):
        return obj.fullname
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(obj.items()):
            if i >= max_items:
                out["…"] = f"{len(obj) - max_items} more"
                break
            out[k if isinstance(k, str) else str(_convert(k, 0, budget, 1))] = _convert(v, depth - 1, budget, max_items)
        return out
    if isinstance(obj, list | tuple | set | frozenset):
        items = list(obj) if not isinstance(obj, set | frozenset) else sorted(obj, key=repr)[:max_items]
        out_list = [_convert(v, depth - 1, budget, max_items) for v in items[:max_items]]
        if len(items) > max_items:
            out_list.append(f"… {len(items) - max_items} more")
        return out_list
    if isinstance(obj, Stub):
        if obj.qualname in _NAMESPACES:
            return _convert(obj.attributes, depth, budget, max_items)
        if obj.qualname.startswith(("datetime.", "pathlib.", "decimal.", "uuid.")) and obj.args:
            return f"{obj.qualname}{tuple(_convert(a, 1, budget, 4) for a in obj.args)!r}"
        return f"<{obj.qualname}>"
    return f"<{type(obj).__name__}>"


def to_jsonable(obj: Any, *, max_nodes: int = 20_000, max_depth: int = 12, max_items: int = 500) -> Any:
    """A JSON-serialisable copy of ``obj``: tensors summarised, foreign objects named."""
    return _convert(obj, max_depth, _Budget(max_nodes), max_items)


