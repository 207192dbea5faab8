"""``ckpttool extract-ema IN -o OUT``."""

from __future__ import annotations

from pathlib import Path

import click

from ckpttool.cli.common import emit_json, input_path, json_option, leader_only, print_renderable
from ckpttool.cli.progress import progress_bar, progress_option
from ckpttool.errors import UsageError


@click.command("extract-ema")
@click.argument("path", type=input_path())
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write (.safetensors, or .pt/.pth/.ckpt for torch).")
@click.option("--source", metavar="KEY", help="Which EMA to take when the file holds several (see --list).")
@click.option("--dtype", metavar="DTYPE", help="Cast floating tensors on the way out: fp16, bf16, fp32, fp64.")
@click.option("--into-checkpoint", is_flag=True,
              help="Write a copy of the training checkpoint whose model weights are the EMA.")
@click.option("--strip-optimizer", is_flag=True, help="With --into-checkpoint: leave the optimizer state out.")
@click.option("--list", "list_only", is_flag=True, help="List every EMA the file holds; write nothing.")
@click.option("--dry-run", is_flag=True, help="Find and check the EMA; write nothing.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists (never the input).")
@click.option("--sanitize", is_flag=True, help="With --into-checkpoint: write pickled modules and other objects "
              "as plain data (weights_only-loadable) instead of keeping them.")
@progress_option
@json_option
@leader_only
def command(path: Path, output: Path | None, source: str | None, dtype: str | None, into_checkpoint: bool,
            strip_optimizer: bool, list_only: bool, dry_run: bool, force: bool, sanitize: bool, no_progress: bool,
            as_json: bool) -> int:
    """Write the EMA weights of PATH as a plain state_dict with the model's own keys.

    Finds the EMA wherever the framework put it (YOLOv5/ultralytics, timm, Lightning weight
    averaging and SWA, mmengine EMAHook, AveragedModel, Stable-Diffusion LitEma, ema-pytorch,
    torch-ema), says why, and checks it against the raw weights: max |Δ|, relative L2, coverage,
    dtype and update count. The write is atomic and verified by reading it back.

    \b
    Exit status: 0 written (warnings allowed), 1 the EMA failed a check (e.g. it equals the raw
    weights: ema.identical-to-model) and nothing was written, 2 no EMA found or bad input.
    \b
    Examples:
      ckpttool extract-ema last.pt -o model.safetensors
      ckpttool extract-ema last.ckpt --list
      ckpttool extract-ema last.pt -o ema_fp16.safetensors --dtype fp16 --json
      ckpttool extract-ema last.pt -o publish.pt --into-checkpoint --strip-optimizer
    """
    import ckpttool
    from ckpttool.ops.ema import extract_ema, list_ema

    if list_only and (output or into_checkpoint or strip_optimizer or dtype or dry_run):
        raise UsageError("--list writes nothing: it takes no -o/--dtype/--into-checkpoint/--dry-run")
    if not list_only and output is None and not dry_run:
        raise UsageError("-o/--output is required", hint="or use --list / --dry-run to only look")
    if dry_run and output is not None:
        raise UsageError("--dry-run writes nothing: drop -o")
    ckpt = ckpttool.open(path)
    if list_only:
        listing = list_ema(ckpt)
        if as_json:
            emit_json(listing.to_dict())
        else:
            from ckpttool.report.ema import render_ema_list

            print_renderable(*render_ema_list(listing))
        return 0
    with progress_bar("checking + writing", no_progress) as bar:
        result = extract_ema(ckpt, output, source=source, dtype=dtype, into_checkpoint=into_checkpoint,
                             strip_optimizer=strip_optimizer, force=force, sanitize=sanitize, progress=bar)
    if as_json:
        emit_json(result.to_dict())
    else:
        from ckpttool.report.ema import render_ema

        print_renderable(*render_ema(result))
    return 0 if result.ok else 1
