"""What a checkpoint says about its own run: epochs done, where training restarts, old settings.

Every framework counts differently, so each convention is written out here with its source:

* YOLOv5 ``train.py`` saves ``epoch`` = the epoch just finished; ``smart_resume`` restarts at
  ``epoch + 1``. A stripped release file has ``epoch == -1`` and ``optimizer: None``.
* ultralytics ``BaseTrainer.resume_training``: ``start_epoch = ckpt["epoch"] + 1``.
* Lightning saves ``epoch = trainer.current_epoch`` (= ``epoch_progress.current.completed``), which
  at an end-of-epoch save is still the index of the epoch just trained; on restore
  ``FitLoop.on_run_start`` sets ``completed = processed``, so training restarts at
  ``loops.fit_loop.epoch_progress.current.processed`` (``epoch + 1`` after a full epoch, ``epoch``
  for a mid-epoch save, which resumes inside that epoch).
* timm ``resume_checkpoint``: ``epoch + 1`` when ``version >= 2``, else ``epoch``.
* mmengine saves ``meta.epoch`` = epochs completed and restarts there.
* Hugging Face Trainer: ``epochs_trained = global_step // num_update_steps_per_epoch`` (that many
  steps per epoch is ``max_steps / num_train_epochs``), skipping ``global_step % steps`` batches.
* a generic training dict: ``epoch + 1`` (the usual ``start_epoch = ckpt["epoch"] + 1``), checked
  against the scheduler's ``last_epoch`` when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import Checkpoint, Section, Stub, TensorRef
from ckpttool.ops.resume.torch_schedulers import number

__all__ = ["ResumeContext", "read_context", "attrs", "as_int"]


def attrs(value: Any) -> dict[str, Any]:
    """A config object as a dict: a dict itself, or a pickled ``Namespace``'s attributes."""
    if isinstance(value, dict):
        return value
    if isinstance(value, Stub) and not value.is_module:
        return value.attributes
    return {}


def as_int(value: Any) -> int | None:
    """An integer from a saved int, integral float or one-element tensor; None otherwise."""
    v = number(value)
    return int(v) if v is not None and float(v).is_integer() else None


@dataclass
class ResumeContext:
    """The facts about the saved run that validate-resume reasons from, each with where it came from."""

    layout: str
    saved_epoch: int | None = None
    epochs_done: int | None = None
    start_epoch: int | None = None
    convention: str = ""
    assumed: bool = False
    finished: str | None = None          # why the file is not resumable, when it is not
    global_step: int | None = None
    old_total: int | None = None
    old_total_source: str | None = None
    lr0: float | None = None
    lrf: float | None = None
    settings_source: str | None = None
    schedule_hint: str | None = None
    schedule_expr: str | None = None     # the framework's lambda as an expression in x (step) and epochs (total)
    per_step: bool = False               # the schedule advances per optimizer step, not per epoch
    steps_per_epoch: int | None = None
    mm_schedulers: list[dict[str, Any]] = field(default_factory=list)  # mmengine param_schedulers, in order
    optimizer: dict[str, Any] | None = None
    optimizer_source: str | None = None
    scheduler: dict[str, Any] | None = None
    scheduler_source: str | None = None
    scheduler_restored: bool = False     # the framework loads the saved scheduler state on resume
    scaler: Any = None
    scaler_source: str | None = None
    ema: Section | None = None
    ema_updates: int | None = None
    ema_updates_source: str | None = None
    notes: list[str] = field(default_factory=list)


def read_context(ckpt: Checkpoint) -> ResumeContext:
    """Collect the run facts of ``ckpt`` according to its layout's conventions."""
    tree = ckpt.tree if isinstance(ckpt.tree, dict) else {}
    ctx = ResumeContext(layout=ckpt.layout)
    for kind in ("optimizer", "scheduler"):
        sec = ckpt.sections.get(kind)
        if sec is not None and isinstance(sec.value, dict):
            setattr(ctx, kind, sec.value)
            setattr(ctx, f"{kind}_source", sec.source)
    scaler_sec = ckpt.sections.get("scaler")
    if scaler_sec is not None:
        ctx.scaler, ctx.scaler_source = scaler_sec.value, scaler_sec.source
    else:
        for key in ("scaler", "grad_scaler", "amp_scaler", "scaler_state_dict"):
            if key in tree:
                ctx.scaler, ctx.scaler_source = tree[key], key
                break
    ctx.ema = ckpt.sections.get("ema")
    if ckpt.layout == "hf-trainer":
        from ckpttool.ops.resume.hf_trainer import read_hf_context as reader
    elif ckpt.layout == "deepspeed":
        from ckpttool.ops.resume.deepspeed import read_deepspeed_context as reader
    else:
        reader = _READERS.get(ckpt.layout, _generic)
    reader(tree, ctx)
    _ema_counter(tree, ctx)
    return ctx


