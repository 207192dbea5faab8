"""A Hugging Face Trainer ``checkpoint-N/`` folder written with DeepSpeed, read as one checkpoint.

With a DeepSpeed config the Trainer's ``_save_checkpoint`` hands the weights and the optimizer to
``engine.save_checkpoint(checkpoint-N)``: the folder holds DeepSpeed's ``latest`` and tag folder
(``global_stepN/``, the ZeRO partitions), beside the Trainer's own ``trainer_state.json``,
``training_args.bin``, ``rng_state*.pth``, ``config.json``, ``scheduler.pt`` (when the Trainer,
not DeepSpeed, owns the scheduler) and often a 16-bit ``model.safetensors`` gathered for
``save_pretrained``. The DeepSpeed reader gives the sections (the consolidated fp32 weights, the
16-bit module, the optimizer, the loss scaler); this module adds the Trainer's state beside them,
so the fp32 master weights are never passed over for the 16-bit copy, and the Trainer's files
still show under ``files``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import CkptError
from ckpttool.io.formats.deepspeed import is_deepspeed_folder, read_deepspeed
from ckpttool.io.formats.hf_folder import MODEL_FILES, _json

if TYPE_CHECKING:  # pragma: no cover
    from ckpttool.io import TreeRead

__all__ = ["is_trainer_deepspeed", "read_trainer_deepspeed"]

_STATE = "trainer_state.json"


def is_trainer_deepspeed(folder: Path) -> bool:
    """A Trainer folder (``trainer_state.json``) that also holds a DeepSpeed checkpoint."""
    return folder.is_dir() and (folder / _STATE).is_file() and is_deepspeed_folder(folder)


def read_trainer_deepspeed(folder: Path) -> TreeRead:
    """The DeepSpeed tree of ``folder`` plus the Trainer's state and files (see the module docstring)."""
    from ckpttool.io import read_tree

    read = read_deepspeed(folder)
    tree, files = read.tree, read.tree["files"]
    size = read.size

    def part(name: str) -> Any:
        nonlocal size
        try:
            sub = read_tree(folder / name)
        except CkptError as exc:
            exc.message = f"{name}: {exc.message}"
            raise
        for load in sub.loads:
            load.where = f"{name}: {load.where}"
        read.loads.extend(sub.loads)
        read.anomalies.extend(f"{name}: {a}" for a in sub.anomalies)
        size += sub.size
        files[name] = sub.tree
        return sub.tree

    state = _json(folder / _STATE)
    tree["trainer_state"] = state
    if isinstance(state, dict):
        for key in ("epoch", "global_step"):  # a client-state 'epoch' DeepSpeed saved stays as it was
            if key in state and key not in tree:
                tree[key] = state[key]
    if (folder / "training_args.bin").is_file():
        tree["training_args"] = part("training_args.bin")
    if (folder / "scheduler.pt").is_file():
        scheduler = part("scheduler.pt")
        if tree.get("lr_scheduler") is None:  # the Trainer's own scheduler, not handed to DeepSpeed
            tree["lr_scheduler"] = scheduler
            read.members["scheduler_file"] = "scheduler.pt"
    rng = sorted(p.name for p in folder.glob("rng_state*.pth"))
    for name in rng:
        part(name)
    if rng:
        tree["rng_state"] = files[rng[0]] if len(rng) == 1 else {n: files[n] for n in rng}
    if (folder / "config.json").is_file():
        tree["model_config"] = _json(folder / "config.json")
    model = next((m for m in MODEL_FILES if (folder / m).is_file()), None)
    if model is not None:  # the Trainer's 16-bit save_pretrained copy: seen, but not the model section
        part(model)
        read.members["trainer_model_file"] = model
    read.members["trainer"] = True
    read.members["trainer_files"] = sorted(p.name for p in folder.iterdir() if p.is_file())
    read.size = size
    return read
