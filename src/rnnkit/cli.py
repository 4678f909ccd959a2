"""The `rnnkit` command line: parse, call the library, print. Nothing else lives here.

Every RnnkitError becomes one `error: ...` line on stderr and exit code 2 (in `main`, the one
place that does it); anything unexpected is exit code 1 with a one-line message, or the
traceback with --debug. Data goes to stdout; progress and tables for people go to stderr when
stdout carries data.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from . import __version__
from .errors import RnnkitError

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
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
_debug = False


def print_json(obj) -> None:
    """One JSON document per line on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def byte_progress(label: str, files):
    """A Rich progress bar on stderr over the bytes of `files`; yields the advance callback."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

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
    global _debug
    _debug = debug


# ------------------------------------------------------------------------------------------------
# prepare
# ------------------------------------------------------------------------------------------------
@app.command(epilog="Example: rnnkit prepare corpus.txt --out data/ --level word --min-count 2")
def prepare(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="UTF-8 text files, one sentence per line (gzip allowed); `-` reads stdin.",
        show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output directory.")] = None,
    sample: Annotated[Optional[str], typer.Option(
        help="Use the sample corpus shipped with rnnkit instead of INPUT: `en` or `ko`.")] = None,
    level: Annotated[str, typer.Option(help="Tokens: `word` (split on whitespace) or `char`.")] = "word",
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase the text.")] = False,
    min_count: Annotated[int, typer.Option(help="Map tokens seen fewer times to <unk>.")] = 1,
    max_vocab: Annotated[Optional[int], typer.Option(
        help="Keep at most this many tokens (specials included); the rest become <unk>.")] = None,
    vocab: Annotated[Optional[Path], typer.Option(
        help="Reuse this vocab.txt instead of building one (e.g. to fine-tune).")] = None,
    valid: Annotated[Optional[str], typer.Option(help="Validation text file.")] = None,
    test: Annotated[Optional[str], typer.Option(help="Test text file.")] = None,
    split: Annotated[Optional[str], typer.Option(
        help="Train,valid,test fractions of the input's sentences when --valid/--test are not "
        "given [default: 0.9,0.05,0.05].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random split.")] = 0,
    normalize: Annotated[str, typer.Option(help="Unicode normalisation: nfc, nfkc or none.")] = "nfc",
    errors: Annotated[str, typer.Option(
        help="Invalid UTF-8: `strict` (stop with an error) or `replace` (U+FFFD).")] = "strict",
    force: Annotated[bool, typer.Option("--force", help="Overwrite a directory that is not an "
                                        "rnnkit corpus.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
):
    """Turn UTF-8 text into a vocabulary and token-id arrays (train / valid / test)."""
    from .prepare import prepare as run_prepare

    files = [p for p in (inputs or []) + [valid, test] if p and p != "-"]
    with byte_progress("reading", files) as advance:
        manifest = run_prepare(
            inputs or [], out_dir, sample=sample, level=level, lowercase=lowercase,
            min_count=min_count, max_vocab=max_vocab, vocab=vocab, valid=valid, test=test,
            split=split, seed=seed, normalize=normalize, errors=errors, force=force,
            progress=advance)
    if as_json:
        print_json(manifest)
    else:
        out.print(corpus_table(manifest))


def corpus_table(manifest: dict):
    from rich.table import Table

    t = Table(title=f"corpus: vocabulary {manifest['vocab']['size']:,} tokens "
                    f"({manifest['tokenizer']['level']} level)")
    for col in ("split", "sentences", "tokens", "OOV tokens", "OOV rate"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for name, s in manifest["splits"].items():
        t.add_row(name, f"{s['sentences']:,}", f"{s['tokens']:,}", f"{s['oov']:,}",
                  f"{100 * s['oov_rate']:.2f}%")
    return t


# ------------------------------------------------------------------------------------------------
# train (one command for every model type; the n-gram and recurrent parts each own a function)
# ------------------------------------------------------------------------------------------------
TRAIN_TYPES = ("ngram", "lstm", "lstm-peephole", "lstm-nofg", "rnn")


@app.command(epilog="Examples:\n\n"
             "rnnkit train data/ --type ngram --order 3 --out tri.rnnkit\n\n"
             "rnnkit train data/ --type lstm --hidden 200 --layers 2 --epochs 13 --out lstm.rnnkit")
def train(
    data: Annotated[str, typer.Argument(help="A directory made by `rnnkit prepare`, or a text "
                                        "file (prepared with the default options).")],
    model_type: Annotated[str, typer.Option("--type", help="ngram, lstm, lstm-peephole, "
                                            "lstm-nofg (no forget gate) or rnn (tanh).")] = "lstm",
    out_path: Annotated[Optional[Path], typer.Option("--out", help="The model file to write.")] = None,
    # n-gram options
    order: Annotated[int, typer.Option(help="[ngram] Order N of the n-gram model (1-9).")] = 3,
    smoothing: Annotated[str, typer.Option(help="[ngram] mkn (modified Kneser-Ney), kn, wb "
                                           "(Witten-Bell), addk or mle.")] = "mkn",
    add_k: Annotated[float, typer.Option(help="[ngram] k of add-k smoothing.")] = 0.1,
    prune: Annotated[Optional[list[int]], typer.Option(
        help="[ngram] Per order, drop n-grams seen this many times or fewer (repeat: "
        "--prune 0 --prune 0 --prune 1).")] = None,
    discount_fallback: Annotated[bool, typer.Option(
        "--discount-fallback", help="[ngram] Use 0.5, 1, 1.5 where the closed-form Kneser-Ney "
        "discounts are invalid (tiny or artificial data), as KenLM does.")] = False,
    # recurrent options
    emb: Annotated[int, typer.Option(help="[rnn] Embedding size.")] = 200,
    hidden: Annotated[int, typer.Option(help="[rnn] Hidden units per layer.")] = 200,
    layers: Annotated[int, typer.Option(help="[rnn] Stacked recurrent layers.")] = 2,
    dropout: Annotated[float, typer.Option(help="[rnn] Dropout on non-recurrent connections.")] = 0.0,
    tie_weights: Annotated[bool, typer.Option("--tie-weights", help="[rnn] Share the embedding and "
                                              "output weights (needs --emb = --hidden).")] = False,
    bptt: Annotated[int, typer.Option(help="[rnn] Truncated-BPTT window, in steps.")] = 35,
    batch: Annotated[int, typer.Option(help="[rnn] Parallel streams.")] = 20,
    epochs: Annotated[int, typer.Option(help="[rnn] Passes over the training data.")] = 13,
    optimizer: Annotated[str, typer.Option(help="[rnn] sgd or adam.")] = "sgd",
    lr: Annotated[Optional[float], typer.Option(help="[rnn] Learning rate [default: 1.0 for sgd, "
                                                "0.001 for adam].")] = None,
    lr_decay: Annotated[float, typer.Option(help="[rnn] Factor applied to the learning rate "
                                            "each epoch after --decay-after.")] = 0.5,
    decay_after: Annotated[int, typer.Option(help="[rnn] Epochs before the decay starts.")] = 4,
    clip: Annotated[float, typer.Option(help="[rnn] Clip the gradient norm to this.")] = 5.0,
    init_scale: Annotated[float, typer.Option(help="[rnn] Uniform init in [-s, s].")] = 0.1,
    seed: Annotated[int, typer.Option(help="[rnn] Random seed.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="[rnn] Threads (default: all cores).")] = None,
    patience: Annotated[Optional[int], typer.Option(help="[rnn] Stop after this many epochs "
                                                    "without a better validation perplexity.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="[rnn] Start from this trained model "
                                                      "(fine-tuning).")] = None,
    checkpoint_every: Annotated[Optional[float], typer.Option(
        help="[rnn] Also write a checkpoint every this many minutes.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="[rnn] Continue from the checkpoint "
                                         "beside --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
):
    """Train a language model: n-gram (Kneser-Ney and simpler smoothing) or recurrent."""
    if model_type not in TRAIN_TYPES:
        raise RnnkitError(f"unknown --type {model_type!r}: use one of {', '.join(TRAIN_TYPES)}")
    if out_path is None:
        raise RnnkitError("--out MODEL is required: the model file to write")
    if model_type == "ngram":
        summary = _train_ngram(data, out_path, order=order, smoothing=smoothing, add_k=add_k,
                               prune=prune, discount_fallback=discount_fallback, quiet=as_json)
    else:
        summary = _train_recurrent(
            data, out_path, model_type=model_type, emb=emb, hidden=hidden, layers=layers,
            dropout=dropout, tie_weights=tie_weights, bptt=bptt, batch=batch, epochs=epochs,
            optimizer=optimizer, lr=lr, lr_decay=lr_decay, decay_after=decay_after, clip=clip,
            init_scale=init_scale, seed=seed, threads=threads, patience=patience,
            init_from=init_from, checkpoint_every=checkpoint_every, resume=resume, quiet=as_json)
    if as_json:
        print_json(summary)


def _train_ngram(data, out_path, *, order, smoothing, add_k, prune, discount_fallback, quiet):
    """[owned by the n-gram work] train, save, print a summary table unless quiet; return a dict."""
    raise RnnkitError("n-gram training is not available yet")


def _train_recurrent(data, out_path, *, quiet, **options):
    """[owned by the recurrent-model work] train, save, print a summary unless quiet; return a dict."""
    raise RnnkitError("recurrent training is not available yet")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script and `python -m rnnkit`."""
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
