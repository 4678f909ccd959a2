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

from .._version import __version__
from ..errors import RnnkitError

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
    """A Rich progress bar on stderr over the bytes of `files`; yields the advance callback.

    Only on a terminal: elsewhere (a log file, a test) the bar would leave a stray empty line
    before the output or an `error:` line, so the callback does nothing."""
    if not err.is_terminal:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

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
@app.command(epilog="Examples:\n\n"
             "rnnkit prepare corpus.txt --out data/ --min-count 2\n\n"
             "rnnkit prepare train.txt.gz --valid valid.txt --test test.txt --out data/\n\n"
             "rnnkit prepare --sample ko --level char --out demo/ko")
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
    """Turn UTF-8 text into a vocabulary and token-id arrays (train / valid / test): DIR gets
    vocab.txt (token TAB count; <unk>, <s>, </s> are ids 0, 1, 2, then tokens by count), one
    uint32 .npy per split (each sentence followed by </s>) and manifest.json, all at once, so an
    interrupted run leaves no directory that looks complete."""
    from ..text.prepare import prepare as run_prepare

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
# synth
# ------------------------------------------------------------------------------------------------
@app.command(epilog="Examples:\n\n"
             "rnnkit synth --out synth.txt --sentences 20000 --filler 5,40 --vocab 10\n\n"
             "rnnkit synth --out - --sentences 3 --filler 2,4 --seed 7")
