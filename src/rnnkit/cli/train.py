"""`rnnkit train`: one command for every model type (`--type`); the n-gram and the recurrent
trainer each own a function. Options are grouped in --help by the model types they apply to."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..decoding.scoring import split_perplexity
from ..errors import RnnkitError
from ..models.ngram.estimate import train as train_ngram
from ..text.prepare import load_data
from ..training import TrainingInterrupted, TrainOptions
from ..training import train as run_train
from ._common import (
    ModelType,
    Optimizer,
    Smoothing,
    byte_progress,
    choice,
    err,
    out,
    print_json,
)
from ._render import RichTrainEvents, ngram_table, train_summary_table

app = typer.Typer()

DATA = "Data"
NGRAM = "N-gram (--type ngram)"
RECURRENT = "Recurrent model (--type lstm, lstm-peephole, lstm-nofg, rnn)"
OPTIMISATION = "Optimisation (recurrent models)"
OUTPUT = "Checkpoints/Output"


@app.command(epilog="Examples:\n\n"
             "rnnkit train data/ --type ngram --order 3 --out tri.rnnkit\n\n"
             "rnnkit train data/ --type lstm --hidden 200 --layers 2 --epochs 13 --out lstm.rnnkit")
def train(
    data: Annotated[str, typer.Argument(help="A directory made by `rnnkit prepare`, or a text "
                                        "file (prepared with the default options).",
                                        rich_help_panel=DATA)],
    model_type: Annotated[ModelType, choice(
        ModelType, "--type", help="ngram, lstm, lstm-peephole, lstm-nofg (no forget gate) or rnn "
        "(tanh).")] = ModelType.lstm,
    # n-gram options
    order: Annotated[int, typer.Option(help="Order N of the n-gram model (1-9).",
                                       rich_help_panel=NGRAM)] = 3,
    smoothing: Annotated[Smoothing, choice(
        Smoothing, "--smoothing", help="mkn (modified Kneser-Ney), kn, wb (Witten-Bell), addk or "
        "mle.", rich_help_panel=NGRAM)] = Smoothing.mkn,
    add_k: Annotated[float, typer.Option(help="k of add-k smoothing.", rich_help_panel=NGRAM)] = 0.1,
    prune: Annotated[Optional[list[int]], typer.Option(
        help="Per order, drop n-grams seen this many times or fewer (repeat: --prune 0 --prune 0 "
        "--prune 1).", rich_help_panel=NGRAM)] = None,
    discount_fallback: Annotated[bool, typer.Option(
        "--discount-fallback", help="Use 0.5, 1, 1.5 where the closed-form Kneser-Ney discounts "
        "are invalid (tiny or artificial data), as KenLM does.", rich_help_panel=NGRAM)] = False,
    # recurrent options
    emb: Annotated[int, typer.Option(help="Embedding size.", rich_help_panel=RECURRENT)] = 200,
    hidden: Annotated[int, typer.Option(help="Hidden units per layer.",
                                        rich_help_panel=RECURRENT)] = 200,
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.",
                                        rich_help_panel=RECURRENT)] = 2,
    dropout: Annotated[float, typer.Option(help="Dropout on non-recurrent connections.",
                                           rich_help_panel=RECURRENT)] = 0.0,
    tie_weights: Annotated[bool, typer.Option(
        "--tie-weights", help="Share the embedding and output weights (needs --emb = --hidden).",
        rich_help_panel=RECURRENT)] = False,
    init_scale: Annotated[float, typer.Option(help="Uniform init in [-s, s].",
                                              rich_help_panel=RECURRENT)] = 0.1,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Start from this trained model (fine-tuning).", rich_help_panel=RECURRENT)] = None,
    bptt: Annotated[int, typer.Option(help="Truncated-BPTT window, in steps.",
                                      rich_help_panel=OPTIMISATION)] = 35,
    batch: Annotated[int, typer.Option(help="Parallel streams.", rich_help_panel=OPTIMISATION)] = 20,
    epochs: Annotated[int, typer.Option(help="Passes over the training data.",
                                        rich_help_panel=OPTIMISATION)] = 13,
    optimizer: Annotated[Optimizer, choice(Optimizer, "--optimizer", help="sgd or adam.",
                                           rich_help_panel=OPTIMISATION)] = Optimizer.sgd,
    lr: Annotated[Optional[float], typer.Option(
        help="Learning rate \\[default: 1.0 for sgd, 0.001 for adam].",
        rich_help_panel=OPTIMISATION)] = None,
    lr_decay: Annotated[float, typer.Option(
        help="Factor applied to the learning rate each epoch after --decay-after.",
        rich_help_panel=OPTIMISATION)] = 0.5,
    decay_after: Annotated[int, typer.Option(help="Epochs before the decay starts.",
                                             rich_help_panel=OPTIMISATION)] = 4,
    clip: Annotated[float, typer.Option(help="Clip the gradient norm to this.",
                                        rich_help_panel=OPTIMISATION)] = 5.0,
    seed: Annotated[int, typer.Option(help="Random seed.", rich_help_panel=OPTIMISATION)] = 0,
    threads: Annotated[Optional[int], typer.Option(help="Threads (default: all cores).",
                                                   rich_help_panel=OPTIMISATION)] = None,
    patience: Annotated[Optional[int], typer.Option(
        help="Stop after this many epochs without a better validation perplexity.",
        rich_help_panel=OPTIMISATION)] = None,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="The model file to write.", rich_help_panel=OUTPUT)] = None,
    checkpoint_every: Annotated[Optional[float], typer.Option(
        help="Also write a checkpoint every this many minutes (recurrent models).",
        rich_help_panel=OUTPUT)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from the checkpoint beside --out (recurrent models).",
        rich_help_panel=OUTPUT)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.",
                                          rich_help_panel=OUTPUT)] = False,
):
    """Train a language model: n-gram (Kneser-Ney and simpler smoothing) or recurrent."""
    if out_path is None:
        raise RnnkitError("--out MODEL is required: the model file to write")
    if model_type is ModelType.ngram:
        summary = _train_ngram(data, out_path, order=order, smoothing=smoothing.value,
                               add_k=add_k, prune=prune, discount_fallback=discount_fallback,
                               quiet=as_json)
    else:
        summary = _train_recurrent(
            data, out_path, model_type=model_type.value, emb=emb, hidden=hidden, layers=layers,
            dropout=dropout, tie_weights=tie_weights, bptt=bptt, batch=batch, epochs=epochs,
            optimizer=optimizer.value, lr=lr, lr_decay=lr_decay, decay_after=decay_after,
            clip=clip, init_scale=init_scale, seed=seed, threads=threads, patience=patience,
            init_from=init_from, checkpoint_every=checkpoint_every, resume=resume, quiet=as_json)
    if as_json:
        print_json(summary)


def _train_ngram(data, out_path, *, order, smoothing, add_k, prune, discount_fallback, quiet):
    """Train, save, print a summary table unless quiet; return the summary."""
    t0 = time.perf_counter()
    files = [data] if os.path.isfile(data) else []
    with byte_progress("reading", files) as advance:
        corpus = load_data(data, progress=advance if files else None)
    model = train_ngram(corpus, order, smoothing, add_k=add_k, prune=prune,
                        discount_fallback=discount_fallback)
    model.meta["training"]["data"] = str(data)
    model.save(out_path)
    tr = model.meta["training"]
    summary = {"model": str(out_path), "type": "ngram", "order": order, "smoothing": smoothing,
               "vocab": len(model.vocab), "sentences": tr["sentences"], "tokens": tr["tokens"],
               "ngrams": tr["ngrams"], "discounts": tr["discounts"],
               "seconds": round(time.perf_counter() - t0, 3)}
    for split in ("valid", "test"):
        if split in corpus and len(corpus[split]):
            summary[f"{split}_perplexity"] = split_perplexity(model, corpus[split])
    if not quiet:
        out.print(f"{order}-gram {smoothing} model -> {out_path}: {summary['sentences']:,} "
                  f"sentences, {summary['tokens']:,} tokens, vocabulary {summary['vocab']:,}, "
                  f"{summary['seconds']:.2f} s", markup=False, soft_wrap=True)
        out.print(ngram_table(summary))
    return summary


def _train_recurrent(data, out_path, *, quiet, **options):
    """Train, save, print a summary unless quiet; return the summary. Ctrl-C leaves the
    checkpoint (see --resume) and exits with 130."""
    if options.get("init_from") is not None:
        options["init_from"] = str(options["init_from"])
    opts = TrainOptions(**options)
    events = RichTrainEvents(err)
    try:
        summary = run_train(data, out_path, opts, events)
    except TrainingInterrupted as e:
        events.close()
        err.print(f"interrupted: {e}", markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        events.close()
    if not quiet:
        out.print(f"{summary['model_type']} language model -> {summary['model']}", markup=False,
                  soft_wrap=True)
        out.print(train_summary_table(summary))
    return summary
