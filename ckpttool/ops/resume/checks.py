"""The checklist of validate-resume: each check returns ``Check``s with stable ``resume.*`` codes.

Codes: ``resume.start-epoch``, ``resume.not-resumable``, ``resume.epochs``, ``resume.epochs-reading``,
``resume.old-settings``, ``resume.schedule-model``, ``resume.lr-jump``, ``resume.scheduler-state``,
``resume.scheduler-base-lrs``, ``resume.scheduler-overflow``, ``resume.scheduler-t-max``,
``resume.optimizer``, ``resume.optimizer-state``, ``resume.optimizer-shapes``, ``resume.initial-lr``,
``resume.scaler``, ``resume.ema``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ckpttool.model import StateDict, TensorRef
from ckpttool.modules import is_buffer_name
from ckpttool.ops.resume.context import ResumeContext
from ckpttool.ops.resume.plan import LRPlan
from ckpttool.ops.resume.result import Check, ResumeOptions
from ckpttool.ops.resume.torch_schedulers import identify, number

__all__ = ["lr_checks", "scheduler_checks", "optimizer_checks", "scaler_check", "ema_check", "fmt"]

_STATE_TENSORS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "acc_delta",
                  "sum", "ax", "prev", "step_size", "exp_inf", "mu_product", "exp_avg_diff")


def fmt(v: float | None) -> str:
    """A learning rate as people write it: 4 significant digits."""
    if v is None:
        return "?"
    return f"{v:.4g}"


def lr_checks(plan: LRPlan, start: int, new_total: int, old_total: int | None, opts: ResumeOptions) -> list[Check]:
    """LR continuity at the resume point, and whether the schedule model reproduces the saved LR."""
    out: list[Check] = []
    if plan.mode == "rebuilt" and plan.saved_lr and plan.model is not None and old_total is not None \
            and plan.base_lr:
        predicted = plan.resume_old
        if predicted is not None and math.isclose(predicted, plan.saved_lr, rel_tol=1e-6, abs_tol=1e-12):
            out.append(Check("resume.schedule-model", "pass",
                             f"{plan.model.name} over {old_total} epochs reproduces the saved LR {fmt(plan.saved_lr)} "
                             f"at {plan.unit_name} {plan.resume_unit}"))
        else:
            out.append(Check("resume.schedule-model", "warn",
                             f"{plan.model.name} over {old_total} epochs gives {fmt(predicted)} at {plan.unit_name} "
                             f"{plan.resume_unit}, "
                             f"but the optimizer saved lr {fmt(plan.saved_lr)}: the old run may have used another "
                             "schedule",
                             "check --schedule/--lr-lambda, --lrf and --old-epochs"))
    if plan.mode == "unknown":
        out.append(Check("resume.lr-jump", "warn",
                         f"no schedule to predict the resumed LR (saved lr {fmt(plan.saved_lr)})",
                         "give --schedule (cosine, linear, one-cycle, step, multistep, poly, constant) or --lr-lambda"))
        return out
    jump = plan.jump
    unit, at = plan.unit_name, plan.resume_unit if plan.mode != "unknown" else start
    what = (f"LR at the last trained {unit} {at - 1}: {fmt(plan.last_trained)}; at the first resumed {unit} {at}: "
            f"{fmt(plan.resume_old)} (old plan) → {fmt(plan.resume_new)} (new run)")
    if jump is None and plan.resume_old is None:
        out.append(Check("resume.lr-jump", "warn", what + "; the jump cannot be computed",
                         "give --old-epochs so the old curve is known"))
    elif not plan.resume_old:
        out.append(Check("resume.lr-jump", "warn", what + "; the old plan's LR is 0 there (its run had ended)",
                         "an LR restart from 0 is a warm restart: plan a warm-up"))
    elif abs(jump) > opts.max_jump:
        out.append(Check("resume.lr-jump", "fail",
                         f"{what}: a jump of {jump:+.1%} (×{1 + jump:.3g}), above --max-jump {opts.max_jump:.0%}",
                         "see the fixes below: keep the old total, rescale the schedule position, or use the "
                         "continuation expression"))
    else:
        out.append(Check("resume.lr-jump", "pass", f"{what}: {jump:+.2%}, within --max-jump {opts.max_jump:.0%}"))
    return out


def scheduler_checks(ctx: ResumeContext, plan: LRPlan, start: int, new_total: int) -> list[Check]:
    """Saved scheduler state against the epoch, the optimizer, and the new run's length."""
    state = ctx.scheduler
    if not state:
        return []
    out: list[Check] = []
    kind = identify(state) or "unknown scheduler"
    last, count = state.get("last_epoch"), state.get("_step_count")
    k = plan.unit_steps
    expected = start * k if ctx.epochs_done is not None else None
    if isinstance(last, int):
        parts = [f"{kind} last_epoch {last}"]
        status = "pass"
        if expected is not None and last != expected and ctx.global_step != last:
            status = "warn"
            parts.append(f"but {start} epochs × {k} step(s) = {expected}")
        if isinstance(count, int) and count != last + 1:
            status = "warn"
            parts.append(f"_step_count {count} ≠ last_epoch + 1 (restored with last_epoch= or stepped with an epoch "
                         "argument)")
        elif isinstance(count, int):
            parts.append(f"_step_count {count}")
        out.append(Check("resume.scheduler-state", status, ", ".join(parts) + f"; {plan.unit_source}",
                         None if status == "pass" else "the schedule position will not match the epoch"))
    groups = (ctx.optimizer or {}).get("param_groups")
    base = state.get("base_lrs")
    if isinstance(groups, list) and isinstance(base, list):
        initial = [number(g.get("initial_lr")) if isinstance(g, dict) else None for g in groups]
        if len(base) != len(groups):
            out.append(Check("resume.scheduler-base-lrs", "fail",
                             f"the scheduler has {len(base)} base_lrs but the optimizer {len(groups)} param groups",
                             "torch's zip(..., strict=True) raises on the first step"))
        elif all(i is not None for i in initial) and any(
                not math.isclose(number(b) or 0.0, i or 0.0, rel_tol=1e-9) for b, i in zip(base, initial)):
            out.append(Check("resume.scheduler-base-lrs", "warn",
                             f"scheduler base_lrs {[number(b) for b in base]} ≠ optimizer initial_lr {initial}",
                             "a rebuilt scheduler reads initial_lr; the restored one keeps base_lrs"))
        elif all(i is not None for i in initial):
            out.append(Check("resume.scheduler-base-lrs", "pass",
                             f"base_lrs match the optimizer's initial_lr ({', '.join(fmt(i) for i in initial)})"))
    out += _overflow_checks(plan, kind, plan.sim.state if plan.sim is not None else state, new_total)
    return out


