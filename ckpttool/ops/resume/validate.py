"""``validate_resume``: read the run facts, build both LR curves, run the checklist, suggest fixes."""

from __future__ import annotations

import copy
from pathlib import Path

from ckpttool.errors import SectionNotFound, UsageError
from ckpttool.model import Checkpoint, StateDict
from ckpttool.ops.resume.checks import ema_check, fmt, lr_checks, optimizer_checks, scaler_check, scheduler_checks
from ckpttool.ops.resume.context import ResumeContext, read_context
from ckpttool.ops.resume.fix import patch_scheduler, write_fixed
from ckpttool.ops.resume.plan import LRPlan, make_plan
from ckpttool.ops.resume.result import Check, ResumeOptions, ResumeResult
from ckpttool.ops.resume.schedules import Schedule, continuation
from ckpttool.progress import ProgressSink

__all__ = ["validate_resume"]


def validate_resume(ckpt: Checkpoint, opts: ResumeOptions, *, fix_output: Path | None = None,
                    force: bool = False, sanitize: bool = False, progress: ProgressSink | None = None) -> ResumeResult:
    """Check that ``ckpt`` can be resumed with ``opts``; with ``fix_output``, write a patched copy.

    Raises:
        UsageError: options that make no plan (epochs < 1, a schedule that cannot be evaluated,
            no way to tell the start epoch) or a fix that is not well defined.
    """
    if opts.epochs < 1:
        raise UsageError(f"--epochs must be at least 1 (got {opts.epochs})")
    ctx = read_context(ckpt)
    if opts.start_epoch is not None:
        ctx.start_epoch = ctx.epochs_done = opts.start_epoch
        ctx.convention, ctx.assumed = f"--start-epoch {opts.start_epoch} (given)", False
    if ctx.finished:
        return _not_resumable(ckpt, ctx)
    if ctx.start_epoch is None:
        raise UsageError(f"cannot tell where training would restart: the {ckpt.layout} checkpoint records no epoch",
                         hint="give --start-epoch", path=ckpt.path)
    start, done = ctx.start_epoch, ctx.epochs_done if ctx.epochs_done is not None else ctx.start_epoch
    readings = {"total": opts.epochs, "additional": start + opts.epochs}
    new_total = readings[opts.epochs_mode]
    old_total = opts.old_epochs if opts.old_epochs is not None else ctx.old_total
    plan = make_plan(ctx, opts, start, old_total, max(new_total, start + 1))
    if new_total <= done:
        plan.resume_new, plan.new_points, plan.overflow = None, [], None
    checks = [_start_check(ctx, plan), _old_settings_check(ctx, opts, old_total, plan)]
    old_total = old_total if old_total is not None else plan.old_total
    checks.append(_epochs_check(ctx, opts, readings, new_total, done))
    checks.append(_reading_check(ctx, opts, readings, plan))
    if new_total > done:
        checks += lr_checks(plan, start, new_total, old_total, opts)
    checks += scheduler_checks(ctx, plan, start, max(new_total, done))
    checks += optimizer_checks(ctx, _model(ckpt), needs_initial_lr=plan.mode == "restored")
    checks.append(scaler_check(ctx, opts.amp))
    steps = opts.steps_per_epoch or (plan.unit_steps if plan.unit_steps > 1 else None) or _steps_from_counters(ctx)
    ema = ema_check(ctx, steps)
    if ema is not None:
        checks.append(ema)
    result = ResumeResult(
        path=ckpt.path, layout=ckpt.layout, start_epoch=start, epochs_done=done, new_total_epochs=new_total,
        old_total_epochs=old_total, readings=readings,
        lr={"last_trained": plan.last_trained, "resume_old": plan.resume_old, "resume_new": plan.resume_new,
            "jump": plan.jump},
        curve=_window(plan, start, opts.window),
        full_curve={"old": [list(p) for p in plan.old_points], "new": [list(p) for p in plan.new_points]},
        group_curves=[{k: [list(p) for p in v] for k, v in g.items()} for g in plan.group_points],
        schedule={"mode": plan.mode, "old": plan.old_desc, "new": plan.new_desc, "unit": plan.unit_source,
                  "steps_per_epoch": steps, "base_lr": plan.base_lr, "base_lr_source": plan.base_source,
                  "convention": ctx.convention, "notes": ctx.notes + plan.notes},
        checks=checks, overflow=plan.overflow)
    result.fixes = _fixes(ckpt, plan, checks, start, old_total, new_total, opts)
    if fix_output is not None:
        _apply_fix(ckpt, ctx, plan, result, new_total, fix_output, force, sanitize, progress)
    return result


