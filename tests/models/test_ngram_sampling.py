"""The n-gram sampling fast path: its draws follow the model's distribution, seeds repeat, and a
model that is not interpolated falls back to the generic sampler.

tests/fixtures/interpolated.arpa is an interpolated trigram written by hand as the mixture
p(w | h) = a_h(w) + gamma(h) p(w | h'):
    p(.)          <unk> .1, </s> .3, a .4, b .2
    after <s>     a .6, b .2,               gamma .2
    after a       b .5, </s> .2, <unk> .07, gamma .23
    after b       a .3, b 0 (explicit, all of its mass from the backoff), gamma .7
    after <s> a   b .4,                     gamma .6
"""
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from rnnkit.decoding.sampling import sample, sample_sentences
from rnnkit.loader import load
from rnnkit.text.vocab import EOS

FIX = Path(__file__).parents[1] / "fixtures"
ARPA = FIX / "interpolated.arpa"


@pytest.fixture(scope="module")
def lm():
    return load(ARPA)


def joint_first_two(lm):
    """P(w1, w2) of the first two tokens (w2 = </s> after w1 = </s> means 'ended'), from the
    protocol's full distributions: [V, V]."""
    V = len(lm.vocab)
    s0 = lm.start(1)
    p1 = 10.0 ** lm.log_probs(s0)[0]
    out = np.zeros((V, V))
    for w1 in range(V):
        if p1[w1] == 0:
            continue
        if w1 == EOS:
            out[w1, EOS] = p1[w1]
            continue
        p2 = 10.0 ** lm.log_probs(lm.advance(s0, np.array([w1])))[0]
        out[w1] = p1[w1] * p2 / p2.sum()
    return out / out.sum()


def observed_first_two(lm, samples):
    V = len(lm.vocab)
    obs = np.zeros((V, V))
    for s in samples:
        ids = list(s.ids) + ([EOS] if s.complete else [])
        w1 = ids[0]
        w2 = ids[1] if len(ids) > 1 else EOS
        obs[w1, w2] += 1
    return obs


def test_the_hand_made_model_is_interpolated_and_normalised(lm):
    s = lm.advance(lm.start(1), np.array([lm.vocab.index["a"]]))  # context <s> a
    p = 10.0 ** lm.log_probs(s)[0]
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    # p(b | <s> a) = .4 + .6 (.5 + .23 x .2)
    assert p[lm.vocab.index["b"]] == pytest.approx(0.4 + 0.6 * 0.546, rel=1e-6)


def test_draws_follow_the_model_chi_square(lm):
    n = 40000
    samples = sample_sentences(lm, n, max_len=2, seed=3)
    expected = joint_first_two(lm) * n
    obs = observed_first_two(lm, samples)
    cells = expected > 0
    assert obs[~cells].sum() == 0  # never a pair the model gives no mass
    _, p_value = chisquare(obs[cells], expected[cells])
    assert p_value > 1e-3
    # the test has power: the same draws are far from a distribution off by a few percent
    # (the backoff mass of <s> moved from b's first word to a's)
    wrong = joint_first_two(lm)
    a, b = lm.vocab.index["a"], lm.vocab.index["b"]
    wrong[a] *= 1.05
    wrong[b] *= 1 - 0.05 * joint_first_two(lm)[a].sum() / joint_first_two(lm)[b].sum()
    _, p_wrong = chisquare(obs[cells], wrong[cells] / wrong[cells].sum() * n)
    assert p_wrong < 1e-6


def test_the_fast_path_is_taken_and_its_log_probs_are_the_models(lm):
    got = lm.sample_ids(200, 50, np.zeros(0, np.int64), 0)
    assert got is not None
    ids, offsets, logp, complete = got
    assert offsets[-1] == len(ids) and complete.all()
    for s in range(20):
        sent = ids[offsets[s]:offsets[s + 1]]
        assert logp[s] == pytest.approx(sum(lm.token_log_probs([sent])[0]), abs=1e-9)


def test_same_seed_same_text_other_seed_other_text(lm):
    a = [s.tolist() for s in sample(lm, 300, seed=7)]
    assert a == [s.tolist() for s in sample(lm, 300, seed=7)]
    assert a != [s.tolist() for s in sample(lm, 300, seed=8)]


def test_prompt_and_max_len(lm):
    two = sample_sentences(lm, 50, max_len=3, seed=1, prompt="b a")
    assert all(s.ids[:2].tolist() == [4, 3] and s.prompt_tokens == 2 for s in two)
    out = sample_sentences(lm, 500, max_len=3, seed=1, prompt="a")
    assert all(s.ids[0] == lm.vocab.index["a"] and s.prompt_tokens == 1 for s in out)
    assert all(len(s.ids) <= 4 for s in out)
    assert any(not s.complete for s in out) and any(s.complete for s in out)
    # after the prompt <s> a, b comes with p(b | <s> a) = .7276
    second = np.mean([len(s.ids) > 1 and s.ids[1] == lm.vocab.index["b"] for s in out])
    assert second == pytest.approx(0.7276, abs=0.05)


def test_a_model_that_is_not_interpolated_uses_the_generic_sampler(tmp_path, lm):
    # p*(b a) = .1 is less than gamma(b) p(a) = .7 x .4: no mixture has these numbers (Katz)
    text = ARPA.read_text().replace("-0.23657201\tb a", "-1.00000000\tb a")
    katz = tmp_path / "katz.arpa"
    katz.write_text(text)
    m = load(katz)
    assert m.sample_ids(5, 10, np.zeros(0, np.int64), 0) is None
    out = sample(m, 50, seed=2)
    assert len(out) == 50 and all(len(s) <= 100 for s in out)