def synth(
    out_path: Annotated[Optional[str], typer.Option("--out", help="The text file to write; `-` "
                                                    "for stdout.")] = None,
    sentences: Annotated[int, typer.Option(help="Number of sentences.")] = 10000,
    filler: Annotated[str, typer.Option(help="MIN,MAX filler words between the key and its "
                                        "answer (inclusive; one number for a fixed length).")
                      ] = "5,40",
    keys: Annotated[int, typer.Option("--vocab", help="K: number of key/answer word pairs.")] = 10,
    filler_vocab: Annotated[int, typer.Option(help="Number of distinct filler words.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same corpus).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
):
    """Write a synthetic corpus with one long-range dependency: each sentence is a key word
    k_i, a filler of MIN..MAX random filler words, then the key's answer word a_i. The last word
    is a function of the first and the filler says nothing about it, so a recurrent model can
    learn to carry the key to the end and an n-gram model cannot."""
    from ..text.synth import SynthSpec, parse_filler
    from ..text.synth import write as write_synth

    if out_path is None:
        raise RnnkitError("--out FILE is required: the text file to write (`-` for stdout)")
    if as_json and out_path == "-":
        raise RnnkitError("--json prints to stdout, which --out - already uses for the corpus; "
                          "give --out a file")
    lo, hi = parse_filler(filler)
    spec = SynthSpec(sentences=sentences, filler_min=lo, filler_max=hi, keys=keys,
                     filler_vocab=filler_vocab, seed=seed)
    summary = write_synth(out_path, spec)
    if as_json:
        print_json(summary)
    else:
        (err if out_path == "-" else out).print(
            f"{summary['out']}: {summary['sentences']:,} sentences, {summary['tokens']:,} "
            f"tokens; {spec.keys} keys k_i -> answers a_i across {lo}-{hi} filler words "
            f"from {spec.filler_vocab}", markup=False, highlight=False)


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
    import time

    from ..models.ngram.estimate import train as train_ngram
    from ..text.prepare import load_data

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
            summary[f"{split}_perplexity"] = _split_perplexity(model, corpus[split])
    if not quiet:
        out.print(f"{order}-gram {smoothing} model -> {out_path}: {summary['sentences']:,} "
                  f"sentences, {summary['tokens']:,} tokens, vocabulary {summary['vocab']:,}, "
                  f"{summary['seconds']:.2f} s", markup=False, soft_wrap=True)
        out.print(_ngram_table(summary))
    return summary


def _split_perplexity(model, ids) -> float:
    """KenLM-style perplexity of a prepared split (sentences each followed by </s>)."""
    import numpy as np

    ids = np.asarray(ids)
    ends = np.flatnonzero(ids == 2)
    words = np.delete(ids, ends)
    offsets = np.concatenate(([0], ends - np.arange(len(ends))))
    lp, _ = model.score_flat(words, offsets)
    return round(float(10.0 ** (-lp.sum() / len(lp))), 4) if len(lp) else float("nan")


def _ngram_table(s: dict):
    from rich.table import Table

    t = Table()
    t.add_column("order", justify="right")
    t.add_column("n-grams", justify="right")
    if s.get("discounts"):
        for col in ("D1", "D2", "D3+"):
            t.add_column(col, justify="right")
    for k, n in enumerate(s["ngrams"], 1):
        row = [str(k), f"{n:,}"]
        if s.get("discounts"):
            row += [f"{d:.6g}" for d in s["discounts"][k - 1]]
        t.add_row(*row)
    for split in ("valid", "test"):
        if f"{split}_perplexity" in s:
            t.caption = (t.caption + "  " if t.caption else "") + \
                f"{split} perplexity {s[f'{split}_perplexity']:.2f}"
    return t


def _train_recurrent(data, out_path, *, quiet, **options):
    """[owned by the recurrent-model work] train, save, print a summary unless quiet; return a dict."""
    from ..training.train import TrainingInterrupted, TrainOptions
    from ..training.train import train as run_train

    if options.get("init_from") is not None:
        options["init_from"] = str(options["init_from"])
    opts = TrainOptions(**options)
    events = _RichTrainEvents(err)
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
        out.print(_train_summary_table(summary))
    return summary


# ------------------------------------------------------------------------------------------------
# score, generate, export (every model type: they use only the language-model protocol)
# ------------------------------------------------------------------------------------------------
def _load_models(paths: list[str]) -> list:
    from ..loader import load

    return [load(p) for p in paths]


@app.command(epilog="Examples:\n\n"
             "rnnkit score tri.rnnkit test.txt\n\n"
             "echo 'the cat sat' | rnnkit score ptb.o5.arpa.gz - --per-token\n\n"
             "rnnkit score lstm.rnnkit test.txt --json > scores.jsonl\n\n"
             "rnnkit score tri.rnnkit lstm.rnnkit test.txt --weights 0.3,0.7")
def score(
    paths: Annotated[list[str], typer.Argument(
        metavar="MODEL [MODEL2 ...] [FILE|-]",
        help="One or more models (rnnkit model files or ARPA, plain or gzip; several are "
        "combined, see --weights and --combine), then the sentences, one per line (UTF-8, gzip "
        "allowed); `-` or nothing reads stdin. An empty line is the sentence <s> </s>.",
        show_default=False)],
    weights: Annotated[Optional[str], typer.Option(
        help="With several models: one weight per model, e.g. 0.7,0.3 (default: equal).")] = None,
    combine: Annotated[str, typer.Option(
        help="With several models: linear (interpolate token probabilities) or loglinear "
        "(weighted sum of log10 scores; not a probability).")] = "linear",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sentence (text, "
                                          "log10_prob, tokens, oov, ppl), then a summary object.")] = False,
    per_token: Annotated[bool, typer.Option("--per-token", help="Show each token's log10 "
                                            "probability and the n-gram length used, coloured by "
                                            "surprisal in a terminal.")] = False,
):
    """Score sentences: log10 probability, tokens, OOVs and perplexity per sentence, and the
    corpus perplexity as KenLM's query defines it: 10^(-sum log10 p / (words + sentences))."""
    from ..loader import load_models as load_mixture

    model_paths, input_path = _score_inputs(paths)
    if len(model_paths) == 1 and weights is None:
        _score_command(_load_models(model_paths), model_paths, input_path, as_json, per_token)
        return
    mix = load_mixture(model_paths, weights, combine)
    name = (f"{combine} mixture of " + ", ".join(
        f"{p} ({w:g})" for p, w in zip(model_paths, mix.weights.tolist())))
    _score_command([mix], [name], input_path, as_json, per_token)


def _score_inputs(paths: list[str]) -> tuple[list[str], str]:
    """MODEL [MODEL2 ...] [FILE|-]: the last path is the input unless it is a model file."""
    if len(paths) == 1 or _is_model_file(paths[-1]):
        return paths, "-"
    return paths[:-1], paths[-1]


def _is_model_file(path: str) -> bool:
    """An rnnkit model or other safetensors file, or ARPA (never a file of sentences)."""
    from ..modelfile import read_header
    from ..models.ngram.arpa import looks_like_arpa

    p = Path(path)
    if path == "-" or not p.is_file():
        return False
    try:
        return looks_like_arpa(p) or read_header(p) is not None
    except RnnkitError:
        return False


def _score_command(models: list, names: list[str], input_path: str, as_json: bool,
                   per_token: bool) -> None:
    """Score with one model (the list leaves room for model combinations)."""
    from ..decoding.scoring import Summary, score_lines
    from ..text.textio import read_lines

    model = models[0]
    summary = Summary()
    files = [input_path] if input_path != "-" and os.path.isfile(input_path) else []
    show_bar = bool(files) and not sys.stdout.isatty()  # a live bar would mix with a terminal
    bar = byte_progress("scoring", files) if show_bar else contextlib.nullcontext(None)
    with bar as advance:
        def lines():
            for number, text in read_lines(input_path):
                if show_bar:
                    advance(len(text) + 1)
                yield number, text

        if not as_json:
            out.print("[bold]   log10 p  tokens  OOV        ppl  sentence[/bold]")
        for rec in score_lines(model, lines(), per_token=per_token, summary=summary):
            if as_json:
                print_json(rec.to_json())
                continue
            out.print(f"{rec.log10_prob:10.4f}  {rec.tokens:6d}  {rec.oov:3d}  {rec.ppl:9.2f}  ",
                      end="", markup=False, highlight=False)
            if per_token:
                out.print(_per_token_text(rec), soft_wrap=True)
            else:
                out.print(rec.text, markup=False, soft_wrap=True)
    if as_json:
        print_json({**summary.to_json(), "model": names[0]})
    else:
        console = out if sys.stdout.isatty() else err
        console.print(f"{names[0]}: {summary.sentences:,} sentences, {summary.tokens:,} tokens "
                      f"(</s> included), {summary.oov:,} OOV", markup=False, soft_wrap=True)
        console.print(_score_summary_table(summary))


def _per_token_text(rec):
    from rich.text import Text

    t = Text()
    for i, (tok, lp, n, oov) in enumerate(rec.per_token):
        s = -lp  # surprisal in decimal digits (bans)
        style = ("bold white on red" if oov else "green" if s < 1 else "yellow" if s < 2
                 else "dark_orange" if s < 3 else "bold red")
        if i:
            t.append(" ")
        t.append(tok, style=style)
        t.append(f"[{lp:.2f}/{n}]", style="dim")
    return t


def _score_summary_table(s):
    from rich.table import Table

    t = Table()
    t.add_column("log10 p", justify="right")
    t.add_column("perplexity", justify="right")
    t.add_column("perplexity excl. OOV", justify="right")
    t.add_row(f"{s.log10_prob:.4f}", f"{s.perplexity:.4f}", f"{s.perplexity_excluding_oov:.4f}")
    return t


@app.command(epilog="Examples:\n\n"
             "rnnkit generate tri.rnnkit --num 5 --seed 1\n\n"
             "rnnkit generate lstm.rnnkit --prompt 'the market' --top-p 0.9 --temperature 0.8 --json")
def generate(
    model_path: Annotated[str, typer.Argument(
        metavar="MODEL", help="A model: an rnnkit model file or an ARPA file (plain or gzip).")],
    num: Annotated[int, typer.Option(help="How many sentences.")] = 1,
    max_len: Annotated[int, typer.Option(help="Stop a sentence after this many tokens.")] = 100,
    temperature: Annotated[float, typer.Option(help="Divide the log-probabilities by this "
                                               "(< 1 sharper, > 1 flatter, 0 greedy).")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample among the k most likely tokens "
                                                 "only.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Sample among the most likely tokens "
                                                   "whose mass reaches p (nucleus).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (same seed, same text).")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Start every sentence with this text.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sentence (text, "
                                          "tokens, log10_prob, complete).")] = False,
):
    """Sample sentences from <s> until </s> (or --max-len tokens), one per line."""
    from ..decoding.sampling import sample_sentences

    model = _load_models([model_path])[0]
    samples = sample_sentences(model, num, max_len=max_len, temperature=temperature, top_k=top_k,
                               top_p=top_p, seed=seed, prompt=prompt)
    for s in samples:
        text = model.tokenizer.join(model.vocab.decode(s.ids.tolist()))
        if as_json:
            print_json({"text": text, "tokens": int(len(s.ids)), "log10_prob": s.log10_prob,
                        "complete": s.complete})
        else:
            sys.stdout.write(text + "\n")


