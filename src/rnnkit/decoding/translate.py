"""Translating text with a conditional model (models/seq2seq.py): tokenize, encode, search,
decode, detokenize -- in batches of sentences of similar length, results in input order.

The model is used through the decoding protocol (decoding/beam.py) and these attributes:
src_tokenizer, src_vocab (source text -> ids), trg_vocab, trg_tokenizer (ids -> text).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import RnnkitError
from ..text.vocab import UNK
from .beam import Hypothesis, beam_search


@dataclass
class TranslateOptions:
    beam: int = 5
    alpha: float = 1.0          # length penalty exponent (decoding/beam.py)
    n_best: int = 1
    max_ratio: float = 2.0      # at most max_ratio * source tokens + max_extra target tokens
    max_extra: int = 10
    max_length: int | None = None  # and at most this many, whatever the source's length
    batch: int = 64
    replace_unk: bool = False
    keep_attention: bool = False

    def check(self) -> None:
        if self.beam < 1:
            raise RnnkitError(f"--beam must be at least 1, got {self.beam}")
        if not 1 <= self.n_best <= self.beam:
            raise RnnkitError(f"--n-best must be between 1 and --beam ({self.beam}), got "
                              f"{self.n_best}")
        if not self.max_ratio > 0 or self.max_extra < 0:
            raise RnnkitError("--max-ratio must be positive and --max-extra not negative")
        if self.max_length is not None and self.max_length < 1:
            raise RnnkitError(f"--max-length must be at least 1, got {self.max_length}")
        if self.batch < 1:
            raise RnnkitError(f"--batch must be at least 1, got {self.batch}")


@dataclass
class Translation:
    text: str
    tokens: list[str]
    score: float                      # log10 p(translation </s> | source)
    complete: bool
    attention: np.ndarray | None      # [target tokens + 1, source tokens + 1]


@dataclass
class Result:
    source: str
    source_tokens: list[str]
    hypotheses: list[Translation] = field(default_factory=list)

    @property
    def best(self) -> Translation:
        return self.hypotheses[0]


def translate_lines(model, lines: list[str], opts: TranslateOptions | None = None,
                    progress=None) -> list[Result]:
    """The translations of `lines` (plain text), in their order; progress(n) is called after
    each batch with the number of sentences it translated."""
    opts = opts or TranslateOptions()
    opts.check()
    if opts.replace_unk and getattr(model.arch, "attention", "none") == "none":
        raise RnnkitError("--replace-unk needs a model with attention")
    keep = opts.keep_attention or opts.replace_unk
    tokens = [model.src_tokenizer.split(line) for line in lines]
    ids = [np.asarray(model.src_vocab.encode(t), np.int64) for t in tokens]
    results: list[Result | None] = [None] * len(lines)
    order = np.argsort([len(x) for x in ids], kind="stable")
    for a in range(0, len(order), opts.batch):
        idx = order[a:a + opts.batch].tolist()
        limits = [int(opts.max_ratio * len(ids[i])) + opts.max_extra for i in idx]
        if opts.max_length is not None:
            limits = [min(n, opts.max_length) for n in limits]
        found = beam_search(model, [ids[i] for i in idx], opts.beam, limits, opts.n_best,
                            opts.alpha, keep_attention=keep)
        for i, hyps in zip(idx, found):
            results[i] = Result(lines[i], tokens[i],
                                [_detokenize(model, h, tokens[i], opts) for h in hyps])
        if progress is not None:
            progress(len(idx))
    return results


def _detokenize(model, h: Hypothesis, source_tokens: list[str], opts: TranslateOptions
                ) -> Translation:
    words = model.trg_vocab.decode(h.tokens)
    # the search's attention spans its batch's longest source: keep this source's own
    # positions (its tokens and </s>)
    attention = None if h.attention is None else h.attention[:, :len(source_tokens) + 1]
    if opts.replace_unk and attention is not None and source_tokens:
        for t, w in enumerate(h.tokens):
            if w == UNK:  # the most attended source word (never the source's </s>)
                words[t] = source_tokens[int(np.argmax(attention[t, :len(source_tokens)]))]
    return Translation(model.trg_tokenizer.join(words), list(words), h.score, h.complete,
                       attention)
