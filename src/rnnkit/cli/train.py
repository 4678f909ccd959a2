"""`rnnkit train`: one command for every model type (`--type`); the n-gram and the recurrent
trainer each own a function. Options are grouped in --help by the model types they apply to."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..decoding.scoring import split_perplexity
from ..errors import RnnkitError
from ..loader import load
from ..models.ngram import cluster, external
from ..models.ngram.estimate import train as train_ngram
from ..text.corpus import Corpus
from ..text.prepare import load_data
from ..text.prepare_stream import prepare_streamed
from ..training import TrainEvents, TrainingInterrupted, TrainOptions
from ..training import train as run_train
from ..training.caption_task import CaptionTrainOptions, train_caption
from ..training.distributed import mpi_world
from ..training.seq2seq_task import Seq2SeqTrainOptions, train_seq2seq
from ._common import (
    Attention,
    ModelType,
    Optimizer,
    Output,
    Smoothing,
    byte_progress,
    choice,
    err,
    out,
    checking,
    parse_size,
    print_json,
    stage_progress,
    writing,
)
from ._render import RichTrainEvents, ngram_table, train_summary_table

app = typer.Typer()

DATA = "Data"
NGRAM = "N-gram (--type ngram)"
RECURRENT = "Recurrent model (--type lstm, lstm-peephole, lstm-nofg, rnn, seq2seq)"
SEQ2SEQ = "Translation model (--type seq2seq, on `prepare --parallel` data)"
CAPTION = "Caption model (--type caption)"
OPTIMISATION = "Optimisation (recurrent, translation and caption models)"
OUTPUT = "Checkpoints/Output"


@app.command(epilog="Examples:\n\n"
             "rnnkit train data/ --type ngram --order 3 --out tri.rnnkit\n\n"
             "rnnkit train big/ --type ngram --order 5 --memory 2G --out big.rnnkit\n\n"
             "rnnkit train data/ --type ngram --order 5 --scheduler tcp://head:8786 --out 5.rnnkit\n\n"
             "rnnkit train data/ --type lstm --hidden 200 --layers 2 --epochs 13 --out lstm.rnnkit\n\n"
             "rnnkit train wikitext-2/ --type lstm --output adaptive --cutoffs 2000,10000 --out wt2.rnnkit\n\n"
             "rnnkit train de-en/ --type seq2seq --attention general --bidirectional --out de-en.rnnkit\n\n"
             "rnnkit train scenes/ --type caption --features feats.safetensors --out scenes.rnnkit")
def train(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="A directory made by `rnnkit prepare` (with its "
                                        "splits), or a text file: all of it is training data "
                                        "(held-out text: --valid).", rich_help_panel=DATA)],
    valid: Annotated[Optional[str], typer.Option(
        help="With a text file DATA: held-out text for validation perplexity (and the schedule).",
        rich_help_panel=DATA)] = None,
    model_type: Annotated[ModelType, choice(
        ModelType, "--type", help="ngram, lstm, lstm-peephole, lstm-nofg (no forget gate), rnn "
        "(tanh), seq2seq (an LSTM encoder-decoder for translation) or caption (an LSTM "
        "conditioned on image features).")] = ModelType.lstm,
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
    memory: Annotated[Optional[str], typer.Option(
        help="Estimate within this memory (500M, 2G, 1.5G), staging sorted runs on disk as "
        "lmplz -S does; the model is bit-identical to the in-memory one. Default: in memory, "
        "or 2G (at most half the RAM) above 4M training tokens.",
        rich_help_panel=NGRAM)] = None,
    temp_dir: Annotated[Optional[Path], typer.Option(
        help="Directory for the temporary files of --memory (or of a corpus large enough to "
        "use it by default); default: the system's.",
        rich_help_panel=NGRAM)] = None,
    discount_fallback: Annotated[bool, typer.Option(
        "--discount-fallback", help="Use 0.5, 1, 1.5 where the closed-form Kneser-Ney discounts "
        "are invalid (tiny or artificial data), as KenLM does.", rich_help_panel=NGRAM)] = False,
    workers: Annotated[Optional[int], typer.Option(
        help="Estimate on a local Dask cluster of this many worker processes (bit-identical "
        "to one process; needs rnnkit[cluster]; docs/cluster.md).", rich_help_panel=NGRAM)] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        help="Estimate on the Dask cluster of this scheduler, e.g. tcp://HOST:8786.",
        rich_help_panel=NGRAM)] = None,
    shared_data: Annotated[bool, typer.Option(
        "--shared-data", help="With --workers/--scheduler: the workers read DATA (a prepared "
        "corpus) from a filesystem they share, instead of receiving the ids from here.",
        rich_help_panel=NGRAM)] = False,
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
    output: Annotated[Output, choice(
        Output, "--output", help="Output layer of --type lstm/rnn models: full (softmax over "
        "every word), adaptive (Grave et al. 2017; needs --cutoffs) or classes (Mikolov et al. "
        "2011, frequency binning; needs --classes).",
        rich_help_panel=RECURRENT)] = Output.full,
    classes: Annotated[int, typer.Option(
        help="Class softmax: the number of word classes (about sqrt(V) is usual), each holding "
        "about 1/N of the training tokens.", rich_help_panel=RECURRENT)] = 0,
    cutoffs: Annotated[Optional[str], typer.Option(
        help="Adaptive softmax: comma-separated word ids where the head ends and each tail "
        "cluster starts (ids are sorted by frequency), e.g. 2000,10000.",
        rich_help_panel=RECURRENT)] = None,
    div_value: Annotated[float, typer.Option(
        help="Adaptive softmax: tail cluster i projects to hidden / div^(i+1) units.",
        rich_help_panel=RECURRENT)] = 4.0,
    head_bias: Annotated[bool, typer.Option(
        "--head-bias/--no-head-bias", help="Adaptive softmax: a bias on the head's words and "
        "cluster tokens (PyTorch's head_bias=True; --no-head-bias: PyTorch's default).",
        rich_help_panel=RECURRENT)] = True,
    init_scale: Annotated[float, typer.Option(help="Uniform init in [-s, s].",
                                              rich_help_panel=RECURRENT)] = 0.1,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Start from this trained model (fine-tuning).", rich_help_panel=RECURRENT)] = None,
    attention: Annotated[Attention, choice(
        Attention, "--attention", help="none (the decoder starts from one feature vector, the "
        "encoder's final state), dot, general (Luong) or additive (Bahdanau); for captions, "
        "over a grid of features [N, R, D] (none: pool it).",
        rich_help_panel=SEQ2SEQ)] = Attention.general,
    bidirectional: Annotated[bool, typer.Option(
        "--bidirectional", help="Read the source both ways (the encoder's states are \\[forward; "
        "backward]).", rich_help_panel=SEQ2SEQ)] = False,
    input_feeding: Annotated[bool, typer.Option(
        "--input-feeding", help="Feed each step's attentional vector into the next step's "
        "decoder input (Luong et al. 2015; slower: the decoder then trains one step at a "
        "time).", rich_help_panel=SEQ2SEQ)] = False,
    label_smoothing: Annotated[float, typer.Option(
        help="Label smoothing eps of the training loss (the reported loss and perplexity stay "
        "the plain cross-entropy).", rich_help_panel=SEQ2SEQ)] = 0.0,
    early_stopping: Annotated[str, typer.Option(
        help="What picks the best model and drives --patience: ppl (validation perplexity) or "
        "bleu (greedy BLEU of the validation pairs, computed each epoch either way).",
        rich_help_panel=SEQ2SEQ)] = "ppl",
    features: Annotated[Optional[Path], typer.Option(
        help="The images' features (`rnnkit features`, .npy or neuraltalk .mat); DATA is then "
        "captions (image_id<TAB>caption lines, or a directory with captions.tsv).",
        rich_help_panel=CAPTION)] = None,
    min_count: Annotated[int, typer.Option(
        help="Caption words seen fewer times become <unk>.", rich_help_panel=CAPTION)] = 1,
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
        help="Stop after this many epochs without a better validation score (perplexity, or "
        "BLEU with --early-stopping bleu); each such epoch also decays the learning rate.",
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
    distributed: Annotated[bool, typer.Option(
        "--distributed", help="Data-parallel over the MPI ranks of `mpiexec -n N` (recurrent "
        "language, translation and caption models; --batch is the total over the ranks; needs "
        "rnnkit[mpi]).",
        rich_help_panel=OPTIMISATION)] = False,
):
    """Train a model: n-gram (Kneser-Ney and others), recurrent LM, translation or captions."""
    if out_path is None:
        raise RnnkitError("--out MODEL is required: the model file to write")
    _check_options_apply(ctx, model_type.value)
    memory = parse_size("--memory", memory) if memory is not None else None
    if (workers is not None or scheduler is not None) and memory is not None:
        raise RnnkitError("--memory (one machine, on disk) and --workers/--scheduler (a Dask "
                          "cluster) are two estimators: choose one")
    inputs = [data, valid, init_from, features]
    # data-parallel: the ranks start first, and rank 0 alone holds the output's lock (the others
    # would find it taken); a rank that fails then ends the whole job (cli.main)
    world = mpi_world() if distributed else None
    guard = writing(out_path, inputs) if world is None or world.root else checking(out_path, inputs)
    with guard:
        summary = _train(data, valid, out_path, model_type, locals())
    if summary is not None and as_json:
        print_json(summary)


_LMS = ("lstm", "lstm-peephole", "lstm-nofg", "rnn")
_GRADIENT = (*_LMS, "seq2seq", "caption")
# which --type reads each option that not every type reads (what _train passes on)
_APPLIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("order", "smoothing", "add_k", "prune", "discount_fallback", "memory",
                     "temp_dir", "workers", "scheduler", "shared_data"), ("ngram",)),
    **dict.fromkeys(("emb", "hidden", "layers", "dropout", "tie_weights", "init_scale", "epochs",
                     "lr", "lr_decay", "clip", "seed", "patience", "checkpoint_every", "resume",
                     "optimizer", "batch", "decay_after", "init_from", "distributed"), _GRADIENT),
    **dict.fromkeys(("bptt", "output", "cutoffs", "div_value", "head_bias", "classes"), _LMS),
    **dict.fromkeys(("bidirectional", "input_feeding", "label_smoothing", "early_stopping"),
                    ("seq2seq",)),
    "attention": ("seq2seq", "caption"),
    **dict.fromkeys(("features", "min_count"), ("caption",)),
}


# what to say instead of the general message, for options whose misuse needs a pointer
_GRADIENT_ONLY = ("{flag} continues gradient training (recurrent, translation, caption models); "
                  "an n-gram model is estimated from its counts in one pass")
_WHY = {
    "memory": "--memory and --temp-dir go with --type ngram",
    "temp_dir": "--memory and --temp-dir go with --type ngram",
    "workers": "--workers/--scheduler estimate n-gram models only, not --type {type} (recurrent "
               "models: --distributed)",
    "scheduler": "--workers/--scheduler estimate n-gram models only, not --type {type} (recurrent "
                 "models: --distributed)",
    "resume": _GRADIENT_ONLY,
    "init_from": _GRADIENT_ONLY,
    "distributed": "--distributed trains recurrent models (language, translation, caption), not "
                   "n-gram models (counting needs no gradient steps)",
}


def _check_options_apply(ctx: typer.Context, model_type: str) -> None:
    """An option given on the command line that this --type does not read is an error, not
    silently ignored (`--type lstm --order 5`)."""
    for param in ctx.command.params:
        types = _APPLIES.get(param.name)
        if types is None or model_type in types:
            continue
        source = ctx.get_parameter_source(param.name)   # Click's enum (typer may vendor Click)
        if getattr(source, "name", None) == "COMMANDLINE":
            flag = max(param.opts, key=len)
            why = _WHY.get(param.name, "{flag} does not apply to --type {type} (it is for --type "
                                       "{types})")
            raise RnnkitError(why.format(flag=flag, type=model_type, types=", ".join(types)))


def _train(data, valid, out_path, model_type, o) -> dict | None:
    """Dispatch on --type; `o` holds the command's options by name. None on MPI ranks other
    than 0 (rank 0 reports)."""
    if valid is not None and model_type.value in ("seq2seq", "caption"):
        raise RnnkitError("--valid goes with a text file for a language model; translation and "
                          "caption data have their own valid split")
    corpus = load_data(data, valid=valid) if valid is not None else data
    o = dict(o)
    opt = o["optimizer"]
    decay_after, batch, init_from = o["decay_after"], o["batch"], o["init_from"]
    common = dict(emb=o["emb"], hidden=o["hidden"], layers=o["layers"], dropout=o["dropout"],
                  tie_weights=o["tie_weights"], init_scale=o["init_scale"], epochs=o["epochs"],
                  lr=o["lr"], lr_decay=o["lr_decay"], clip=o["clip"], seed=o["seed"],
                  threads=o["threads"], patience=o["patience"],
                  checkpoint_every=o["checkpoint_every"], resume=o["resume"])
    adam = dict(optimizer=(opt or Optimizer.adam).value, batch=batch or 64,
                decay_after=decay_after if decay_after is not None else 1_000_000)
    world = o["world"]
    if model_type is ModelType.ngram:
        return _train_ngram(corpus, data, out_path, order=o["order"],
                            smoothing=o["smoothing"].value, add_k=o["add_k"], prune=o["prune"],
                            discount_fallback=o["discount_fallback"], quiet=o["as_json"],
                            memory=o["memory"], temp_dir=o["temp_dir"], workers=o["workers"],
                            scheduler=o["scheduler"], shared_data=o["shared_data"],
                            threads=o["threads"])
    if model_type.value == "seq2seq":
        opts = Seq2SeqTrainOptions(
            **common, **adam, attention=o["attention"].value, bidirectional=o["bidirectional"],
            input_feeding=o["input_feeding"],
            label_smoothing=o["label_smoothing"], early_stopping=o["early_stopping"],
            init_from=None if init_from is None else str(init_from))
        summary = _run(train_seq2seq, data, out_path, opts, o["as_json"], "translation model",
                       world)
    elif model_type.value == "caption":
        opts = CaptionTrainOptions(**common, **adam, min_count=o["min_count"],
                                   attention=o["attention"].value)
        features = o["features"]
        summary = _run(lambda d, p, op, ev, **w: train_caption(d, p, op, ev, features=features,
                                                               **w),
                       data, out_path, opts, o["as_json"], "model", world)
    else:
        summary = _train_lm(corpus, out_path, model_type, opts_common=common, o=o, world=world)
    if world is not None and not world.root:
        return None   # rank 0 reports
    return summary


def _train_lm(corpus, out_path, model_type, opts_common: dict, o: dict, world) -> dict:
    """A recurrent language model through the generic loop."""
    common, opt, decay_after = opts_common, o["optimizer"], o["decay_after"]
    batch, init_from = o["batch"], o["init_from"]
    opts = TrainOptions(
        **common, model_type=model_type.value, bptt=o["bptt"], batch=batch or 20,
        optimizer=(opt or Optimizer.sgd).value,
        decay_after=decay_after if decay_after is not None else 4,
        init_from=None if init_from is None else str(init_from), output=o["output"].value,
        cutoffs=parse_cutoffs(o["cutoffs"]), div_value=o["div_value"], head_bias=o["head_bias"],
        classes=o["classes"])
    return _run(run_train, corpus, out_path, opts, o["as_json"], "language model", world)


def parse_cutoffs(text: str | None) -> tuple[int, ...]:
    """--cutoffs 2000,10000 -> (2000, 10000)."""
    if not text:
        return ()
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise RnnkitError(f"--cutoffs {text!r}: expected comma-separated integers such as "
                          f"2000,10000") from None


def _train_ngram(corpus, data, out_path, *, order, smoothing, add_k, prune, discount_fallback,
                 quiet, memory=None, temp_dir=None, workers=None, scheduler=None,
                 shared_data=False, threads=None):
    """Train, save, print a summary table unless quiet; return the summary. With `memory`
    (bytes) the staged external estimator writes the model and the summary adds its stage
    timings, temporary disk and peak RSS; with `workers` or `scheduler` the Dask estimator
    (models/ngram/cluster.py) does, and the summary adds its stage timings."""
    t0 = time.perf_counter()
    on_cluster = workers is not None or scheduler is not None
    if shared_data and not on_cluster:
        raise RnnkitError("--shared-data goes with --workers or --scheduler")
    if on_cluster:
        cluster.check_available()
    files = [data] if isinstance(corpus, str) and os.path.isfile(data) else []
    with contextlib.ExitStack() as stack:
        if isinstance(corpus, str) and files and memory is not None:
            # a text file under a budget: prepared by streaming into a temporary corpus
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="rnnkit-prepare-",
                                                                  dir=temp_dir))
            with byte_progress("reading", files) as advance:
                prepare_streamed([data], Path(tmp) / "corpus", memory=memory, temp_dir=tmp,
                                 split="1,0,0", progress=advance)
            corpus = Corpus.load(Path(tmp) / "corpus")
        elif isinstance(corpus, str):
            with byte_progress("reading", files) as advance:
                corpus = load_data(data, progress=advance if files else None)
        return _train_ngram_corpus(corpus, data, out_path, t0, order=order, smoothing=smoothing,
                                   add_k=add_k, prune=prune, discount_fallback=discount_fallback,
                                   quiet=quiet, memory=memory, temp_dir=temp_dir,
                                   threads=threads, cluster_args=(dict(workers=workers, scheduler=scheduler,
                                                      shared=shared_data) if on_cluster else None))


def _train_ngram_corpus(corpus, data, out_path, t0, *, order, smoothing, add_k, prune,
                        discount_fallback, quiet, memory, temp_dir, threads=None,
                        cluster_args=None):
    extra = {}
    auto = (memory is None and cluster_args is None
            and external.auto_memory(len(corpus["train"])) is not None)
    if auto:  # a large corpus: the staged estimator is faster there, and bounded (same model)
        memory = external.auto_memory(len(corpus["train"]))
    if memory is not None:
        with stage_progress(external.STAGES) as advance:
            info = external.train_to_file(
                corpus, out_path, order, smoothing, memory=memory, temp_dir=temp_dir,
                add_k=add_k, prune=prune, discount_fallback=discount_fallback, progress=advance,
                threads=threads)
        model = load(out_path, mmap=True)
        extra = {k: info[k] for k in ("memory", "stage_seconds", "temp_peak_bytes",
                                      "count_runs", "peak_rss_bytes")}
        extra["estimator"] = "external (auto: a large corpus)" if auto else "external"
        tr = {**info, "data": str(data)}
    elif cluster_args is not None:
        with stage_progress(cluster.STAGES) as advance:
            model = cluster.train(corpus, order, smoothing, add_k=add_k, prune=prune,
                                  discount_fallback=discount_fallback, progress=advance,
                                  **cluster_args)
        model.meta["training"]["data"] = str(data)
        model.save(out_path)
        tr = model.meta["training"]
        extra = {k: tr[k] for k in ("workers", "partitions", "stage_seconds")}
        extra["estimator"] = "dask"
    else:
        model = train_ngram(corpus, order, smoothing, add_k=add_k, prune=prune,
                            discount_fallback=discount_fallback)
        model.meta["training"]["data"] = str(data)
        model.save(out_path)
        tr = model.meta["training"]
    summary = {"model": str(out_path), "type": "ngram", "order": order, "smoothing": smoothing,
               "vocab": len(model.vocab), "sentences": tr["sentences"], "tokens": tr["tokens"],
               "ngrams": tr["ngrams"], "discounts": tr["discounts"],
               "seconds": round(time.perf_counter() - t0, 3), **extra}
    if memory is None and cluster_args is None:
        summary.update(estimator="in memory", peak_rss_bytes=external.peak_rss())
    for split in ("valid", "test"):
        if split in corpus and len(corpus[split]):
            summary[f"{split}_perplexity"] = split_perplexity(model, corpus[split])
    if not quiet:
        out.print(f"{order}-gram {smoothing} model -> {out_path}: {summary['sentences']:,} "
                  f"sentences, {summary['tokens']:,} tokens, vocabulary {summary['vocab']:,}, "
                  f"{summary['seconds']:.2f} s", markup=False, soft_wrap=True)
        out.print(ngram_table(summary))
    return summary


class _QuietEvents(TrainEvents):
    """The events of ranks other than 0: nothing to show."""

    def close(self) -> None: ...


def _run(train_fn, data, out_path, opts, quiet: bool, what: str, world=None) -> dict:
    """Train through the generic loop with a progress view, print a summary unless quiet;
    return the summary. Ctrl-C leaves the checkpoint (see --resume) and exits with 130.
    Data-parallel (world): rank 0 shows the progress and the summary."""
    root = world is None or world.root
    events = RichTrainEvents(err) if root else _QuietEvents()
    try:
        summary = (train_fn(data, out_path, opts, events) if world is None
                   else train_fn(data, out_path, opts, events, world=world))
    except TrainingInterrupted as e:
        events.close()
        if root:
            err.print(f"interrupted: {e}", markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        events.close()
    if not quiet and root:
        out.print(f"{summary['model_type']} {what} -> {summary['model']}", markup=False,
                  soft_wrap=True)
        out.print(train_summary_table(summary))
    return summary
