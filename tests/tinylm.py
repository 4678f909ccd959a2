"""A tiny hand-built language model implementing the protocol of rnnkit.models.protocol, for tests that must
not depend on a trained model: a bigram table P(next | previous) over a small vocabulary."""
from __future__ import annotations

import numpy as np

from rnnkit.models.protocol import LanguageModel
from rnnkit.text.vocab import BOS, SPECIALS, Tokenizer, Vocab


class TableLM(LanguageModel):
    """P(w | v) = table[v, w]; the state is the previous token id per row."""

    model_type = "table"

    def __init__(self, words, table=None, seed=0, tokenizer=None):
        self.vocab = Vocab(list(SPECIALS) + list(words))
        self.tokenizer = tokenizer or Tokenizer()
        v = len(self.vocab)
        if table is None:
            rng = np.random.default_rng(seed)
            table = rng.random((v, v)) + 0.05
            table /= table.sum(axis=1, keepdims=True)
        self.table = np.asarray(table, dtype=np.float64)   # [V, V] rows sum to 1
        self.calls = []  # the batches token_log_probs was called with

    def start(self, batch):
        return np.full(batch, BOS, dtype=np.int64)

    def advance(self, state, ids):
        return np.asarray(ids, dtype=np.int64).copy()

    def log_probs(self, state):
        return np.log10(self.table[state])

    def token_log_probs(self, sentences):
        self.calls.append(len(sentences))
        return super().token_log_probs(sentences)


def sentence_log10(model: TableLM, words: list[str]) -> float:
    """log10 P(words </s>) computed by hand from the table."""
    ids = [model.vocab.index.get(w, 0) for w in words] + [2]
    prev, total = BOS, 0.0
    for i in ids:
        total += np.log10(model.table[prev, i])
        prev = i
    return float(total)
