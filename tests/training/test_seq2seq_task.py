"""Training a translation model through the generic loop: it learns a small reordering task
(attention beats the single feature vector), and a resumed run ends bit for bit where an
uninterrupted one does."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import rnnkit
from rnnkit.decoding.beam import greedy_search
from rnnkit.text.vocab import SPECIALS, Tokenizer, Vocab
from rnnkit.training import TrainEvents, TrainingInterrupted
from rnnkit.training.seq2seq_task import Seq2SeqTrainOptions, train_seq2seq

WORDS = "a b c d e f".split()


def reorder(src: np.ndarray) -> np.ndarray:
    """The target of a source: reversed (a word-order change a translator must learn)."""
    return src[::-1].copy()


def corpus(n=600, seed=0):
    rng = np.random.default_rng(seed)
    vocab = Vocab(list(SPECIALS) + WORDS)
    data = {}
    for split, count in (("train", n), ("valid", 40), ("test", 40)):
        pairs = []
        for _ in range(count):
            s = rng.integers(3, len(vocab), rng.integers(2, 7)).astype(np.uint32)
            pairs.append((s, reorder(s)))
        data[split] = pairs
    side = SimpleNamespace(vocab=vocab, tokenizer=Tokenizer())
    return SimpleNamespace(src=side, trg=side, pairs=lambda split: data[split], manifest=None,
                           data=data)


def accuracy(model, pairs):
    hyps = greedy_search(model, [s for s, _ in pairs], max_len=12)
    return np.mean([h.tokens == t.tolist() for h, (_, t) in zip(hyps, pairs)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    c = corpus()
    out = {}
    for attention in ("general", "none"):
        path = tmp_path_factory.mktemp("s2s") / f"{attention}.rnnkit"
        summary = train_seq2seq(c, path, emb=24, hidden=32, attention=attention,
                                bidirectional=True, batch=16, epochs=12, lr=0.01, threads=1)
        out[attention] = (rnnkit.load(path), summary)
    return c, out


def test_attention_learns_the_reordering_and_beats_one_feature_vector(trained):
    c, out = trained
    test = c.data["test"]
    att_model, att_summary = out["general"]
    one_model, one_summary = out["none"]
    assert att_summary["test_perplexity"] < 1.3
    assert accuracy(att_model, test) >= 0.9
    assert att_summary["test_perplexity"] < one_summary["test_perplexity"]
    # each epoch's record has the greedy BLEU of the validation pairs; the last is near perfect
    records = [r for r in att_model.meta["training"]["records"] if r["kind"] == "epoch"]
    assert all("valid_bleu" in r for r in records) and records[-1]["valid_bleu"] > 90


def test_resume_is_bit_identical(tmp_path):
    c = corpus(120, seed=1)
    kw = dict(emb=8, hidden=8, attention="additive", bidirectional=True, batch=8, epochs=2,
              dropout=0.2, label_smoothing=0.1, early_stopping="bleu", threads=1)
    train_seq2seq(c, tmp_path / "full.rnnkit", **kw)

    class StopAfter(TrainEvents):
        def __init__(self, n):
            self.n = n

        def window(self, done, windows, tokens, loss):
            self.n -= 1

        def should_stop(self):
            return self.n <= 0

    with pytest.raises(TrainingInterrupted):
        train_seq2seq(c, tmp_path / "cut.rnnkit", Seq2SeqTrainOptions(**kw), StopAfter(20))
    train_seq2seq(c, tmp_path / "cut.rnnkit", Seq2SeqTrainOptions(**kw, resume=True))
    a, b = rnnkit.load(tmp_path / "full.rnnkit"), rnnkit.load(tmp_path / "cut.rnnkit")
    np.testing.assert_array_equal(a.flat, b.flat)
