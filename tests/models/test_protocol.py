"""Every model type's fast scoring path equals the step-by-step protocol (STYLE rule 11):
token_log_probs (a batched recurrent forward, an n-gram lookup, a mixture of both) against
start / advance / log_probs one token at a time, and against the prefix-sharing path."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.models.mixture import Mixture
from rnnkit.models.ngram.estimate import train as train_ngram
from rnnkit.models.protocol import LanguageModel
from rnnkit.models.rnnlm import RNNLM, Architecture
from rnnkit.text.prepare import build_corpus

SENTENCES = ["the cat sat on the mat .", "a dog ran", "", "the the the unknownword ."]


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(None, sample="en", split="1,0,0")


def recurrent(corpus, cell, tie=False, **output):
    arch = Architecture(cell, len(corpus.vocab), 6, 6, 2, tie_weights=tie, **output)
    m = RNNLM(arch, corpus.vocab, corpus.tokenizer)
    m.init_uniform(np.random.default_rng(5), 0.4)
    return m


def models(corpus):
    tri = train_ngram(corpus, 3)
    yield "ngram", tri
    for cell in ("lstm", "lstm-peephole", "lstm-nofg", "rnn"):
        yield cell, recurrent(corpus, cell, tie=cell == "rnn")
    # the adaptive softmax: head of 10 ids, clusters [10, 20) and [20, V) (projections 3 and 1)
    yield "adaptive", recurrent(corpus, "lstm", output="adaptive", cutoffs=(10, 20),
                                div_value=2.0, head_bias=True)
    yield "mixture", Mixture([tri, recurrent(corpus, "lstm")], [0.4, 0.6])
    yield "loglinear", Mixture([tri, recurrent(corpus, "rnn")], [0.5, 0.8], combine="loglinear")


@pytest.mark.parametrize("kind", ["ngram", "lstm", "lstm-peephole", "lstm-nofg", "rnn",
                                  "adaptive", "mixture", "loglinear"])
def test_fast_path_equals_step_by_step_protocol(corpus, kind):
    model = dict(models(corpus))[kind]
    ids = [model.encode(s)[0] for s in SENTENCES]
    fast = model.token_log_probs(ids)
    steps = LanguageModel.token_log_probs(model, ids)      # start / advance / log_probs
    shared = model.prefix_token_log_probs(ids)
    for f, s, p, x in zip(fast, steps, shared, ids):
        assert len(f) == len(x) + 1
        np.testing.assert_allclose(f, s, atol=2e-5)
        np.testing.assert_allclose(p, s, atol=2e-5)
    if kind == "adaptive":   # every consumer sees a full distribution that sums to 1
        state = model.start(3)
        np.testing.assert_allclose((10.0 ** model.log_probs(state)).sum(1), 1.0, rtol=1e-5)
    # and the KenLM-style API is built on the fast path
    for sentence, f in zip(SENTENCES, fast):
        assert model.score(sentence) == pytest.approx(float(np.sum(f)), abs=1e-4)


def test_word_level_text_takes_the_compiled_encoder(corpus):
    """encode_lines must use the compiled vocabulary hash for word-level models (a silent fall
    back to the line-by-line path once halved the scoring speed) and give the same ids."""
    tri = train_ngram(corpus, 2)
    lines = ["the cat sat", "", "unknownword the\u00a0dog", "a  b"]
    ids, offsets, oov = tri.encode_lines(lines)
    assert tri._vocab_hash is not None
    for i, line in enumerate(lines):
        want, want_oov = tri.encode(line)
        np.testing.assert_array_equal(ids[offsets[i]:offsets[i + 1]], want)
        np.testing.assert_array_equal(oov[offsets[i]:offsets[i + 1]], want_oov)
