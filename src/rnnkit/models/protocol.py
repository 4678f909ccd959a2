"""The one language-model protocol that every model type implements.

Dimension letters: B batch (parallel sentences or streams), V vocabulary, T tokens.

A model type implements four methods:
  start(batch) -> state            the context after <s> for B sentences
  advance(state, ids) -> state     feed one token id per sentence (ids: [B] int)
  log_probs(state) -> [B, V]       log10 of the full next-token distribution (sums to 1 over V)
  token_log_probs(sentences) -> [per sentence: [T+1] log10]  fast path for scoring: the log10
                                   probability of each token z1..zT and </s> given <s> z<t
and, optionally, `matched_lengths(sentences)` (the n-gram length used per token; a recurrent
model sees the whole history, so its default is the position + 1) and `top_log_probs(state, k)`
(each row's min(k, V) most probable next tokens, best first, and their log10 p: the values of
log_probs, which a beam search then never has written; decoding/beam.py cuts log_probs itself
for a model without it).

Callers always use the state advance returns (`state = model.advance(state, ids)`) and never the
one they passed in: a model may update it in place (recurrent models do, to allocate nothing per
step) -- take `select_state(state, rows)` first to branch. Likewise the array log_probs returns
may be a buffer of the state that the next call overwrites (callers may modify it).

Everything else -- score, full_scores, perplexity (KenLM's names, log base 10) and generate -- is
written once, here and in sampling.py / scoring.py / rescore.py, never per model type.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator

import numpy as np

from ..decoding.prefix import prefix_log_probs
from ..decoding.sampling import sample
from ..decoding.scoring import pow10
from ..decoding.state import select_state  # noqa: F401  (part of the protocol's API)
from ..errors import RnnkitError
from ..text.vocab import BOS, EOS, UNK, Tokenizer, Vocab


# str.split() whitespace outside ASCII (the ASCII ones are split by the compiled encoder)
_UNICODE_SPACE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def advance_ids(ids, batch: int, V: int) -> np.ndarray:
    """The ids given to `advance`, checked: one per stream, each in [0, V)."""
    ids = np.asarray(ids)
    if ids.shape != (batch,):
        raise RnnkitError(f"advance: expected {batch} token ids, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise RnnkitError(f"advance: token ids must be in [0, {V})")
    return ids


class LanguageModel:
    """Base class: a vocabulary, a tokenizer and the protocol above."""

    model_type = "abstract"
    vocab: Vocab
    tokenizer: Tokenizer
    _vocab_hash = None  # the compiled token -> id hash of encode_lines, made on first use

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

    # True for model types whose cost is one full next-token distribution per position (the
    # recurrent ones): scoring many sentences with common prefixes -- the candidates of an N-best
    # list -- is then cheaper through prefix_token_log_probs. An n-gram lookup is cheaper alone.
    share_prefixes = False

    def prefix_token_log_probs(self, sentences: list[np.ndarray], chunk: int = 512
                               ) -> list[np.ndarray]:
        """The same numbers as token_log_probs, computing each distinct prefix once (a prefix
        tree walked through start / advance / log_probs; see decoding/prefix.py)."""
        return prefix_log_probs(self, sentences, chunk)

    # --- text -> ids ---------------------------------------------------------------------------
    def encode(self, sentence: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a sentence split by the model's tokenizer, and the OOV mask."""
        tokens = self.tokenizer.split(sentence)
        ids = self.vocab.encode(tokens)
        # a literal <s> or </s> inside a sentence cannot be a boundary: it is an OOV (as in prepare)
        ids[(ids == BOS) | (ids == EOS)] = UNK
        # a literal <unk> in the text is an OOV too, as KenLM counts it
        oov = ids == UNK
        return ids, oov

    def encode_lines(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids of many lines at once: (ids [T] uint32, offsets [S+1] int64, oov [T] bool).

        Word-level text goes through the compiled vocabulary hash (the same tokens as
        Tokenizer.split: Unicode whitespace separates, the text is normalised first); other
        tokenizers, and model types with their own `encode` (a mixture of vocabularies), go
        through `encode` line by line. <s> and </s> inside a line are OOV.
        """
        tok = self.tokenizer
        if type(self).encode is LanguageModel.encode and tok.level == "word" and \
                not any("\n" in s for s in lines):
            if self._vocab_hash is None:
                # imported on first use: the compiled module's package (models/ngram) imports
                # this module, so a top-level import here would be circular
                from .ngram._ngram import VocabHash
                self._vocab_hash = VocabHash(self.vocab.tokens)
            text = tok.clean("\n".join(lines))
            if not text.isascii():
                text = _UNICODE_SPACE.sub(" ", text)
            ids, offsets = self._vocab_hash.encode_lines(text.encode("utf-8") + b"\n", UNK)
            offsets = offsets[:len(lines) + 1]
            return ids, offsets, ids == UNK
        parts, oovs = [], []
        for s in lines:
            ids, oov = self.encode(s)
            parts.append(np.asarray(ids, np.uint32))
            oovs.append(np.asarray(oov, bool))
        offsets = np.zeros(len(lines) + 1, np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        cat = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
        return cat, offsets, (np.concatenate(oovs) if oovs else np.zeros(0, bool))

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
        return pow10(-total / count)

    def generate(self, num: int = 1, **options) -> list[str]:
        """Sample `num` sentences from <s> until </s>; options as sampling.sample."""
        return [self.tokenizer.join(self.vocab.decode(ids)) for ids in sample(self, num, **options)]
