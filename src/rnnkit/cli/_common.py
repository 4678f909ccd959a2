"""What every command module shares: the two consoles, JSON output, progress bars, the option
types used by several commands, and the choice types (Enums built from the library's own lists).

A bad choice is an RnnkitError, so it reaches the user as every other bad input does: one
`error: unknown --combine 'max': use one of linear, loglinear` line and exit code 2.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..errors import RnnkitError
from ..models.caption import MODEL_TYPE as CAPTION
from ..models.mixture import COMBINES
from ..models.ngram.estimate import MODEL_TYPE as NGRAM
from ..models.ngram.estimate import SMOOTHINGS
from ..models.rnnlm import MODEL_TYPES as RECURRENT_TYPES
from ..models.rnnlm import OUTPUTS
from ..models.seq2seq import ATTENTIONS
from ..models.seq2seq import MODEL_TYPE as SEQ2SEQ
from ..nn.optim import OPTIMIZERS
from ..rescoring.nbest import FORMATS as NBEST_FORMATS
from ..rescoring.rescore import METHODS, UNITS
from ..text.subword import SUBWORD_MODELS
from ..text.textio import ERRORS
from ..text.vocab import LEVELS, NORMALIZATIONS

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def print_json(obj) -> None:
    """One JSON document per line on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def stdout_is_data() -> bool:
    """Whether stdout goes to a file or a pipe (results for a program), not a terminal."""
    return not sys.stdout.isatty()


@contextlib.contextmanager
def byte_progress(label: str, files):
    """A Rich progress bar on stderr over the bytes of `files`; yields the advance callback.

    Only on a terminal: elsewhere (a log file, a test) the bar would leave a stray empty line
    before the output or an `error:` line, so the callback does nothing."""
    if not err.is_terminal:
        yield lambda n: None
        return
    total = 0
    for f in files:
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True,
                  redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(label, total=total or None)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def count_progress(label: str, total: int, unit: str = "sentences"):
    """A Rich progress bar on stderr over `total` items; yields the advance callback (a no-op
    when stderr is not a terminal, as byte_progress)."""
    if not err.is_terminal:
        yield lambda n: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed:,}/{task.total:,} " + unit),
                  TimeRemainingColumn(), console=err, transient=True,
                  redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def stream_progress(label: str, path: str):
    """Progress on stderr over the bytes of `path` while results stream to stdout; yields the
    advance callback, or None for stdin, a directory or a terminal stdout (where the live bar
    would mix with the results)."""
    if path == "-" or not stdout_is_data() or os.path.isdir(path):
        yield None
        return
    with byte_progress(label, [path]) as advance:
        yield advance


# ------------------------------------------------------------------------------------------------
# choices: one Enum per list the library accepts, so --help shows them and they cannot drift
# ------------------------------------------------------------------------------------------------
def _choices(name: str, values) -> type[Enum]:
    return Enum(name, [(v.replace("-", "_"), v) for v in values])


Level = _choices("Level", LEVELS)
Normalize = _choices("Normalize", NORMALIZATIONS)
SubwordModel = _choices("SubwordModel", SUBWORD_MODELS)
Utf8Errors = _choices("Utf8Errors", ERRORS)
Smoothing = _choices("Smoothing", SMOOTHINGS)
ModelType = _choices("ModelType", (NGRAM, *RECURRENT_TYPES, SEQ2SEQ, CAPTION))
Attention = _choices("Attention", ATTENTIONS)
RecurrentType = _choices("RecurrentType", RECURRENT_TYPES)
Output = _choices("Output", OUTPUTS)
Optimizer = _choices("Optimizer", OPTIMIZERS)
Combine = _choices("Combine", COMBINES)
NBestFormat = _choices("NBestFormat", ("auto", *NBEST_FORMATS))
Unit = _choices("Unit", UNITS)
Method = _choices("Method", METHODS)


def choice(enum: type[Enum], flag: str, **option):
    """A typer.Option for `flag` taking one of `enum`'s values, listed in --help.

    Typer's own Enum check would print a usage block; parsing here keeps a bad value one
    `error:` line (exit 2), with the same words as the library's own check."""
    values = [m.value for m in enum]

    def parse(value):
        if isinstance(value, enum):
            return value
        try:
            return enum(value)
        except ValueError:
            raise RnnkitError(f"unknown {flag} {value!r}: use one of {', '.join(values)}") from None

    return typer.Option(flag, parser=parse, metavar="[" + "|".join(values) + "]", **option)


# ------------------------------------------------------------------------------------------------
# options shared by several commands
# ------------------------------------------------------------------------------------------------
JsonSummary = Annotated[bool, typer.Option("--json", help="Print a JSON summary.")]
MmapOption = Annotated[bool, typer.Option(
    "--mmap", help="Map rnnkit n-gram model files instead of reading them: near-instant "
    "loading of a large model, pages shared between processes; the file's arrays are checked "
    "as they are used, not in full at loading.")]
WeightsOption = Annotated[Optional[str], typer.Option(
    help="With several models: one weight per model, e.g. 0.7,0.3 (default: equal).")]
CombineOption = Annotated[Combine, choice(
    Combine, "--combine", help="With several models: linear (interpolate token probabilities) or "
    "loglinear (weighted sum of log10 scores; not a probability).")]
NBestFormatOption = Annotated[NBestFormat, choice(
    NBestFormat, "--format", help="N-best format: auto, groups (blank-line separated), tsv, id "
    "(`id-N candidate`), kaldi, srilm, moses.")]
ModelsArgument = Annotated[list[str], typer.Argument(
    help="The models (rnnkit model files or ARPA).", show_default=False)]


def model_names(paths: list[str]) -> list[str]:
    """Short column names for several models: file names without .rnnkit, unless two clash."""
    names = [Path(p).name.removesuffix(".rnnkit") for p in paths]
    return names if len(set(names)) == len(names) else [f"model {i + 1}" for i in range(len(paths))]
