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
from ..training.seq2seq_task import Seq2SeqTrainOptions, train_seq2seq
from ._common import (
    Attention,
    ModelType,
    Optimizer,
    Smoothing,
    byte_progress,
    choice,
    err,
    out,
    print_json,
    writing,
)
from ._render import RichTrainEvents, ngram_table, train_summary_table

app = typer.Typer()

DATA = "Data"
NGRAM = "N-gram (--type ngram)"
RECURRENT = "Recurrent model (--type lstm, lstm-peephole, lstm-nofg, rnn, seq2seq)"
SEQ2SEQ = "Translation model (--type seq2seq, on `prepare --parallel` data)"
OPTIMISATION = "Optimisation (recurrent and translation models)"
OUTPUT = "Checkpoints/Output"


@app.command(epilog="Examples:\n\n"
             "rnnkit train data/ --type ngram --order 3 --out tri.rnnkit\n\n"
             "rnnkit train data/ --type lstm --hidden 200 --layers 2 --epochs 13 --out lstm.rnnkit\n\n"
             "rnnkit train de-en/ --type seq2seq --attention general --bidirectional --out de-en.rnnkit")
def train(
    data: Annotated[str, typer.Argument(help="A directory made by `rnnkit prepare` (with its "
                                        "splits), or a text file: all of it is training data "
                                        "(held-out text: --valid).", rich_help_panel=DATA)],
    valid: Annotated[Optional[str], typer.Option(
        help="With a text file DATA: held-out text for validation perplexity (and the schedule).",
        rich_help_panel=DATA)] = None,
    model_type: Annotated[ModelType, choice(
        ModelType, "--type", help="ngram, lstm, lstm-peephole, lstm-nofg (no forget gate), rnn "
        "(tanh) or seq2seq (an LSTM encoder-decoder for translation).")] = ModelType.lstm,
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
    attention: Annotated[Attention, choice(
        Attention, "--attention", help="none (the decoder starts from one feature vector, the "
        "encoder's final state), dot, general (Luong) or additive (Bahdanau).",
        rich_help_panel=SEQ2SEQ)] = Attention.general,
    bidirectional: Annotated[bool, typer.Option(
        "--bidirectional", help="Read the source both ways (the encoder's states are [forward; "
        "backward]).", rich_help_panel=SEQ2SEQ)] = False,
    bptt: Annotated[int, typer.Option(help="Truncated-BPTT window, in steps.",
                                      rich_help_panel=OPTIMISATION)] = 35,
    batch: Annotated[Optional[int], typer.Option(
        help="Parallel streams (language models) or sentence pairs per batch (seq2seq) "
        "\\[default: 20 streams, 64 pairs].", rich_help_panel=OPTIMISATION)] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training data.",
                                        rich_help_panel=OPTIMISATION)] = 13,
    optimizer: Annotated[Optional[Optimizer], choice(
        Optimizer, "--optimizer", help="sgd or adam \\[default: sgd; adam for seq2seq].",
        rich_help_panel=OPTIMISATION)] = None,
    lr: Annotated[Optional[float], typer.Option(
        help="Learning rate \\[default: 1.0 for sgd, 0.001 for adam].",
        rich_help_panel=OPTIMISATION)] = None,
    lr_decay: Annotated[float, typer.Option(
        help="Factor applied to the learning rate each epoch after --decay-after.",
        rich_help_panel=OPTIMISATION)] = 0.5,
    decay_after: Annotated[Optional[int], typer.Option(
        help="Epochs before the decay starts \\[default: 4; seq2seq: none, the rate decays only "
        "when validation stalls].", rich_help_panel=OPTIMISATION)] = None,
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
    with writing(out_path, [data, valid, init_from]):
        summary = _train(data, valid, out_path, model_type, locals())
    if as_json:
        print_json(summary)


def _train(data, valid, out_path, model_type, o) -> dict:
    """Dispatch on --type; `o` holds the command's options by name."""
    if valid is not None and model_type.value == "seq2seq":
        raise RnnkitError("--valid goes with a text file for a language model; a translation "
                          "corpus has its own valid split (prepare --parallel)")
    corpus = load_data(data, valid=valid) if valid is not None else data
    (order, smoothing, add_k, prune, discount_fallback, emb, hidden, layers, dropout, tie_weights,
     init_scale, init_from, attention, bidirectional, bptt, batch, epochs, optimizer, lr, lr_decay,
     decay_after, clip, seed, threads, patience, checkpoint_every, resume, as_json) = (
        o[k] for k in ("order", "smoothing", "add_k", "prune", "discount_fallback", "emb",
                       "hidden", "layers", "dropout", "tie_weights", "init_scale", "init_from",
                       "attention", "bidirectional", "bptt", "batch", "epochs", "optimizer", "lr",
                       "lr_decay", "decay_after", "clip", "seed", "threads", "patience",
                       "checkpoint_every", "resume", "as_json"))
    if model_type is ModelType.ngram:
        return _train_ngram(corpus, data, out_path, order=order, smoothing=smoothing.value,
                            add_k=add_k, prune=prune, discount_fallback=discount_fallback,
                            quiet=as_json)
    if model_type.value == "seq2seq":
        opts = Seq2SeqTrainOptions(
            emb=emb, hidden=hidden, layers=layers, attention=attention.value,
            bidirectional=bidirectional, dropout=dropout, tie_weights=tie_weights,
            batch=batch or 64, init_scale=init_scale, epochs=epochs,
            optimizer=(optimizer or Optimizer.adam).value, lr=lr, lr_decay=lr_decay,
            decay_after=decay_after if decay_after is not None else 1_000_000, clip=clip,
            seed=seed, threads=threads, patience=patience, checkpoint_every=checkpoint_every,
            resume=resume)
        return _run(train_seq2seq, data, out_path, opts, as_json, "translation model")
    opts = TrainOptions(
        model_type=model_type.value, emb=emb, hidden=hidden, layers=layers,
        dropout=dropout, tie_weights=tie_weights, bptt=bptt, batch=batch or 20,
        epochs=epochs, optimizer=(optimizer or Optimizer.sgd).value, lr=lr,
        lr_decay=lr_decay, decay_after=decay_after if decay_after is not None else 4,
        clip=clip, init_scale=init_scale, seed=seed, threads=threads, patience=patience,
        init_from=None if init_from is None else str(init_from),
        checkpoint_every=checkpoint_every, resume=resume)
    return _run(run_train, corpus, out_path, opts, as_json, "language model")


def _train_ngram(corpus, data, out_path, *, order, smoothing, add_k, prune, discount_fallback,
                 quiet):
    """Train, save, print a summary table unless quiet; return the summary."""
    t0 = time.perf_counter()
    files = [data] if isinstance(corpus, str) and os.path.isfile(data) else []
    if isinstance(corpus, str):
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


def _run(train_fn, data, out_path, opts, quiet: bool, what: str) -> dict:
    """Train through the generic loop with a progress view, print a summary unless quiet;
    return the summary. Ctrl-C leaves the checkpoint (see --resume) and exits with 130."""
    events = RichTrainEvents(err)
    try:
        summary = train_fn(data, out_path, opts, events)
    except TrainingInterrupted as e:
        events.close()
        err.print(f"interrupted: {e}", markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        events.close()
    if not quiet:
        out.print(f"{summary['model_type']} {what} -> {summary['model']}", markup=False,
                  soft_wrap=True)
        out.print(train_summary_table(summary))
    return summary
