"""Run in a child process: load two checkpoints with ``torch.load(weights_only=False)`` and compare.

Usage: ``python compare_trees.py ORIGINAL REWRITTEN RENAMES_JSON [LEAVE_OUT_JSON]``.
``RENAMES_JSON`` maps old dotted module paths to new ones (``{"conv1": "stem"}``); ``LEAVE_OUT_JSON``
lists top-level keys the rewrite was meant to change or drop (left out of both trees; the original must have
them). Dict keys and the names of a module's children, parameters and buffers are compared after
the renames; everything else must be equal and of the same type: tensors (dtype, shape, stride,
requires_grad, class, bytes), numpy arrays, objects of foreign classes (class and ``__dict__``),
functions and methods (equality). Prints one JSON document: ``{"problems": [...], "nodes": N,
"types": [...]}``.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
import torch


def _rename(key: Any, renames: dict[str, str]) -> Any:
    if not isinstance(key, str):
        return key
    for old, new in renames.items():
        for pre in ("", *{key[: i + 1] for i, c in enumerate(key) if c == "."}):
            rest = key[len(pre):]
            if rest == old or rest.startswith(old + "."):
                return pre + new + rest[len(old):]
    return key


def _child(prefix: str, name: str, renames: dict[str, str]) -> str:
    """The new name of child ``name`` of the module at ``prefix`` (both as in the original)."""
    new = _rename(prefix + name, renames)
    new_prefix = _rename(prefix[:-1], renames) + "." if prefix else ""
    return new[len(new_prefix):] if new.startswith(new_prefix) else new


class Compare:
    def __init__(self, renames: dict[str, str]) -> None:
        self.renames = renames
        self.problems: list[str] = []
        self.seen: set[tuple[int, int]] = set()
        self.nodes = 0
        self.types: set[str] = set()

    def fail(self, path: str, what: str) -> None:
        self.problems.append(f"{path or '<root>'}: {what}")

    def same(self, a: Any, b: Any, path: str, module: str | None = None) -> None:
        self.nodes += 1
        self.types.add(f"{type(a).__module__}.{type(a).__qualname__}")
        if type(a) is not type(b):
            return self.fail(path, f"type {type(a).__qualname__} became {type(b).__qualname__}")
        if (id(a), id(b)) in self.seen:
            return None
        self.seen.add((id(a), id(b)))
        if isinstance(a, torch.Tensor):
            return self.tensor(a, b, path)
        if isinstance(a, np.ndarray):
            if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                self.fail(path, "numpy array differs")
            return None
        if isinstance(a, torch.nn.Module):
            return self.obj(a, b, path, module if module is not None else "")
        if isinstance(a, dict):
            return self.mapping(a, b, path, module)
        if isinstance(a, list | tuple):
            if len(a) != len(b):
                return self.fail(path, f"length {len(a)} became {len(b)}")
            for i, (x, y) in enumerate(zip(a, b)):
                self.same(x, y, f"{path}[{i}]")
            return None
        if isinstance(a, float) and math.isnan(a):
            return None if math.isnan(b) else self.fail(path, "nan became a number")
        if hasattr(a, "__dict__") and not isinstance(a, type) and not callable(a):
            return self.obj(a, b, path, None)
        if a != b:
            self.fail(path, f"{a!r} became {b!r}")
        return None

    def tensor(self, a: torch.Tensor, b: torch.Tensor, path: str) -> None:
        meta_a = (a.dtype, tuple(a.shape), a.stride(), a.requires_grad, a.storage_offset())
        meta_b = (b.dtype, tuple(b.shape), b.stride(), b.requires_grad, b.storage_offset())
        if meta_a != meta_b:
            return self.fail(path, f"tensor {meta_a} became {meta_b}")
        if a.numel() and not torch.equal(a.detach().reshape(-1).view(torch.uint8),
                                         b.detach().reshape(-1).view(torch.uint8)):
            self.fail(path, "tensor bytes differ")
        return None

    def mapping(self, a: dict[Any, Any], b: dict[Any, Any], path: str, module: str | None) -> None:
        def new_key(k: Any) -> Any:
            return _child(module, k, self.renames) if module is not None else _rename(k, self.renames)

        keys = [new_key(k) for k in a]
        if keys != list(b):
            return self.fail(path, f"keys {keys[:6]}... became {list(b)[:6]}...")
        for k, nk in zip(a, keys):
            self.same(a[k], b[nk], f"{path}.{k}")
        if hasattr(a, "__dict__"):
            self.same(vars(a), vars(b), f"{path}.__dict__")
        return None

    def obj(self, a: Any, b: Any, path: str, module: str | None) -> None:
        da, db = vars(a), vars(b)
        if list(da) != list(db):
            return self.fail(path, f"attributes {list(da)} became {list(db)}")
        for name in da:
            if module is not None and name in ("_parameters", "_buffers"):
                self.mapping(da[name], db[name], f"{path}.{name}", module)
            elif module is not None and name == "_modules":
                self.modules(da[name], db[name], f"{path}.{name}", module)
            else:
                self.same(da[name], db[name], f"{path}.{name}")
        return None

    def modules(self, a: dict[str, Any], b: dict[str, Any], path: str, module: str) -> None:
        keys = [_child(module, k, self.renames) for k in a]
        if keys != list(b):
            return self.fail(path, f"children {keys} became {list(b)}")
        for k, nk in zip(a, keys):
            if type(a[k]) is not type(b[nk]):
                self.fail(f"{path}.{k}", f"type {type(a[k]).__qualname__} became {type(b[nk]).__qualname__}")
            elif a[k] is not None and (id(a[k]), id(b[nk])) not in self.seen:
                self.seen.add((id(a[k]), id(b[nk])))
                self.types.add(f"{type(a[k]).__module__}.{type(a[k]).__qualname__}")
                self.obj(a[k], b[nk], f"{path}.{k}", f"{module}{k}.")
        return None


def main() -> None:
    original, rewritten, renames = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    leave_out = json.loads(sys.argv[4]) if len(sys.argv) > 4 else []
    a = torch.load(original, weights_only=False, map_location="cpu")
    b = torch.load(rewritten, weights_only=False, map_location="cpu")
    cmp = Compare(renames)
    if leave_out:
        if type(a) is not type(b):
            cmp.fail("", f"type {type(a).__qualname__} became {type(b).__qualname__}")
        missing = [k for k in leave_out if k not in a]
        if missing:
            cmp.fail("", f"left-out keys missing: {missing}")
        a = {k: v for k, v in a.items() if k not in leave_out}
        b = {k: v for k, v in b.items() if k not in leave_out}
    cmp.same(a, b, "")
    print(json.dumps({"problems": cmp.problems[:40], "nodes": cmp.nodes, "types": sorted(cmp.types)}))


if __name__ == "__main__":
    main()
