"""The `rnnkit` command line: parse, call the library, print. Nothing else lives here.

One module per command group (corpus, train, translate, evaluate, caption, lm, rescore, report,
doctor); the tables and the training progress view are in _render.py, what the groups share in
_common.py. This module holds the app
and `main`, the one error boundary: every RnnkitError becomes one `error: ...` line on stderr and
exit code 2; anything unexpected is exit code 1 with a one-line message, or the traceback with
--debug. Data goes to stdout; progress and tables for people go to stderr when stdout carries data.
"""
from __future__ import annotations

import sys
from typing import Annotated

import typer

from .._version import __version__
from ..errors import RnnkitError
from ..training.distributed import active_world
from . import caption, corpus, doctor, evaluate, lm, report, rescore, train, translate
from ._common import err

app = typer.Typer(
    name="rnnkit",
    help="Language modelling on the CPU: prepare corpora, train n-gram and recurrent models, "
    "generate, score and rescore sentences.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
for group in (corpus, train, translate, evaluate, caption, lm, rescore, report, doctor):
    app.add_typer(group.app)  # no name: the group's commands join the top level


def _version(value: bool):
    if value:
        print(f"rnnkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")] = False,
):
    # --debug is read by `main` from the arguments themselves, so that it also covers failures
    # before or while Click parses them; declared here so that Click accepts it and --help shows it.
    pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script and `python -m rnnkit`."""
    code = _main(argv)
    world = active_world()
    if code in (1, 2) and world is not None and world.size > 1:
        # the other ranks may wait for this one in a collective: end the whole job
        err.print(f"error: rank {world.rank} of {world.size} failed; ending the MPI job",
                  markup=False)
        world.abort(code)
    return code


def _main(argv: list[str] | None) -> int:
    # Typer vendors click in recent versions: take click's exception classes from Typer's own
    ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="rnnkit", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except RnnkitError as e:
        err.print(f"error: {e}", markup=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except ClickException as e:
        e.show()
        return 2
    except typer.Abort:
        err.print("error: interrupted", markup=False)
        return 130
    except KeyboardInterrupt:
        err.print("error: interrupted", markup=False)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # the one place unexpected failures are reported; exit code 1
        if debug:
            raise
        err.print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the "
                  f"traceback, and please report it)", markup=False, soft_wrap=True)
        return 1