def _overflow_checks(plan: LRPlan, kind: str, state: dict[str, Any], new_total: int) -> list[Check]:
    if plan.mode != "restored":
        return []
    k = plan.unit_steps
    children = getattr(plan.sim, "children", None)
    if plan.sim is not None and plan.sim.kind == "mmengine" and children:
        ended = [c for c in children if c.end < new_total * k]
        if ended:
            last = ended[-1]
            final = fmt(plan.new_points[-1][1]) if plan.new_points else "?"
            return [Check("resume.scheduler-t-max", "warn",
                          f"the restored {last.describe()} stops at step {last.end:g} but the new run goes to "
                          f"{new_total * k}: from then on the LR stays where it is ({final} at the end)",
                          "set end (and T_max) in the new config and do not resume the scheduler state, or edit "
                          "param_schedulers in the checkpoint")]
        return [Check("resume.scheduler-t-max", "pass", f"every mmengine scheduler covers the new run "
                      f"({new_total * k} steps)")]
    if plan.overflow is not None:
        o = plan.overflow
        where = f"epoch {o['epoch']}" + (f", batch {o['batch']} (global step {o['global_step']})" if k > 1 else "")
        return [Check("resume.scheduler-overflow", "fail",
                      f"the restored OneCycleLR will raise ValueError: {o['message']} — at {where}, because the new "
                      f"run needs {new_total * k} steps",
                      f"use --fix -o OUT to write total_steps={new_total * k} with the schedule position rescaled, "
                      f"or rebuild OneCycleLR(total_steps={new_total * k}) without loading its state")]
    if kind == "OneCycleLR":
        return [Check("resume.scheduler-overflow", "pass",
                      f"OneCycleLR total_steps {state.get('total_steps')} covers the {new_total * k} steps of the "
                      "new run")]
    if kind == "CosineAnnealingLR":
        t_max = number(state.get("T_max")) or 0
        if new_total * k > t_max:
            first_bad = int(t_max // k)
            return [Check("resume.scheduler-t-max", "warn",
                          f"the restored CosineAnnealingLR has T_max {t_max:g} but the new run goes to "
                          f"{new_total * k}: "
                          f"from epoch {first_bad} the LR reaches eta_min and then rises again (cosine period "
                          f"{2 * t_max:g})",
                          f"use --fix -o OUT to write T_max={new_total * k} (the LR stays continuous and reaches "
                          "eta_min at the new end)")]
        return [Check("resume.scheduler-t-max", "pass", f"T_max {t_max:g} covers the new run ({new_total * k})")]
    return []


def _param_keys(model: StateDict | None) -> list[str] | None:
    if model is None:
        return None
    if model.parameters is not None:
        return [k for k in model if k in model.parameters]
    return [k for k, t in model.tensors.items() if not is_buffer_name(k) and t.dtype.startswith(("float", "bfloat"))]


def _ids(group: dict[str, Any]) -> list[Any]:
    """A param group's parameter ids (ints in torch's state_dict); anything else is ignored."""
    params = group.get("params")
    return [p for p in params if isinstance(p, int | str)] if isinstance(params, list | tuple) else []


def optimizer_checks(ctx: ResumeContext, model: StateDict | None, needs_initial_lr: bool) -> list[Check]:
    """Optimizer present; param groups; state for every parameter; state shapes against the model."""
    opt = ctx.optimizer
    if not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list):
        return [Check("resume.optimizer", "fail", "no optimizer state in the checkpoint: a resumed run starts "
                      "with fresh momentum/Adam moments", "use the file as pretrained weights, not as a resume")]
    groups = [g for g in opt["param_groups"] if isinstance(g, dict)]
    ids = [p for g in groups for p in _ids(g)]
    sizes = ", ".join(str(len(_ids(g))) for g in groups)
    lrs = ", ".join(fmt(number(g.get("lr"))) for g in groups)
    out = []
    keys = _param_keys(model)
    msg = f"{len(groups)} param group(s) of [{sizes}] parameters (lr {lrs}), {len(ids)} in all"
    if keys is not None and len(keys) != len(ids):
        out.append(Check("resume.optimizer", "warn", msg + f", but the model has {len(keys)} parameters",
                         "frozen parameters are often left out; otherwise the optimizer belongs to another model"))
    else:
        out.append(Check("resume.optimizer", "pass", msg + (f", as many as the model's {len(keys)}" if keys else "")))
    state = opt.get("state") if isinstance(opt.get("state"), dict) else {}
    missing = [p for p in ids if not isinstance(state.get(p), dict) or not any(
        (isinstance(v, TensorRef) and v.numel > 1) or k in _STATE_TENSORS for k, v in state[p].items())]
    kinds = sorted({k for s in state.values() if isinstance(s, dict) for k in s})
    if not ids:
        pass
    elif missing:
        momentum = any((number(g.get("momentum")) or 0) > 0 or "betas" in g for g in groups)
        out.append(Check("resume.optimizer-state", "warn" if momentum else "pass",
                         f"{len(missing)} of {len(ids)} parameters have no optimizer state "
                         f"({', '.join(kinds) or 'none'} elsewhere)" + ("" if momentum else ": plain SGD keeps none"),
                         "parameters that never got a gradient restart their momentum" if momentum else None))
    else:
        out.append(Check("resume.optimizer-state", "pass",
                         f"every parameter has state ({', '.join(kinds)})"))
    if keys is not None and ids:
        out.append(_shape_check(keys, model, ids, state))
    initial = [g.get("initial_lr") for g in groups]
    if any(i is None for i in initial):
        i = next(n for n, v in enumerate(initial) if v is None)
        if needs_initial_lr:
            out.append(Check("resume.initial-lr", "fail",
                             f"param 'initial_lr' is not specified in param_groups[{i}] when resuming scheduler with "
                             "last_epoch >= 0.", "torch raises this KeyError; build the scheduler with last_epoch=-1 "
                             "and set last_epoch afterwards, or add initial_lr to each group"))
        else:
            out.append(Check("resume.initial-lr", "pass", f"param_groups[{i}] has no initial_lr; not needed when the "
                             "scheduler is built with last_epoch=-1"))
    return out


