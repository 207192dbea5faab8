"""PEFT adapter folders (``PeftModel.save_pretrained``): ``adapter_config.json`` + the adapter weights.

The weights are ``adapter_model.safetensors`` (or ``adapter_model.bin``, a ``torch.save`` file, when
saved with ``safe_serialization=False``), read by ckpttool's own readers; the config says what the
adapter is (type, rank ``r``, ``lora_alpha``, target modules, base model), which the layout shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, UnreadableCheckpoint
from ckpttool.io.formats.hf_folder import _json
from ckpttool.model import PickledDict

__all__ = ["is_peft_folder", "read_peft", "ADAPTER_FILES", "MARKER"]

MARKER = "peft"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def is_peft_folder(folder: Path) -> bool:
    """``adapter_config.json`` beside an adapter weights file."""
    return (folder / "adapter_config.json").is_file() and any((folder / n).is_file() for n in ADAPTER_FILES)


def read_peft(folder: Path) -> Any:
    """The adapter weights under ``adapter`` and ``adapter_config.json`` under ``config``."""
    from ckpttool.io import TreeRead, read_tree

    config = _json(folder / "adapter_config.json")
    if not isinstance(config, dict):
        raise UnreadableCheckpoint("adapter_config.json is not a JSON object", path=folder)
    name = next(n for n in ADAPTER_FILES if (folder / n).is_file())
    try:
        read = read_tree(folder / name)
    except CkptError as exc:
        exc.message = f"{name}: {exc.message}"
        raise
    tree = PickledDict(ordered=True)
    tree["adapter"] = read.tree
    tree["config"] = config
    tree.attrs[MARKER] = name
    size = read.size + (folder / "adapter_config.json").stat().st_size
    members = {"adapter_file": name, "__metadata__": read.members.get("__metadata__") or {}}
    return TreeRead(folder, "peft", tree, size, read.loads, [f"{name}: {a}" for a in read.anomalies],
                    members=members)
