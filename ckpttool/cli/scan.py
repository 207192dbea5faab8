"""``ckpttool scan FILE...``."""

from __future__ import annotations

from pathlib import Path

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
from ckpttool.cli.progress import progress_bar, progress_option


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=input_path())
@click.option("-v", "--verbose", is_flag=True, help="Also list the plain-data globals.")
@jobs_option
@progress_option
@json_option
def command(paths: tuple[Path, ...], verbose: bool, jobs: int | None, no_progress: bool, as_json: bool) -> int:
    """Security report: the globals each file's pickles reference, and whether any can run code.

    Every pickle in the file is read (all five of a legacy file, every .pkl member of an archive)
    by ckpttool's own pickle reader, which never imports or calls what a file names. Globals are
    classed as plain data, a class read as a stand-in, or dangerous (could run code).

    \b
    Status of each file:
      clean       plain data and classes read as stand-ins only
      suspicious  built to exhaust whoever loads it (memo explosion, self-containing list or dict,
                  nesting no loader survives, zip bomb, huge storage): resource.* findings
      code        a TorchScript or torch.export archive: loading it builds and runs its code
      dangerous   names a global that could run code if called
      unreadable  could not be read (also one error line per file on stderr)
    Exit status: 0 all clean, 1 a file is suspicious, code or dangerous, 2 a file could not be
    read (and none gave 1).
    \b
    Examples:
      ckpttool scan downloads/*.pt
      ckpttool scan model.bin --json | jq '.files[].status'
      torchrun --nproc-per-node 4 -m ckpttool scan shards/*.bin
    """
    from ckpttool.ops.scan import scan_files

    with progress_bar("scanning", no_progress) as bar:
        report = scan_files(list(paths), jobs=resolve_jobs(jobs), progress=bar)
    if quiet_rank():  # under torchrun the files are split over the ranks; rank 0 alone reports
        return report.exit_code
    if as_json:
        emit_json(report.to_dict())
    else:
        from ckpttool.report.scan import render_scan

        print_renderable(*render_scan(report, verbose=verbose))
    for error in report.errors:  # scripts see every file that was not read to the end
        click.echo(f"ckpttool: {error.one_line()}", err=True)
    return report.exit_code
