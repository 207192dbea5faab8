"""DeepSpeed checkpoint folders, for validate-resume.

``engine.load_checkpoint`` restores ``global_steps``, ``global_samples``, ``skipped_steps`` and the
``lr_scheduler`` state (DeepSpeed's own schedulers keep ``last_batch_iteration``, which is
``global_steps - 1`` after a save at a step boundary: they are stepped once per optimizer step
and start at -1). DeepSpeed has no notion of epochs; a training script that counts them saves
its counter in the client state (``epoch`` at the top level), read with the usual ``epoch + 1``.
A Hugging Face Trainer folder written with DeepSpeed is read by the Trainer's rules
(``trainer_state.json``, ``training_args.bin``), with DeepSpeed's own state beside them.
"""

from __future__ import annotations

from typing import Any

from ckpttool.model import Stub
from ckpttool.ops.resume.context import ResumeContext, as_int, attrs

__all__ = ["read_deepspeed_context"]


def read_deepspeed_context(tree: dict[str, Any], ctx: ResumeContext) -> None:
    """Fill ``ctx`` from a DeepSpeed folder's tree (see the module docstring)."""
    steps = as_int(tree.get("global_steps"))
    ctx.global_step = steps
    ctx.scheduler_restored = ctx.scheduler is not None
    trainer = isinstance(tree.get("trainer_state"), dict)
    if trainer:  # a Trainer folder: its trainer_state.json counts the steps and epochs, and owns the schedule
        from ckpttool.ops.resume.hf_trainer import read_hf_context

        read_hf_context(tree, ctx)
    epoch = as_int(tree.get("epoch")) if not trainer else None
    if epoch is not None:
        ctx.saved_epoch = epoch
        ctx.start_epoch = ctx.epochs_done = epoch + 1
        ctx.assumed = True
        ctx.convention = (f"DeepSpeed client state 'epoch' {epoch} (the usual start_epoch = epoch + 1); "
                          f"global_steps {steps}")
    scaler = tree.get("loss_scaler")
    if isinstance(scaler, Stub):  # LossScaler/DynamicLossScaler: cur_scale is what the checks call the scale
        state = scaler.attributes
        if state.get("dynamic") is True:
            ctx.scaler, ctx.scaler_source = {"scale": state.get("cur_scale")}, "loss_scaler.cur_scale"
        else:
            ctx.scaler = None
            ctx.notes.append(f"static loss scale {state.get('cur_scale')} (nothing to re-calibrate)")
    skipped = as_int(tree.get("skipped_steps"))
    ctx.notes.append(f"DeepSpeed: load_checkpoint restores global_steps {steps}, skipped_steps {skipped} and the "
                     "lr_scheduler state")
    last = as_int(attrs(ctx.scheduler).get("last_batch_iteration"))
    if last is not None and steps is not None:
        agree = "agrees with" if last == steps - 1 else "does NOT agree with"
        ctx.notes.append(f"scheduler last_batch_iteration {last} {agree} global_steps {steps} - 1: the schedule "
                         f"continues at step {last + 1}")
    cfg = attrs(tree.get("config"))
    params = attrs(attrs(cfg.get("scheduler")).get("params"))
    kind = attrs(cfg.get("scheduler")).get("type")
    if kind:  # DeepSpeed's schedulers (WarmupLR, WarmupDecayLR, OneCycle...) are not modelled here
        ctx.settings_source = ctx.settings_source or "ds_config"
        ctx.notes.append(f"ds_config scheduler: {kind} {dict(params)}")
    for key in ("warmup_max_lr", "cycle_max_lr", "lr") if ctx.lr0 is None else ():
        value = params.get(key, attrs(attrs(cfg.get("optimizer")).get("params")).get(key))
        if isinstance(value, int | float) and not isinstance(value, bool):
            ctx.lr0 = float(value)
            break
