"""Checkpoints that are more than one file: shard indexes, DCP folders, Hugging Face Trainer, diffusers
pipeline and PEFT adapter folders.

``read_folder`` is the hook ``read_tree`` calls first: it returns a ``TreeRead`` for a directory
or an ``*.index.json`` it recognises and None for anything else, which then goes down the
single-file path (where a directory is reported as such).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ckpttool.io import TreeRead

__all__ = ["read_folder", "folder_kind"]


def folder_kind(path: Path) -> str | None:
    """``sharded``, ``dcp``, ``diffusers``, ``hf-trainer``, ``deepspeed``, ``peft`` or ``model-folder`` (one
    ``save_pretrained`` weights file, read as that file) for a path this module reads, else None."""
    if path.name.endswith(".index.json") and path.is_file():
        return "sharded"
    if not path.is_dir():
        return None
    if (path / ".metadata").is_file():
        return "dcp"
    from ckpttool.io.formats.diffusers_folder import is_diffusers_folder

    if is_diffusers_folder(path):
        return "diffusers"
    from ckpttool.io.formats.deepspeed import is_deepspeed_folder
    from ckpttool.io.formats.hf_folder import is_trainer_folder

    if is_deepspeed_folder(path):  # a Trainer folder written with DeepSpeed included: its weights are there
        return "deepspeed"
    if is_trainer_folder(path):
        return "hf-trainer"
    from ckpttool.io.formats.peft_folder import is_peft_folder

    if is_peft_folder(path):
        return "peft"
    from ckpttool.io.formats.sharded import find_index

    if find_index(path) is not None:
        return "sharded"
    return "model-folder" if _model_file(path) is not None else None


def _model_file(folder: Path) -> Path | None:
    """The one weights file of a ``save_pretrained`` model folder (``unet/``, a transformers model)."""
    from ckpttool.io.formats.diffusers_folder import WEIGHT_FILES

    found = [folder / n for n in WEIGHT_FILES if not n.endswith(".json") and (folder / n).is_file()]
    return found[0] if len(found) == 1 else None


def read_folder(path: Path) -> TreeRead | None:
    """The tree of a multi-file checkpoint at ``path``, or None when ``path`` is not one."""
    kind = folder_kind(path)
    if kind == "sharded":
        from ckpttool.io.formats.sharded import find_index, read_sharded

        index = path if path.is_file() else find_index(path)
        assert index is not None
        return read_sharded(index)
    if kind == "dcp":
        from ckpttool.io.formats.dcp import read_dcp

        return read_dcp(path)
    if kind == "hf-trainer":
        from ckpttool.io.formats.hf_folder import read_hf_trainer

        return read_hf_trainer(path)
    if kind == "deepspeed":
        from ckpttool.io.formats.deepspeed import read_deepspeed
        from ckpttool.io.formats.trainer_deepspeed import is_trainer_deepspeed, read_trainer_deepspeed

        return read_trainer_deepspeed(path) if is_trainer_deepspeed(path) else read_deepspeed(path)
    if kind == "diffusers":
        from ckpttool.io.formats.diffusers_folder import read_diffusers

        return read_diffusers(path)
    if kind == "peft":
        from ckpttool.io.formats.peft_folder import read_peft

        return read_peft(path)
    if kind == "model-folder":
        from ckpttool.io import read_tree

        model = _model_file(path)
        assert model is not None
        return read_tree(model)
    return None
