"""The `rnnkit` command line: parse, call the library, print. Nothing else lives here.

One module per command group (corpus, train, translate, evaluate, caption, lm, rescore, report,
doctor); the tables and the training progress view are in _render.py, what the groups share in
_common.py. This module holds the app
and `main`, the one error boundary: every RnnkitError becomes one `error: ...` line on stderr and
exit code 2; anything unexpected is exit code 1 with a one-line message, or the traceback with
--debug. Data goes to stdout; progress and tables for people go to stderr when stdout carries data.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Annotated

import typer

from .._version import __version__
from ..errors import RnnkitError
from ..text.textio import WRITE_ERRNOS, write_error
from ..training.distributed import active_world
from . import caption, corpus, doctor, evaluate, lm, report, rescore, train, translate
from ._common import err, install_numeric_checks

app = typer.Typer(
    name="rnnkit",
    help="Sequence models on the CPU: prepare corpora; train n-gram, recurrent, translation and "
    "caption models; generate, score, rescore, translate and caption.",
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


def _usage_error(e) -> str:
    """Click's usage error as one line, with the hint to --help (instead of its Usage: block)."""
    ctx = getattr(e, "ctx", None)
    path = ctx.command_path if ctx is not None else "rnnkit"
    return f"error: {e.format_message()} (see `{path} --help`)"


def _stdout_closed() -> int:
    """A closed pipe on stdout (`rnnkit generate ... | head -1`): the reader wanted no more, so
    this is success, quietly, as for `head`'s other writers. stdout is pointed at /dev/null so
    that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script and `python -m rnnkit`.

    Exit codes: 0 success (also when a reader closes the pipe on stdout), 2 bad input or usage
    (one `error:` line), 130 interrupted (one `error: interrupted` line), 1 unexpected."""
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
    UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    interrupted, terminated = [], []

    def on_sigint(signum, frame):
        # Typer turns KeyboardInterrupt into a silent exit code 130: note it, to say so
        interrupted.append(True)
        signal.default_int_handler(signum, frame)

    def on_sigterm(signum, frame):
        # SIGTERM (kill, a batch scheduler's time limit) is a Ctrl-C: the same clean-up of
        # temporary files and partial outputs, training's checkpoint; exit code 143
        terminated.append(True)
        handler = signal.getsignal(signal.SIGINT)  # the training loop's while it runs
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            on_sigint(signal.SIGINT, frame)

    previous = previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
        previous_term = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        command = typer.main.get_command(app)
        install_numeric_checks(command)
        code = command.main(args=args, prog_name="rnnkit", standalone_mode=False)
        if code == 130 and (interrupted or terminated):
            raise KeyboardInterrupt
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.flush()  # a full disk on stdout must fail here, inside the boundary
        return code if isinstance(code, int) else 0
    except RnnkitError as e:
        err.print(f"error: {e}", markup=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except UsageError as e:
        err.print(_usage_error(e), markup=False, soft_wrap=True)
        return 2
    except ClickException as e:
        err.print(f"error: {e.format_message()}", markup=False, soft_wrap=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        err.print("error: interrupted" + (" (SIGTERM)" if terminated else ""), markup=False)
        return 143 if terminated else 130
    except BrokenPipeError:
        return _stdout_closed()
    except SystemExit:
        # Click turns EPIPE on stdout into sys.exit(1) after wrapping sys.stdout; that is a reader
        # closing the pipe, not a failure
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            return _stdout_closed()
        raise
    except OSError as e:
        if e.errno in WRITE_ERRNOS:  # a full disk, quota, read-only medium: stdout or a file
            name = e.filename if e.filename is not None else "-"
            err.print(f"error: {write_error(name, e)}", markup=False, soft_wrap=True)
            return 2
        if debug:
            raise
        err.print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the "
                  f"traceback, and please report it)", markup=False, soft_wrap=True)
        return 1
    except MemoryError:
        err.print("error: out of memory: the sizes asked for do not fit in this machine's "
                  "memory; use smaller sizes (--hidden, --emb, --batch, --vocab)", markup=False,
                  soft_wrap=True)
        return 2
    except Exception as e:  # the one place unexpected failures are reported; exit code 1
        if debug:
            raise
        err.print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the "
                  f"traceback, and please report it)", markup=False, soft_wrap=True)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
