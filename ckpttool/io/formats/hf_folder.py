"""Hugging Face Trainer ``checkpoint-N/`` folders (and Accelerate ``save_state`` folders), read as one checkpoint.

The Trainer saves the model (``model.safetensors``, ``pytorch_model.bin`` or a sharded index),
``optimizer.pt``, ``scheduler.pt``, ``scaler.pt``, ``rng_state*.pth``, ``training_args.bin`` (a
pickled ``TrainingArguments``: read as a stub, never run) and ``trainer_state.json``. Each file
is read lazily by ckpttool's own readers and placed under the key a generic training dict uses
(``model``, ``optimizer``, ``scheduler``, ``scaler``), with ``epoch`` and ``global_step`` lifted
from ``trainer_state.json``; the layout recognisers then find the sections as usual.
Accelerate's ``save_state`` writes the same parts as ``optimizer.bin``, ``scheduler.bin``,
``scaler.pt`` and ``random_states_<rank>.pkl``, without ``trainer_state.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, ResourceLimit, UnreadableCheckpoint
from ckpttool.model import PickledDict

__all__ = ["read_hf_trainer", "is_trainer_folder", "MODEL_FILES", "MAX_JSON"]

MAX_JSON = 50_000_000
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
               "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")
_PARTS = (("optimizer", "optimizer.pt"), ("optimizer", "optimizer.bin"), ("scheduler", "scheduler.pt"),
          ("scheduler", "scheduler.bin"), ("scaler", "scaler.pt"), ("training_args", "training_args.bin"))


def is_trainer_folder(folder: Path) -> bool:
    """A Trainer folder (``trainer_state.json``) or an Accelerate one (a model file beside an optimizer)."""
    if (folder / "trainer_state.json").is_file():
        return True
    has_model = any((folder / m).is_file() for m in MODEL_FILES)
    return has_model and any((folder / n).is_file() for n in ("optimizer.pt", "optimizer.bin"))


def _json(path: Path) -> Any:
    if path.stat().st_size > MAX_JSON:
        raise ResourceLimit(f"{path.name} is larger than {MAX_JSON} bytes", path=path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnreadableCheckpoint(f"{path.name} is not valid JSON: {exc}", path=path) from None


def read_hf_trainer(folder: Path) -> Any:
    """One tree for the whole Trainer folder (see the module docstring)."""
    from ckpttool.io import TreeRead, read_tree

    tree = PickledDict(ordered=True)
    state = _json(folder / "trainer_state.json") if (folder / "trainer_state.json").is_file() else None
    loads: list[Any] = []
    anomalies: list[str] = []
    members: dict[str, Any] = {"files": sorted(p.name for p in folder.iterdir())}

    def part(name: str) -> Any:
        try:
            read = read_tree(folder / name)
        except CkptError as exc:
            exc.message = f"{name}: {exc.message}"
            raise
        loads.extend(read.loads)
        anomalies.extend(f"{name}: {a}" for a in read.anomalies)
        if read.format in ("safetensors", "sharded"):
            members["__metadata__"] = read.members.get("__metadata__") or {}
        return read.tree

    model = next((m for m in MODEL_FILES if (folder / m).is_file()), None)
    if model is not None:
        tree["model"] = part(model)
        members["model_file"] = model
    for key, name in _PARTS:
        if (folder / name).is_file() and key not in tree:
            tree[key] = part(name)
    rng = sorted(p.name for p in [*folder.glob("rng_state*.pth"), *folder.glob("random_states_*.pkl")])
    if rng:
        tree["rng_state"] = part(rng[0]) if len(rng) == 1 else {n: part(n) for n in rng}
    if isinstance(state, dict):
        for key in ("epoch", "global_step"):
            if key in state:
                tree[key] = state[key]
    if state is not None:
        tree["trainer_state"] = state
    if (folder / "config.json").is_file():
        tree["config"] = _json(folder / "config.json")
    if (folder / "adapter_config.json").is_file():  # a PEFT run: the model file is the adapter
        tree["adapter_config"] = _json(folder / "adapter_config.json")
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return TreeRead(folder, "hf-trainer", tree, size, loads, anomalies, members=members)
