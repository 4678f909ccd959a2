"""The caption model: gradients of every parameter (the projection included) by central finite
differences (float64, the numpy reference kernels), padding that changes nothing, scoring equal
to the step-by-step protocol, beam 1 = greedy, the file round trip, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit import modelfile
from rnnkit.decoding.beam import beam_search, greedy_search
from rnnkit.errors import InputError, RnnkitError
from rnnkit.models.caption import (
    CaptionArchitecture,
    CaptionModel,
    from_file_parts,
    make_caption_batch,
)
from rnnkit.nn import reference as ref
from rnnkit.text.vocab import SPECIALS, Vocab
from fd import numeric_gradient
from packs import assert_top_log_probs_change_nothing

VOCAB = Vocab(list(SPECIALS) + "a red blue circle square above".split())
D = 5
R = 3  # grid cells of the attention variants
VARIANTS = [  # cell, layers, tie, dropout, attention
    ("lstm", 1, False, 0.0, "none"),
    ("lstm", 2, False, 0.3, "none"),
    ("rnn", 2, False, 0.0, "none"),
    ("lstm-peephole", 1, True, 0.0, "none"),
    ("lstm-nofg", 1, False, 0.2, "none"),
    ("lstm", 1, False, 0.0, "general"),
    ("lstm", 2, False, 0.3, "additive"),
    ("lstm", 1, False, 0.0, "dot"),
]


def make(cell="lstm", layers=1, tie=False, dropout=0.0, attention="none", E=4, H=4,
         dtype=np.float64, backend=ref, seed=0, scale=0.4):
    if attention == "dot":
        H = E = D
    arch = CaptionArchitecture(D, len(VOCAB), E, H, layers, cell, tie, dropout, attention)
    m = CaptionModel(arch, VOCAB, backend=backend, dtype=dtype)
    m.init_uniform(np.random.default_rng(seed), scale)
    m.set_feature_stats(np.random.default_rng(9).normal(size=(10, D)) * 3 + 1)
    return m


def data(rng, n=3, attention="none"):
    feats = rng.normal(size=(n, R, D) if attention != "none" else (n, D))
    caps = [rng.integers(3, len(VOCAB), rng.integers(0, 4)) for _ in range(n)]
    return feats, caps


def test_tensor_names_and_shapes():
    shapes = dict(make(layers=2).arch.tensor_shapes())
    assert shapes["encoder.projection.weight"] == (4, D)
    assert shapes["decoder.embedding.weight"] == (len(VOCAB), 4)
    assert shapes["decoder.rnn.weight_ih_l1"] == (16, 4)
    assert shapes["decoder.output.weight"] == (len(VOCAB), 4)
    assert "decoder.output.weight" not in dict(make(tie=True).arch.tensor_shapes())


@pytest.mark.parametrize("cell,layers,tie,dropout,attention", VARIANTS)
def test_gradient_matches_finite_differences(cell, layers, tie, dropout, attention):
    """Every parameter, the projection W_p, b_p included: the gradient reaches the image side."""
    m = make(cell, layers, tie, dropout, attention)
    b = make_caption_batch(*data(np.random.default_rng(1), attention=attention))
    scale = 0.7

    def loss():
        return m.forward_backward(b, scale, np.random.default_rng(5) if dropout else None)

    loss()
    analytic = m.grad.copy()
    numeric = numeric_gradient(m.flat, loss, scale)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    proj = m.layout.views(analytic)["encoder.projection.weight"]
    assert np.abs(proj).max() > 1e-4  # the image matters to the loss


def test_padding_changes_neither_loss_nor_gradient():
    m = make("lstm", 2)
    feats, caps = data(np.random.default_rng(2), 4)
    total = m.forward_backward(make_caption_batch(feats, caps), 1.0)
    g_batch = m.grad.copy()
    alone, g_sum = 0.0, np.zeros_like(g_batch)
    for i in range(4):
        alone += m.forward_backward(make_caption_batch(feats[i:i + 1], [caps[i]]), 1.0)
        g_sum += m.grad
    assert total == pytest.approx(alone, rel=1e-12)
    np.testing.assert_allclose(g_batch, g_sum, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("attention", ["none", "general", "additive"])
def test_scoring_equals_the_step_by_step_protocol_and_the_loss(attention):
    m = make("lstm", 2, attention=attention, dtype=np.float32, backend=None, seed=3, scale=0.5)
    feats, caps = data(np.random.default_rng(4), 5, attention)
    fast = m.caption_log_probs(feats, caps)
    for f, c, lp in zip(feats, caps, fast):
        state = m.start(1, context=f[None])
        steps = []
        for w in list(c) + [2]:
            steps.append(m.log_probs(state)[0, w])
            state = m.advance(state, np.array([w]))
        np.testing.assert_allclose(lp, steps, atol=2e-5)
        assert np.isclose((10.0 ** m.log_probs(m.start(1, context=f[None]))).sum(), 1, atol=1e-4)
    nats = m.forward_loss(make_caption_batch(feats.astype(np.float32), caps))
    assert nats == pytest.approx(-sum(x.sum() for x in fast) * np.log(10), rel=1e-4)


def test_the_image_changes_the_distribution():
    m = make(dtype=np.float32, backend=None, scale=0.5)
    f = np.random.default_rng(0).normal(size=(2, D))
    lp = m.log_probs(m.start(2, context=f))
    assert np.abs(lp[0] - lp[1]).max() > 1e-3


@pytest.mark.parametrize("attention", ["none", "general"])
def test_beam_one_is_greedy_and_greedy_is_the_argmax(attention):
    m = make("lstm", 2, attention=attention, dtype=np.float32, backend=None, seed=7, scale=1.0)
    feats = np.random.default_rng(8).normal(size=(4, R, D) if attention != "none" else (4, D))
    greedy = greedy_search(m, feats, max_len=6)
    beam1 = [h[0] for h in beam_search(m, feats, beam=1, max_len=6, alpha=1.0)]
    for i, (g, b) in enumerate(zip(greedy, beam1)):
        assert g.tokens == b.tokens and g.score == pytest.approx(b.score, abs=1e-5)
        # by hand through the protocol
        st, toks, score = m.start(1, context=feats[i:i + 1]), [], 0.0
        for _ in range(6):
            lp = m.log_probs(st)[0]
            w = int(np.argmax(lp))
            score += float(lp[w])
            if w == 2:
                break
            toks.append(w)
            st = m.advance(st, np.array([w]))
        assert g.tokens == toks and g.score == pytest.approx(score, abs=1e-4)
    beam3 = m.caption(feats, beam=3, n_best=2, max_len=6)
    assert all(len(c) == 2 and c[0][1] >= c[1][1] - 1e-6 for c in beam3)


def test_state_select_branches_rows():
    m = make(dtype=np.float32, backend=None)
    st = m.start(3, context=np.random.default_rng(6).normal(size=(3, D)))
    lp = m.log_probs(st).copy()
    np.testing.assert_allclose(m.log_probs(st.select(np.array([2, 2, 0]))), lp[[2, 2, 0]],
                               atol=1e-6)


def test_file_round_trip(tmp_path):
    m = make("lstm", 2, dtype=np.float32, backend=None)
    m.save(tmp_path / "c.rnnkit")
    tensors, meta = modelfile.read(tmp_path / "c.rnnkit")
    assert "encoder.projection.weight" in tensors and meta["model_type"] == "caption"
    back = from_file_parts(tmp_path / "c.rnnkit", tensors, meta)
    np.testing.assert_array_equal(back.flat, m.flat)
    assert back.arch == m.arch and back.vocab.tokens == VOCAB.tokens
    np.testing.assert_array_equal(back.feature_std, m.feature_std)
    assert m.feature_std.min() > 1 and abs(m.feature_mean).max() > 0.1
    import rnnkit
    loaded = rnnkit.load(tmp_path / "c.rnnkit")
    assert isinstance(loaded, CaptionModel)
    f = np.ones((1, D), np.float32)
    assert loaded.caption(f, beam=2) == m.caption(f, beam=2)


def test_bad_features_are_clear_errors():
    m = make(dtype=np.float32, backend=None)
    with pytest.raises(InputError, match=r"\[images, 5\]"):
        m.start(1, context=np.zeros((1, 3)))
    bad = np.zeros((1, D))
    bad[0, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        m.caption(bad)
    with pytest.raises(InputError, match="2 feature vectors for 1 captions"):
        m.caption_log_probs(np.zeros((2, D)), [np.array([3])])
    with pytest.raises(RnnkitError, match="needs the images"):
        m.start(1)


def test_attention_state_selects_and_reports_its_weights():
    m = make(attention="general", dtype=np.float32, backend=None)
    st = m.start(2, context=np.random.default_rng(3).normal(size=(2, R, D)))
    lp = m.log_probs(st).copy()
    assert st.alpha.shape == (2, R) and np.allclose(st.alpha.sum(axis=1), 1)
    np.testing.assert_allclose(m.log_probs(st.select(np.array([1, 0]))), lp[[1, 0]], atol=1e-6)
    with pytest.raises(InputError, match=r"\[images, R, 5\] grids"):
        m.start(1, context=np.zeros((2, D, 1, 1)))


@pytest.mark.parametrize("attention", ["none", "general"])
def test_the_best_tokens_without_the_full_distribution_change_nothing(attention):
    """top_log_probs gives log_probs' best entries bit for bit, without writing [rows, V], and
    a search the same captions, float32 and float64."""
    for dtype, backend in ((np.float32, None), (np.float64, ref)):
        m = make(attention=attention, E=8, H=12, dtype=dtype, backend=backend, seed=4, scale=0.8)
        feats, _ = data(np.random.default_rng(5), 6, attention)
        st = m.start(6, context=feats)
        assert_top_log_probs_change_nothing(m, st, list(feats))
