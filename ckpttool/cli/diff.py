"""``ckpttool diff A B``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ckpttool.cli.common import (
    emit_json,
    input_path,
    jobs_option,
    json_option,
    print_renderable,
    quiet_rank,
    resolve_jobs,
)
from ckpttool.cli.html_output import check_html, emit_html, html_options
from ckpttool.cli.progress import progress_bar, progress_option
from ckpttool.errors import UsageError

_SECTIONS = ("model", "ema", "optimizer", "scheduler", "scaler", "meta", "all")
_SECTIONS = (*_SECTIONS[:-1], "model16", "all")  # model16: a DeepSpeed folder's 16-bit module weights


def _remap_options(rules_file: Path | None, like: Path | None) -> dict[str, Any]:
    """``--rules`` and ``--like`` through the remap engine's rule files and module alignment."""
    out: dict[str, Any] = {}
    if rules_file is not None:
        from ckpttool.ops.remap import load_rules

        out["rules"] = tuple(load_rules(rules_file))
    if like is not None:
        from ckpttool.ops.remap.target import target_from_checkpoint

        out["like"] = target_from_checkpoint(like)
    return out


def _options(section: str, rtol: float, atol: float, strip_prefix: tuple[str, ...], normalize_keys: bool,
             maps: tuple[str, ...], group_by: str | None, depth: int | None, fail_on: tuple[str, ...],
             ignore_dtype: bool, rules_file: Path | None = None, like: Path | None = None) -> Any:
    from ckpttool.ops.diff import Alignment, DiffOptions, parse_maps, parse_rule

    if rtol < 0 or atol < 0:
        raise UsageError("--rtol and --atol must not be negative")
    if depth is not None and group_by is None:
        raise UsageError("--depth only applies with --group-by module")
    alignment = Alignment(strip_prefixes=tuple(p for p in strip_prefix if p), normalize=normalize_keys,
                          maps=parse_maps(maps), **_remap_options(rules_file, like))
    return DiffOptions(section=section, rtol=rtol, atol=atol, alignment=alignment, ignore_dtype=ignore_dtype,
                       fail_on=tuple(parse_rule(r) for r in fail_on),
                       group_depth=(depth or 1) if group_by else None)


@click.command("diff")
@click.argument("a", type=input_path())
@click.argument("b", type=input_path())
@click.option("--section", default="model", show_default=True, metavar="NAME",
              help=f"What to compare ({', '.join(_SECTIONS[:-1])}, or a pipeline component such as unet); "
                   "'all' compares every section either file has.")
@click.option("--rtol", type=float, default=1e-5, show_default=True, help="Relative tolerance (torch.isclose).")
@click.option("--atol", type=float, default=1e-8, show_default=True, help="Absolute tolerance (torch.isclose).")
@click.option("--strip-prefix", multiple=True, metavar="P", help="Remove prefix P from keys of both files.")
@click.option("--normalize-keys", is_flag=True,
              help="Drop leading 'module.' / '_orig_mod.' wrapper prefixes (DDP, torch.compile) on both sides.")
@click.option("--map", "maps", multiple=True, metavar="OLD=NEW",
              help="Rename module path OLD in A to NEW (whole components: conv1 never matches conv10).")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Rename A's keys with a remap rules file (TOML [[rule]] tables, as for 'ckpttool remap').")
@click.option("--like", type=click.Path(path_type=Path), default=None, metavar="REF",
              help="Align A's modules to REF's model by shape signature and name (usually REF is B).")
@click.option("--group-by", type=click.Choice(["module"]), default=None, help="Roll results up by module prefix.")
@click.option("--depth", type=click.IntRange(1, 64), default=None, help="Module levels for --group-by [1].")
@click.option("--all", "show_all", is_flag=True, help="List every tensor, identical ones included.")
@click.option("--fail-on", multiple=True, metavar="PATTERN:METRIC>VALUE",
              help="Exit 1 only when a key matching PATTERN breaks the threshold (metrics: max_abs, mean_abs, "
                   "rel_l2, cosine, mismatched, mismatched_fraction; operators > >= < <=).")
@click.option("--ignore-dtype", is_flag=True,
              help="A dtype change alone (values within tolerance) is not a difference.")
@jobs_option
@progress_option
@json_option
@html_options
def command(a: Path, b: Path, section: str, rtol: float, atol: float, strip_prefix: tuple[str, ...],
            normalize_keys: bool, maps: tuple[str, ...], rules_file: Path | None, like: Path | None,
            group_by: str | None, depth: int | None, show_all: bool, fail_on: tuple[str, ...], ignore_dtype: bool,
            jobs: int | None, no_progress: bool, as_json: bool, html_out: Path | None = None,
            open_html: bool = False) -> int:
    """Compare two checkpoints, any formats, section by section.

    Tensors with identical bytes are confirmed by a streamed byte comparison; others get
    max/mean |Δ|, relative L2, cosine and the count of elements outside rtol/atol (NaN never
    counts as equal). Shape and dtype changes, keys only in one file, and non-tensor values
    (epoch, hyper-parameters, optimizer settings) are reported apart.

    \b
    Examples:
      ckpttool diff a.pt b.safetensors
      ckpttool diff last.pt best.pt --section all
      ckpttool diff ddp.pt plain.pt --normalize-keys
      ckpttool diff old.pt new.pt --map conv1=backbone.0 --map conv2=backbone.3
      ckpttool diff old.pt new.pt --rules rename.toml
      ckpttool diff old.pt new.pt --like new.pt
      ckpttool diff base.pt tuned.pt --group-by module --depth 2
      ckpttool diff base.pt tuned.pt --fail-on 'backbone.*:max_abs>0' --json
      ckpttool diff base.pt tuned.pt --html changes.html
      torchrun --nproc-per-node 4 -m ckpttool diff run_a/ run_b/ --json

    \b
    Exit status: 0 equal (within tolerance), 1 different (or a --fail-on rule broken), 2 error.
    """
    from ckpttool.io import open_checkpoint
    from ckpttool.ops.diff import diff_checkpoints

    options = _options(section, rtol, atol, strip_prefix, normalize_keys, maps, group_by, depth, fail_on,
                       ignore_dtype, rules_file, like)
    check_html(html_out, open_html, inputs=(a, b))
    ckpt_a, ckpt_b = open_checkpoint(a), open_checkpoint(b)
    quiet = quiet_rank()  # under torchrun the pairs are split over the ranks; rank 0 alone reports
    with progress_bar("comparing", no_progress) as bar:
        result = diff_checkpoints(ckpt_a, ckpt_b, options, progress=bar, jobs=resolve_jobs(jobs))
    if quiet:
        return 1 if result.failed else 0
    emit_html("diff", result.to_dict(), html_out, open_html, inputs=(a, b), title=f"ckpttool diff {a} {b}")
    if as_json:
        emit_json(result.to_dict())
    else:
        from ckpttool.report.diff import render_diff

        print_renderable(*render_diff(result, show_all=show_all))
    return 1 if result.failed else 0