def _epoch_plus_one(ctx: ResumeContext, epoch: int | None, who: str, *, assumed: bool = False) -> None:
    ctx.saved_epoch = epoch
    if epoch is None:
        return
    ctx.epochs_done = epoch + 1
    ctx.start_epoch = epoch + 1
    ctx.convention = (f"{who}: 'epoch' {epoch} is the last finished epoch (0-based); training restarts at "
                      f"epoch + 1 = {epoch + 1}")
    ctx.assumed = assumed


def _yolo(tree: dict[str, Any], ctx: ResumeContext) -> None:
    epoch = as_int(tree.get("epoch"))
    ultra = ctx.layout == "ultralytics"
    who = "ultralytics BaseTrainer.resume_training" if ultra else "YOLOv5 smart_resume"
    if epoch == -1 or ("optimizer" in tree and tree.get("optimizer") is None):
        ctx.saved_epoch = epoch
        ctx.finished = (f"'epoch' is {epoch} and 'optimizer' is None: a finished run stripped for release "
                        "(strip_optimizer)")
        return
    _epoch_plus_one(ctx, epoch, who)
    settings = attrs(tree.get("train_args" if ultra else "opt"))
    src = "train_args" if ultra else "opt"
    ctx.old_total = as_int(settings.get("epochs"))
    ctx.old_total_source = f"{src}['epochs']" if ctx.old_total is not None else None
    hyp = settings if ultra else attrs(settings.get("hyp"))
    ctx.lr0, ctx.lrf = number(hyp.get("lr0")), number(hyp.get("lrf"))
    ctx.settings_source = f"{src}" if ultra else f"{src}['hyp']"
    cos = settings.get("cos_lr")
    if isinstance(cos, bool):
        ctx.schedule_hint = "cosine" if cos else "linear"
        used = "one_cycle (cosine)" if cos else "linear"
        ctx.notes.append(f"{src}['cos_lr'] is {cos}: the run used the {used} lambda")
    ctx.scheduler_restored = False  # YOLOv5 rebuilds LambdaLR from the new epochs and sets last_epoch
    if not ultra:
        ctx.notes.append("YOLOv5 sets scheduler.last_epoch = start_epoch - 1 after loading the optimizer: epoch "
                         f"{epoch + 1} still trains at the saved LR and the new schedule applies from the next epoch "
                         "(one epoch late)")


def _lightning(tree: dict[str, Any], ctx: ResumeContext) -> None:
    epoch = as_int(tree.get("epoch"))
    ctx.saved_epoch = epoch
    ctx.global_step = as_int(tree.get("global_step"))
    ctx.scheduler_restored = True
    progress = attrs(attrs(attrs(tree.get("loops")).get("fit_loop")).get("epoch_progress")).get("current")
    processed, started = as_int(attrs(progress).get("processed")), as_int(attrs(progress).get("started"))
    if processed is not None:
        ctx.start_epoch = processed
        mid = started is not None and processed < started
        ctx.epochs_done = processed
        where = ("mid-epoch save: training resumes inside epoch " if mid else
                 "end-of-epoch save: training restarts at epoch ")
        ctx.convention = (f"Lightning: 'epoch' {epoch} is trainer.current_epoch at save time; "
                          f"loops.fit_loop.epoch_progress.current.processed = {processed} "
                          f"({where}{processed}; FitLoop.on_run_start sets completed = processed)")
    elif epoch is not None:
        ctx.start_epoch = ctx.epochs_done = epoch + 1
        ctx.assumed = True
        ctx.convention = (f"Lightning: 'epoch' {epoch} is trainer.current_epoch at save time; no loop state, "
                          f"so an end-of-epoch save is assumed and training restarts at {epoch + 1}")
    hp = attrs(tree.get("hyper_parameters"))
    for key in ("max_epochs", "epochs", "num_epochs", "n_epochs"):
        if as_int(hp.get(key)) is not None:
            ctx.old_total, ctx.old_total_source = as_int(hp.get(key)), f"hyper_parameters['{key}']"
            break
    ctx.lr0 = number(hp.get("lr", hp.get("learning_rate")))
    ctx.settings_source = "hyper_parameters" if hp else None


