"""Training a translation model (models/seq2seq.py) on sentence pairs: the Task of the generic
loop (training/loop.py) for `rnnkit train DIR --type seq2seq`.

Dimension letters: B sentence pairs per batch.

Batches are buckets of pairs of similar length (sorted by target, then source length, and cut
into groups of --batch pairs), so little of a batch is padding; each epoch visits them in an
order drawn from (--seed, epoch), the same after a resume. The loss of a batch is the
cross-entropy summed over its target tokens and averaged over its pairs. Nothing is carried from
batch to batch.

Data-parallel (--distributed, training/distributed.py): each rank trains on its part of every
bucket, with the loss averaged over the whole bucket; rank 0 measures perplexity and BLEU and
broadcasts them.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..decoding.beam import greedy_search
from ..decoding.metrics import corpus_bleu
from ..errors import InputError
from ..loader import load
from ..models.seq2seq import (
    ATTENTIONS,
    PairBatch,
    Seq2Seq,
    Seq2SeqArchitecture,
    make_batch,
)
from ..nn.recurrent import CELLS
from ..text.parallel import ParallelCorpus
from .buckets import length_buckets, sorted_chunks
from .checkpoint import model_out_path
from .distributed import ShardedExamples
from .loop import LoopOptions, Task, Trainer, TrainEvents, perplexity_of

EVAL_BATCH = 64  # pairs per batch when measuring perplexity (any value gives the same result)
BLEU_PAIRS = 500  # validation pairs translated (greedy) for the BLEU of each epoch


@dataclass
class Seq2SeqOptions:
    """The translation model's own options of `rnnkit train --type seq2seq`."""

    cell: str = "lstm"
    emb: int = 256
    hidden: int = 256
    layers: int = 1
    attention: str = "general"
    bidirectional: bool = False
    input_feeding: bool = False  # h~_{t-1} joins the decoder's input (Luong et al. 2015, 3.3)
    dropout: float = 0.0
    tie_weights: bool = False  # the decoder's output layer reuses its input embedding
    batch: int = 32
    init_scale: float = 0.1
    label_smoothing: float = 0.0
    early_stopping: str = "ppl"  # what picks the best model and drives --patience: ppl or bleu
    init_from: str | None = None  # a trained translation model to continue from (fine-tuning)

    def check(self) -> None:
        if self.cell not in CELLS:
            raise InputError(f"unknown cell {self.cell!r}: use one of {', '.join(CELLS)}")
        if self.attention not in ATTENTIONS:
            raise InputError(f"unknown --attention {self.attention!r}: use one of "
                             f"{', '.join(ATTENTIONS)}")
        if self.input_feeding and self.attention == "none":
            raise InputError("--input-feeding feeds the attentional vector back: it needs "
                             "--attention dot, general or additive")
        for name in ("emb", "hidden", "layers", "batch"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise InputError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.early_stopping not in ("ppl", "bleu"):
            raise InputError(f"unknown --early-stopping {self.early_stopping!r}: use ppl or bleu")
        if not (self.init_scale >= 0 and math.isfinite(self.init_scale)):
            raise InputError(f"--init-scale must be a finite number >= 0, got {self.init_scale}")


def _pairs(corpus, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        return list(corpus.pairs(split))
    except KeyError:
        return []


class Seq2SeqTask(ShardedExamples, Task):
    """A Seq2Seq model trained on a parallel corpus (text/parallel.py: .src and .trg corpora,
    .pairs(split) -> [(source ids, target ids)] without </s>)."""

    def __init__(self, corpus):
        self.corpus = corpus
        self.train_pairs = _pairs(corpus, "train")
        if not self.train_pairs:
            raise InputError("the data has no training pairs")
        self.model: Seq2Seq | None = None

    def _bucket(self, opts: Seq2SeqOptions) -> None:
        self.opts = opts
        lengths = np.array([(len(t), len(s)) for s, t in self.train_pairs], np.int64)
        self.buckets = length_buckets(opts.batch, lengths[:, 0], lengths[:, 1])  # trg, src
        self.num_batches = len(self.buckets)
        self.trg_tokens = lengths[:, 0] + 1                          # [pairs] targets and </s>
        self.epoch_tokens = int(self.trg_tokens.sum())
        self.check_shard(opts.batch, "pairs")

    def fingerprint(self) -> dict:
        c = self.corpus
        return {"src_vocab_sha256": c.src.vocab.sha256(), "trg_vocab_sha256": c.trg.vocab.sha256(),
                "train_pairs": len(self.train_pairs)}

    def build(self, opts, rng: np.random.Generator) -> None:
        self._bucket(opts)
        c = self.corpus
        old = self._init_from(opts.init_from) if opts.init_from else None
        if old is not None:  # the architecture is the model's; dropout is training's own
            arch = Seq2SeqArchitecture.from_dict({**old.arch.to_dict(), "dropout": opts.dropout})
        else:
            arch = Seq2SeqArchitecture(len(c.src.vocab), len(c.trg.vocab), opts.emb, opts.hidden,
                                       opts.layers, opts.layers, opts.cell, opts.bidirectional,
                                       opts.attention, tie_target=opts.tie_weights,
                                       dropout=opts.dropout, input_feeding=opts.input_feeding)
        self.model = Seq2Seq(arch, c.src.vocab, c.trg.vocab, c.src.tokenizer, c.trg.tokenizer)
        self.model.init_uniform(rng, opts.init_scale)
        if old is not None:
            self.model.flat[...] = old.flat

    def _init_from(self, path: str) -> Seq2Seq:
        """The trained model to start from: a translation model over the data's vocabularies.
        Its architecture replaces the options that fix shapes (--emb, --hidden, --layers,
        --attention, ...), as --init-from does for language models."""
        old = load(path)
        if not isinstance(old, Seq2Seq):
            raise InputError(f"{path}: --init-from needs a translation model, not a "
                             f"{old.model_type} model")
        c = self.corpus
        if old.src_vocab.tokens != c.src.vocab.tokens or \
                old.trg_vocab.tokens != c.trg.vocab.tokens:
            raise InputError(f"{path}: its vocabularies differ from the data's; prepare the data "
                             f"with the model's vocabularies")
        return old

    def restore(self, opts, meta: dict, path: Path) -> None:
        if meta["data"] != self.fingerprint():
            raise InputError(f"{path}: the checkpoint was made on other data (vocabularies or "
                             f"training pairs differ); resume with the same data")
        self._bucket(opts)
        c = self.corpus
        self.model = Seq2Seq(Seq2SeqArchitecture.from_dict(meta["architecture"]), c.src.vocab,
                             c.trg.vocab, c.src.tokenizer, c.trg.tokenizer)

    @property
    def flat(self) -> np.ndarray:
        return self.model.flat

    @property
    def grad(self) -> np.ndarray:
        return self.model.grad

    def describe(self) -> dict:
        a = self.model.arch
        return {"model_type": "seq2seq", "parameters": self.model.num_parameters,
                "vocab_size": a.trg_vocab_size, "src_vocab_size": a.src_vocab_size,
                "attention": a.attention, "bidirectional": a.bidirectional,
                "input_feeding": a.input_feeding,
                "train_pairs": len(self.train_pairs)}

    def _batch(self, idx) -> PairBatch:
        return make_batch([self.train_pairs[i][0] for i in idx],
                          [self.train_pairs[i][1] for i in idx])

    def batches(self, epoch: int, start: int
                ) -> Iterator[tuple[tuple[PairBatch | None, int], int]]:
        """((this rank's pairs of the bucket, or None if it has none; the bucket's size),
        the bucket's target tokens)."""
        return self.bucket_batches(epoch, start, 2, self.trg_tokens)

    def loss_and_grad(self, batch: tuple[PairBatch | None, int], rng: np.random.Generator
                      ) -> float:
        return self.part_loss(batch, lambda pairs, scale: self.model.forward_backward(
            pairs, scale, rng, self.opts.label_smoothing))

    def epoch_metrics(self) -> dict:
        """BLEU of greedy translations of (up to BLEU_PAIRS of) the validation pairs."""
        pairs = _pairs(self.corpus, "valid")[:BLEU_PAIRS]
        if not pairs:
            return {}
        return {"valid_bleu": self.on_root(lambda: round(greedy_bleu(self.model, pairs), 2))}

    def criterion(self, record: dict) -> float | None:
        if self.opts.early_stopping == "bleu" and "valid_bleu" in record:
            return -record["valid_bleu"]
        return record["valid_ppl"]

    def perplexity(self, split: str) -> float | None:
        pairs = _pairs(self.corpus, split)
        if not pairs:
            return None
        return self.on_root(lambda: pair_perplexity(self.model, pairs))

    def checkpoint_meta(self) -> dict:
        return {"architecture": self.model.arch.to_dict(), "data": self.fingerprint()}

    def save_model(self, path: Path, training: dict) -> None:
        manifest = getattr(self.corpus, "manifest", None)
        self.model.save(path, training={**training, "data": {**self.fingerprint(),
                                                              "manifest": manifest}})


def greedy_bleu(model: Seq2Seq, pairs) -> float:
    """Corpus BLEU (sacreBLEU, detokenized) of greedy translations of the pairs' sources against
    their targets as the corpus holds them (an OOV reads <unk> on both sides)."""
    hyps = greedy_search(model, [s for s, _ in pairs],
                         [2 * len(s) + 10 for s, _ in pairs])
    join, words = model.trg_tokenizer.join, model.trg_vocab.decode
    return corpus_bleu([join(words(h.tokens)) for h in hyps],
                       [join(words(t.tolist())) for _, t in pairs])


def pair_perplexity(model: Seq2Seq, pairs, batch: int = EVAL_BATCH) -> float:
    """exp(cross-entropy per target token, </s> included) of the targets given their sources."""
    nats, tokens = 0.0, 0
    for idx in sorted_chunks([len(t) for _, t in pairs], batch):
        b = make_batch([pairs[i][0] for i in idx], [pairs[i][1] for i in idx])
        nats += model.forward_loss(b)
        tokens += b.tokens
    return perplexity_of(nats / tokens)


@dataclass
class Seq2SeqTrainOptions(LoopOptions, Seq2SeqOptions):
    """The options of `rnnkit train --type seq2seq`: the loop's and the model's."""

    optimizer: str = "adam"
    lr: float | None = None
    decay_after: int = 1_000_000  # with Adam the rate decays only when validation stalls
    patience: int | None = None

    def check(self) -> None:
        Seq2SeqOptions.check(self)
        LoopOptions.check(self)


def train_seq2seq(data, out_path: str | os.PathLike, options: Seq2SeqTrainOptions | None = None,
                  events: TrainEvents | None = None, world=None, **kw) -> dict:
    """Train a translation model on a parallel corpus (a directory made by `rnnkit prepare
    --parallel`, or a ParallelCorpus) and write the best model to out_path; returns the
    summary. Options as Seq2SeqTrainOptions (or keyword arguments); world: a distributed.World
    for data-parallel training over MPI."""
    opts = options or Seq2SeqTrainOptions(**kw)
    opts.check()
    out_path = model_out_path(out_path)
    if isinstance(data, (str, os.PathLike)):
        data = ParallelCorpus.load(data)
    return Trainer(Seq2SeqTask(data), out_path, opts, events or TrainEvents(), world=world).run()
