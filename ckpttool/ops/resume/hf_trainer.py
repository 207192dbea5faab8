"""Hugging Face Trainer ``checkpoint-N/`` folders, read as one checkpoint for validate-resume.

The folder holds ``trainer_state.json`` (``global_step``, ``epoch``, ``max_steps``,
``num_train_epochs``), ``optimizer.pt``, ``scheduler.pt`` (a LambdaLR whose lambda is a
``functools.partial`` over the *new* ``num_training_steps`` when resumed), ``scaler.pt``,
``training_args.bin`` (a pickled ``TrainingArguments``: ``lr_scheduler_type``, ``warmup_steps``)
and the weights. Every file goes through ckpttool's safe reader.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, UnreadableCheckpoint
from ckpttool.model import Checkpoint, Section, Stub
from ckpttool.ops.resume.context import ResumeContext, as_int, attrs
from ckpttool.ops.resume.torch_schedulers import number

__all__ = ["is_trainer_folder", "open_trainer_folder", "read_hf_context"]

_STATE_LIMIT = 64 * 1024 * 1024
_PARTS = (("optimizer.pt", "optimizer"), ("scheduler.pt", "scheduler"), ("scaler.pt", "scaler"),
          ("training_args.bin", "training_args"))
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")


def is_trainer_folder(path: Path) -> bool:
    """A folder with a ``trainer_state.json`` (and no DeepSpeed checkpoint, which ``ckpttool.open`` reads whole)."""
    from ckpttool.io.formats.deepspeed import is_deepspeed_folder

    return path.is_dir() and (path / "trainer_state.json").is_file() and not is_deepspeed_folder(path)


def open_trainer_folder(path: Path) -> Checkpoint:
    """One ``Checkpoint`` (layout ``hf-trainer``) over the files of a Trainer checkpoint folder.

    Raises:
        CkptError: a file of the folder is unreadable, or trainer_state.json is not JSON.
    """
    import ckpttool

    state_file = path / "trainer_state.json"
    if state_file.stat().st_size > _STATE_LIMIT:
        raise UnreadableCheckpoint("trainer_state.json is larger than 64 MiB", path=state_file)
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableCheckpoint(f"trainer_state.json is not JSON: {exc}", path=state_file) from None
    if not isinstance(state, dict):
        raise UnreadableCheckpoint("trainer_state.json does not hold an object", path=state_file)
    tree: dict[str, Any] = {"trainer_state": state}
    ckpt = Checkpoint(path=path, format="hf-trainer", tree=tree, file_size=state_file.stat().st_size,
                      layout="hf-trainer")
    for name, kind in _PARTS:
        part = path / name
        if part.is_file():
            sub = _open(ckpttool, part)
            tree[kind] = sub.tree
            ckpt.file_size += sub.file_size
            ckpt.findings.extend(sub.findings)
            if kind != "training_args":
                ckpt.sections[kind] = Section(kind=kind, source=kind, value=sub.tree)
    for name in _WEIGHTS:
        part = path / name
        if part.is_file():
            sub = _open(ckpttool, part)
            model = sub.sections.get("model")
            if model is not None:
                tree["model"] = sub.tree
                ckpt.sections["model"] = Section(kind="model", source="model", value=sub.tree,
                                                 state_dict=model.state_dict)
            ckpt.file_size += sub.file_size
            break
    return ckpt


def _open(ckpttool: Any, part: Path) -> Checkpoint:
    try:
        return ckpttool.open(part)
    except CkptError as exc:
        if exc.path is None:
            exc.path = part
        raise


def _hf_schedule(args: dict[str, Any], max_steps: int | None) -> tuple[str, str]:
    """transformers' ``get_scheduler`` lambdas as expressions in x (step) and epochs (total steps)."""
    kind = args.get("lr_scheduler_type", "linear")
    if isinstance(kind, Stub):  # SchedulerType enum: reduced to SchedulerType('linear')
        kind = kind.args[0] if kind.args else kind.attributes.get("_value_", "linear")
    kind = str(kind).rsplit(".", 1)[-1].lower()
    warmup = as_int(args.get("warmup_steps")) or 0
    ratio = number(args.get("warmup_ratio")) or 0.0
    if not warmup and ratio and max_steps:
        warmup = math.ceil(ratio * max_steps)
    w = warmup
    decay = {
        "linear": f"max(0.0, (epochs - x) / max(1, epochs - {w}))",
        "cosine": f"max(0.0, 0.5 * (1.0 + cos(pi * 0.5 * 2.0 * ((x - {w}) / max(1, epochs - {w})))))",
        "constant": "1.0", "constant_with_warmup": "1.0",
    }.get(kind)
    if decay is None:
        return f"{kind} (not modelled; give --lr-lambda)", ""
    expr = f"x / max(1.0, {w}) if x < {w} else {decay}" if w else decay
    return f"transformers {kind}" + (f" with {w} warm-up steps" if w else ""), expr


def read_hf_context(tree: dict[str, Any], ctx: ResumeContext) -> None:
    """Fill ``ctx`` from ``trainer_state.json`` and ``training_args.bin`` (see the module docstring)."""
    state = attrs(tree.get("trainer_state"))
    step, max_steps = as_int(state.get("global_step")), as_int(state.get("max_steps"))
    epochs = number(state.get("num_train_epochs"))
    ctx.global_step, ctx.per_step = step, True
    k = round(max_steps / epochs) if max_steps and epochs else None
    ctx.steps_per_epoch = k or None
    if step is not None and k:
        ctx.start_epoch = ctx.epochs_done = step // k
        skip = f"; it skips the first {step % k} steps of epoch {step // k}" if step % k else ""
        ctx.convention = (f"HF Trainer: global_step {step} // {k} update steps per epoch (max_steps {max_steps} / "
                          f"num_train_epochs {epochs:g}) = {step // k} epochs trained{skip}")
    if epochs is not None and float(epochs).is_integer():
        ctx.old_total, ctx.old_total_source = int(epochs), "trainer_state.json num_train_epochs"
    args = attrs(tree.get("training_args"))
    ctx.lr0 = number(args.get("learning_rate"))
    ctx.settings_source = "training_args.bin" if args else None
    name, expr = _hf_schedule(args, max_steps)
    ctx.notes.append(f"schedule: {name} over max_steps, stepped per optimizer step; the resumed Trainer builds "
                     "the lambda from the new max_steps and loads only last_epoch from scheduler.pt")
    ctx.schedule_expr = expr or None
