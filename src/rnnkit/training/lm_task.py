"""The language-model task of the training loop: truncated BPTT over batchified streams.

Dimension letters: N tokens of a split, B streams (batch), S steps per stream (N // B),
T steps of a window (bptt), L layers, H hidden size.

The training split becomes B parallel streams (batchify), cut into windows of T steps; a batch
of the loop is one window. The hidden state starts at zero each epoch and is carried from window
to window (the gradient is not: truncated BPTT), and a checkpoint keeps it (`state.h`,
`state.c`). Each window's loss is the cross-entropy (natural log) summed over its T steps and
averaged over the B streams -- the loss Zaremba et al. (2014) define, for which their learning
rate 1.0 and clipping at 5 are meant. Validation and test read each split as one stream (or
--eval-batch streams) and report perplexity.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, RnnkitError
from ..models.rnnlm import MODEL_TYPES, OUTPUTS, RNNLM, Architecture
from ..models.rnnlm import load as load_rnnlm
from ..nn.optim import SparseRows
from ..nn.output import frequency_classes
from ..text.prepare import Corpus, load_data
from ..text.vocab import BOS, EOS
from .checkpoint import model_out_path
from .distributed import shard_slice
from .loop import LoopOptions, Task, Trainer, TrainEvents, perplexity_of

EVAL_WINDOW = 64     # steps per forward call when evaluating (any value gives the same result)


@dataclass
class LMOptions:
    """The language model's own options of `rnnkit train` (see its --help)."""

    model_type: str = "lstm"
    emb: int = 200
    hidden: int = 200
    layers: int = 2
    dropout: float = 0.0
    tie_weights: bool = False
    bptt: int = 35
    batch: int = 20
    init_scale: float = 0.1
    eval_batch: int = 1  # streams when measuring perplexity: 1 reads each split as one stream
    init_from: str | None = None  # a trained model to start from (see init_from_model)
    output: str = "full"          # the output layer: full softmax or adaptive (nn/output.py)
    cutoffs: tuple[int, ...] = ()  # the adaptive softmax's head size and cluster starts
    div_value: float = 4.0        # the adaptive softmax's projection divisor
    head_bias: bool = True        # the adaptive softmax's head has a bias (PyTorch's head_bias)
    classes: int = 0              # the class softmax's number of classes (frequency binning)

    def check(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise InputError(f"unknown --type {self.model_type!r}: use one of "
                             f"{', '.join(MODEL_TYPES)}")
        for name in ("emb", "hidden", "layers", "bptt", "batch", "eval_batch"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got "
                                 f"{getattr(self, name)}")
        if self.init_scale < 0:
            raise InputError(f"--init-scale must not be negative, got {self.init_scale}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.emb != self.hidden:
            raise InputError(f"--tie-weights needs --emb equal to --hidden (got {self.emb} and "
                             f"{self.hidden})")
        if self.output not in OUTPUTS:
            raise InputError(f"unknown --output {self.output!r}: use one of {', '.join(OUTPUTS)}")
        if self.output == "adaptive" and not self.cutoffs:
            raise InputError("--output adaptive needs --cutoffs (e.g. --cutoffs 2000,10000: a "
                             "head of the 2000 most frequent ids, clusters from there on)")
        if self.output != "adaptive" and self.cutoffs:
            raise InputError("--cutoffs applies to --output adaptive only")
        if self.output == "classes" and self.classes < 1:
            raise InputError("--output classes needs --classes N (e.g. --classes 200; about "
                             "sqrt(vocabulary size) is the usual choice)")
        if self.output != "classes" and self.classes:
            raise InputError("--classes applies to --output classes only")

    def architecture(self, vocab_size: int, counts=None) -> Architecture:
        """The architecture these options give for a vocabulary of vocab_size tokens (counts
        [V]: the words' training counts, which the class softmax bins into --classes)."""
        cutoffs = tuple(self.cutoffs)
        try:
            if self.output == "classes":
                counts = np.ones(vocab_size) if counts is None else counts
                cutoffs = tuple(frequency_classes(counts, self.classes))
            return Architecture(self.model_type, vocab_size, self.emb, self.hidden, self.layers,
                                self.tie_weights, self.dropout, output=self.output,
                                cutoffs=cutoffs, div_value=self.div_value,
                                head_bias=self.head_bias and self.output == "adaptive")
        except ValueError as e:
            raise InputError(f"{e}") from None
        except RnnkitError as e:
            raise InputError(f"{e} (the vocabulary has {vocab_size} tokens)") from None


# --- data ----------------------------------------------------------------------------------------
def lm_stream(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of a split: y = the ids (each sentence followed by </s>), x = y shifted
    right by one with <s> at the start of every sentence -- the samples x = (<s>, z1 .. zT),
    y = (z1 .. zT, </s>) laid end to end. Both [N] int64."""
    y = np.asarray(ids, np.int64)
    x = np.empty_like(y)
    if len(y):
        x[0] = BOS
        x[1:] = y[:-1]
        x[1:][y[:-1] == EOS] = BOS
    return x, y


def batchify(a: np.ndarray, batch: int) -> np.ndarray:
    """[N] -> [S, B] time-major: stream b is the b-th contiguous slice of S = N // B tokens
    (the last N mod B tokens are left out)."""
    s = len(a) // batch
    return np.ascontiguousarray(a[:s * batch].reshape(batch, s).T)


def window_starts(steps: int, bptt: int) -> list[int]:
    return list(range(0, steps, bptt))


def evaluate(model: RNNLM, ids: np.ndarray, batch: int = 1, window: int = EVAL_WINDOW
             ) -> tuple[float, int]:
    """(cross-entropy in nats summed over every target, number of targets) of a split.

    With batch 1 the split is read as one stream with the state carried throughout (as Zaremba
    et al. evaluate). With batch B it is cut into B streams for speed, each starting from the
    zero state (as PyTorch's word_language_model evaluates, B = 10), which changes the result
    slightly; the N mod B tokens left over continue the last stream, so every token counts."""
    x, y = lm_stream(ids)
    n = len(y)
    if n == 0:
        return 0.0, 0
    batch = max(1, min(batch, n))
    xb, yb = batchify(x, batch), batchify(y, batch)
    h, c = model.zero_state(batch)
    total = 0.0
    for s in range(0, xb.shape[0], window):
        total += model.forward_loss(xb[s:s + window], yb[s:s + window], h, c)
    rest = n - xb.shape[0] * batch
    if rest:
        h1 = np.ascontiguousarray(h[:, -1:])
        c1 = None if c is None else np.ascontiguousarray(c[:, -1:])
        xr, yr = x[n - rest:, None], y[n - rest:, None]
        for s in range(0, rest, window):
            total += model.forward_loss(np.ascontiguousarray(xr[s:s + window]),
                                        np.ascontiguousarray(yr[s:s + window]), h1, c1)
    return total, n


def perplexity(model: RNNLM, ids: np.ndarray, batch: int = 1) -> float:
    nats, count = evaluate(model, ids, batch)
    return perplexity_of(nats / count) if count else math.nan


# --- the model -----------------------------------------------------------------------------------
def init_from_model(opts: LMOptions, corpus: Corpus, rng: np.random.Generator) -> RNNLM:
    """A model for the corpus's vocabulary started from a trained one (pre-train, fine-tune).

    The architecture is the trained model's (and is written back into opts); rows of the
    embedding and output layer are mapped by token, and tokens the trained model did not have
    keep their fresh initialisation.
    """
    old = load_rnnlm(opts.init_from)
    a = old.arch
    if a.output != "full":
        raise InputError(f"{opts.init_from}: --init-from maps the rows of a full softmax; this "
                         f"model's output layer is {a.output!r}")
    arch = Architecture(a.model_type, len(corpus.vocab), a.emb, a.hidden, a.layers,
                        a.tie_weights, opts.dropout)
    model = RNNLM(arch, corpus.vocab, corpus.tokenizer)
    model.init_uniform(rng, opts.init_scale)
    for name, v in old.p.items():
        if name not in ("encoder.weight", "decoder.weight", "decoder.bias"):
            model.p[name][...] = v
    new_ids, old_ids = [], []
    for i, token in enumerate(corpus.vocab.tokens):
        j = old.vocab.index.get(token)
        if j is not None:
            new_ids.append(i)
            old_ids.append(j)
    new_ids, old_ids = np.array(new_ids, np.int64), np.array(old_ids, np.int64)
    for name in ("encoder.weight", "decoder.bias") + (() if a.tie_weights else ("decoder.weight",)):
        model.p[name][new_ids] = old.p[name][old_ids]
    opts.model_type, opts.emb, opts.hidden, opts.layers = a.model_type, a.emb, a.hidden, a.layers
    opts.tie_weights = a.tie_weights
    model.meta["init_from"] = {"model": str(opts.init_from), "mapped_tokens": int(len(new_ids)),
                               "new_tokens": int(len(corpus.vocab) - len(new_ids))}
    return model


# --- the task ------------------------------------------------------------------------------------
class LMTask(Task):
    """A recurrent language model (RNNLM) trained on a Corpus by truncated BPTT.

    Data-parallel (shard): rank r of N trains on streams [r b, (r + 1) b) of the B = N b streams
    a single process would read, with the loss still averaged over all B; its carried state is
    its [L, b, H] part of the [L, B, H] one (state_batch_axis 1).
    """

    state_batch_axis = 1
    _shard: tuple[int, int] | None = None   # (rank, ranks) when data-parallel

    def shard(self, rank: int, size: int) -> None:
        self._shard = (rank, size)

    def _streams(self, batch: int) -> slice:
        """This rank's streams of the global batch (all of them without sharding)."""
        if self._shard is None:
            return slice(0, batch)
        return shard_slice(batch, *self._shard, "streams")

    def __init__(self, corpus: Corpus):
        if "train" not in corpus or len(corpus["train"]) == 0:
            raise InputError("the data has no training split")
        self.corpus = corpus
        self.model: RNNLM | None = None
        self.h: np.ndarray | None = None   # [L, B, H] the state carried from window to window
        self.c: np.ndarray | None = None   # [L, B, H], LSTMs only

    def _batchify(self, opts: LMOptions) -> None:
        self.opts = opts
        x, y = lm_stream(self.corpus["train"])
        self.xb, self.yb = batchify(x, opts.batch), batchify(y, opts.batch)  # [S, B]
        if self.xb.shape[0] == 0:
            raise InputError(f"the training split has {len(y)} tokens, fewer than --batch "
                             f"{opts.batch}; use a smaller --batch or more data")
        mine = self._streams(opts.batch)
        self.xb = np.ascontiguousarray(self.xb[:, mine])   # [S, b] this rank's streams
        self.yb = np.ascontiguousarray(self.yb[:, mine])
        self.starts = window_starts(self.xb.shape[0], opts.bptt)
        self.num_batches = len(self.starts)
        self.epoch_tokens = self.xb.shape[0] * opts.batch   # of all ranks
        self.scale = 1.0 / opts.batch  # the loss is averaged over the B streams (of all ranks)

    def fingerprint(self) -> dict:
        return {"vocab_sha256": self.corpus.vocab.sha256(), "vocab_size": len(self.corpus.vocab),
                "train_tokens": int(len(self.corpus["train"]))}

    # --- set-up ----------------------------------------------------------------------------------
    def build(self, opts: LMOptions, rng: np.random.Generator) -> None:
        self._batchify(opts)
        vocab = self.corpus.vocab
        if opts.init_from:
            self.model = init_from_model(opts, self.corpus, rng)
        else:
            arch = opts.architecture(len(vocab), vocab.counts)
            self.model = RNNLM(arch, vocab, self.corpus.tokenizer)
            self.model.init_uniform(rng, opts.init_scale)
        self.h, self.c = self.model.zero_state(self.xb.shape[1])

    def restore(self, opts: LMOptions, meta: dict, path: Path) -> None:
        data = meta["data"]
        if data.get("vocab_sha256") != self.corpus.vocab.sha256():
            raise InputError(
                f"{path}: vocabulary mismatch: the checkpoint was trained with a "
                f"vocabulary of {data.get('vocab_size')} tokens that differs from the data's "
                f"({len(self.corpus.vocab)} tokens); resume with the same data, or train without "
                f"--resume")
        if data.get("train_tokens") != int(len(self.corpus["train"])):
            raise InputError(f"{path}: the training split differs from the one the "
                             f"checkpoint was made with; resume with the same data")
        self._batchify(opts)
        arch = Architecture.from_dict(meta["architecture"])
        self.model = RNNLM(arch, self.corpus.vocab, self.corpus.tokenizer,
                           meta=meta.get("model_meta"))

    @property
    def flat(self) -> np.ndarray:
        return self.model.flat

    @property
    def grad(self) -> np.ndarray:
        return self.model.grad

    def describe(self) -> dict:
        a = self.model.arch
        return {"model_type": self.model.model_type, "parameters": self.model.num_parameters,
                "vocab_size": len(self.model.vocab),
                "output": (f"classes {len(a.cutoffs)}" if a.output == "classes" else
                           a.output + (f" {','.join(map(str, a.cutoffs))}" if a.cutoffs else ""))}

    # --- training --------------------------------------------------------------------------------
    def batches(self, epoch: int, start: int
                ) -> Iterator[tuple[tuple[np.ndarray, np.ndarray], int]]:
        """Windows start .. end of the epoch, in order (every epoch reads the same streams):
        ((x, y) [T, b] each, T * B tokens: b = B streams of this rank, B of all)."""
        T, B = self.opts.bptt, self.opts.batch
        for s in self.starts[start:]:
            x, y = self.xb[s:s + T], self.yb[s:s + T]
            yield (x, y), x.shape[0] * B

    def reset_state(self) -> None:
        self.h[...] = 0
        if self.c is not None:
            self.c[...] = 0

    def loss_and_grad(self, batch: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
                      ) -> float:
        x, y = batch
        # h, c are carried in and replaced in place by the state after the window
        return self.model.forward_backward(x, y, self.h, self.c, self.scale, rng)

    def sparse_grad(self, on: bool) -> None:
        self.model.set_sparse_grad(on)

    def grad_rows(self) -> tuple[SparseRows, ...]:
        return self.model.grad_rows()

    def perplexity(self, split: str) -> float | None:
        if split not in self.corpus or len(self.corpus[split]) == 0:
            return None
        return perplexity(self.model, self.corpus[split], self.opts.eval_batch)

    # --- files -----------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, np.ndarray]:
        tensors = {"state.h": self.h}
        if self.c is not None:
            tensors["state.c"] = self.c
        return tensors

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        mine = self._streams(tensors["state.h"].shape[1])
        self.h = np.array(tensors["state.h"][:, mine])
        self.c = np.array(tensors["state.c"][:, mine]) if "state.c" in tensors else None

    def checkpoint_meta(self) -> dict:
        return {"architecture": self.model.arch.to_dict(), "data": self.fingerprint(),
                "model_meta": {k: v for k, v in self.model.meta.items() if k != "training"}}

    def save_model(self, path: Path, training: dict) -> None:
        data = {**self.fingerprint(), "manifest": self.corpus.manifest}
        self.model.save(path, training={**training, "data": data})


# --- the entry point of `rnnkit train` for recurrent language models ---------------------------
@dataclass
class TrainOptions(LoopOptions, LMOptions):
    """The options of `rnnkit train` for recurrent language models (see its --help): the loop's
    (LoopOptions) and the language model's (LMOptions)."""

    def check(self) -> None:
        LMOptions.check(self)
        LoopOptions.check(self)

    @classmethod
    def from_dict(cls, d: dict):
        # options saved before head_bias existed (checkpoints, model files) had no head bias
        return super().from_dict({"head_bias": False, **d})


def train(data, out_path: str | os.PathLike, options: TrainOptions | None = None,
          events: TrainEvents | None = None, world=None, **kw) -> dict:
    """Train a recurrent language model on `data` (a Corpus, a corpus directory or a text file)
    and write the best model to `out_path`; returns a JSON-able summary. Options as TrainOptions
    (or keyword arguments); world: a distributed.World for data-parallel training over MPI."""
    opts = options or TrainOptions(**kw)
    opts.check()
    if opts.resume and opts.init_from:
        raise InputError("--resume continues a run; it cannot be combined with --init-from")
    out_path = model_out_path(out_path)
    corpus = data if isinstance(data, Corpus) else load_data(data)
    task = LMTask(corpus)
    return Trainer(task, out_path, opts, events or TrainEvents(), world=world).run()
