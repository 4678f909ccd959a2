"""The translation model: gradients of every parameter by central finite differences (float64,
the numpy reference kernels) for each attention and encoder, padding that changes nothing,
scoring and decoding paths that agree, and the file round trip."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.models.seq2seq import (
    PairBatch,
    Seq2Seq,
    Seq2SeqArchitecture,
    from_file_parts,
    make_batch,
    source_steps,
)
from rnnkit import modelfile
from rnnkit.nn import reference as ref
from rnnkit.models.protocol import LanguageModel
from rnnkit.text.vocab import SPECIALS, Vocab
from fd import numeric_gradient
from packs import assert_packs_change_nothing, assert_top_log_probs_change_nothing

SRC = Vocab(list(SPECIALS) + "a b c d e".split())
TRG = Vocab(list(SPECIALS) + "v w x y z q".split())
VARIANTS = [  # attention, bidirectional, cell, tie, layers, dropout
    ("none", False, "lstm", False, 1, 0.0),
    ("none", True, "rnn", False, 2, 0.0),
    ("dot", False, "lstm", False, 2, 0.0),
    ("general", True, "lstm", False, 2, 0.3),
    ("additive", True, "lstm-peephole", True, 1, 0.0),
    ("general", False, "lstm-nofg", False, 1, 0.2),
]


def make(attention="general", bidirectional=True, cell="lstm", tie=False, layers=1, dropout=0.0,
         E=4, H=4, dtype=np.float64, backend=ref, seed=0, scale=0.4, feed=False):
    arch = Seq2SeqArchitecture(len(SRC), len(TRG), E, H, layers, layers, cell, bidirectional,
                               attention, attention_size=3, tie_target=tie, dropout=dropout,
                               input_feeding=feed)
    m = Seq2Seq(arch, SRC, TRG, backend=backend, dtype=dtype)
    m.init_uniform(np.random.default_rng(seed), scale)
    return m


def pairs(rng, n=3):
    out = []
    for _ in range(n):
        s = rng.integers(3, len(SRC), rng.integers(1, 5))
        t = rng.integers(3, len(TRG), rng.integers(0, 4))
        out.append((s, t))
    return out


def batch_of(ps) -> PairBatch:
    return make_batch([s for s, _ in ps], [t for _, t in ps])


def test_source_steps_read_each_sentence_within_its_length():
    # lengths 3, 1, 4 in a grid of 4 positions: longest first (sentences 2, 0, 1); flat t*3 + b
    bs, fwd, rev = source_steps(np.array([3, 1, 4]), 4)
    assert bs.tolist() == [3, 2, 2, 1]
    assert fwd.tolist() == [2, 0, 1, 5, 3, 8, 6, 11]       # position t of each sentence
    assert rev.tolist() == [11, 6, 1, 8, 3, 5, 0, 2]       # position len - 1 - t
    with pytest.raises(ValueError, match="above the 3 positions"):
        source_steps(np.array([3, 1, 4]), 3)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("rnn", 1)])
def test_each_source_is_encoded_as_if_alone(cell, layers):
    """In a batch, a sentence's encoder states and final vector are those it gets alone (the
    reversed direction starts at its own end, no step reads padding), and the padding is 0."""
    from rnnkit.nn.backend import kernels
    m = make("general", True, cell, layers=layers, E=5, H=6, dtype=np.float32,
             backend=kernels())
    rng = np.random.default_rng(3)
    srcs = [rng.integers(3, len(SRC), n) for n in (4, 0, 7, 2, 7)]
    pb = make_batch(srcs, None)
    enc, final = m.encode(pb.src, pb.src_len)
    for b, s in enumerate(srcs):
        one = make_batch([s], None)
        e1, f1 = m.encode(one.src, one.src_len)
        n = len(s) + 1
        np.testing.assert_allclose(enc[:n, b], e1[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(final[b], f1[0], rtol=1e-5, atol=1e-6)
        assert not enc[n:, b].any()


def test_tensor_names_nest_as_pytorch_modules():
    names = [n for n, _ in make("additive", True, layers=2).arch.tensor_shapes()]
    assert "encoder.rnn.weight_ih_l1_reverse" in names and "decoder.rnn.weight_hh_l1" in names
    shapes = dict(make("general", True, layers=2).arch.tensor_shapes())
    assert shapes["encoder.rnn.weight_ih_l1"] == (16, 8)  # layer 1 reads both directions (D = 2H)
    assert shapes["decoder.attention.key_layer.weight"] == (4, 8)
    assert shapes["decoder.att_vector.weight"] == (4, 12)
    assert "decoder.output.weight" not in dict(make(tie=True).arch.tensor_shapes())


FEEDING = [  # input feeding: attention, bidirectional, cell, tie, layers, dropout
    ("dot", False, "lstm", False, 2, 0.0),
    ("general", True, "lstm", False, 2, 0.3),
    ("additive", True, "lstm-peephole", False, 1, 0.0),
    ("general", False, "rnn", False, 1, 0.0),
]


@pytest.mark.parametrize("attention,bi,cell,tie,layers,dropout,feed",
                         [v + (False,) for v in VARIANTS] + [v + (True,) for v in FEEDING])
def test_gradient_matches_finite_differences(attention, bi, cell, tie, layers, dropout, feed):
    m = make(attention, bi, cell, tie, layers, dropout, feed=feed)
    b = batch_of(pairs(np.random.default_rng(1)))
    scale = 0.7

    def loss():
        return m.forward_backward(b, scale, np.random.default_rng(5) if dropout else None)

    loss()
    analytic = m.grad.copy()
    if feed:   # the step-by-step decoder: a second pass gives the same (no stale sums)
        loss()
        np.testing.assert_array_equal(m.grad, analytic)
    numeric = numeric_gradient(m.flat, loss, scale)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    if feed:   # the fed columns learn
        assert np.abs(m.g["decoder.rnn.weight_ih_l0"][:, 4:]).max() > 0


@pytest.mark.parametrize("attention,bi,feed", [("none", True, False), ("general", True, False),
                                               ("additive", False, False),
                                               ("additive", True, True)])   # input feeding
def test_padding_changes_neither_loss_nor_gradient(attention, bi, feed):
    """A batch's loss and gradient are the sums of its pairs' own, however they are padded."""
    m = make(attention, bi, layers=2, feed=feed)
    ps = pairs(np.random.default_rng(2), 4)
    total = m.forward_backward(batch_of(ps), 1.0)
    g_batch = m.grad.copy()
    alone, g_sum = 0.0, np.zeros_like(g_batch)
    for p in ps:
        alone += m.forward_backward(batch_of([p]), 1.0)
        g_sum += m.grad
    assert total == pytest.approx(alone, rel=1e-12)
    np.testing.assert_allclose(g_batch, g_sum, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("attention,bi,feed", [
    ("none", False, False), ("dot", False, False), ("general", True, False),
    ("additive", True, False),
    ("dot", False, True), ("general", True, True), ("additive", True, True),   # input feeding
])
def test_scoring_equals_the_step_by_step_protocol_and_the_loss(attention, bi, feed):
    m = make(attention, bi, layers=2, dtype=np.float32, backend=None, seed=3, scale=0.5,
             feed=feed)
    ps = pairs(np.random.default_rng(4), 5)
    fast = m.pair_log_probs([s for s, _ in ps], [t for _, t in ps])
    for (s, t), f in zip(ps, fast):
        state = m.start(1, context=[s])
        steps = []
        for w in list(t) + [2]:
            steps.append(m.log_probs(state)[0, w])
            state = m.advance(state, np.array([w]))
        np.testing.assert_allclose(f, steps, atol=2e-5)
        # and the distributions sum to 1
        assert np.isclose((10.0 ** m.log_probs(m.start(1, context=[s]))).sum(), 1, atol=1e-4)
    nats = m.forward_loss(batch_of(ps))
    assert nats == pytest.approx(-sum(f.sum() for f in fast) * np.log(10), rel=1e-4)


def test_state_select_branches_rows():
    m = make("general", True, dtype=np.float32, backend=None)
    ps = pairs(np.random.default_rng(6), 3)
    st = m.start(3, context=[s for s, _ in ps])
    lp = m.log_probs(st).copy()
    sel = st.select(np.array([2, 2, 0]))
    np.testing.assert_allclose(m.log_probs(sel), lp[[2, 2, 0]], atol=1e-6)


def test_file_round_trip(tmp_path):
    m = make("additive", True, "lstm", False, 2, dtype=np.float32, backend=None)
    m.save(tmp_path / "t.rnnkit")
    tensors, meta = modelfile.read(tmp_path / "t.rnnkit")
    back = from_file_parts(tmp_path / "t.rnnkit", tensors, meta)
    np.testing.assert_array_equal(back.flat, m.flat)
    assert back.arch == m.arch and back.trg_vocab.tokens == TRG.tokens
    import rnnkit
    assert isinstance(rnnkit.load(tmp_path / "t.rnnkit"), Seq2Seq)
    assert not isinstance(back, LanguageModel)


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_beam_layout_attends_like_any_other_selection(attention):
    """K streams per sentence in order (beam search's layout) take the grouped attention path
    over the shared encoder outputs; any other selection gathers them: the same numbers."""
    m = make(attention, attention != "dot", dtype=np.float32, backend=None, seed=8, scale=0.6)
    ps = pairs(np.random.default_rng(9), 3)
    st = m.start(3, context=[s for s, _ in ps])
    m.advance(st, np.array([4, 5, 3]))
    lp = m.log_probs(st).copy()
    grouped = st.select(np.repeat(np.arange(3), 2))
    assert grouped.groups()[0] == 2 and st.select(np.array([1, 0])).groups()[0] == 1
    assert st.select(np.array([2, 2, 0, 1, 1])).groups()[0] == 0
    np.testing.assert_allclose(m.log_probs(grouped), lp[[0, 0, 1, 1, 2, 2]], atol=1e-6)
    m.advance(grouped, np.array([3, 6, 4, 4, 8, 3]))
    full = m.log_probs(grouped).copy()
    for rows in ([5, 0, 3, 2], [4, 5, 0, 1]):  # any order; a subset in runs (inputs finished)
        sub = grouped.select(np.array(rows))
        np.testing.assert_allclose(m.log_probs(sub), full[rows], atol=1e-6)
        np.testing.assert_allclose(sub.alpha, grouped.alpha[rows], atol=1e-7)


@pytest.mark.parametrize("feed", [False, True])
def test_a_search_packs_its_weights_once_and_gets_the_same_numbers(feed):
    """From 8 streams on, the decoder's steps and the output layer run on the packed GEMM; a
    decoding state packs their weights on its first such step into its `packs`, shared by the
    states selected from it, instead of at every step: the same bits as a state without.
    Without input feeding, the first layer's token table too."""
    from rnnkit.nn.backend import kernels

    m = make("general", True, layers=2, dtype=np.float32, backend=None, seed=11, scale=0.5,
             E=8, H=12, feed=feed)
    srcs = [s for s, _ in pairs(np.random.default_rng(12), 12)]
    a, b = m.start(12, context=srcs), m.start(12, context=srcs)
    assert_packs_change_nothing(m, a, b, len(TRG), np.random.default_rng(13))
    if kernels().gemm_backend() == "packed":
        # the 2 decoder layers and the output layer, and the token table (input feeding: none)
        assert len(a.packs) == 3 + (not feed)
        assert ((id(m.dec_stack), "table") in a.packs) == (not feed)
    made = dict(a.packs)
    sel = a.select(np.repeat(np.arange(3), 4))
    assert sel.packs is a.packs
    m.log_probs(sel), m.advance(sel, np.arange(12) % 5 + 3)
    assert all(a.packs[k] is v for k, v in made.items())   # reused, not packed again


@pytest.mark.parametrize("attention,feed", [("none", False), ("general", False),
                                            ("additive", True)])
def test_the_best_tokens_without_the_full_distribution_change_nothing(attention, feed):
    """top_log_probs (the beam search's first cut, never writing [rows, V]) gives log_probs'
    best entries, and a search the same hypotheses as through log_probs, float32 and float64."""
    for dtype, backend in ((np.float32, None), (np.float64, ref)):
        m = make(attention, True, layers=2, dtype=dtype, backend=backend, seed=5, scale=0.8,
                 E=8, H=12, feed=feed)
        srcs = [s for s, _ in pairs(np.random.default_rng(6), 5)]
        st = m.start(5, context=srcs)
        m.advance(st, np.array([3, 4, 5, 6, 7]))
        assert_top_log_probs_change_nothing(m, st, srcs)