def _shape_check(keys: list[str], model: StateDict | None, ids: list[Any], state: dict[Any, Any]) -> Check:
    assert model is not None
    param_shapes = [tuple(model[k].shape) for k in keys]
    state_shapes: list[tuple[int, ...] | None] = []
    for p in ids:
        s = state.get(p) if isinstance(state.get(p), dict) else {}
        t = next((v for k, v in s.items() if isinstance(v, TensorRef) and k in _STATE_TENSORS), None)
        state_shapes.append(tuple(t.shape) if t is not None else None)
    known = [(i, s) for i, s in enumerate(state_shapes) if s is not None]
    if len(param_shapes) == len(state_shapes) and all(param_shapes[i] == s for i, s in known):
        return Check("resume.optimizer-shapes", "pass",
                     f"optimizer state shapes match the model's {len(keys)} parameters in order")
    if Counter(s for _, s in known) <= Counter(param_shapes):
        return Check("resume.optimizer-shapes", "pass",
                     "optimizer state shapes match the model's parameters as a set (param groups reorder them)")
    i, s = next((i, s) for i, s in known if i >= len(param_shapes) or param_shapes[i] != s)
    where = f"model parameter {keys[i]!r} {list(param_shapes[i])}" if i < len(keys) else "no model parameter"
    return Check("resume.optimizer-shapes", "fail",
                 f"optimizer state #{i} has shape {list(s)} but {where}: this optimizer state belongs to another model",
                 "remap the optimizer state with the weights, or resume with a fresh optimizer")


