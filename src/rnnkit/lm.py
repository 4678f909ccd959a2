"""The one language-model protocol that every model type implements.

Dimension letters: B batch (parallel sentences or streams), V vocabulary, T tokens.

A model type implements four methods:
  start(batch) -> state            the context after <s> for B sentences
  advance(state, ids) -> state     feed one token id per sentence (ids: [B] int)
  log_probs(state) -> [B, V]       log10 of the full next-token distribution (sums to 1 over V)
  token_log_probs(sentences) -> [per sentence: [T+1] log10]  fast path for scoring: the log10
                                   probability of each token z1..zT and </s> given <s> z<t
and, optionally, `matched_lengths(sentences)` (the n-gram length used per token; a recurrent
model sees the whole history, so its default is the position + 1).

Everything else -- score, full_scores, perplexity (KenLM's names, log base 10) and generate -- is
written once, here and in sampling.py / scoring.py / rescore.py, never per model type.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from .vocab import BOS, EOS, UNK, Tokenizer, Vocab


class LanguageModel:
    """Base class: a vocabulary, a tokenizer and the protocol above."""

    model_type = "abstract"
    vocab: Vocab
    tokenizer: Tokenizer

    # --- the protocol --------------------------------------------------------------------------
    def start(self, batch: int):
        raise NotImplementedError

    def advance(self, state, ids: np.ndarray):
        raise NotImplementedError

    def log_probs(self, state) -> np.ndarray:
        raise NotImplementedError

    def token_log_probs(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        """Generic (slow) path through start/advance/log_probs; model types override it."""
        out = []
        for ids in sentences:
            state = self.start(1)
            lp = np.empty(len(ids) + 1)
            for t, w in enumerate(list(ids) + [EOS]):
                lp[t] = self.log_probs(state)[0, w]
                state = self.advance(state, np.array([w]))
            out.append(lp)
        return out

    def matched_lengths(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        return [np.arange(2, len(ids) + 3) for ids in sentences]

    # --- text -> ids ---------------------------------------------------------------------------
    def encode(self, sentence: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a sentence split by the model's tokenizer, and the OOV mask."""
        tokens = self.tokenizer.split(sentence)
        ids = self.vocab.encode(tokens)
        oov = ids == UNK
        if oov.any():
            # a literal <unk> in the text is still an OOV, as KenLM counts it
            oov = np.array([i == UNK for i in ids.tolist()])
        return ids, oov

    # --- KenLM's API, log10 --------------------------------------------------------------------
    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 P(sentence), including </s> when eos."""
        return float(sum(lp for lp, _, _ in self.full_scores(sentence, bos=bos, eos=eos)))

    def full_scores(self, sentence: str, bos: bool = True, eos: bool = True
                    ) -> Iterator[tuple[float, int, bool]]:
        """Per token (z1..zT, then </s> when eos): (log10 p, n-gram length used, is OOV)."""
        if not bos:
            raise NotImplementedError(f"{self.model_type} models score from <s> only (bos=True)")
        ids, oov = self.encode(sentence)
        lp = self.token_log_probs([ids])[0]
        lengths = self.matched_lengths([ids])[0]
        n = len(ids) + (1 if eos else 0)
        for t in range(n):
            yield float(lp[t]), int(lengths[t]), bool(oov[t]) if t < len(ids) else False

    def perplexity(self, sentences: Iterable[str]) -> float:
        """Corpus perplexity as KenLM's query defines it: 10^(-Σ log10 p / (tokens + sentences))."""
        total, count = 0.0, 0
        for s in sentences:
            ids, _ = self.encode(s)
            total += float(self.token_log_probs([ids])[0].sum())
            count += len(ids) + 1
        if count == 0:
            return math.nan
        return 10.0 ** (-total / count)

    def generate(self, num: int = 1, **options) -> list[str]:
        """Sample `num` sentences from <s> until </s>; options as sampling.sample."""
        from .sampling import sample

        return [self.tokenizer.join(self.vocab.decode(ids)) for ids in sample(self, num, **options)]
