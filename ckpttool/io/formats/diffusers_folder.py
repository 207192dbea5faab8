"""diffusers pipeline folders (``save_pretrained``): ``model_index.json`` and one folder per component.

``model_index.json`` names each component with its ``[library, class]``; components with weights
(``unet/``, ``vae/``, ``text_encoder/``...) keep them in ``diffusion_pytorch_model.safetensors``
(diffusers models) or ``model.safetensors`` (transformers models), sharded with an index or as
``.bin`` in older folders. Each component's file is read lazily by ckpttool's own readers and
placed under the component's name; the layout makes one section per component.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, UnreadableCheckpoint
from ckpttool.io.formats.hf_folder import _json
from ckpttool.model import PickledDict

__all__ = ["is_diffusers_folder", "read_diffusers", "WEIGHT_FILES", "MARKER"]

MARKER = "diffusers"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
                "model.safetensors.index.json", "model.safetensors",
                "diffusion_pytorch_model.bin.index.json", "diffusion_pytorch_model.bin",
                "pytorch_model.bin.index.json", "pytorch_model.bin")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def is_diffusers_folder(folder: Path) -> bool:
    """A folder with the ``model_index.json`` that ``DiffusionPipeline.save_pretrained`` writes."""
    return (folder / "model_index.json").is_file()


def _weights_file(folder: Path) -> tuple[Path | None, list[str]]:
    """The component's weights file, preferring the default over variants (``.fp16.``), and notes."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name, []
    variants = sorted(p.name for p in folder.glob("*.safetensors") if p.is_file())
    if variants:
        return folder / variants[0], [f"{folder.name}: no default weights file; read the variant {variants[0]}"]
    return None, []


def read_diffusers(folder: Path) -> Any:
    """One tree for the whole pipeline: component name -> its weights tree, plus the index and configs."""
    from ckpttool.io import TreeRead, read_tree

    index = _json(folder / "model_index.json")
    if not isinstance(index, dict):
        raise UnreadableCheckpoint("model_index.json is not a JSON object", path=folder)
    tree = PickledDict(ordered=True)
    loads: list[Any] = []
    anomalies: list[str] = []
    components: dict[str, str] = {}
    configs: dict[str, Any] = {}
    size = (folder / "model_index.json").stat().st_size
    for name, spec in index.items():
        if name.startswith("_") or not _NAME.fullmatch(name) or name in (".", ".."):
            continue
        sub = folder / name
        if not sub.is_dir() or not isinstance(spec, list) or spec[:1] == [None]:
            continue
        path, notes = _weights_file(sub)
        anomalies.extend(notes)
        if path is None:
            continue
        try:
            read = read_tree(path)
        except CkptError as exc:
            exc.message = f"{name}/{path.name}: {exc.message}"
            raise
        loads.extend(read.loads)
        anomalies.extend(f"{name}/{path.name}: {a}" for a in read.anomalies)
        size += read.size
        tree[name] = read.tree
        components[name] = f"{name}/{path.name}"
        for config in ("config.json",):
            if (sub / config).is_file():
                configs[name] = _json(sub / config)
    if not components:
        raise UnreadableCheckpoint("model_index.json names no component folder with weights", path=folder)
    tree["model_index"] = index
    tree["component_configs"] = configs
    tree.attrs[MARKER] = components
    members = {"components": components, "pipeline": index.get("_class_name")}
    return TreeRead(folder, "diffusers", tree, size, loads, anomalies, members=members)