def scaler_check(ctx: ResumeContext, amp: bool) -> Check:
    """GradScaler state: present when AMP is used, finite and not collapsed."""
    s = ctx.scaler if isinstance(ctx.scaler, dict) else None
    scale = number(s.get("scale")) if s else None
    restart = "scale restarts at 65536; expect skipped steps while it re-calibrates"
    if scale is None:
        if amp:
            why = "is empty (the scaler was disabled)" if s == {} else "is missing"
            return Check("resume.scaler", "warn", f"--amp but the GradScaler state {why}: {restart}",
                         "save scaler.state_dict() with the checkpoint")
        return Check("resume.scaler", "pass", "no GradScaler state (not needed without --amp)")
    if not math.isfinite(scale) or scale <= 0:
        return Check("resume.scaler", "fail", f"GradScaler scale is {scale}: every step would be skipped",
                     "drop the scaler state so it restarts at 65536")
    if scale < 1.0:
        return Check("resume.scaler", "warn", f"GradScaler scale {scale:g} has collapsed (below 1): the run was "
                     "overflowing in fp16", "look for NaN/inf in the loss before resuming")
    note = "" if amp else " (pass --amp if the new run uses AMP)"
    return Check("resume.scaler", "pass", f"GradScaler scale {scale:g}, growth tracker "
                 f"{s.get('_growth_tracker') if s else '?'}{note}")


def ema_check(ctx: ResumeContext, steps_per_epoch: int | None) -> Check | None:
    """EMA present; its update counter against epochs × steps per epoch."""
    if ctx.ema is None:
        return Check("resume.ema", "pass", "no EMA in the checkpoint") if ctx.ema_updates is None else None
    done = ctx.epochs_done
    if ctx.ema_updates is None:
        return Check("resume.ema", "warn", f"EMA weights in {ctx.ema.source!r} but no update counter: a decay "
                     "warm-up (YOLOv5/timm style) restarts from zero", "save the EMA's updates with the checkpoint")
    n = ctx.ema_updates
    if n == 0:
        return Check("resume.ema", "warn", f"EMA {ctx.ema_updates_source} is 0: the decay warm-up restarts")
    if done and steps_per_epoch:
        expected = done * steps_per_epoch
        if n != expected:
            return Check("resume.ema", "warn", f"EMA {ctx.ema_updates_source} = {n} but {done} epochs × "
                         f"{steps_per_epoch} steps = {expected}", "the EMA was reset or updated on a different cadence")
        return Check("resume.ema", "pass",
                     f"EMA {ctx.ema_updates_source} = {n} = {done} epochs × {steps_per_epoch} steps")
    per = f" ({n / done:g} per epoch)" if done else ""
    return Check("resume.ema", "pass", f"EMA present, {ctx.ema_updates_source} = {n}{per}")
