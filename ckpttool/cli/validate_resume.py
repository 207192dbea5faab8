"""``ckpttool validate-resume CKPT --epochs N``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ckpttool.cli.common import emit_json, input_path, json_option, leader_only, print_renderable
from ckpttool.cli.html_output import check_html, emit_html, html_options
from ckpttool.cli.progress import progress_bar, progress_option
from ckpttool.errors import UsageError

_SCHEDULES = ("cosine", "linear", "one-cycle", "step", "multistep", "poly", "constant")


def _milestones(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise UsageError(f"--milestones takes comma-separated epochs, e.g. 30,60,90 (got {value!r})") from None


@click.command("validate-resume")
@click.argument("path", type=input_path())
@click.option("--epochs", type=int, required=True, help="The new run's epochs (a total, or see --epochs-mode).")
@click.option("--epochs-mode", type=click.Choice(["total", "additional"]), default="total", show_default=True,
              help="Read --epochs as the new total or as epochs to add; the report states both readings.")
@click.option("--schedule", type=click.Choice(_SCHEDULES), help="The LR schedule your script builds (default: what "
              "the checkpoint records, e.g. YOLOv5 opt['cos_lr']).")
@click.option("--lr-lambda", metavar="EXPR", help="The schedule as an expression in x (epoch) and epochs, e.g. "
              "'((1 + cos(x*pi/epochs))/2)*0.8 + 0.2'; evaluated safely, never with eval.")
@click.option("--lrf", type=float, help="Final LR fraction for cosine/linear/one-cycle/poly (default: the "
              "checkpoint's hyp lrf, else 0.01).")
@click.option("--lr0", type=float, help="Base LR (default: the optimizer's initial_lr).")
@click.option("--gamma", type=float, default=0.1, show_default=True, help="Decay factor of step/multistep.")
@click.option("--step-size", type=int, default=30, show_default=True, help="Epochs per decay of step.")
@click.option("--milestones", metavar="E1,E2,...", help="Epochs of multistep decays.")
@click.option("--power", type=float, default=1.0, show_default=True, help="Exponent of poly.")
@click.option("--steps-per-epoch", type=int, help="Optimizer steps per epoch, for per-step schedulers and the EMA "
              "count (default: inferred from the checkpoint).")
@click.option("--old-epochs", type=int, help="The old run's total epochs when the checkpoint does not record them.")
@click.option("--start-epoch", type=int, help="Override where training restarts (0-based).")
@click.option("--scheduler", "scheduler_mode", type=click.Choice(["auto", "restore", "rebuild"]), default="auto",
              show_default=True, help="Whether the saved torch scheduler state is loaded (restore) or the schedule is "
              "built again from the new settings (rebuild).")
@click.option("--max-jump", type=float, default=0.10, show_default=True,
              help="Largest relative LR jump at the resume point that passes.")
@click.option("--amp", is_flag=True, help="The new run uses mixed precision: check the GradScaler state.")
@click.option("--window", type=int, default=5, show_default=True, help="Epochs shown each side of the resume point.")
@click.option("--plot", "plot_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Also save the LR curves as an image (needs matplotlib: pip install 'ckpttool[plot]').")
@click.option("--no-plot", is_flag=True, help="Leave the terminal plot out.")
@click.option("--fix", is_flag=True, help="Write a copy with the scheduler state patched for the new run "
              "(CosineAnnealingLR T_max, OneCycleLR total_steps); needs -o.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Where --fix writes.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists (never the input).")
@click.option("--sanitize", is_flag=True, help="With --fix: write pickled modules and other objects as plain "
              "data (weights_only-loadable) instead of keeping them.")
@progress_option
@json_option
@html_options
@leader_only
def command(path: Path, epochs: int, epochs_mode: str, schedule: str | None, lr_lambda: str | None,
            lrf: float | None, lr0: float | None, gamma: float, step_size: int, milestones: str | None, power: float,
            steps_per_epoch: int | None, old_epochs: int | None, start_epoch: int | None, scheduler_mode: str,
            max_jump: float, amp: bool, window: int, plot_file: Path | None, no_plot: bool, fix: bool,
            output: Path | None, force: bool, sanitize: bool, no_progress: bool, as_json: bool,
            html_out: Path | None = None, open_html: bool = False) -> int:
    """Check a resume plan before spending GPU hours: start epoch, LR continuity, scheduler,
    optimizer, GradScaler and EMA state.

    PATH is a checkpoint file (YOLOv5/ultralytics, Lightning, timm, mmengine, a training dict) or a
    Hugging Face Trainer checkpoint-N/ folder. Predicts the learning rate the resumed run will use
    (LambdaLR lambdas are rebuilt from the new settings; saved torch schedulers are stepped in pure
    Python), the jump at the resume point, and failures such as a OneCycleLR stepped past
    total_steps. Never runs code from the file.

    \b
    Exit status: 0 every check passes, 1 a check failed, 2 bad input.
    \b
    Examples:
      ckpttool validate-resume last.pt --epochs 400
      ckpttool validate-resume last.pt --epochs 100 --epochs-mode additional --schedule cosine --lrf 0.2
      ckpttool validate-resume last.ckpt --epochs 30 --steps-per-epoch 500 --json
      ckpttool validate-resume last.pt --epochs 20 --fix -o last_resume.pt
      ckpttool validate-resume output/checkpoint-1500 --epochs 6
      ckpttool validate-resume last.pt --epochs 400 --html resume.html
    """
    import ckpttool
    from ckpttool.ops.resume import ResumeOptions, validate_resume

    if schedule and lr_lambda:
        raise UsageError("give either --schedule or --lr-lambda, not both")
    if fix and output is None:
        raise UsageError("--fix needs -o/--output: the input is never overwritten")
    if output is not None and not fix:
        raise UsageError("-o/--output is only used with --fix")
    for name, value in (("--steps-per-epoch", steps_per_epoch), ("--old-epochs", old_epochs)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1")
    if start_epoch is not None and start_epoch < 0:
        raise UsageError("--start-epoch must be 0 or more")
    check_html(html_out, open_html, inputs=(path,) + ((output,) if output else ()))
    if max_jump < 0 or window < 1:
        raise UsageError("--max-jump must be >= 0 and --window >= 1")
    opts = ResumeOptions(epochs=epochs, epochs_mode=epochs_mode, schedule=schedule, lr_lambda=lr_lambda,  # type: ignore[arg-type]
                         lrf=lrf, lr0=lr0, gamma=gamma, step_size=step_size, milestones=_milestones(milestones),
                         power=power, steps_per_epoch=steps_per_epoch, old_epochs=old_epochs, start_epoch=start_epoch,
                         max_jump=max_jump, amp=amp, scheduler=scheduler_mode, window=window)  # type: ignore[arg-type]
    from ckpttool.ops.resume.hf_trainer import is_trainer_folder, open_trainer_folder

    ckpt = open_trainer_folder(Path(path)) if is_trainer_folder(Path(path)) else ckpttool.open(path)
    with progress_bar("writing + verifying", no_progress or not fix) as bar:
        result = validate_resume(ckpt, opts, fix_output=output if fix else None, force=force, sanitize=sanitize,
                                 progress=bar)
    if plot_file is not None:
        from ckpttool.report.resume import save_plot

        if plot_file.resolve() == Path(path).resolve():
            raise UsageError("--plot would overwrite the input")
        save_plot(result, plot_file)
    emit_html("resume", result.to_dict(), html_out, open_html, inputs=(path,) + ((output,) if output else ()),
              title=f"ckpttool validate-resume {path}")
    if as_json:
        emit_json(result.to_dict())
    else:
        from ckpttool.report.resume import render_resume

        print_renderable(*render_resume(result, plot=not no_plot, color=sys.stdout.isatty()))
    return 0 if result.ok else 1