def _model(ckpt: Checkpoint) -> StateDict | None:
    if ckpt.layout == "deepspeed":  # ZeRO keeps optimizer state per flat partition, not per parameter
        return None
    try:
        return ckpt.state_dict("model")
    except SectionNotFound:
        return None


def _steps_from_counters(ctx: ResumeContext) -> int | None:
    done = ctx.epochs_done
    if done and ctx.global_step and ctx.global_step % done == 0:
        return ctx.global_step // done
    return None


def _not_resumable(ckpt: Checkpoint, ctx: ResumeContext) -> ResumeResult:
    check = Check("resume.not-resumable", "fail", f"not resumable — use as pretrained weights: {ctx.finished}",
                  "start a new run from these weights (e.g. YOLOv5 --weights FILE without --resume)")
    return ResumeResult(path=ckpt.path, layout=ckpt.layout, start_epoch=None, epochs_done=None, new_total_epochs=None,
                        old_total_epochs=ctx.old_total, readings={}, lr={"last_trained": None, "resume_old": None,
                                                                          "resume_new": None, "jump": None},
                        curve={"old": [], "new": []}, full_curve={"old": [], "new": []},
                        schedule={"mode": "none", "convention": ctx.convention}, checks=[check])


def _start_check(ctx: ResumeContext, plan: LRPlan) -> Check:
    step = f" (global step {ctx.global_step})" if ctx.global_step is not None else ""
    last = (ctx.scheduler or {}).get("last_epoch")
    if ctx.assumed and plan.unit_steps == 1 and isinstance(last, int) and last == ctx.start_epoch and last > 0:
        return Check("resume.start-epoch", "pass", f"start epoch {ctx.start_epoch}{step} — {ctx.convention}; "
                     f"confirmed by the scheduler's last_epoch {last}")
    if ctx.assumed:
        return Check("resume.start-epoch", "warn",
                     f"start epoch {ctx.start_epoch}{step} — {ctx.convention} (assumed)",
                     "give --start-epoch if your script counts differently")
    return Check("resume.start-epoch", "pass", f"start epoch {ctx.start_epoch}{step} — {ctx.convention}")


def _old_settings_check(ctx: ResumeContext, opts: ResumeOptions, old_total: int | None, plan: LRPlan) -> Check:
    if opts.old_epochs is not None:
        return Check("resume.old-settings", "pass", f"old run: {old_total} epochs (--old-epochs)")
    if old_total is None and plan.old_total is not None:
        return Check("resume.old-settings", "pass", f"old run: {plan.old_total} epochs, implied by the saved "
                     "scheduler (T_max/total_iters)")
    if old_total is None and plan.mode == "restored":
        return Check("resume.old-settings", "pass", "the old total epochs are not recorded; not needed: the restored "
                     "scheduler state defines the curve")
    if old_total is None:
        return Check("resume.old-settings", "warn", "the checkpoint does not record the old run's total epochs",
                     "give --old-epochs to compare the old and new curves")
    extra = []
    if ctx.lr0 is not None:
        extra.append(f"lr0 {fmt(ctx.lr0)}")
    if ctx.lrf is not None:
        extra.append(f"lrf {fmt(ctx.lrf)}")
    if ctx.schedule_hint:
        extra.append(f"schedule {ctx.schedule_hint}")
    tail = f" ({', '.join(extra)})" if extra else ""
    return Check("resume.old-settings", "pass", f"old run: {old_total} epochs from {ctx.old_total_source}{tail}")


def _epochs_check(ctx: ResumeContext, opts: ResumeOptions, readings: dict[str, int], new_total: int,
                  done: int) -> Check:
    if new_total <= done:
        yolo = ""
        if ctx.layout in ("yolov5", "ultralytics") and opts.epochs_mode == "total" and ctx.saved_epoch is not None:
            who = "YOLOv5" if ctx.layout == "yolov5" else "ultralytics"
            yolo = (f"; {who} itself would fine-tune {opts.epochs} more epochs (epochs < start_epoch, so epochs += "
                    f"ckpt['epoch'] → total {opts.epochs + ctx.saved_epoch})" if opts.epochs < (ctx.start_epoch or 0)
                    else f"; {who} would train no epoch at all")
        return Check("resume.epochs", "fail",
                     f"the new total of {new_total} epochs is not more than the {done} epochs already done{yolo}",
                     f"use --epochs-mode additional (total {readings['additional']}) or --epochs above {done}")
    return Check("resume.epochs", "pass", f"{new_total - done} more epochs: {done} done, new total {new_total}")


