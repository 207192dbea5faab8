"""``ckpttool inspect FILE``."""

from __future__ import annotations

from pathlib import Path

import click

from ckpttool.cli.common import emit_json, input_path, json_option, print_renderable, quiet_rank
from ckpttool.cli.html_output import check_html, emit_html, html_options
from ckpttool.errors import about
from ckpttool.model import SECTION_KINDS


@click.command("inspect")
@click.argument("path", type=input_path())
@click.option("--section", "sections", multiple=True, metavar="NAME",
              help=f"Show only this section (repeatable): {', '.join(SECTION_KINDS)}, or another section the "
                   "file has (constants, unet...).")
@click.option("--keys", is_flag=True, help="Flat list: key, dtype, shape, bytes.")
@click.option("--stats", is_flag=True, help="Read tensor bytes (streamed) for min/max/mean/std and NaN/Inf counts.")
@click.option("--depth", default=2, show_default=True, type=click.IntRange(0, 64),
              help="Module levels to expand in the tree view.")
@json_option
@html_options
def command(path: Path, sections: tuple[str, ...], keys: bool, stats: bool, depth: int, as_json: bool,
            html_out: Path | None = None, open_html: bool = False) -> int:
    """Show what a checkpoint holds, without running code from it.

    Reads only the archive index and the pickle (never tensor bytes unless --stats, never torch):
    sections (model, ema, optimizer, scheduler, scaler, meta), tensors with dtype and shape,
    totals, the classes the file pickles, and findings such as globals that could run code.

    \b
    Examples:
      ckpttool inspect last.pt
      ckpttool inspect last.pt --section optimizer
      ckpttool inspect model.safetensors --keys
      ckpttool inspect last.pt --json | jq '.sections.model.tensors | keys'
      ckpttool inspect last.pt --html last.html --open
    """
    from ckpttool.io import open_checkpoint
    from ckpttool.ops.inspect import inspect_checkpoint

    check_html(html_out, open_html, inputs=(path,))
    with about(path):
        report = inspect_checkpoint(open_checkpoint(path), sections=sections, stats=stats)
    if quiet_rank():  # under torchrun every rank reads the same file (no torch here); rank 0 alone reports
        return 0
    emit_html("inspect", report.to_dict(), html_out, open_html, inputs=(path,), title=f"ckpttool inspect {path}")
    if as_json:
        emit_json(report.to_dict())
        return 0
    from ckpttool.report.inspect import render_inspect, render_keys

    print_renderable(*(render_keys(report) if keys else render_inspect(report, depth=depth)))
    return 0
