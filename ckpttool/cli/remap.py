"""``ckpttool remap IN -o OUT``: rename checkpoint keys between architectures, optimizer state included."""

from __future__ import annotations

from pathlib import Path

import click

from ckpttool.cli.common import emit_json, input_path, json_option, leader_only, print_renderable
from ckpttool.cli.progress import progress_bar, progress_option


@click.command("remap")
@click.argument("src", type=input_path())
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write.")
@click.option("--strip-prefix", multiple=True, metavar="P", help="Remove the leading module path P.")
@click.option("--add-prefix", multiple=True, metavar="P", help="Put every key under module path P.")
@click.option("--map", "maps", multiple=True, metavar="OLD=NEW", help="Rename module path OLD to NEW (repeatable).")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), help="TOML file of [[rule]] tables.")
@click.option("--preset", "presets", multiple=True, metavar="NAME",
              help="wrappers (module., _orig_mod.), lightning[:ATTR], or weight-norm[:legacy] "
                   "(weight_g/weight_v <-> parametrizations.weight.original0/1).")
@click.option("--to", type=click.Choice(["sequential", "named"]), help="Direction of a --layout move.")
@click.option("--layout", type=click.Path(path_type=Path), help="TOML layout of the Sequential containers.")
@click.option("--like", type=click.Path(path_type=Path), help="Align to the keys and shapes of this checkpoint.")
@click.option("--model", metavar="MODULE:CALLABLE", help="Align to this model (built on the meta device).")
@click.option("--strict", is_flag=True, help="Ambiguities, leftovers and missing keys are errors.")
@click.option("--drop-optimizer", is_flag=True, help="Leave the optimizer state out of the output.")
@click.option("--allow-partial", is_flag=True,
              help="Write the output even if it would not load strictly into --like/--model (still exit 1).")
@click.option("--sanitize", is_flag=True, help="Write pickled modules and other objects as plain data "
              "(weights_only-loadable) instead of keeping them as they were.")
@click.option("--dry-run", is_flag=True, help="Show the mapping; write nothing.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--quiet", is_flag=True, help="Hide unchanged keys in the mapping table.")
@progress_option
@json_option
@leader_only
def command(src: Path, output: Path | None, strip_prefix: tuple[str, ...], add_prefix: tuple[str, ...],
            maps: tuple[str, ...], rules_file: Path | None, presets: tuple[str, ...], to: str | None,
            layout: Path | None, like: Path | None, model: str | None, strict: bool, drop_optimizer: bool,
            allow_partial: bool, sanitize: bool, dry_run: bool, force: bool, quiet: bool, no_progress: bool,
            as_json: bool) -> int:
    """Rename the model keys of SRC (every section holding them, and the optimizer state) and write OUTPUT.

    Rules run in order: --preset, --strip-prefix, --add-prefix, --map, --rules; then --to with a
    --layout, or alignment to --like/--model by shapes, module order and names. Every choice between
    same-shaped modules is reported with its reason; what order and names cannot decide is not moved
    (--strict makes any of it an error). With --like/--model, a result that would not load with
    load_state_dict(strict=True) is not written (exit 1) unless --allow-partial. The output has the
    input's format, is written atomically and verified; the input is never modified.

    \b
    Examples:
      ckpttool remap old.pt -o new.pt --to sequential --layout layout.toml
      ckpttool remap old.pt -o new.pt --like new_model.pt --dry-run
      ckpttool remap old.pt -o new.pt --model mypkg.models:Net --map conv_a=backbone.0
      ckpttool remap ddp.pt -o plain.pt --preset wrappers
      ckpttool remap vocoder.pt -o new.pt --preset weight-norm
    \b
    Exit status: 0 written (or planned); 1 the result would not load strictly into --like/--model
    (nothing written unless --allow-partial); 2 bad options, collisions, --strict findings, unreadable input.
    """
    from ckpttool.ops.remap import RemapOptions, remap

    opts = RemapOptions(strip_prefix=list(strip_prefix), add_prefix=list(add_prefix), maps=list(maps),
                        rules_file=rules_file, presets=list(presets), to=to, layout=layout, like=like,
                        model=model, strict=strict, drop_optimizer=drop_optimizer, allow_partial=allow_partial,
                        sanitize=sanitize)
    with progress_bar("writing + verifying", no_progress) as bar:
        result = remap(src, opts, output, dry_run=dry_run, force=force, progress=bar)
    if as_json:
        emit_json(result.to_dict())
    else:
        from ckpttool.report.remap import render_remap

        print_renderable(*render_remap(result, show_unchanged=not quiet))
        verdict = result.verdict()
        if verdict is not None:
            click.echo(verdict)
    return 1 if result.partial else 0
