"""``ckpttool scan FILE...``."""

from __future__ import annotations

from pathlib import Path

import click

from ckpttool.cli.common import emit_json, input_path, jobs_option, json_option, print_renderable, resolve_jobs


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=input_path())
@click.option("-v", "--verbose", is_flag=True, help="Also list the plain-data globals.")
@jobs_option
@json_option
def command(paths: tuple[Path, ...], verbose: bool, jobs: int | None, as_json: bool) -> int:
    """Security report: the globals each file's pickles reference, and whether any can run code.

    Every pickle in the file is read (all five of a legacy file, every .pkl member of an archive)
    by ckpttool's own pickle reader, which never imports or calls what a file names. Globals are
    classed as plain data, a class read as a stand-in, or dangerous (could run code).

    \b
    Exit status: 0 all clean, 1 something dangerous found, 2 a file could not be read.
    \b
    Examples:
      ckpttool scan downloads/*.pt
      ckpttool scan model.bin --json | jq '.files[].dangerous'
    """
    from ckpttool.ops.scan import scan_files

    report = scan_files(list(paths), jobs=resolve_jobs(jobs))
    if as_json:
        emit_json(report.to_dict())
    else:
        from ckpttool.report.scan import render_scan

        print_renderable(*render_scan(report, verbose=verbose))
    return report.exit_code
