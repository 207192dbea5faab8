"""The ``ckpttool`` command line: a click group whose commands are imported only when used.

Each command lives in ``ckpttool/cli/<name>.py`` as a click command called ``command`` that parses
options, calls one operation, renders its result and returns the exit status. ``main`` holds the
single ladder that maps errors to exit codes: a ``CkptError`` prints one line and exits 2 (or its
own code); anything else is a bug, reported as ``internal-error`` (traceback with ``--debug``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from ckpttool.errors import CkptError

__all__ = ["main", "cli", "COMMANDS"]

# command name -> module defining ``command``; commands not installed yet are simply absent.
COMMANDS: dict[str, str] = {
    "inspect": "ckpttool.cli.inspect",
    "scan": "ckpttool.cli.scan",
    "diff": "ckpttool.cli.diff",
    "remap": "ckpttool.cli.remap",
    "extract-ema": "ckpttool.cli.extract_ema",
    "validate-resume": "ckpttool.cli.validate_resume",
    "convert": "ckpttool.cli.convert",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if importlib.util.find_spec(COMMANDS[name]) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None or importlib.util.find_spec(module) is None:
            return None
        return importlib.import_module(module).command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ckpttool", prog_name="ckpttool")
@click.option("--debug", is_flag=True, help="Show a traceback on internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Inspect, compare, migrate and convert PyTorch checkpoints without running their code.

    \b
    Examples:
      ckpttool inspect last.pt
      ckpttool scan downloads/*.pt
      ckpttool diff a.pt b.safetensors --rtol 1e-5
    Exit status: 0 success/equal/clean, 1 differences or findings, 2 errors.
    """
    ctx.obj = {"debug": debug}


def _error(message: str) -> None:
    from ckpttool.cli.common import quiet_rank

    if not quiet_rank():  # under torchrun rank 0 alone reports; every rank exits with the same status
        click.echo(f"ckpttool: {message}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (``python -m ckpttool`` and the console script)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result: Any = cli.main(args=args, prog_name="ckpttool", standalone_mode=False)
    except CkptError as exc:
        hint = f" (hint: {exc.hint})" if exc.hint else ""
        _error(exc.one_line() + hint)
        return exc.exit_code
    except click.exceptions.Abort:
        _error("aborted")
        return 130
    except click.ClickException as exc:
        from ckpttool.cli.common import quiet_rank

        if not quiet_rank():
            exc.show()
        return 2 if exc.exit_code == 2 else exc.exit_code or 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        if debug:
            raise
        _error(f"error[internal-error]: {type(exc).__name__}: {exc} "
               "(this is a bug in ckpttool; please report it, rerun with --debug for the traceback)")
        return 2
    return int(result or 0)
