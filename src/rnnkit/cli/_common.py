"""What every command module shares: the two consoles, JSON output, progress bars, the option
types used by several commands, and the choice types (Enums built from the library's own lists).

A bad choice is an RnnkitError, so it reaches the user as every other bad input does: one
`error: unknown --combine 'max': use one of linear, loglinear` line and exit code 2.
"""
from __future__ import annotations

import contextlib
import json
import math
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
from ..text.textio import ERRORS, check_output, output_lock
from ..text.vocab import LEVELS, NORMALIZATIONS


class _Console(Console):
    """Rich's console, but a reader closing stdout (`rnnkit rescore ... | head -1`) raises
    BrokenPipeError, which cli.main turns into a quiet exit 0, instead of Rich's exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


err = _Console(stderr=True, highlight=False)
out = _Console(highlight=False)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def print_json(obj) -> None:
    """One JSON document per line on stdout. NaN and infinities (the perplexity of no tokens, or
    of a mean log10 p below -308) are not JSON: they are written as null."""
    sys.stdout.write(json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False) + "\n")


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


@contextlib.contextmanager
def stage_progress(stages):
    """One Rich bar per stage on stderr (bytes done, bytes/s, the temporary disk in use, "-" when
    temp_bytes is None); yields the library's callback progress(stage, done, total, temp_bytes)
    (a no-op when stderr is not a terminal, as byte_progress)."""
    if not err.is_terminal:
        yield lambda *a: None
        return
    with Progress(TextColumn("{task.description:<12}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TextColumn("temp {task.fields[temp]}"),
                  console=err, transient=True, redirect_stdout=False,
                  redirect_stderr=False) as bar:
        tasks = {name: bar.add_task(name, total=None, temp="0 B", visible=False)
                 for name in stages}

        def advance(stage, done, total, temp):
            if stage in tasks:
                bar.update(tasks[stage], completed=done, total=total or None, visible=True,
                           temp="-" if temp is None else format_size(temp))
        yield advance


_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(flag: str, text: str) -> int:
    """A size such as 500M, 2G, 1.5G or 800K (binary units, as lmplz -S; a bare number is
    bytes) in bytes; RnnkitError (exit 2) for anything else."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS and t[-1:].isalpha() else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise RnnkitError(f"{flag} {text!r}: expected a positive size such as 500M, 2G or 1.5G")
    return int(value * _SIZE_UNITS[unit])


def format_size(n: int) -> str:
    """Bytes as people read them: 1.5 GB, 200 MB (binary units, as parse_size)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


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
# the beam's length penalty, shared by translate and caption (decoding/beam.py); each command
# sets its own default
LengthPenaltyOption = Annotated[float, typer.Option(
    "--length-penalty", "--alpha", metavar="ALPHA",
    help="Length penalty of the beam: finished hypotheses rank by log p / ((5 + n) / 6) ** ALPHA "
    "(Wu et al. 2016; n counts </s>; 0: raw log p, which favours short outputs).")]
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


# ------------------------------------------------------------------------------------------------
# numeric options: one validator for every command (cli.main applies it to every int/float option)
# ------------------------------------------------------------------------------------------------
# (low, high) by option name, inclusive; None leaves a side open. Every int or float option of
# every command is checked: float options must be finite, and an option named here must be in its
# range -- so a new command's --seed or --hidden is checked with no code of its own. An option not
# named here is only checked for finiteness.
_SIZE = (1, 1 << 20)  # a size beyond this cannot be allocated on any machine rnnkit targets
NUMERIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    "--seed": (0, 2**32 - 1), "--emb": _SIZE, "--hidden": _SIZE, "--layers": (1, 64),
    "--order": (1, 9), "--bptt": (1, None), "--batch": (1, None), "--epochs": (0, 1 << 20),
    "--threads": (1, 1024), "--workers": (1, 1024), "--patience": (1, 1 << 20), "--decay-after": (0, 1 << 20),
    "--dropout": (0.0, 0.99), "--init-scale": (0.0, 10.0), "--lr": (0.0, 1e6),
    "--lr-decay": (0.0, 1.0), "--clip": (0.0, None), "--add-k": (0.0, None),
    "--checkpoint-every": (0.0, None), "--num": (0, 1 << 40), "--max-len": (1, 1 << 20),
    "--temperature": (0.0, 1e6), "--top-k": (1, None), "--top-p": (0.0, 1.0),
    "--min-count": (1, None), "--max-vocab": (4, None), "--sentences": (1, 1 << 40),
    "--vocab": (1, 1 << 20), "--filler-vocab": (1, 1 << 20), "--beam": (1, 1024),
    "--n-best": (1, 1024), "--max-ratio": (0.0, 1e6), "--max-extra": (0, 1 << 20),
    "--max-distance": (1, 1 << 16), "--streams": (1, 1 << 16), "--positions": (1, 1 << 16),
}


def check_number(flag: str, value):
    """`value` of the numeric option `flag`, or RnnkitError (exit 2) when it is not finite or
    outside NUMERIC_RANGES[flag]. None (an unset optional option) passes."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise RnnkitError(f"{flag} {value}: must be a finite number")
    lo, hi = NUMERIC_RANGES.get(flag, (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            rule = f"at least {lo}"
        elif lo is None:
            rule = f"at most {hi}"
        else:
            rule = f"between {lo} and {hi}"
        raise RnnkitError(f"{flag} {value}: must be {rule}")
    return value


def install_numeric_checks(command) -> None:
    """Make every int/float option of `command` and its subcommands end its processing in
    `check_number`. Called once by cli.main on the whole app, so new commands are covered."""
    for sub in getattr(command, "commands", {}).values():
        install_numeric_checks(sub)
    for param in getattr(command, "params", []):
        if not getattr(param, "opts", None) or not param.opts[0].startswith("-"):
            continue
        kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        if kind is None:  # plain Click
            kind = {"integer": int, "float": float}.get(getattr(getattr(param, "type", None),
                                                                 "name", ""))
        if kind not in (int, float):
            continue
        flag = max(param.opts, key=len)

        def process(ctx, value, _process=param.process_value, _flag=flag):
            return check_number(_flag, _process(ctx, value))

        param.process_value = process


@contextlib.contextmanager
def checking(out, inputs, flag: str = "--out"):
    """The output check of `writing` without its lock (for a process that does not write, such
    as an MPI rank other than 0)."""
    check_output(out, [p for p in inputs if p is not None], flag=flag)
    yield


@contextlib.contextmanager
def writing(out, inputs, flag: str = "--out"):
    """The guard every command that writes a file enters before it reads anything: refuse an
    output that is (or lies inside) an input (`textio.check_output`), then hold the output's lock
    (`textio.output_lock`) until the command is done. `-` (stdout) and None pass through."""
    check_output(out, [p for p in inputs if p is not None], flag=flag)
    with output_lock(out):
        yield
