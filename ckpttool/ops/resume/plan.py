"""The learning-rate curves of the old run and of the resumed run, around the resume point.

Two ways a resumed run gets its LR:

* **rebuilt** — the training script builds its schedule again from the *new* settings (YOLOv5's
  ``LambdaLR(lf)`` with the new ``epochs``; any LambdaLR, whose lambdas are not saved). Then
  ``lr(e) = base_lr * f(e, total)`` with the old and the new total.
* **restored** — the saved torch scheduler state is loaded (Lightning always does; most loops call
  ``scheduler.load_state_dict``). Its ``T_max``/``total_steps`` win over the new settings, so the
  curve continues the old one and may run past its end. We step a pure-Python copy of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from ckpttool.errors import UsageError
from ckpttool.ops.resume.context import ResumeContext
from ckpttool.ops.resume.result import ResumeOptions
from ckpttool.ops.resume.schedules import Schedule, builtin, from_expression
from ckpttool.ops.resume.torch_schedulers import SchedulerOverflow, SimScheduler, build, identify, number

__all__ = ["LRPlan", "make_plan", "param_groups", "MAX_SIM_STEPS"]

MAX_SIM_STEPS = 5_000_000


@dataclass
class LRPlan:
    """Both curves as ``(epoch, lr)`` points (first param group), and the figures around the resume."""

    mode: str                                    # "rebuilt", "restored" or "unknown"
    unit_steps: int = 1                          # scheduler steps per epoch (1: stepped per epoch)
    unit_name: str = "epoch"                     # what the schedule's x counts: "epoch" or "step"
    resume_unit: int = 0                         # x at the resume point
    old_total: int | None = None                 # the old run's total when only the scheduler state tells it
    unit_source: str = ""
    old_desc: str = ""
    new_desc: str = ""
    old_points: list[tuple[float, float]] = field(default_factory=list)
    new_points: list[tuple[float, float]] = field(default_factory=list)
    # every param group's curves, when the optimizer has more than one: [{"old": [...], "new": [...]}, ...]
    group_points: list[dict[str, list[tuple[float, float]]]] = field(default_factory=list)
    last_trained: float | None = None
    resume_old: float | None = None
    resume_new: float | None = None
    saved_lr: float | None = None
    model: Schedule | None = None
    base_lr: float | None = None
    base_source: str = ""
    sim: SimScheduler | None = None
    overflow: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def jump(self) -> float | None:
        if self.resume_new is None or not self.resume_old:
            return None
        return self.resume_new / self.resume_old - 1


def param_groups(ctx: ResumeContext) -> list[dict[str, Any]]:
    """The optimizer's param groups as plain dicts of the LR keys a scheduler reads."""
    groups = ctx.optimizer.get("param_groups") if ctx.optimizer else None
    out = []
    for g in groups if isinstance(groups, list) else []:
        if isinstance(g, dict):
            values = {k: number(g.get(k)) for k in ("lr", "initial_lr", "max_lr", "min_lr")}
            out.append({k: v for k, v in values.items() if v is not None})
    if not out and ctx.scheduler:
        last = ctx.scheduler.get("_last_lr") or ctx.scheduler.get("base_lrs") or []
        out = [{"lr": number(v), "initial_lr": number(b)} for v, b in
               zip(last, ctx.scheduler.get("base_lrs") or last)]
    return out


def model_schedule(ctx: ResumeContext, opts: ResumeOptions) -> tuple[Schedule | None, str]:
    """The schedule the training script computes: --lr-lambda, --schedule, or what the checkpoint says."""
    lrf = opts.lrf if opts.lrf is not None else ctx.lrf
    if opts.lr_lambda:
        return from_expression(opts.lr_lambda, lrf=lrf), "--lr-lambda"
    name = opts.schedule or ctx.schedule_hint
    if name is None and ctx.schedule_expr:
        return replace(from_expression(ctx.schedule_expr, lrf=lrf), name=ctx.layout), "the checkpoint's settings"
    if name is None:
        return None, ""
    src = "--schedule" if opts.schedule else "the checkpoint's settings"
    return builtin(name, lrf=lrf, gamma=opts.gamma, step_size=opts.step_size, milestones=opts.milestones,
                   power=opts.power), src


