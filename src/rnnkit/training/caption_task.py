"""Training a caption model (models/caption.py) on image features and captions: the Task of the
generic loop (training/loop.py) for `rnnkit train DIR --type caption --features FEATS`.

Dimension letters: N images, D feature size, B captions per batch.

Data: the captions (`image_id<TAB>caption` lines, DIR/captions.tsv or a file; or neuraltalk's
dataset.json) and the features of the same images (text/captions.py). Every VALID_EVERY-th image
(in sorted-id order) is held out for validation, with all its captions. The vocabulary is that
of the training captions (words seen at least --min-count times; others become <unk>), split by
a lowercasing word tokenizer that travels in the model file.

Batches are buckets of captions of similar length (each caption is one example with its image;
an image with 5 captions appears 5 times per epoch, as in Show and Tell), visited in an order
drawn from (--seed, epoch), the same after a resume. The loss of a batch is the cross-entropy
(eq. 8.51) summed over its tokens and averaged over its captions.

Data-parallel (--distributed, training/distributed.py): each rank trains on its part of every
bucket, with the loss averaged over the whole bucket; rank 0 measures perplexity and broadcasts
it.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models.caption import (
    CaptionArchitecture,
    CaptionBatch,
    CaptionModel,
    make_caption_batch,
)
from ..models.seq2seq import ATTENTIONS
from ..nn.recurrent import CELLS
from ..text.captions import Features, check_aligned, read_captions, read_features
from ..text.vocab import SPECIALS, Tokenizer, Vocab
from .buckets import length_buckets, sorted_chunks
from .checkpoint import model_out_path
from .distributed import ShardedExamples
from .loop import LoopOptions, Task, Trainer, TrainEvents, perplexity_of

VALID_EVERY = 20   # image i (sorted ids) is a validation image when i % 20 == 19
EVAL_BATCH = 64


@dataclass
class CaptionData:
    """Features [N, D] and captions (as text) of the same N images, split train / valid."""

    features: Features
    captions: dict            # image id -> [caption text]
    tokenizer: Tokenizer
    source: str = ""

    def split_ids(self, split: str) -> list[str]:
        ids = sorted(self.captions)
        if len(ids) < VALID_EVERY:
            return ids if split == "train" else []
        keep = (lambda i: i % VALID_EVERY == VALID_EVERY - 1) if split == "valid" else \
            (lambda i: i % VALID_EVERY != VALID_EVERY - 1)
        return [x for i, x in enumerate(ids) if keep(i)] if split in ("train", "valid") else []

    def vocab(self, min_count: int = 1) -> Vocab:
        counts = Counter(t for i in self.split_ids("train") for c in self.captions[i]
                         for t in self.tokenizer.split(c))
        words = sorted((t for t, n in counts.items() if n >= min_count and t not in SPECIALS),
                       key=lambda t: (-counts[t], t))
        return Vocab(list(SPECIALS) + words, [0, 0, 0] + [counts[t] for t in words])

    def examples(self, split: str, vocab: Vocab) -> tuple[np.ndarray, list[np.ndarray]]:
        """(feature row of each caption [M], caption ids [M] without </s>)."""
        rows, caps = [], []
        for i in self.split_ids(split):
            r = self.features.index[i]
            for c in self.captions[i]:
                rows.append(r)
                caps.append(vocab.encode(self.tokenizer.split(c)).astype(np.int64))
        return np.asarray(rows, np.int64), caps


def load_caption_data(captions_path, features_path, tokenizer: Tokenizer | None = None
                      ) -> CaptionData:
    """Captions and features of the same images (clear errors when they do not match)."""
    feats = read_features(features_path)
    caps = read_captions(captions_path)
    check_aligned(feats, caps, str(captions_path))
    return CaptionData(feats, caps, tokenizer or Tokenizer(lowercase=True), str(captions_path))


@dataclass
class CaptionOptions:
    """The caption model's own options of `rnnkit train --type caption`."""

    cell: str = "lstm"
    emb: int = 256
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.0
    tie_weights: bool = False
    batch: int = 64
    init_scale: float = 0.1
    min_count: int = 1
    attention: str = "general"  # with a grid of features [N, R, D]; "none" pools the grid

    def check(self) -> None:
        if self.cell not in CELLS:
            raise InputError(f"unknown cell {self.cell!r}: use one of {', '.join(CELLS)}")
        for name in ("emb", "hidden", "layers", "batch", "min_count"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got "
                                 f"{getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.attention not in ATTENTIONS:
            raise InputError(f"unknown --attention {self.attention!r}: use one of "
                             f"{', '.join(ATTENTIONS)}")
        if not (self.init_scale >= 0 and math.isfinite(self.init_scale)):
            raise InputError(f"--init-scale must be a finite number >= 0, got {self.init_scale}")


class CaptionTask(ShardedExamples, Task):
    """A CaptionModel trained on CaptionData."""

    def __init__(self, data: CaptionData):
        self.data = data
        if not data.split_ids("train"):
            raise InputError("the data has no training images")
        self.model: CaptionModel | None = None

    def _prepare(self, opts, vocab: Vocab) -> None:
        self.opts, self.vocab = opts, vocab
        f = self.data.features
        if f.array.ndim == 3 and opts.attention == "none":
            f.array = np.ascontiguousarray(f.array.mean(axis=1))   # one vector: the mean cell
        self.attention = opts.attention if f.array.ndim == 3 else "none"
        self.rows, self.caps = self.data.examples("train", vocab)
        lengths = np.array([len(c) for c in self.caps], np.int64)
        self.buckets = length_buckets(opts.batch, lengths)
        self.num_batches = len(self.buckets)
        self.cap_tokens = lengths + 1                                # [captions] words and </s>
        self.epoch_tokens = int(self.cap_tokens.sum())
        self.check_shard(opts.batch, "captions")

    def fingerprint(self) -> dict:
        return {"vocab_sha256": self.vocab.sha256(), "train_captions": len(self.caps),
                "feature_size": int(self.data.features.size), "attention": self.attention}

    def build(self, opts, rng: np.random.Generator) -> None:
        self._prepare(opts, self.data.vocab(opts.min_count))
        arch = CaptionArchitecture(self.data.features.size, len(self.vocab), opts.emb,
                                   opts.hidden, opts.layers, opts.cell, opts.tie_weights,
                                   opts.dropout, self.attention)
        self.model = CaptionModel(arch, self.vocab, self.data.tokenizer)
        self.model.init_uniform(rng, opts.init_scale)
        self.model.set_feature_stats(self._train_features())

    def restore(self, opts, meta: dict, path: Path) -> None:
        self._prepare(opts, Vocab(meta["vocab"]))
        if meta["data"] != self.fingerprint():
            raise InputError(f"{path}: the checkpoint was made on other data (vocabulary, "
                             f"captions or features differ); resume with the same data")
        self.model = CaptionModel(CaptionArchitecture.from_dict(meta["architecture"]),
                                  self.vocab, self.data.tokenizer)
        self.model.set_feature_stats(self._train_features())

    def _train_features(self) -> np.ndarray:
        """[N, D] the training images' features (each once), for mu and sigma."""
        return self.data.features.array[np.unique(self.rows)]

    @property
    def flat(self) -> np.ndarray:
        return self.model.flat

    @property
    def grad(self) -> np.ndarray:
        return self.model.grad

    def describe(self) -> dict:
        a = self.model.arch
        return {"model_type": "caption", "parameters": self.model.num_parameters,
                "vocab_size": a.vocab_size, "feature_size": a.feature_size,
                "attention": a.attention,
                "train_images": len(self.data.split_ids("train")),
                "train_captions": len(self.caps)}

    def _batch(self, idx) -> CaptionBatch:
        return make_caption_batch(self.data.features.array[self.rows[idx]],
                                  [self.caps[i] for i in idx])

    def batches(self, epoch: int, start: int
                ) -> Iterator[tuple[tuple[CaptionBatch | None, int], int]]:
        """((this rank's captions of the bucket, or None if it has none; the bucket's size),
        the bucket's tokens)."""
        return self.bucket_batches(epoch, start, 3, self.cap_tokens)

    def loss_and_grad(self, batch: tuple[CaptionBatch | None, int], rng: np.random.Generator
                      ) -> float:
        return self.part_loss(batch, lambda captions, scale:
                              self.model.forward_backward(captions, scale, rng))

    def perplexity(self, split: str) -> float | None:
        rows, caps = self.data.examples(split, self.vocab)
        if not caps:
            return None
        return self.on_root(lambda: caption_perplexity(self.model, self.data.features.array[rows],
                                                       caps))

    def checkpoint_meta(self) -> dict:
        return {"architecture": self.model.arch.to_dict(), "vocab": self.vocab.tokens,
                "data": self.fingerprint()}

    def save_model(self, path: Path, training: dict) -> None:
        data = {**self.fingerprint(), "captions": self.data.source,
                "features": self.data.features.source}
        extra = {} if self.data.features.extractor is None else \
            {"extractor": self.data.features.extractor}   # caption re-extracts images with it
        self.model.save(path, training={**training, "data": data}, **extra)


def caption_perplexity(model: CaptionModel, features: np.ndarray, captions: list[np.ndarray],
                       batch: int = EVAL_BATCH) -> float:
    """exp(cross-entropy per token, </s> included) of captions given their images' features."""
    nats, tokens = 0.0, 0
    for idx in sorted_chunks([len(c) for c in captions], batch):
        b = make_caption_batch(features[idx], [captions[i] for i in idx])
        nats += model.forward_loss(b)
        tokens += b.tokens
    return perplexity_of(nats / tokens)


@dataclass
class CaptionTrainOptions(LoopOptions, CaptionOptions):
    """The options of `rnnkit train --type caption`: the loop's and the model's."""

    optimizer: str = "adam"
    lr: float | None = None
    decay_after: int = 1_000_000  # with Adam the rate decays only when validation stalls
    patience: int | None = None

    def check(self) -> None:
        CaptionOptions.check(self)
        LoopOptions.check(self)


def train_caption(data, out_path: str | os.PathLike, options: CaptionTrainOptions | None = None,
                  events: TrainEvents | None = None, *, features=None, world=None, **kw) -> dict:
    """Train a caption model on CaptionData (or a captions file/directory, with `features`, a
    features file) and write the best model to out_path; returns the summary. world: a
    distributed.World for data-parallel training over MPI."""
    opts = options or CaptionTrainOptions(**kw)
    opts.check()
    out_path = model_out_path(out_path)
    if not isinstance(data, CaptionData):
        if features is None:
            raise InputError("a caption model needs the images' features: --features FILE "
                             "(made by `rnnkit features`)")
        data = load_caption_data(data, features)
    return Trainer(CaptionTask(data), out_path, opts, events or TrainEvents(), world=world).run()