@app.command(epilog="Examples:\n\n"
             "rnnkit export tri.rnnkit --arpa tri.arpa\n\n"
             "rnnkit export tri.rnnkit --arpa tri.arpa.gz --json")
def export(
    model_path: Annotated[str, typer.Argument(
        metavar="MODEL", help="An n-gram model (rnnkit model file or ARPA).")],
    arpa_path: Annotated[Optional[str], typer.Option(
        "--arpa", help="Write standard ARPA here (gzip when the name ends in .gz; `-` is "
        "stdout).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
):
    """Export an n-gram model as ARPA, for KenLM, SRILM and other toolkits."""
    from ..models.ngram.arpa import write_arpa
    from ..models.ngram.estimate import NgramModel

    if arpa_path is None:
        raise RnnkitError("--arpa OUT.arpa[.gz] is required: the file to write")
    if arpa_path == "-" and as_json:
        raise RnnkitError("--json and --arpa - both write to stdout; give --arpa a file name")
    model = _load_models([model_path])[0]
    if not isinstance(model, NgramModel):
        raise RnnkitError(f"{model_path}: a {model.model_type} model; ARPA export takes an n-gram "
                          f"model")
    write_arpa(model, arpa_path)
    summary = {"model": model_path, "arpa": arpa_path, "order": model.order,
               "ngrams": model.counts}
    if as_json:
        print_json(summary)
    elif arpa_path != "-":
        err.print(f"wrote {arpa_path}: order {model.order}, "
                  + ", ".join(f"{n:,} {k}-grams" for k, n in enumerate(model.counts, 1)),
                  markup=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# rescore, tune-weights (N-best rescoring and model combination)
# ------------------------------------------------------------------------------------------------
NBEST_FORMATS = ("auto", "groups", "tsv", "id", "kaldi", "srilm", "moses")


def _split_models(paths: list[str], what: str) -> tuple[list[str], str]:
    if len(paths) < 2:
        raise RnnkitError(f"give one or more MODEL files and then {what}")
    return paths[:-1], paths[-1]


def _stdout_is_data() -> bool:
    return not sys.stdout.isatty()


@contextlib.contextmanager
def _count_progress(label: str, path: str, unit_bytes: bool = True):
    """Progress on stderr over the bytes of `path` (nothing for stdin or a terminal stdout,
    where the live bar would mix with the results)."""
    if path == "-" or not _stdout_is_data() or os.path.isdir(path):
        yield None
        return
    with byte_progress(label, [path]) as advance:
        yield advance


def _group_table(r, names: list[str] | None):
    import numpy as np
    from rich.table import Table

    g = r.group
    t = Table(title=f"group {g.id}" + (f" (line {g.line})" if g.line else "")
              + ": log10 probabilities", title_justify="left", show_edge=False, expand=True)
    t.add_column("", width=1)
    t.add_column("rank", justify="right")
    t.add_column("candidate", overflow="fold", ratio=1)
    if names:
        for n in names:
            t.add_column(n, justify="right", no_wrap=True)
    t.add_column("LM" if not names else "mixture", justify="right", no_wrap=True)
    show_ac = any(c.score is not None for c in g.candidates)
    if show_ac:
        t.add_column("acoustic", justify="right", no_wrap=True)
    t.add_column("words", justify="right", no_wrap=True)
    show_total = not np.array_equal(r.total, r.lm)  # the score is the LM's unless weighted
    if show_total:
        t.add_column("score", justify="right", no_wrap=True)
    for rank, i in enumerate(r.order.tolist(), 1):
        c = g.candidates[i]
        row = ["★" if rank == 1 else "", str(rank), c.text + (f"  [dim]({c.id})[/]" if c.id
                                                               and g.format in ("id", "kaldi")
                                                               else "")]
        if names:
            row += [f"{x:.3f}" for x in r.components[:, i]]
        row.append(f"{r.lm[i]:.3f}")
        if show_ac:
            row.append("" if c.score is None else f"{c.score:.3f}")
        row.append(str(int(r.words[i])))
        if show_total:
            row.append(f"{r.total[i]:.3f}")
        t.add_row(*row, style="bold green" if rank == 1 else None)
    return t


def _model_names(paths: list[str]) -> list[str]:
    names = [Path(p).name.removesuffix(".rnnkit") for p in paths]
    return names if len(set(names)) == len(names) else [f"model {i + 1}" for i in range(len(paths))]


@app.command(epilog="Examples:\n\n"
             "rnnkit rescore lm.rnnkit nbest.txt\n\n"
             "rnnkit rescore tri.rnnkit lstm.rnnkit nbest.tsv --weights 0.3,0.7 --best-only > best.tsv\n\n"
             "rnnkit rescore lm.rnnkit nbest.srilm --lm-weight 12 --word-penalty -0.5 --json")
def rescore(
    paths: Annotated[list[str], typer.Argument(
        help="One or more models (rnnkit model files or ARPA), then the N-best list (`-` for "
        "stdin).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="N-best format: auto, groups (blank-line "
                                     "separated), tsv, id (`id-N candidate`), kaldi, srilm, "
                                     "moses.")] = "auto",
    weights: Annotated[Optional[str], typer.Option(
        help="One weight per model, e.g. 0.7,0.3 (default: equal weights).")] = None,
    combine: Annotated[str, typer.Option(
        help="linear (interpolate token probabilities) or loglinear (weighted sum of "
        "log10 scores).")] = "linear",
    lm_weight: Annotated[float, typer.Option(help="Weight of the LM log10 probability.")] = 1.0,
    acoustic_weight: Annotated[float, typer.Option(
        help="Weight of the list's own (acoustic / decoder) score.")] = 1.0,
    word_penalty: Annotated[float, typer.Option(
        help="Added per word of the candidate (negative: favour shorter candidates).")] = 0.0,
    best_only: Annotated[bool, typer.Option(
        "--best-only", help="Print only each group's winner: `group_id<TAB>candidate` (TSV, "
        "id-prefixed), the input's own line (SRILM, Moses), the candidate (groups).")] = False,
    batch: Annotated[int, typer.Option(help="Candidates scored per call (several groups at "
                                       "once); memory stays bounded.")] = 256,
    share_prefixes: Annotated[bool, typer.Option(
        "--share-prefixes", help="Recurrent models: compute each prefix the candidates share "
        "once, stepping through their prefix tree (the same scores; faster when candidates "
        "share long prefixes and single steps are cheap).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per group with every candidate's scores, then a "
        "summary.")] = False,
):
    """Re-rank N-best candidate sentences with one or more language models.

    score = lm-weight x LM log10 + acoustic-weight x the list's score + word-penalty x words

    The highest score wins. Each candidate is scored on its own from <s>.
    """
    import time

    from ..loader import load_models
    from ..rescoring.nbest import NBestReader, best_line
    from ..rescoring.rescore import Weights
    from ..rescoring.rescore import rescore as run_rescore

    if fmt not in NBEST_FORMATS:
        raise RnnkitError(f"unknown --format {fmt!r}: use one of {', '.join(NBEST_FORMATS)}")
    if batch < 1:
        raise RnnkitError(f"--batch {batch}: must be at least 1")
    model_paths, nbest_path = _split_models(paths, "the N-best list (or `-` for stdin)")
    model = load_models(model_paths, weights, combine)
    names = _model_names(model_paths) if len(model_paths) > 1 else None
    w = Weights(lm_weight, acoustic_weight, word_penalty)
    groups = candidates = changed = 0
    t0 = time.perf_counter()
    with _count_progress("rescoring", nbest_path) as advance:
        reader = NBestReader(nbest_path, fmt, progress=advance)
        for r in run_rescore(model, reader, w, batch=batch, share=share_prefixes):
            groups += 1
            candidates += len(r.lm)
            changed += r.best != 0
            if as_json:
                d = r.to_json()
                if names:
                    d["models"] = list(model_paths)
                print_json(d)
            elif best_only:
                c = r.group.candidates[r.best]
                sys.stdout.write(best_line(r.group, c, lm=float(r.lm[r.best]),
                                           total=float(r.total[r.best])) + "\n")
            else:
                out.print(_group_table(r, names))
                out.print()
    seconds = time.perf_counter() - t0
    summary = {"groups": groups, "candidates": candidates, "changed": changed,
               "format": reader.format, "seconds": round(seconds, 3),
               "candidates_per_second": round(candidates / seconds, 1) if seconds > 0 else None,
               **w.to_dict()}
    if as_json:
        print_json({"summary": summary})
    else:
        err.print(f"{groups:,} groups, {candidates:,} candidates ({reader.format} format): the "
                  f"winner differs from the list's first candidate in {changed:,} group(s); "
                  f"{summary['candidates_per_second'] or 0:,.0f} candidates/s")


def _heldout_sentences(data: str):
    from ..text.textio import read_lines

    p = Path(data)
    if data != "-" and p.is_dir():
        from ..text.prepare import Corpus

        corpus = Corpus.load(p)
        split = next((s for s in ("valid", "test") if s in corpus), None)
        if split is None:
            raise RnnkitError(f"{p}: the corpus has no valid or test split to tune on; give a "
                              f"held-out text file")
        return list(corpus.text(split))
    return [t for _, t in read_lines(data) if t.strip()]


@app.command("tune-weights", epilog="Examples:\n\n"
             "rnnkit tune-weights tri.rnnkit lstm.rnnkit --data valid.txt\n\n"
             "rnnkit tune-weights lm.rnnkit --nbest dev.nbest --reference dev.ref")
def tune_weights(
    models: Annotated[list[str], typer.Argument(help="The models (rnnkit model files or ARPA).",
                                                show_default=False)],
    data: Annotated[Optional[str], typer.Option(
        help="Held-out text (one sentence per line) or a prepared corpus (its valid split): "
        "find the linear interpolation weights minimising its perplexity (EM).")] = None,
    nbest: Annotated[Optional[str], typer.Option(
        help="A development N-best list: tune --lm-weight and --word-penalty for the lowest "
        "word error rate (needs --reference).")] = None,
    reference: Annotated[Optional[str], typer.Option(
        help="The correct sentence of each group: `id text` lines, or one line per group in "
        "order.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Format of --nbest (as in rescore).")] = "auto",
    weights: Annotated[Optional[str], typer.Option(
        help="[--nbest] Model weights when several models are given (default: equal).")] = None,
    combine: Annotated[str, typer.Option(help="[--nbest] linear or loglinear.")] = "linear",
    lm_weight: Annotated[float, typer.Option(help="[--nbest] Starting lm-weight.")] = 1.0,
    acoustic_weight: Annotated[float, typer.Option(
        help="[--nbest] Acoustic weight (kept fixed: only ratios matter).")] = 1.0,
    word_penalty: Annotated[float, typer.Option(help="[--nbest] Starting word penalty.")] = 0.0,
    method: Annotated[str, typer.Option(help="[--nbest] grid or simplex (Nelder-Mead).")] = "grid",
    unit: Annotated[str, typer.Option(
        help="[--nbest] Error rate over words, or characters (spaces ignored; e.g. Korean).")] = "word",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Tune how models are combined: interpolation weights on held-out text (--data), or the
    lm-weight and word penalty of rescoring on a development N-best list (--nbest, --reference)."""
    from rich.table import Table

    if (data is None) == (nbest is None):
        raise RnnkitError("give either --data HELDOUT (interpolation weights) or --nbest FILE "
                          "--reference REF (rescoring weights)")
    if data is not None:
        from ..loader import load as load_model
        from ..models.mixture import tune_linear

        if len(models) < 2:
            raise RnnkitError("--data tunes interpolation weights: give two or more models")
        loaded = [load_model(p) for p in models]
        sentences = _heldout_sentences(data)
        res = tune_linear(loaded, sentences)
        if as_json:
            print_json({**res, "models": list(models)})
            return
        t = Table(title=f"interpolation weights (EM, {res['iterations']} iterations) on "
                        f"{res['sentences']:,} held-out sentences, {res['tokens']:,} tokens")
        for col in ("model", "weight", "perplexity alone"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for p, wt, ppl in zip(models, res["weights"], res["model_perplexities"]):
            t.add_row(p, f"{wt:.4f}", f"{ppl:.2f}")
        t.add_row("[bold]mixture[/]", "1.0000", f"[bold]{res['perplexity']:.2f}[/]")
        out.print(t)
        out.print("use: --weights " + ",".join(f"{x:.4f}" for x in res["weights"]))
        return

    from ..loader import load_models
    from ..rescoring.nbest import NBestReader
    from ..rescoring.rescore import Weights, build_devset, read_references, tune

    if reference is None:
        raise RnnkitError("--nbest needs --reference REF: the correct sentence of each group")
    if unit not in ("word", "char"):
        raise RnnkitError(f"unknown --unit {unit!r}: use word or char")
    if method not in ("grid", "simplex"):
        raise RnnkitError(f"unknown --method {method!r}: use grid or simplex")
    if fmt not in NBEST_FORMATS:
        raise RnnkitError(f"unknown --format {fmt!r}: use one of {', '.join(NBEST_FORMATS)}")
    model = load_models(models, weights, combine)
    groups = list(NBestReader(nbest, fmt))
    refs = read_references(reference, groups)
    dev = build_devset(model, groups, refs, unit=unit)
    res = tune(dev, Weights(lm_weight, acoustic_weight, word_penalty), method=method)
    res.pop("weights")
    if as_json:
        print_json(res)
        return
    rate = "WER" if unit == "word" else "CER"
    t = Table(title=f"{rate} on {res['groups']:,} groups, {res['candidates']:,} candidates "
                    f"({method})")
    for col in ("", "lm-weight", "acoustic-weight", "word-penalty", rate):
        t.add_column(col, justify="left" if not col else "right")
    for name in ("before", "after"):
        r = res[name]
        t.add_row(name, f"{r['lm_weight']:.4g}", f"{r['acoustic_weight']:.4g}",
                  f"{r['word_penalty']:.4g}", f"{100 * r['wer']:.2f}%")
    t.add_row("oracle", "", "", "", f"{100 * res['oracle_wer']:.2f}%")
    out.print(t)
    a = res["after"]
    out.print(f"use: --lm-weight {a['lm_weight']:.4g} --acoustic-weight "
              f"{a['acoustic_weight']:.4g} --word-penalty {a['word_penalty']:.4g}")


# ------------------------------------------------------------------------------------------------
# recurrent models: training progress, import-torch, plot, diagnose
# ------------------------------------------------------------------------------------------------
class _RichTrainEvents:
    """Training progress on stderr: one Rich bar per epoch (tokens/s, loss, perplexity, ETA) and
    one line per finished epoch."""

    def __init__(self, console):
        self.console = console
        self.progress = None
        self.task = None
        self.tokens_per_window = 0

    def _bar(self):
        from rich.progress import (
            BarColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Speed(ProgressColumn):
            def render(self, task):
                return Text(f"{task.speed:,.0f} tok/s" if task.speed else "… tok/s")

        return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), Speed(),
                        TextColumn("loss {task.fields[loss]}  ppl {task.fields[ppl]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=self.console, transient=True, redirect_stdout=False,
                        redirect_stderr=False)

    def start(self, info):
        where = ""
        if info.get("resumed_from"):
            r = info["resumed_from"]
            where = f", resuming at epoch {r['epoch']} window {r['window']}"
        self.console.print(f"training {info['model_type']}: {info['parameters']:,} parameters, "
                           f"{info['windows']:,} windows per epoch{where}", markup=False)

    def epoch_start(self, epoch, epochs, windows, done, tokens, lr):
        self.close()
        if not self.console.is_terminal:  # a log file gets the epoch lines only
            return
        self.progress = self._bar()
        self.progress.start()
        self.tokens_per_window = tokens / max(windows, 1)
        self.task = self.progress.add_task("", total=tokens, completed=done * self.tokens_per_window,
                                           epoch=f"{epoch}/{epochs}", loss="…", ppl="…")

    def window(self, done, windows, tokens, loss):
        import math

        if self.progress is not None:
            self.progress.update(self.task, advance=tokens, loss=f"{loss:.3f}",
                                 ppl=f"{math.exp(min(loss, 700)):.1f}")

    def epoch_end(self, record):
        self.close()
        valid = record["valid_ppl"]
        self.console.print(
            f"epoch {record['epoch']}: lr {record['lr']:.4g}  train ppl {record['train_ppl']:.2f}"
            f"  valid ppl {'-' if valid is None else f'{valid:.2f}'}"
            f"{'  (best)' if record['best'] else ''}  {record['tokens_per_s']:,.0f} tok/s  "
            f"{record['seconds']:.1f} s", markup=False)

    def checkpoint(self, path, reason):
        if reason == "periodic" and self.progress is not None:
            self.progress.console.print(f"checkpoint written to {path}", markup=False)

    def should_stop(self):
        return False

    def close(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _train_summary_table(s: dict):
    from rich.table import Table

    t = Table(show_header=False)
    t.add_column("", style="bold")
    t.add_column("", justify="right")

    def ppl(v):
        return "-" if v is None else f"{v:.2f}"

    rows = [("parameters", f"{s['parameters']:,}"), ("vocabulary", f"{s['vocab_size']:,}"),
            ("epochs run", f"{s['epochs_run']}" + (" (stopped early)" if s["stopped_early"] else "")),
            ("best epoch", str(s["best_epoch"])), ("train perplexity", ppl(s["train_perplexity"])),
            ("valid perplexity (best)", ppl(s["valid_perplexity"])),
            ("test perplexity (best model)", ppl(s["test_perplexity"])),
            ("training speed", "-" if not s["tokens_per_s"] else f"{s['tokens_per_s']:,.0f} tok/s"),
            ("time", f"{s['seconds']:.1f} s"), ("metrics", s["metrics"])]
    for k, v in rows:
        t.add_row(k, v)
    return t


@app.command("import-torch", epilog="Example: rnnkit import-torch lm_state.safetensors "
             "--vocab vocab.txt --out lm.rnnkit")
def import_torch(
    state: Annotated[Path, typer.Argument(help="A PyTorch state dict saved with "
                                          "safetensors.torch.save_file (names encoder.weight, "
                                          "rnn.weight_ih_l0, ..., decoder.weight, decoder.bias).")],
    vocab: Annotated[Path, typer.Option(help="The model's tokens in its id order, one per line "
                                        "(a TAB and a count may follow).")],
    out_path: Annotated[Path, typer.Option("--out", help="The rnnkit model file to write.")],
    model_type: Annotated[Optional[str], typer.Option(
        "--type", help="lstm, lstm-nofg, lstm-peephole or rnn \\[default: from the tensors].")
    ] = None,
    level: Annotated[str, typer.Option(help="How text is split for the model: word or char.")] = "word",
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase text before "
                                            "splitting.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
):
    """Bring a PyTorch-trained LSTM or RNN language model into rnnkit.

    <unk>, <s> and </s> become ids 0, 1, 2; `<eos>` is taken as </s>.
    A model without <s> (like PyTorch's word_language_model) reads <s> as <eos>.
    The result works with score, generate and rescore like any rnnkit model.
    """
    from ..models.torch_import import from_torch_state
    from ..text.vocab import Tokenizer

    model = from_torch_state(state, vocab, model_type=model_type,
                             tokenizer=Tokenizer(level=level, lowercase=lowercase))
    model.save(out_path)
    a = model.arch
    summary = {"model": str(out_path), "model_type": a.model_type, "vocab_size": a.vocab_size,
               "emb": a.emb, "hidden": a.hidden, "layers": a.layers, "tie_weights": a.tie_weights,
               "parameters": model.num_parameters, "vocab_mapping": model.meta["vocab_mapping"]}
    if as_json:
        print_json(summary)
    else:
        err.print(f"imported a {a.layers}-layer {a.model_type} (E={a.emb}, H={a.hidden}, "
                  f"V={a.vocab_size}) into {out_path}", markup=False)


@app.command(epilog="Example: rnnkit plot lstm.rnnkit --out curves.png")
def plot(
    source: Annotated[Path, typer.Argument(help="A recurrent model file, or the metrics.jsonl "
                                           "written beside it while training.")],
    out_path: Annotated[Path, typer.Option("--out", help="The PNG file to write.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
):
    """Draw the learning curves (training and validation perplexity per epoch) as a PNG.

    Needs matplotlib: pip install 'rnnkit\\[plot]'.
    """
    from ..training.train import load_records, plot_curves, require_matplotlib

    records = load_records(source)
    require_matplotlib()
    info = plot_curves(records, out_path, title=f"learning curves: {source.name}")
    if as_json:
        print_json(info)
    else:
        err.print(f"wrote {out_path} ({info['epochs']} epochs)", markup=False)


@app.command(epilog="Examples:\n\n"
             "rnnkit diagnose lstm.rnnkit --data synth/ --max-distance 40\n\n"
             "rnnkit diagnose rnn.rnnkit lstm.rnnkit --data synth/ --plot gradients.png")
def diagnose(
    models: Annotated[list[Path], typer.Argument(help="One or more recurrent model files.",
                                                 show_default=False)],
    data: Annotated[str, typer.Option(help="A corpus directory made by `rnnkit prepare` (or "
                                      "`rnnkit synth`), or a text file.")],
    split: Annotated[str, typer.Option(help="Which split to read: valid, test or train.")] = "valid",
    max_distance: Annotated[int, typer.Option(help="The largest distance k, in steps.")] = 30,
    streams: Annotated[int, typer.Option(help="Parallel streams averaged over.")] = 32,
    positions: Annotated[int, typer.Option(help="Positions t per stream averaged over.")] = 4,
    plot_path: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the curves to "
                                                      "this PNG (needs rnnkit\\[plot]).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measurements as JSON.")] = False,
):
    """Measure how the gradient of the loss at step t w.r.t. the hidden state at t-k decays.

    Vanishing for a tanh RNN, persisting for an LSTM.
    For k = 1, 2, ... the table shows the mean norm of dL_t/dh_(t-k) per layer
    and the last layer's ratio to its value at k = 1.
    """
    import numpy as np
    from rich.table import Table

    from ..models.rnnlm import load
    from ..report.diagnose import gradient_by_distance, plot_gradients
    from ..text.prepare import load_data
    from ..training.train import require_matplotlib

    if plot_path is not None:
        require_matplotlib()
    corpus = load_data(data)
    if split not in corpus:
        raise RnnkitError(f"{data}: no {split!r} split (it has {', '.join(corpus.splits)}); "
                          f"choose one with --split")
    results = {}
    for path in models:
        model = load(path)
        if model.vocab.sha256() == corpus.vocab.sha256():
            ids = np.asarray(corpus[split])
        else:  # the data's ids are the corpus's: map them by token to the model's
            table = np.array([model.vocab.index.get(t, 0) for t in corpus.vocab.tokens], np.int64)
            ids = table[np.asarray(corpus[split])]
        r = gradient_by_distance(model, ids, max_distance=max_distance, streams=streams,
                                 positions=positions)
        r["model"] = str(path)
        results[path.name if path.name not in results else str(path)] = r
    if plot_path is not None:
        plot_gradients(results, plot_path)
    if as_json:
        print_json({"split": split, "models": list(results.values()),
                    "plot": None if plot_path is None else str(plot_path)})
        return
    for name, r in results.items():
        out.print(f"{name} ({r['model_type']}): mean ||dL_t/dh_(t-k)|| over {r['streams']} "
                  f"streams x {len(r['positions'])} positions", markup=False, soft_wrap=True)
        t = Table()
        t.add_column("k", justify="right")
        for layer in range(r["layers"]):
            t.add_column(f"layer {layer + 1}", justify="right")
        t.add_column("last / k=1", justify="right")
        first = r["grad_norm"][0][-1] or 1.0
        for k, row in zip(r["distance"], r["grad_norm"]):
            t.add_row(str(k), *[f"{v:.3e}" for v in row], f"{row[-1] / first:.3e}")
        out.print(t)
    if plot_path is not None:
        err.print(f"wrote {plot_path}", markup=False)


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