def _base_lr(ctx: ResumeContext, opts: ResumeOptions, groups: list[dict[str, Any]]) -> tuple[float | None, str]:
    if opts.lr0 is not None:
        return opts.lr0, "--lr0"
    if groups and groups[0].get("initial_lr") is not None:
        return groups[0]["initial_lr"], "optimizer param_groups[0]['initial_lr']"
    base = (ctx.scheduler or {}).get("base_lrs")
    if isinstance(base, list) and base and number(base[0]) is not None:
        return number(base[0]), "scheduler base_lrs[0]"
    if ctx.lr0 is not None:
        return ctx.lr0, f"{ctx.settings_source} lr0"
    if groups and groups[0].get("lr") is not None:
        return groups[0]["lr"], "optimizer param_groups[0]['lr'] (no initial_lr: assumed the base LR)"
    return None, ""


def make_plan(ctx: ResumeContext, opts: ResumeOptions, start: int, old_total: int | None,
              new_total: int) -> LRPlan:
    """Compute both curves; raises UsageError when the schedule options cannot be evaluated."""
    groups = param_groups(ctx)
    kind = identify(ctx.scheduler) if ctx.scheduler else None
    model, model_src = model_schedule(ctx, opts)
    restore = (kind is not None and kind not in ("LambdaLR", "ReduceLROnPlateau", "CyclicLR", "ChainedScheduler")
               and opts.scheduler != "rebuild" and (opts.scheduler == "restore" or ctx.scheduler_restored
                                                     or model is None))
    if kind is None and ctx.mm_schedulers and opts.scheduler != "rebuild":
        restore, kind = True, "mmengine"
    rebuild_total = model is None and opts.scheduler == "rebuild" and kind in _TOTALS
    note = ""
    if (restore or rebuild_total) and groups:
        try:
            return _restored(ctx, opts, groups, start, old_total, new_total, rebuild_total=rebuild_total)
        except (LookupError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            note = f"the saved {kind} state could not be stepped ({exc}); "
    plan = LRPlan(mode="unknown")
    if kind == "LambdaLR":
        plan.notes.append("LambdaLR saves no lambdas (lr_lambdas are None): the resumed run evaluates its lambda "
                          "with the new settings")
    if note:
        plan.notes.append(note + "falling back to the schedule model")
    base, base_src = _base_lr(ctx, opts, groups)
    plan.base_lr, plan.base_source = base, base_src
    plan.saved_lr = groups[0].get("lr") if groups else None
    if model is None or base is None:
        plan.resume_old = plan.saved_lr
        return plan
    return _rebuilt(plan, model, model_src, ctx, opts, start, old_total, new_total)


def _rebuilt(plan: LRPlan, model: Schedule, src: str, ctx: ResumeContext, opts: ResumeOptions, start: int,
             old_total: int | None, new_total: int) -> LRPlan:
    """``lr = base * f(x, total)``; per-epoch (x = epoch) or, for per-step schedules, x = optimizer step."""
    base = plan.base_lr or 0.0
    k = (opts.steps_per_epoch or ctx.steps_per_epoch or 1) if ctx.per_step else 1
    at = ctx.global_step if ctx.per_step and ctx.global_step is not None else start * k
    plan.mode, plan.model, plan.unit_steps = "rebuilt", model, k
    plan.unit_name, plan.resume_unit = ("step" if ctx.per_step else "epoch"), at
    plan.unit_source = f"schedule evaluated per optimizer step ({k} per epoch)" if ctx.per_step else \
        "schedule evaluated per epoch"
    unit = " (steps)" if ctx.per_step else ""
    plan.new_desc = f"{model.name}: {model.expression} with epochs={new_total * k}{unit} (from {src})"
    plan.new_points = [(e, base * model.factor(e * k, new_total * k)) for e in range(start, new_total)]
    if plan.new_points:
        plan.new_points[0] = (_epoch(at, k), base * model.factor(at, new_total * k))
    plan.resume_new = plan.new_points[0][1] if plan.new_points else None
    if old_total is not None:
        plan.old_desc = f"{model.name}: {model.expression} with epochs={old_total * k}{unit}"
        plan.old_points = [(e, base * model.factor(e * k, old_total * k)) for e in range(0, max(old_total, start + 1))]
        plan.resume_old = base * model.factor(at, old_total * k)
        plan.last_trained = base * model.factor(at - 1, old_total * k) if at > 0 else None
    else:
        plan.old_desc = "unknown: the old total epochs are not recorded (give --old-epochs)"
        plan.resume_old = plan.saved_lr
    plan.group_points = _scaled_groups(plan, param_groups(ctx))
    return plan


def _scaled_groups(plan: LRPlan, groups: list[dict[str, Any]]) -> list[dict[str, list[tuple[float, float]]]]:
    """A rebuilt schedule multiplies each group's own base LR (``initial_lr``) by the same factor."""
    bases = [g.get("initial_lr", g.get("lr")) for g in groups]
    if len(groups) < 2 or not bases[0] or any(b is None for b in bases):
        return []
    ratios = [b / bases[0] for b in bases]
    return [{"old": [(e, v * r) for e, v in plan.old_points], "new": [(e, v * r) for e, v in plan.new_points]}
            for r in ratios]


def _unit(ctx: ResumeContext, opts: ResumeOptions, last: int) -> tuple[int, str]:
    """Scheduler steps per epoch, told from ``last_epoch`` against the epochs done."""
    done = ctx.epochs_done
    if not done:
        return 1, "assumed stepped once per epoch (no epoch count)"
    if last == done:
        return 1, f"stepped once per epoch (last_epoch {last} == {done} epochs done)"
    if opts.steps_per_epoch:
        return opts.steps_per_epoch, f"stepped per optimizer step, {opts.steps_per_epoch} per epoch (--steps-per-epoch)"
    guesses: list[tuple[int | None, str]] = []
    if ctx.global_step:
        guesses.append((ctx.global_step // done if ctx.global_step % done == 0 else None, "global_step / epochs"))
    if ctx.ema_updates:
        guesses.append((ctx.ema_updates // done if ctx.ema_updates % done == 0 else None, "EMA updates / epochs"))
    for k, src in guesses:
        if k and k > 1 and (last == done * k or (ctx.global_step is not None and last == ctx.global_step)):
            return k, f"stepped per optimizer step, {k} steps per epoch ({src})"
    if last > done and last % done == 0:
        k = last // done
        return k, f"stepped per optimizer step, {k} steps per epoch (inferred: last_epoch {last} / {done} epochs)"
    return 1, f"assumed stepped once per epoch (last_epoch {last} does not match {done} epochs)"


# the classes whose curve is set by a total, and that total's key: what ``--scheduler rebuild`` changes
_TOTALS = {"CosineAnnealingLR": "T_max", "PolynomialLR": "total_iters"}


def _restored(ctx: ResumeContext, opts: ResumeOptions, groups: list[dict[str, Any]], start: int,
              old_total: int | None, new_total: int, *, rebuild_total: bool = False) -> LRPlan:
    """Step the saved scheduler on; with ``rebuild_total``, a new one of the same class for the new total.

    torch 2.x builds a scheduler with ``last_epoch=N`` without touching the loaded LR (``_is_initial``)
    and then steps in chainable form, so a rebuilt CosineAnnealingLR/PolynomialLR is the saved state
    with its total replaced and ``_step_count`` 1.
    """
    sim = _build(ctx, groups)
    k, src = _unit(ctx, opts, sim.last_epoch)
    if rebuild_total:
        key = _TOTALS[identify(ctx.scheduler) or ""]
        rebuilt = copy.copy(ctx)
        rebuilt.scheduler = {**(ctx.scheduler or {}), key: new_total * k, "_step_count": 1}
        sim = _build(rebuilt, groups)
    plan = LRPlan(mode="restored", unit_steps=k, unit_source=src, sim=sim, unit_name="step" if k > 1 else "epoch",
                  resume_unit=sim.last_epoch)
    plan.saved_lr = groups[0].get("lr")
    plan.base_lr, plan.base_source = (sim.base_lrs[0] if sim.base_lrs else None), "scheduler base_lrs[0]"
    plan.old_desc = f"{_build(ctx, [dict(g) for g in groups]).describe()} as saved"
    plan.new_desc = (f"{sim.describe()} built anew with last_epoch={sim.last_epoch - 1} after loading the optimizer "
                     "(chainable: continues from the saved LR)" if rebuild_total else
                     f"{sim.describe()} restored from the checkpoint (its settings win over the new --epochs)")
    if rebuild_total:
        total = number((ctx.scheduler or {}).get(_TOTALS[identify(ctx.scheduler) or ""]))
        plan.old_total = int(total // k) if total else None
    last = sim.last_epoch
    probe = _build(ctx, [dict(g) for g in groups])
    plan.last_trained = _closed(probe, last - 1)
    plan.resume_old = plan.resume_new = plan.saved_lr
    horizon = old_total if old_total is not None else new_total
    old_all = [(e, values) for e in range(0, horizon) if (values := _closed_all(probe, e * k))]
    plan.old_points = [(e, values[0]) for e, values in old_all]
    end_unit = new_total * k
    if end_unit - last > MAX_SIM_STEPS:
        raise UsageError(f"the resumed run would step the scheduler {end_unit - last} times; more than "
                         f"{MAX_SIM_STEPS} is not simulated")
    plan.new_points = [(_epoch(last, k), groups[0]["lr"])]
    new_all = [(_epoch(last, k), [g["lr"] for g in groups])]
    unit = last
    while unit < end_unit:
        try:
            sim.step()
        except SchedulerOverflow as exc:
            plan.overflow = {"message": str(exc), "step_num": exc.step_num, "total_steps": exc.total_steps,
                             "global_step": exc.step_num, "epoch": (exc.step_num - 1) // k,
                             "batch": (exc.step_num - 1) % k, "steps_per_epoch": k}
            break
        unit += 1
        if unit % k == 0 and unit < end_unit:
            plan.new_points.append((unit // k, groups[0]["lr"]))
            new_all.append((unit // k, [g["lr"] for g in groups]))
    if len(groups) > 1:
        plan.group_points = [{"old": [(e, v[i]) for e, v in old_all if i < len(v)],
                              "new": [(e, v[i]) for e, v in new_all]} for i in range(len(groups))]
    return plan


def _build(ctx: ResumeContext, groups: list[dict[str, Any]]) -> SimScheduler:
    """A simulator of the saved scheduler(s); simulators never mutate the saved state in place."""
    if ctx.mm_schedulers and identify(ctx.scheduler) is None:
        from ckpttool.ops.resume.mmengine_schedulers import build_mm

        return build_mm(ctx.mm_schedulers, groups)
    return build(dict(ctx.scheduler or {}), groups)


def _epoch(unit: int, steps_per_epoch: int) -> float:
    """Scheduler unit -> epoch, an int when it falls on an epoch boundary."""
    return unit // steps_per_epoch if unit % steps_per_epoch == 0 else unit / steps_per_epoch


def _closed(sim: SimScheduler, unit: int) -> float | None:
    if unit < 0:
        return None
    values = sim.closed_form(unit)
    return values[0] if values else None


def _closed_all(sim: SimScheduler, unit: int) -> list[float] | None:
    """Every group's LR at ``unit`` from the closed form, or None where there is none."""
    return sim.closed_form(unit) if unit >= 0 else None
