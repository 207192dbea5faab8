"""State dicts out of pickled ``nn.Module`` stubs and TorchScript module objects.

``Module.state_dict()`` order: own parameters (skipping None), own persistent buffers, then each
child depth-first. A pickled module keeps ``_parameters``, ``_buffers``,
``_non_persistent_buffers_set`` and ``_modules`` in its ``__dict__``; a TorchScript object keeps
tensors and children as plain attributes, with the parameter and buffer names in its class code.
"""

from __future__ import annotations

from typing import Any

from ckpttool.errors import ResourceLimit
from ckpttool.model import CompositeTensor, StateDict, Stub, TensorRef
from ckpttool.tree import MAX_DEPTH

__all__ = ["module_state_dict", "is_module", "ScriptClassInfo", "BUFFER_LEAVES", "is_buffer_name"]

# Leaf names of the buffers torch's own norm layers register: when a layout does not record which
# keys are parameters, these are the ones known to be buffers.
BUFFER_LEAVES = frozenset({"running_mean", "running_var", "num_batches_tracked"})


def is_buffer_name(key: str) -> bool:
    """True for ``...bn.running_mean`` and friends: buffers by name, whatever the layout says."""
    return key.rpartition(".")[2] in BUFFER_LEAVES

# class qualname -> (parameter names, buffer names), parsed from a TorchScript archive's code/.
ScriptClassInfo = dict[str, tuple[list[str], list[str]]]


def is_module(obj: Any) -> bool:
    """True for a pickled ``nn.Module`` stub or a TorchScript module object."""
    return isinstance(obj, Stub) and (obj.is_module or obj.qualname.startswith("__torch__."))


_Own = tuple[list[tuple[str, Any, bool]], list[tuple[str, Any]]]


def _own_tensors(stub: Stub, script: ScriptClassInfo | None) -> _Own:
    """Own (name, tensor, is_parameter) entries and (name, child) modules of one module."""
    attrs = stub.attributes
    if stub.is_module:
        tensors: list[tuple[str, Any, bool]] = []
        params = attrs.get("_parameters")
        buffers = attrs.get("_buffers")
        skip = attrs.get("_non_persistent_buffers_set")
        skip = set(skip) if isinstance(skip, set | frozenset | list | tuple) else set()
        if isinstance(params, dict):
            tensors += [(k, v, True) for k, v in params.items() if v is not None]
        if isinstance(buffers, dict):
            tensors += [(k, v, False) for k, v in buffers.items() if v is not None and k not in skip]
        mods = attrs.get("_modules")
        kids = [(k, v) for k, v in mods.items() if v is not None] if isinstance(mods, dict) else []
        return tensors, kids
    names = (script or {}).get(stub.qualname)
    if names is not None:
        pnames, bnames = names
        tensors = [(k, attrs[k], True) for k in pnames if isinstance(attrs.get(k), TensorRef)]
        tensors += [(k, attrs[k], False) for k in bnames if isinstance(attrs.get(k), TensorRef)]
    else:
        tensors = [(k, v, False) for k, v in attrs.items() if isinstance(v, TensorRef)]
    kids = [(k, v) for k, v in attrs.items() if isinstance(v, Stub) and v.qualname.startswith("__torch__.")]
    return tensors, kids


def module_state_dict(root: Stub, script: ScriptClassInfo | None = None) -> StateDict:
    """The state_dict ``root.state_dict()`` would return, without running any of its code."""
    tensors: dict[str, TensorRef] = {}
    composites: dict[str, CompositeTensor] = {}
    params: set[str] = set()
    known = root.is_module or bool(script)
    stack: list[tuple[str, Stub, int]] = [("", root, 0)]
    budget = 1_000_000
    while stack:
        prefix, mod, depth = stack.pop()
        budget -= 1
        if depth > MAX_DEPTH or budget < 0:
            raise ResourceLimit("modules nested too deeply or shared too often (a cycle?)")
        own, kids = _own_tensors(mod, script)
        for name, value, is_param in own:
            if isinstance(value, TensorRef | CompositeTensor):
                (tensors if isinstance(value, TensorRef) else composites)[prefix + name] = value  # type: ignore[index]
                if is_param:
                    params.add(prefix + name)
        for name, child in reversed(kids):
            if isinstance(child, Stub):
                stack.append((f"{prefix}{name}.", child, depth + 1))
    return StateDict(tensors=tensors, parameters=frozenset(params) if known else None, composites=composites)
