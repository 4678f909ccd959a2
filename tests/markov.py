"""A corpus with the statistics of text, built in a test: the n-gram estimators' tests use it."""
from __future__ import annotations

import numpy as np

from rnnkit.text.prepare import Corpus
from rnnkit.text.vocab import Tokenizer, Vocab


def markov_corpus(sentences: int = 3000, V: int = 400, seed: int = 0) -> Corpus:
    """Sentences from a random Markov chain whose successors are Zipf-distributed: n-gram counts
    with the long tail of real text (many singletons, a few frequent n-grams), plus <unk>."""
    rng = np.random.default_rng(seed)
    succ = rng.integers(3, V, (V, 8))  # [V, 8] each word's likely successors
    out = []
    for _ in range(sentences):
        w = int(rng.integers(3, V))
        for _ in range(int(rng.integers(1, 25))):
            out.append(w)
            j = min(int(rng.zipf(1.5)) - 1, 7)
            w = int(succ[w, j]) if rng.random() < 0.8 else int(rng.integers(0, V))
            w = 0 if w == 1 else w  # never <s>
        out.append(2)
    vocab = Vocab(["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(3, V)])
    return Corpus(vocab, Tokenizer(), {"train": np.array(out, np.uint32)})