def _reading_check(ctx: ResumeContext, opts: ResumeOptions, readings: dict[str, int], plan: LRPlan) -> Check:
    other = "additional" if opts.epochs_mode == "total" else "total"
    msg = (f"--epochs {opts.epochs} read as {opts.epochs_mode} → {readings[opts.epochs_mode]} epochs in all; "
           f"read as {other} → {readings[other]}")
    if plan.mode == "rebuilt" and plan.model is not None and plan.base_lr and readings[other] > (ctx.start_epoch or 0):
        lr_other = plan.base_lr * plan.model.factor(ctx.start_epoch or 0, readings[other])
        msg += f" (resumed LR {fmt(lr_other)} under that reading)"
    if ctx.layout == "lightning" and plan.mode == "restored":
        msg += "; Lightning restores the scheduler wholesale, so its saved T_max/total_steps apply either way"
    return Check("resume.epochs-reading", "pass", msg)


def _window(plan: LRPlan, start: int, window: int) -> dict[str, list[list[float]]]:
    old = [[e, v] for e, v in plan.old_points if start - window <= e < start + window]
    new = [[e, v] for e, v in plan.new_points if start <= e < start + window]
    return {"old": old, "new": new}


def _fixes(ckpt: Checkpoint, plan: LRPlan, checks: list[Check], start: int, old_total: int | None, new_total: int,
           opts: ResumeOptions) -> list[str]:
    bad = {c.code for c in checks if c.status != "pass"}
    out: list[str] = []
    if plan.mode == "rebuilt" and "resume.lr-jump" in bad and plan.model is not None and old_total is not None:
        out += _schedule_fixes(plan, plan.model, start, old_total, new_total)
    if bad & {"resume.scheduler-overflow", "resume.scheduler-t-max"}:
        out.append(f"write a patched copy: ckpttool validate-resume {ckpt.path} --epochs {opts.epochs} "
                   f"--epochs-mode {opts.epochs_mode} --fix -o {ckpt.path.stem}_resume{ckpt.path.suffix or '.pt'}")
    return out


def _schedule_fixes(plan: LRPlan, model: Schedule, start: int, old_total: int, new_total: int) -> list[str]:
    """Keep the old total; keep the same fraction; a continuation expression (in the schedule's own units)."""
    base, k, unit, at = plan.base_lr or 0.0, plan.unit_steps, plan.unit_name, plan.resume_unit
    t_old, t_new = old_total * k, new_total * k
    out = []
    if old_total > start:
        out.append(f"keep the old total: --epochs {old_total} (the LR continues at {fmt(plan.resume_old)})")
    x = round(at * t_new / t_old)
    if at < x < t_new:
        out.append(f"keep the same fraction of the schedule: set scheduler.last_epoch = {x - 1} after building it "
                   f"(the new schedule resumes at its {unit} {x}, LR {fmt(base * model.factor(x, t_new))}; "
                   f"{t_new - x} {unit}s left)")
    cont = continuation(model, at, t_old, t_new)
    if cont is not None:
        first, end = fmt(base * cont.factor(at, t_new)), fmt(base * cont.factor(t_new, t_new))
        out.append(f"continue smoothly: lf = lambda x: {cont.expression}  (or --lr-lambda '{cont.expression}'; "
                   f"LR {first} at {unit} {at}, {end} at {unit} {t_new})")
    return out


def _apply_fix(ckpt: Checkpoint, ctx: ResumeContext, plan: LRPlan, result: ResumeResult, new_total: int,
               output: Path, force: bool, sanitize: bool = False, progress: ProgressSink | None = None) -> None:
    if ctx.scheduler is None or ctx.scheduler_source is None:
        raise UsageError("--fix needs a saved scheduler state to patch; this checkpoint has none")
    patched, what = patch_scheduler(ctx.scheduler, new_total * plan.unit_steps)
    written, notes = write_fixed(ckpt.tree, ctx.scheduler_source, patched, output, inputs=[ckpt.path], force=force,
                                 sanitize=sanitize, progress=progress)
    after = copy.copy(ctx)
    after.scheduler = patched
    replan = make_plan(after, ResumeOptions(epochs=new_total, scheduler="restore",
                                            steps_per_epoch=plan.unit_steps if plan.unit_steps > 1 else None),
                       result.start_epoch or 0, result.old_total_epochs, new_total)
    written.update(patched=what, next_epoch_lr=replan.new_points[1][1] if len(replan.new_points) > 1 else None,
                   overflow_after=replan.overflow)
    result.written = written
    result.checks.append(Check("resume.fix", "pass", f"wrote {output}: {what}"))
    result.checks.extend(notes)