def _timm(tree: dict[str, Any], ctx: ResumeContext) -> None:
    epoch = as_int(tree.get("epoch"))
    version = as_int(tree.get("version")) or 1
    if epoch is not None and version >= 2:
        _epoch_plus_one(ctx, epoch, f"timm resume_checkpoint (version {version})")
    elif epoch is not None:
        ctx.saved_epoch = ctx.start_epoch = ctx.epochs_done = epoch
        ctx.convention = f"timm resume_checkpoint (version {version} < 2): training restarts at 'epoch' = {epoch}"
    args = attrs(tree.get("args"))
    ctx.old_total = as_int(args.get("epochs"))
    ctx.old_total_source = "args.epochs" if ctx.old_total is not None else None
    ctx.lr0 = number(args.get("lr"))
    min_lr = number(args.get("min_lr")) or 0.0
    if ctx.lr0:
        ctx.lrf = min_lr / ctx.lr0
    ctx.settings_source = "args"
    if args.get("sched") == "cosine":
        ctx.schedule_hint = "cosine"
        ctx.notes.append("args.sched is 'cosine': timm CosineLRScheduler over args.epochs (lrf = min_lr / lr)")
    elif args.get("sched") in ("step", "multistep", "poly"):
        ctx.schedule_hint = str(args.get("sched"))


def _mmengine(tree: dict[str, Any], ctx: ResumeContext) -> None:
    meta = attrs(tree.get("meta"))
    epoch = as_int(meta.get("epoch"))
    ctx.saved_epoch = epoch
    ctx.global_step = as_int(meta.get("iter"))
    ctx.scheduler_restored = True
    schedulers = tree.get("param_schedulers")
    if isinstance(schedulers, list):
        ctx.mm_schedulers = [s for s in schedulers if isinstance(s, dict)]
    if epoch is not None:
        ctx.start_epoch = ctx.epochs_done = epoch
        ctx.convention = f"mmengine: meta.epoch {epoch} counts finished epochs; the train loop restarts at {epoch}"


def _generic(tree: dict[str, Any], ctx: ResumeContext) -> None:
    for key in ("epoch", "epochs", "cur_epoch", "current_epoch"):
        epoch = as_int(tree.get(key))
        if epoch is not None:
            _epoch_plus_one(ctx, epoch, f"training dict '{key}' (the usual start_epoch = ckpt['{key}'] + 1)",
                            assumed=True)
            break
    for key in ("global_step", "step", "iteration", "iter"):
        if as_int(tree.get(key)) is not None:
            ctx.global_step = as_int(tree.get(key))
            break
    ctx.scheduler_restored = ctx.scheduler is not None
    cfg = {}
    for key in ("args", "config", "cfg", "hparams", "hyper_parameters", "opt"):
        cfg = attrs(tree.get(key))
        if cfg:
            ctx.settings_source = key
            break
    for key in ("epochs", "max_epochs", "num_epochs", "n_epochs"):
        if as_int(cfg.get(key)) is not None:
            ctx.old_total, ctx.old_total_source = as_int(cfg.get(key)), f"{ctx.settings_source}['{key}']"
            break
    ctx.lr0 = number(cfg.get("lr", cfg.get("lr0", cfg.get("learning_rate"))))
    ctx.lrf = number(cfg.get("lrf"))
    if ctx.start_epoch is None and ctx.optimizer is None:
        ctx.finished = "no epoch counter and no optimizer state: weights only"


def _ema_counter(tree: dict[str, Any], ctx: ResumeContext) -> None:
    """How many updates the EMA has seen: YOLOv5 ``updates``, ``n_averaged``, ``num_updates``, ``steps``."""
    if as_int(tree.get("updates")) is not None:
        ctx.ema_updates, ctx.ema_updates_source = as_int(tree.get("updates")), "updates"
        return
    avg = attrs(tree.get("averaging_state"))
    if as_int(avg.get("n_averaged")) is not None:
        ctx.ema_updates, ctx.ema_updates_source = as_int(avg.get("n_averaged")), "averaging_state.n_averaged"
        return
    raw = tree.get("ema_state_dict")  # mmengine EMAHook: the swapped-out weights carry the 'steps' counter
    if isinstance(raw, dict) and as_int(raw.get("steps")) is not None:
        ctx.ema_updates, ctx.ema_updates_source = as_int(raw.get("steps")), "ema_state_dict.steps"
        return
    value = ctx.ema.value if ctx.ema is not None else None
    if isinstance(value, dict):
        for key in ("n_averaged", "num_updates", "steps", "step", "updates", "module.n_averaged"):
            v = value.get(key)
            if isinstance(v, TensorRef | int) and as_int(v) is not None:
                ctx.ema_updates, ctx.ema_updates_source = as_int(v), f"{ctx.ema.source}.{key}"
                return


_READERS = {
    "yolov5": _yolo, "ultralytics": _yolo, "lightning": _lightning, "timm": _timm, "mmengine": _mmengine,
    "training-dict": _generic,
}
