"""Scoring sentences: per-sentence records and the corpus summary of `rnnkit score`.

Dimension letters: S sentences, T tokens of a batch (each sentence's words, then </s>).

Written once over `token_log_probs` (and `matched_lengths` for --per-token), so every model type
scores through it. Figures follow KenLM's `query` and SRILM's `-ppl`:
  tokens      words + one </s> per sentence (<s> is context only, never scored)
  perplexity  10^(-sum log10 p / tokens), OOV tokens included (scored as p(<unk>))
  perplexity_excluding_oov  10^(-(sum log10 p - sum_OOV log10 p) / (tokens - OOVs)); the OOV
              tokens still act as context
An OOV is a token not in the model's vocabulary (a literal <unk> too). An empty line is the
sentence `<s> </s>` (one token).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import RnnkitError
from ..text.vocab import EOS

BATCH = 4096  # sentences scored per call of the model's fast path


class ScoreError(RnnkitError):
    """A sentence the model cannot score (probability 0)."""


def pow10(x: float) -> float:
    """10 ** x without OverflowError: a perplexity whose mean log10 p is below -308 is inf
    (JSON output writes it as null, see cli's print_json)."""
    try:
        return 10.0 ** x
    except OverflowError:
        return math.inf


@dataclass
class SentenceScore:
    line: int  # 1-based position in the input
    text: str
    log10_prob: float  # log10 p(z1 .. zT </s> | <s>)
    tokens: int  # T + 1 (</s> included)
    oov: int
    oov_log10_prob: float  # the OOV tokens' share of log10_prob
    per_token: list | None = None  # [(token, log10 p, n-gram length, is OOV)] with --per-token

    @property
    def ppl(self) -> float:
        return pow10(-self.log10_prob / self.tokens)

    def to_json(self) -> dict:
        d = {"text": self.text, "log10_prob": self.log10_prob, "tokens": self.tokens,
             "oov": self.oov, "ppl": self.ppl}
        if self.per_token is not None:
            d["per_token"] = [{"token": t, "log10_prob": lp, "ngram_length": n, "oov": o}
                              for t, lp, n, o in self.per_token]
        return d


@dataclass
class Summary:
    sentences: int = 0
    tokens: int = 0
    oov: int = 0
    log10_prob: float = 0.0
    oov_log10_prob: float = 0.0
    models: list = field(default_factory=list)

    def add(self, s: SentenceScore) -> None:
        self.sentences += 1
        self.tokens += s.tokens
        self.oov += s.oov
        self.log10_prob += s.log10_prob
        self.oov_log10_prob += s.oov_log10_prob

    @property
    def perplexity(self) -> float:
        return pow10(-self.log10_prob / self.tokens) if self.tokens else math.nan

    @property
    def perplexity_excluding_oov(self) -> float:
        n = self.tokens - self.oov
        return pow10(-(self.log10_prob - self.oov_log10_prob) / n) if n else math.nan

    def to_json(self) -> dict:
        return {"perplexity": self.perplexity,
                "perplexity_excluding_oov": self.perplexity_excluding_oov,
                "sentences": self.sentences, "tokens": self.tokens, "oov": self.oov,
                "log10_prob": self.log10_prob}


def score_batch(model, ids: np.ndarray, offsets: np.ndarray, per_token: bool = False):
    """log10 p [T + S] and n-gram lengths (or None) of S sentences, each followed by </s>."""
    if hasattr(model, "score_flat"):
        lp, ln = model.score_flat(ids, offsets)
        return lp, (ln if per_token else None)
    sentences = [ids[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    lp = np.concatenate(model.token_log_probs(sentences)) if sentences else np.zeros(0)
    ln = None
    if per_token:
        ln = np.concatenate(model.matched_lengths(sentences)) if sentences else np.zeros(0, int)
    return lp, ln


def split_perplexity(model, ids) -> float:
    """Perplexity of a prepared split (`ids`: every sentence followed by </s>) as KenLM's query
    defines it, 10^(-sum log10 p / tokens) with </s> counted; NaN for an empty split."""
    ids = np.asarray(ids)
    ends = np.flatnonzero(ids == EOS)
    words = np.delete(ids, ends)
    offsets = np.concatenate(([0], ends - np.arange(len(ends))))  # where each sentence starts
    lp, _ = score_batch(model, words, offsets)
    return round(pow10(-float(lp.sum()) / len(lp)), 4) if len(lp) else float("nan")


def score_lines(model, lines: Iterable[tuple[int, str]], per_token: bool = False,
                summary: Summary | None = None) -> Iterator[SentenceScore]:
    """Score (line number, text) pairs, yielding one SentenceScore each and adding it to
    `summary`. ScoreError when the model gives a token probability 0 (an MLE model)."""
    batch = []
    for item in lines:
        batch.append(item)
        if len(batch) == BATCH:
            yield from _score(model, batch, per_token, summary)
            batch = []
    if batch:
        yield from _score(model, batch, per_token, summary)


def _score(model, batch, per_token, summary):
    texts = [t for _, t in batch]
    ids, offsets, oov = model.encode_lines(texts)
    lp, ln = score_batch(model, ids, offsets, per_token)
    S = len(batch)
    out_off = offsets + np.arange(S + 1)  # [S+1] each sentence gains its </s>
    is_oov = np.zeros(len(lp), bool)  # [T + S]
    word_pos = np.arange(len(ids)) + np.repeat(np.arange(S), np.diff(offsets))
    is_oov[word_pos] = oov
    if np.isneginf(lp).any():
        _zero_probability(model, batch, ids, offsets, out_off, lp)
    starts = out_off[:-1]
    sums = np.add.reduceat(lp, starts) if len(lp) else np.zeros(S)
    oov_lp = np.add.reduceat(np.where(is_oov, lp, 0.0), starts) if len(lp) else np.zeros(S)
    n_oov = np.add.reduceat(is_oov.astype(np.int64), starts) if len(lp) else np.zeros(S, int)
    lengths = np.diff(out_off)
    for s, (number, text) in enumerate(batch):
        rec = SentenceScore(number, text, float(sums[s]), int(lengths[s]), int(n_oov[s]),
                            float(oov_lp[s]))
        if per_token:
            a, _b = int(out_off[s]), int(out_off[s + 1])
            toks = [model.vocab.tokens[i] if not o else _surface(model, text, j)
                    for j, (i, o) in enumerate(zip(ids[offsets[s]:offsets[s + 1]].tolist(),
                                                   oov[offsets[s]:offsets[s + 1]].tolist()))]
            toks.append("</s>")
            rec.per_token = [(t, float(lp[a + j]), int(ln[a + j]), bool(is_oov[a + j]))
                             for j, t in enumerate(toks)]
        if summary is not None:
            summary.add(rec)
        yield rec


def _surface(model, text: str, j: int) -> str:
    """The j-th token of the line as written (an OOV has no vocabulary entry)."""
    toks = model.tokenizer.split(text)
    return toks[j] if j < len(toks) else "<unk>"


def _zero_probability(model, batch, ids, offsets, out_off, lp):
    bad = int(np.flatnonzero(np.isneginf(lp))[0])
    s = int(np.searchsorted(out_off, bad, side="right") - 1)
    j = bad - int(out_off[s])
    n_words = int(offsets[s + 1] - offsets[s])
    token = "</s>" if j == n_words else model.vocab.tokens[int(ids[offsets[s] + j])]
    number, text = batch[s]
    smoothing = getattr(model, "smoothing", None)
    hint = ("an MLE model gives probability 0 to every n-gram it never saw; train with "
            "--smoothing mkn (or kn, wb, addk) to score unseen text"
            if smoothing == "mle" else "the model gives this token probability 0")
    raise ScoreError(f"line {number}: token {j + 1} ({token!r}) has probability 0: {hint}")


def score_text(model, lines: Iterable[str]) -> Summary:
    """The corpus summary of sentences (strings), as KenLM's query prints it."""
    summary = Summary()
    for _ in score_lines(model, enumerate(lines, 1), summary=summary):
        pass
    return summary
