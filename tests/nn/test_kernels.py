"""The compiled kernels against the numpy reference (float64, from the same float32 inputs):
every variant, forward and backward, carried state, single steps, edge cases, bad input;
and against PyTorch's nn.LSTM / nn.RNN when torch is installed."""
import contextlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.nn import reference as ref

K = pytest.importorskip("rnnkit.nn._kernels")

VARIANTS = [(False, True), (False, False), (True, True), (True, False)]  # (peephole, forget gate)
# every instruction-set path this CPU can run (the table in csrc/rk_isa.h), each with its own
# backend: generic (BLAS products, plain C softmax rows), avx2 and avx512 (the packed kernels)
BACKENDS = K.supported_isas()
PACKED = [p for p in BACKENDS if p != "generic"]


@contextlib.contextmanager
def using(path):
    old, old_backend = K.get_isa(), K.gemm_backend()
    K.set_isa(path)
    try:
        yield
    finally:
        K.set_isa(old)
        K.gemm_backend(old_backend)


@pytest.fixture(params=BACKENDS)
def backend(request):
    with using(request.param):
        yield request.param


def close(got, want, name=""):
    """float32 kernels vs the float64 reference: relative error <= 1e-4 (absolute for tiny values,
    scaled by the array's magnitude)."""
    want = np.asarray(want, np.float64)
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4, atol=2e-5 * scale,
                               err_msg=name)


def lstm_params(rng, T, B, E, H, peep, scale=0.5):
    f = np.float32
    return dict(
        x=rng.standard_normal((T, B, E)).astype(f), h0=rng.standard_normal((B, H)).astype(f),
        c0=rng.standard_normal((B, H)).astype(f),
        w_ih=(rng.standard_normal((4 * H, E)) * scale).astype(f),
        w_hh=(rng.standard_normal((4 * H, H)) * scale).astype(f),
        b_ih=(rng.standard_normal(4 * H) * scale).astype(f),
        b_hh=(rng.standard_normal(4 * H) * scale).astype(f),
        w_peep=(rng.standard_normal((3, H)) * scale).astype(f) if peep else None)


def f64(p):
    return {k: None if v is None else v.astype(np.float64) for k, v in p.items()}


GRAD_NAMES = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "dw_peep"]

shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**31 - 1),
       backend=st.sampled_from(BACKENDS))
def test_lstm_matches_reference(shape, variant, seed, backend):
    with using(backend):
        check_lstm_against_reference(shape, variant, seed)


def check_lstm_against_reference(shape, variant, seed):
    T, B, E, H = shape
    peep, fg = variant
    rng = np.random.default_rng(seed)
    p = lstm_params(rng, T, B, E, H, peep)
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    dhT = rng.standard_normal((B, H)).astype(np.float32)
    dcT = rng.standard_normal((B, H)).astype(np.float32)
    h, hT, cT, cache = K.lstm_forward(**p, forget_gate=fg)
    rh, rhT, rcT, rcache = ref.lstm_forward(**f64(p), forget_gate=fg)
    close(h, rh, "h"), close(hT, rhT, "hT"), close(cT, rcT, "cT")
    got = K.lstm_backward(dh, dhT, dcT, cache)
    want = ref.lstm_backward(dh.astype(np.float64), dhT.astype(np.float64),
                             dcT.astype(np.float64), rcache)
    for name, g, w in zip(GRAD_NAMES, got, want):
        if w is None:
            assert g is None, name
        else:
            assert g.dtype == np.float32 and g.shape == w.shape, name
            close(g, w, name)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), backend=st.sampled_from(BACKENDS))
def test_rnn_matches_reference(shape, seed, backend):
    with using(backend):
        check_rnn_against_reference(shape, seed)


def check_rnn_against_reference(shape, seed):
    T, B, E, H = shape
    rng = np.random.default_rng(seed)
    f = np.float32
    p = dict(x=rng.standard_normal((T, B, E)).astype(f), h0=rng.standard_normal((B, H)).astype(f),
             w_ih=(rng.standard_normal((H, E)) * 0.5).astype(f),
             w_hh=(rng.standard_normal((H, H)) * 0.5).astype(f),
             b_ih=(rng.standard_normal(H) * 0.5).astype(f),
             b_hh=(rng.standard_normal(H) * 0.5).astype(f))
    dh, dhT = rng.standard_normal((T, B, H)).astype(f), rng.standard_normal((B, H)).astype(f)
    h, hT, cache = K.rnn_forward(**p)
    rh, rhT, rcache = ref.rnn_forward(**f64(p))
    close(h, rh, "h"), close(hT, rhT, "hT")
    got = K.rnn_backward(dh, dhT, cache)
    want = ref.rnn_backward(dh.astype(np.float64), dhT.astype(np.float64), rcache)
    for name, g, w in zip(["dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"], got, want):
        close(g, w, name)


@pytest.mark.parametrize("peep,fg", VARIANTS)
def test_lstm_two_windows_equal_one_window_of_2T(peep, fg, backend):
    rng = np.random.default_rng(11)
    T, B, E, H = 8, 3, 5, 6
    p = lstm_params(rng, T, B, E, H, peep)
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    z = np.zeros((B, H), np.float32)
    h, hT, cT, cache = K.lstm_forward(**p, forget_gate=fg)
    h = h.copy()
    full = [None if g is None else g.copy() for g in K.lstm_backward(dh, z, z, cache)]
    a = dict(p, x=p["x"][:4].copy())
    ha, hTa, cTa, ca = K.lstm_forward(**a, forget_gate=fg)
    b = dict(p, x=p["x"][4:].copy(), h0=hTa, c0=cTa)
    hb, hTb, cTb, cb = K.lstm_forward(**b, forget_gate=fg)
    np.testing.assert_allclose(np.concatenate([ha, hb]), h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cTb, cT, rtol=1e-5, atol=1e-6)
    gb = K.lstm_backward(dh[4:].copy(), z, z, cb)
    ga = K.lstm_backward(dh[:4].copy(), gb[1], gb[2], ca)
    np.testing.assert_allclose(np.concatenate([ga[0], gb[0]]), full[0], rtol=1e-4, atol=1e-5)
    for k in range(1, 8):
        if full[k] is not None:
            got = ga[k] if k in (1, 2) else ga[k] + gb[k]
            np.testing.assert_allclose(got, full[k], rtol=1e-4, atol=1e-5, err_msg=GRAD_NAMES[k])


def test_rnn_two_windows_equal_one_window_of_2T(backend):
    rng = np.random.default_rng(12)
    f = np.float32
    T, B, E, H = 6, 2, 4, 5
    x, h0 = rng.standard_normal((T, B, E)).astype(f), rng.standard_normal((B, H)).astype(f)
    w = dict(w_ih=rng.standard_normal((H, E)).astype(f),
             w_hh=(rng.standard_normal((H, H)) * 0.5).astype(f),
             b_ih=rng.standard_normal(H).astype(f), b_hh=rng.standard_normal(H).astype(f))
    dh = rng.standard_normal((T, B, H)).astype(f)
    z = np.zeros((B, H), f)
    h, _, cache = K.rnn_forward(x, h0, **w)
    h = h.copy()
    full = [g.copy() for g in K.rnn_backward(dh, z, cache)]
    ha, hTa, ca = K.rnn_forward(x[:3].copy(), h0, **w)
    hb, _, cb = K.rnn_forward(x[3:].copy(), hTa, **w)
    np.testing.assert_allclose(np.concatenate([ha, hb]), h, rtol=1e-5, atol=1e-6)
    gb = K.rnn_backward(dh[3:].copy(), z, cb)
    ga = K.rnn_backward(dh[:3].copy(), gb[1], ca)
    np.testing.assert_allclose(ga[1], full[1], rtol=1e-4, atol=1e-5)
    for k in range(2, 6):
        np.testing.assert_allclose(ga[k] + gb[k], full[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("B", [1, 4, 24])   # 24: the packed-GEMM step (many streams)
@pytest.mark.parametrize("peep,fg", VARIANTS)
def test_lstm_T_single_steps_equal_one_call(peep, fg, B, backend):
    rng = np.random.default_rng(13)
    T, E, H = 5, 7, 6
    p = lstm_params(rng, T, B, E, H, peep)
    h, hT, cT, _ = K.lstm_forward(**p, forget_gate=fg)
    hs, cs = p["h0"].copy(), p["c0"].copy()
    gates = np.empty((B, 4 * H), np.float32)
    w = {k: p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh", "w_peep"]}
    for t in range(T):
        out = K.lstm_step(p["x"][t], hs, cs, **w, forget_gate=fg, gates=gates)
        assert out[0] is hs and out[1] is cs  # updated in place
        np.testing.assert_allclose(hs, h[t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cs, cT, rtol=1e-5, atol=1e-6)
    # and against the reference's step
    hr, cr = p["h0"].astype(np.float64), p["c0"].astype(np.float64)
    for t in range(T):
        ref.lstm_step(p["x"][t].astype(np.float64), hr, cr, **f64(w), forget_gate=fg)
    close(hs, hr), close(cs, cr)


@pytest.mark.parametrize("B", [1, 3, 24])
def test_rnn_T_single_steps_equal_one_call(B):
    rng = np.random.default_rng(14)
    f = np.float32
    T, E, H = 5, 4, 6
    x, h0 = rng.standard_normal((T, B, E)).astype(f), rng.standard_normal((B, H)).astype(f)
    w = dict(w_ih=rng.standard_normal((H, E)).astype(f), w_hh=rng.standard_normal((H, H)).astype(f),
             b_ih=rng.standard_normal(H).astype(f), b_hh=rng.standard_normal(H).astype(f))
    h, _, _ = K.rnn_forward(x, h0, **w)
    hs, work = h0.copy(), np.empty((B, H), f)
    for t in range(T):
        assert K.rnn_step(x[t], hs, **w, work=work) is hs
        np.testing.assert_allclose(hs, h[t], rtol=1e-5, atol=1e-6)


def test_steps_allocate_nothing_with_workspaces():
    rng = np.random.default_rng(15)
    B, E, H = 3, 64, 64
    p = lstm_params(rng, 1, B, E, H, True)
    x, h, c = p["x"][0], p["h0"], p["c0"]
    w = {k: p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh", "w_peep"]}
    gates = np.empty((B, 4 * H), np.float32)
    K.lstm_step(x, h, c, **w, gates=gates)  # warm up
    tracemalloc.start()
    for _ in range(20):
        K.lstm_step(x, h, c, **w, gates=gates)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < gates.nbytes  # no buffer of this size was allocated on any call


def test_forward_reuses_the_cache_buffers():
    rng = np.random.default_rng(16)
    p = lstm_params(rng, 4, 2, 3, 5, False)
    h1, _, _, cache = K.lstm_forward(**p)
    first = h1.copy()
    bufs = {k: v for k, v in vars(cache).items() if isinstance(v, np.ndarray)}
    p2 = dict(p, x=(p["x"] * 2).copy())
    h2, _, _, cache2 = K.lstm_forward(**p2, cache=cache)
    assert cache2 is cache
    def addr(a):
        return a.__array_interface__["data"][0]
    assert all(addr(getattr(cache, k)) == addr(v) for k, v in bufs.items() if k not in ("x",))
    np.testing.assert_array_equal(K.lstm_forward(**p2)[0], h2)
    np.testing.assert_array_equal(K.lstm_forward(**p)[0], first)
    # a shorter window reuses the same memory (length buckets vary T every batch)
    p3 = dict(p, x=p["x"][:2].copy())
    h3 = K.lstm_forward(**p3, cache=cache)[0]
    assert cache.hs.shape[0] == 3 * 2 and addr(cache.hs) == addr(bufs["hs"])   # h_0, 2 steps
    np.testing.assert_array_equal(h3, K.lstm_forward(**p3)[0])
    with pytest.raises(ValueError, match="must be a rnn cache .*, got a lstm cache"):
        K.rnn_forward(p["x"], p["h0"], p["w_ih"][:5], p["w_hh"][:5, :], p["b_ih"][:5],
                      p["b_hh"][:5], cache=cache)


def test_results_are_deterministic(backend):
    rng = np.random.default_rng(17)
    p = lstm_params(rng, 6, 4, 8, 8, True)
    dh = rng.standard_normal((6, 4, 8)).astype(np.float32)
    z = np.zeros((4, 8), np.float32)
    runs = []
    for _ in range(2):
        h, _, _, c = K.lstm_forward(**p)
        runs.append([h.copy()] + [g.copy() for g in K.lstm_backward(dh, z, z, c)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("N,H,V", [(1, 1, 1), (1, 5, 3), (7, 4, 13), (20, 16, 300),
                                   (9, 33, 1000)])
def test_softmax_xent_matches_reference(N, H, V, backend):
    rng = np.random.default_rng(N * 100 + V)
    f = np.float32
    h, w, b = (rng.standard_normal((N, H)).astype(f), rng.standard_normal((V, H)).astype(f),
               rng.standard_normal(V).astype(f))
    t = rng.integers(0, V, N).astype(np.uint32)
    loss, cache = K.softmax_xent_forward(h, w, b, t)
    rloss, rcache = ref.softmax_xent_forward(h.astype(np.float64), w.astype(np.float64),
                                             b.astype(np.float64), t)
    assert loss == pytest.approx(rloss, rel=1e-5, abs=1e-5)
    for g, r in zip(K.softmax_xent_backward(0.5, cache), ref.softmax_xent_backward(0.5, rcache)):
        close(g, r)
    with pytest.raises(ValueError, match="already ran"):
        K.softmax_xent_backward(0.5, cache)
    lp = K.log_softmax(h, w, b)
    close(lp, ref.log_softmax(h.astype(np.float64), w.astype(np.float64), b.astype(np.float64)))
    np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(1), 1, rtol=1e-5)
    # log10 in the kernel's pass: the bits of the natural-log result times float32(1 / ln 10)
    scale = 1.0 / np.log(10.0)
    np.testing.assert_array_equal(K.log_softmax(h, w, b, scale=scale), lp * np.float32(scale))
    close(ref.log_softmax(h.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                          scale=scale), lp * scale)


def test_softmax_with_huge_logits_stays_finite():
    f = np.float32
    h = np.array([[1e4, -1e4], [0, 0]], f)
    w = np.array([[1, 0], [0, 1], [1, 1]], f)
    b = np.zeros(3, f)
    loss, cache = K.softmax_xent_forward(h, w, b, np.array([1, 0]))
    assert np.isfinite(loss) and loss == pytest.approx(2e4 + np.log(3), rel=1e-6)
    assert all(np.isfinite(g).all() for g in K.softmax_xent_backward(1.0, cache))
    lp = K.log_softmax(h, w, b)
    assert np.isfinite(lp).all()


def test_embedding_matches_reference():
    rng = np.random.default_rng(18)
    V, E, T, B = 11, 5, 4, 3
    wgt = rng.standard_normal((V, E)).astype(np.float32)
    ids = rng.integers(0, V, (T, B))
    ids[0, 0] = ids[1, 1] = 3  # a repeated id accumulates
    np.testing.assert_array_equal(K.embedding_forward(ids, wgt), ref.embedding_forward(ids, wgt))
    dx = rng.standard_normal((T, B, E)).astype(np.float32)
    close(K.embedding_backward(dx, ids.astype(np.uint32), V),
          ref.embedding_backward(dx.astype(np.float64), ids, V))
    for mod in (K, ref):   # accumulate: added to what `out` holds instead of overwriting it
        out = np.full((V, E), 2.0, np.float32)
        mod.embedding_backward(dx, ids, V, out=out, accumulate=True)
        close(out, ref.embedding_backward(dx.astype(np.float64), ids, V) + 2.0)
        mod.embedding_backward(dx, ids, V, out=out)
        close(out, ref.embedding_backward(dx.astype(np.float64), ids, V))


@pytest.mark.parametrize("seed", range(12))
def test_beam_select_matches_reference(seed):
    """The beam step's bookkeeping against its numpy specification: ties (coarse values), -inf
    rows and slots, NaN, inputs at their limit, ended greedy paths, V below and above K."""
    rng = np.random.default_rng(seed)
    A, beam = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    V = int(rng.choice([2, beam, 7, 50]))
    lp = np.round(rng.normal(-2, 1, (A * beam, V)), int(rng.integers(0, 3))).astype(np.float32)
    lp[rng.random(lp.shape) < 0.1] = -np.inf
    if seed % 4 == 1:
        lp[rng.random(lp.shape) < 0.05] = np.nan
    if seed % 4 == 2 and A * beam > 1:
        lp[0] = -np.inf                       # a row with nothing
    scores = np.round(rng.normal(-3, 1, (A, beam)), 1)
    scores[rng.random((A, beam)) < 0.3] = -np.inf
    greedy = rng.integers(-1, beam, A)
    last = rng.random(A) < 0.3
    eos = int(rng.integers(0, V))
    # each row cut to its min(K, V) best tokens (every token when V <= K), as the search does
    cand = ref.topk_rows(lp, min(beam, V))
    cand_lp = np.take_along_axis(lp, cand, 1)
    np.testing.assert_array_equal(K.topk_rows(lp, min(beam, V)), cand)
    # the inputs' n_best-th finished (normalized; -inf: fewer), the step's two length penalties
    worst = np.where(rng.random(A) < 0.5, -np.inf, np.round(rng.normal(-2.5, 1, A), 1))
    penalties = (1.5, float(rng.choice([1.5, 1.75])))
    got = K.beam_select(cand, cand_lp, scores, greedy, last, eos, worst, penalties)
    want = ref.beam_select(cand, cand_lp, scores, greedy, last, eos, worst, penalties)
    for g, w in zip(got[:9] + (got[10],), want[:9] + (want[10],)):
        np.testing.assert_array_equal(g, w)
    for g, w in zip(got[9], want[9]):
        np.testing.assert_array_equal(g, w)
    # only the ends above their input's worst are returned, with their normalized scores
    ei, _, et, es, en = want[9]
    np.testing.assert_array_equal(en, es / np.where(et == eos, *penalties))
    assert (en > worst[ei]).all()


def test_beam_next_matches_reference():
    """The step's end against its numpy specification: inputs at their limit, with nothing
    alive, whose greedy path ended with their n_best-th finished above or below the bound."""
    kept_counts = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        A, beam, t = int(rng.integers(1, 9)), int(rng.integers(1, 5)), int(rng.integers(0, 4))
        new_scores = np.round(rng.normal(-3, 1, (A, beam)), 1)
        new_scores[rng.random((A, beam)) < 0.3] = -np.inf
        args = (rng.integers(0, A * beam, (A, beam)), rng.integers(0, 50, (A, beam)),
                new_scores, rng.integers(-1, beam, A), rng.integers(0, beam + 1, A),
                rng.random(A) < 0.2,
                np.where(rng.random(A) < 0.3, -np.inf, np.round(rng.normal(-2.5, 1, A), 1)),
                float(rng.choice([1.0, 1.5])), rng.integers(0, 50, (A * beam, t)))
        got, want = K.beam_next(*args), ref.beam_next(*args)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
            assert g.dtype == w.dtype
        kept_counts.add("none" if not len(want[0]) else "all" if len(want[0]) == A else "some")
    assert kept_counts == {"none", "some", "all"}


def test_beam_select_checks_its_candidates():
    scores = np.zeros((2, 3))
    cand = np.zeros((6, 3), np.int64)
    lp = np.zeros((6, 3), np.float32)
    args = (scores, np.zeros(2, np.int64), np.zeros(2, bool), 0, np.zeros(2), (1.0, 1.0))
    for bad in (cand[:5], np.zeros((6, 4), np.int64), cand.astype(np.int32)):
        with pytest.raises(ValueError, match="cand"):
            K.beam_select(bad, np.zeros(bad.shape, np.float32), *args)
    with pytest.raises(ValueError, match="cand_lp"):
        K.beam_select(cand, lp.astype(np.float64), *args)


def test_edge_sizes_B1_T1_H1(backend):
    rng = np.random.default_rng(19)
    for peep, fg in VARIANTS:
        p = lstm_params(rng, 1, 1, 1, 1, peep)
        h, hT, cT, cache = K.lstm_forward(**p, forget_gate=fg)
        rh, _, _, rc = ref.lstm_forward(**f64(p), forget_gate=fg)
        close(h, rh)
        one = np.ones((1, 1, 1), np.float32)
        for g, r in zip(K.lstm_backward(one, one[0], one[0], cache),
                        ref.lstm_backward(np.ones((1, 1, 1)), np.ones((1, 1)), np.ones((1, 1)),
                                          rc)):
            if r is not None:
                close(g, r)


def test_huge_preactivations_give_no_nan(backend):
    rng = np.random.default_rng(20)
    for peep, fg in VARIANTS:
        p = lstm_params(rng, 3, 2, 4, 3, peep, scale=1e4)
        p["x"] *= 1e3
        h, hT, cT, cache = K.lstm_forward(**p, forget_gate=fg)
        assert np.isfinite(h).all() and np.isfinite(cT).all()
        rh = ref.lstm_forward(**f64(p), forget_gate=fg)[0]
        np.testing.assert_allclose(h, rh, atol=1e-5)
        grads = K.lstm_backward(np.ones_like(h), np.zeros_like(hT), np.zeros_like(cT), cache)
        assert all(g is None or np.isfinite(g).all() for g in grads)
    f = np.float32
    x = np.full((2, 1, 1), 1e30, f)
    h, _, _ = K.rnn_forward(x, np.zeros((1, 1), f), np.ones((1, 1), f), np.ones((1, 1), f),
                            np.zeros(1, f), np.zeros(1, f))
    np.testing.assert_array_equal(h, 1.0)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(21)
    p = lstm_params(rng, 3, 2, 4, 5, False)
    with pytest.raises(ValueError, match="x must be float32, got float64"):
        K.lstm_forward(**dict(p, x=p["x"].astype(np.float64)))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        K.lstm_forward(**dict(p, x=np.asfortranarray(p["x"])))
    with pytest.raises(ValueError, match=r"w_hh must have shape \[20, 5\], got \[20, 4\]"):
        K.lstm_forward(**dict(p, w_hh=p["w_hh"][:, :4].copy()))
    with pytest.raises(ValueError, match="h0 must be a numpy array"):
        K.lstm_forward(**dict(p, h0=[[0.0] * 5] * 2))
    with pytest.raises(ValueError, match=r"w_peep must have shape \[3, 5\]"):
        K.lstm_forward(**dict(p, w_peep=np.zeros((4, 5), np.float32)))
    with pytest.raises(ValueError, match="at least one time step"):
        K.lstm_forward(**dict(p, x=p["x"][:0]))
    _, _, _, cache = K.lstm_forward(**p)
    with pytest.raises(ValueError, match=r"dh must have shape \[3, 2, 5\]"):
        K.lstm_backward(np.zeros((2, 2, 5), np.float32), p["h0"], p["c0"], cache)
    with pytest.raises(ValueError, match="returned by lstm_forward"):
        K.lstm_backward(np.zeros((3, 2, 5), np.float32), p["h0"], p["c0"], object())
    with pytest.raises(ValueError, match=r"gates must have shape \[2, 20\]"):
        K.lstm_step(p["x"][0], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                    gates=np.empty((2, 19), np.float32))
    f = np.float32
    h, w, b = np.zeros((2, 3), f), np.zeros((4, 3), f), np.zeros(4, f)
    with pytest.raises(ValueError, match=r"targets must be in \[0, 4\), got values in \[0, 4\]"):
        K.softmax_xent_forward(h, w, b, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"targets must be in \[0, 4\)"):
        K.softmax_xent_forward(h, w, b, np.array([-1, 0]))
    with pytest.raises(ValueError, match="targets must be integers"):
        K.softmax_xent_forward(h, w, b, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="targets must have 2 entries"):
        K.softmax_xent_forward(h, w, b, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 4\)"):
        K.embedding_forward(np.array([[1, 7]]), w)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 4\)"):
        K.embedding_backward(np.zeros((1, 2, 3), f), np.array([[1, 4]]), 4)
    with pytest.raises(ValueError, match="ids must be 2-D"):
        K.embedding_forward(np.array([1, 2]), w)


# --- PyTorch, when installed (never a dependency of rnnkit) ----------------------------------
def _torch():
    try:
        import torch
    except Exception:  # any failure to import means no comparison
        pytest.skip("torch is not installed")
    return torch


def test_lstm_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(22)
    T, B, E, H = 5, 3, 4, 6
    p = lstm_params(rng, T, B, E, H, False)
    lstm = torch.nn.LSTM(E, H)
    with torch.no_grad():
        for name in ["w_ih", "w_hh", "b_ih", "b_hh"]:
            tname = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0",
                     "b_hh": "bias_hh_l0"}[name]
            getattr(lstm, tname).copy_(torch.from_numpy(p[name]))
    x = torch.from_numpy(p["x"]).requires_grad_()
    h0 = torch.from_numpy(p["h0"]).unsqueeze(0).requires_grad_()
    c0 = torch.from_numpy(p["c0"]).unsqueeze(0).requires_grad_()
    out, (hT, cT) = lstm(x, (h0, c0))
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    (out * torch.from_numpy(dh)).sum().backward()
    h, khT, kcT, cache = K.lstm_forward(**p)
    close(h, out.detach().numpy()), close(kcT, cT.detach().numpy()[0])
    z = np.zeros((B, H), np.float32)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, _ = K.lstm_backward(dh, z, z, cache)
    close(dx, x.grad.numpy()), close(dh0, h0.grad.numpy()[0]), close(dc0, c0.grad.numpy()[0])
    close(dw_ih, lstm.weight_ih_l0.grad.numpy()), close(dw_hh, lstm.weight_hh_l0.grad.numpy())
    close(db_ih, lstm.bias_ih_l0.grad.numpy()), close(db_hh, lstm.bias_hh_l0.grad.numpy())


def test_rnn_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(23)
    T, B, E, H = 4, 2, 3, 5
    f = np.float32
    rnn = torch.nn.RNN(E, H)
    x = rng.standard_normal((T, B, E)).astype(f)
    h0 = rng.standard_normal((B, H)).astype(f)
    w = dict(w_ih=rnn.weight_ih_l0.detach().numpy().copy(),
             w_hh=rnn.weight_hh_l0.detach().numpy().copy(),
             b_ih=rnn.bias_ih_l0.detach().numpy().copy(),
             b_hh=rnn.bias_hh_l0.detach().numpy().copy())
    tx = torch.from_numpy(x).requires_grad_()
    th0 = torch.from_numpy(h0).unsqueeze(0).requires_grad_()
    out, _ = rnn(tx, th0)
    dh = rng.standard_normal((T, B, H)).astype(f)
    (out * torch.from_numpy(dh)).sum().backward()
    h, _, cache = K.rnn_forward(x, h0, **w)
    close(h, out.detach().numpy())
    dx, dh0, dw_ih, dw_hh, db_ih, _ = K.rnn_backward(dh, np.zeros((B, H), f), cache)
    close(dx, tx.grad.numpy()), close(dh0, th0.grad.numpy()[0])
    close(dw_ih, rnn.weight_ih_l0.grad.numpy()), close(dw_hh, rnn.weight_hh_l0.grad.numpy())
    close(db_ih, rnn.bias_ih_l0.grad.numpy())


@pytest.mark.parametrize("path", PACKED or [None])
def test_thread_count_changes_no_result(path):
    if path is None:
        pytest.skip("the kernels thread only their packed products; on this CPU every thread "
                    "count runs one thread, so the comparison would be of a run with itself")
    # every number is computed by the same instructions whatever the split: bitwise equal
    rng = np.random.default_rng(24)
    # big enough for threads (B·H² >= 2^20 for the RNN), H = 200 = 12.5 half panels: uneven shares
    T, B, E, H = 3, 27, 37, 200
    p = lstm_params(rng, T, B, E, H, True)
    dh = rng.standard_normal((T, B, H)).astype(np.float32)
    dT = rng.standard_normal((B, H)).astype(np.float32)
    f = np.float32
    hx = rng.standard_normal((T * B, H)).astype(f)
    wd, bd = rng.standard_normal((50, H)).astype(f), rng.standard_normal(50).astype(f)
    tg = rng.integers(0, 50, T * B)

    def compute():
        h, hT, cT, c = K.lstm_forward(**p)
        out = [h.copy(), cT] + [g.copy() for g in K.lstm_backward(dh, dT, dT, c)]
        hr, _, cr = K.rnn_forward(p["x"], p["h0"], p["w_ih"][:H], p["w_hh"][:H],
                                  p["b_ih"][:H], p["b_hh"][:H])
        out += [hr.copy()] + [g.copy() for g in K.rnn_backward(dh, dT, cr)]
        loss, sc = K.softmax_xent_forward(hx, wd, bd, tg)
        out += [np.float64(loss)] + [g.copy() for g in K.softmax_xent_backward(1.0, sc)]
        out.append(K.log_softmax(hx, wd, bd))
        # a few rows: dot products over the unpacked weights, their columns split
        for n in (1, 5):
            out.append(K.log_softmax(hx[:n], wd, bd))
            out.append(K.matmul(hx[:n], wd, trans_b=True))
        return out
    assert_the_same_on_1_2_and_3_threads(path, compute)


def assert_the_same_on_1_2_and_3_threads(path, compute):
    """compute() -> arrays, on `path` with 1, 2 and 3 threads: the same bits every time."""
    old, runs = K.get_num_threads(), []
    try:
        K.set_isa(path)
        for nt in (1, 2, 3):
            K.set_num_threads(nt)
            runs.append(compute())
    finally:
        K.set_num_threads(old)
        K.set_isa("best")
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("path", PACKED or [None])
def test_few_row_products_match_reference(path):
    """log_softmax and matmul(a, bᵀ) with 1..7 rows run as dot products over the unpacked
    weights (no packing); every beta; against numpy in float64."""
    if path is None:
        pytest.skip("no packed kernel path on this CPU: few rows go to BLAS as before")
    rng = np.random.default_rng(31)
    f = np.float32
    V, H = 203, 37          # V: 12 blocks of 16 and a tail; H: not a multiple of the lanes
    w, b = rng.standard_normal((V, H)).astype(f), rng.standard_normal(V).astype(f)
    try:
        K.set_isa(path)
        for n in range(1, 8):
            h = rng.standard_normal((n, H)).astype(f)
            want_lp = ref.log_softmax(h.astype(np.float64), w.astype(np.float64),
                                      b.astype(np.float64))
            close(K.log_softmax(h, w, b), want_lp)
            close(K.log_softmax(h, w, b, scale=0.25), 0.25 * want_lp)   # scaled in the pass
            want = h.astype(np.float64) @ w.T.astype(np.float64)
            close(K.matmul(h, w, trans_b=True), want)
            c0 = rng.standard_normal((n, V)).astype(f)
            for beta in (1.0, 0.5):
                close(K.matmul(h, w, c0.copy(), trans_b=True, beta=beta), want + beta * c0)
    finally:
        K.set_isa("best")


@pytest.mark.parametrize("path", PACKED or [None])
def test_copying_a_block_of_a_changes_no_bits(path):
    """The packed product copies A's block into the kernel's order where that pays (wide
    blocks, a transposed A on avx2: rk_pack_a_pays): never, where it pays and always give the
    same bits, A as stored or transposed, with a bias and beta, on 1 and 2 threads, with row
    blocks cut unevenly (M = 23) and K cut in blocks (kc_max 64 over K = 150)."""
    if path is None:
        pytest.skip("no packed kernel path on this CPU")
    rng = np.random.default_rng(5)
    f = np.float32
    old_threads = K.get_num_threads()
    try:
        K.set_isa(path)
        row = K.cpu_info()["blocking"]
        for M, Kd, N in ((23, 150, 2100), (130, 40, 70), (7, 300, 33)):
            a = rng.standard_normal((M, Kd)).astype(f)
            at = np.ascontiguousarray(a.T)
            w = rng.standard_normal((N, Kd)).astype(f)
            c0 = rng.standard_normal((M, N)).astype(f)
            want = a.astype(np.float64) @ w.T.astype(np.float64)
            runs = []
            for mode in K.PACK_A:
                for nt in (1, 2):
                    K.set_num_threads(nt)
                    K.set_blocking(20, 64, pack_a=mode)
                    out = [K.matmul(a, w, trans_b=True), K.matmul(at, w, trans_a=True, trans_b=True),
                           K.matmul(a, w, c0.copy(), trans_b=True, beta=0.5)]
                    K.set_blocking(row["mc"], row["kc_max"], pack_a=mode)
                    out.append(K.matmul(at, w, trans_a=True, trans_b=True))
                    runs.append(out)
            close(runs[0][0], want)
            close(runs[0][1], want)
            close(runs[0][2], want + 0.5 * c0)
            for other in runs[1:]:
                for x, y in zip(runs[0], other):
                    np.testing.assert_array_equal(x, y)
        K.set_isa(path)      # the CPU's row and the rule again
        prev = K.set_blocking(100, 500)
        assert prev == (row["mc"], row["kc_max"], "auto")
        assert K.cpu_info()["blocking"]["measured_on"] == "set by set_blocking"
        with pytest.raises(ValueError, match="mc >= 1"):
            K.set_blocking(0, 768)
        with pytest.raises(ValueError, match="pack_a"):
            K.set_blocking(120, 768, pack_a="sometimes")
        K.set_isa(path)      # the CPU's row again
        assert K.cpu_info()["blocking"]["mc"] == row["mc"]
    finally:
        K.set_num_threads(old_threads)
        K.set_isa("best")


def test_thread_count_is_checked():
    with pytest.raises(ValueError, match="at least 1"):
        K.set_num_threads(0)


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 40), E=st.integers(1, 40), H=st.integers(1, 40),
       variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**31 - 1),
       backend=st.sampled_from(BACKENDS))
def test_steps_match_reference(B, E, H, variant, seed, backend):
    peep, fg = variant
    rng = np.random.default_rng(seed)
    p = lstm_params(rng, 1, B, E, H, peep)
    w = {k: p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh", "w_peep"]}
    h, c = p["h0"].copy(), p["c0"].copy()
    hr, cr = p["h0"].astype(np.float64), p["c0"].astype(np.float64)
    with using(backend):
        K.lstm_step(p["x"][0], h, c, **w, forget_gate=fg)
    ref.lstm_step(p["x"][0].astype(np.float64), hr, cr, **f64(w), forget_gate=fg)
    close(h, hr, "h"), close(c, cr, "c")
    hn = p["h0"].copy()
    rw = {k: p[k][:H].copy() for k in ["w_ih", "w_hh", "b_ih", "b_hh"]}
    with using(backend):
        K.rnn_step(p["x"][0], hn, **rw)
    close(hn, ref.rnn_step(p["x"][0].astype(np.float64), p["h0"].astype(np.float64),
                           **f64(rw)), "rnn h")


@pytest.mark.parametrize("B", [1, 3, 48])   # 48: the packed-GEMM step
def test_threaded_steps_give_the_same_numbers(B, backend):
    rng = np.random.default_rng(26)
    E, H = 600, 300  # big enough for the steps to use threads
    p = lstm_params(rng, 1, B, E, H, True)
    w = {k: p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh", "w_peep"]}
    old, outs = K.get_num_threads(), []
    try:
        for nt in (1, 2, 3):
            K.set_num_threads(nt)
            h, c = p["h0"].copy(), p["c0"].copy()
            for _ in range(3):
                K.lstm_step(p["x"][0], h, c, **w)
            outs.append((h, c))
    finally:
        K.set_num_threads(old)
    for h, c in outs[1:]:
        np.testing.assert_array_equal(h, outs[0][0])
        np.testing.assert_array_equal(c, outs[0][1])


@pytest.mark.parametrize("B,H", [(1, 5), (1, 300), (4, 37), (24, 37)])
def test_a_step_gives_the_same_numbers_on_every_call(B, H):
    # successive steps visit the gates in opposite orders (to start on weights still in
    # cache); every output must come out bit for bit the same either way
    rng = np.random.default_rng(27)
    p = lstm_params(rng, 1, B, 2 * H, H, False)
    w = {k: p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh"]}
    outs = []
    for _ in range(2):
        h, c = p["h0"].copy(), p["c0"].copy()
        K.lstm_step(p["x"][0], h, c, **w)
        outs.append((h, c))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    rw = {k: p[k][:H].copy() for k in ["w_ih", "w_hh", "b_ih", "b_hh"]}
    hs = [K.rnn_step(p["x"][0], p["h0"].copy(), **rw) for _ in range(2)]
    np.testing.assert_array_equal(hs[0], hs[1])


@pytest.mark.parametrize("H", [16, 37, 100])
def test_many_stream_steps_agree_on_both_kernels(H):
    # from a few streams on, a step multiplies by weights it packs itself (each thread its own
    # columns, in its own scratch); the dot-product kernel below that count must agree with it
    rng = np.random.default_rng(28)
    B, E = 33, 29
    p = lstm_params(rng, 1, B, E, H, True)
    w = {k: p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh", "w_peep"]}
    old, outs = K._step_gemm_min_b(), []
    try:
        for n in (2, 1000):                       # the GEMM path, then the dot-product one
            K._step_gemm_min_b(n)
            h, c = p["h0"].copy(), p["c0"].copy()
            K.lstm_step(p["x"][0], h, c, **w)
            outs.append((h, c))
    finally:
        K._step_gemm_min_b(old)
    for h, c in outs:
        np.testing.assert_allclose(h, outs[0][0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c, outs[0][1], rtol=1e-5, atol=1e-5)
    hr, cr = p["h0"].astype(np.float64), p["c0"].astype(np.float64)
    ref.lstm_step(p["x"][0].astype(np.float64), hr, cr, **f64(w))
    close(outs[0][0], hr), close(outs[0][1], cr)


def test_threads_work_in_a_forked_child():
    # a child made by fork() has none of the parent's worker threads: the pool starts afresh
    import os
    import signal

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    rng = np.random.default_rng(27)
    p = lstm_params(rng, 2, 8, 40, 200, False)  # big enough for the layers to use threads
    old = K.get_num_threads()
    K.set_num_threads(2)
    try:
        want = K.lstm_forward(**p)[0].copy()   # starts the parent's workers
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if the threaded kernel runs and agrees
            signal.alarm(20)
            ok = np.array_equal(K.lstm_forward(**p)[0], want)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
    finally:
        K.set_num_threads(old)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_bad_step_inputs_raise_clear_errors():
    rng = np.random.default_rng(28)
    p = lstm_params(rng, 1, 2, 4, 5, False)
    w = [p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh"]]
    x, h, c = p["x"][0], p["h0"].copy(), p["c0"].copy()
    with pytest.raises(ValueError, match="h must be float32, got float64"):
        K.lstm_step(x, h.astype(np.float64), c, *w)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        K.lstm_step(np.asfortranarray(np.ones((2, 4), np.float32)), h, c, *w)
    with pytest.raises(ValueError, match=r"c must have shape \[2, 5\], got \[2, 4\]"):
        K.lstm_step(x, h, c[:, :4].copy(), *w)
    with pytest.raises(ValueError, match=r"w_ih must have shape \[20, 4\]"):
        K.lstm_step(x, h, c, w[0][:, :3].copy(), *w[1:])
    with pytest.raises(ValueError, match="x must be a numpy array"):
        K.lstm_step([[0.0] * 4] * 2, h, c, *w)
    with pytest.raises(ValueError, match="c must be a numpy array, got NoneType"):
        K.lstm_step(x, h, None, *w)
    with pytest.raises(ValueError, match=r"x must have shape \[\*, \*, \*\]"):
        K.lstm_forward(x, h, c, *w)  # a window's x is [T, B, E]
    rw = [a[:5].copy() for a in w]
    with pytest.raises(ValueError, match=r"work must have shape \[2, 5\]"):
        K.rnn_step(x, h, *rw, work=np.empty((2, 6), np.float32))
    with pytest.raises(ValueError, match=r"b_hh must have shape \[5\]"):
        K.rnn_step(x, h, *rw[:3], np.zeros(4, np.float32))


def test_isa_paths_are_checked():
    assert K.get_isa() == K.supported_isas()[-1]  # the best path by default (no RNNKIT_ISA here)
    with pytest.raises(ValueError, match="must be one of generic, avx2, avx512"):
        K.set_isa("sse")
    with using("generic"):
        assert K.get_isa() == "generic" and K.gemm_backend() == "blas"
        with pytest.raises(ValueError, match="the packed backend needs the avx2 or avx512"):
            K.gemm_backend("packed")
    for path in PACKED:
        with using(path):
            assert K.get_isa() == path and K.gemm_backend() == "packed"


@pytest.mark.parametrize("value,want,warns", [("avx2", "avx2", False), ("generic", "generic", False),
                                              ("AVX512", "avx512", False), ("sse4", None, True)])
def test_rnnkit_isa_selects_the_path_at_load_time(value, want, warns):
    import subprocess
    import sys
    if want is not None and want not in BACKENDS:
        want, warns = BACKENDS[-1], True  # a path this CPU cannot run: a warning, the best one
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from rnnkit.nn import _kernels as K; print(K.get_isa(), K.gemm_backend())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "RNNKIT_ISA": value})
    assert r.returncode == 0, r.stderr
    isa, backend = r.stdout.split()
    assert isa == (want or BACKENDS[-1])
    assert backend == ("blas" if isa == "generic" else "packed")
    assert ("RuntimeWarning" in r.stderr) == warns, r.stderr


def test_packed_products_give_the_same_bits_on_avx2_and_avx512():
    # the 8-lane micro-kernel computes every element as the 16-lane one (bias, one FMA per k in
    # order, beta C, the same K blocks): a layer window gives the same bits on both paths
    if PACKED != ["avx2", "avx512"]:
        pytest.skip(f"needs both packed paths; this CPU runs {', '.join(BACKENDS)}")
    rng = np.random.default_rng(31)
    p = lstm_params(rng, 4, 7, 45, 70, True)
    dh = rng.standard_normal((4, 7, 70)).astype(np.float32)
    z = np.zeros((7, 70), np.float32)
    a = rng.standard_normal((33, 1600)).astype(np.float32)  # K in 3 cache blocks
    b = rng.standard_normal((50, 1600)).astype(np.float32)
    runs = []
    for path in PACKED:
        with using(path):
            h, _, _, c = K.lstm_forward(**p)
            runs.append([h.copy()] + [g.copy() for g in K.lstm_backward(dh, z, z, c)]
                        + [K.matmul(a, b, trans_b=True), K.matmul(a, b.T.copy())])
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)


# --- top-k rows (the beam search's first cut) ------------------------------------------------------
def test_topk_rows_hand_worked(backend):
    z = np.array([[0.5, 2.0, -1.0, 2.0, 3.0],
                  [-np.inf, -np.inf, 1.0, -np.inf, -np.inf]], np.float32)
    # best first; of the two 2.0s the earlier index; -inf ties by index too
    assert K.topk_rows(z, 3).tolist() == [[4, 1, 3], [2, 0, 1]]
    assert K.topk_rows(z, 5).tolist() == [[4, 1, 3, 0, 2], [2, 0, 1, 3, 4]]
    assert K.topk_rows(z, 1).tolist() == [[4], [2]]


@pytest.mark.parametrize("V,k", [(1, 1), (7, 3), (16, 16), (37, 10), (8000, 10), (33278, 64)])
def test_topk_rows_equal_reference(backend, V, k):
    rng = np.random.default_rng(V + k)
    z = rng.standard_normal((9, V)).astype(np.float32)
    z[1] = np.sort(z[1])                  # increasing: every entry beats the k-th on arrival
    z[2] = 0.25                           # all tied
    z[3, ::3] = -np.inf
    z[4] = np.round(z[4] * 4) / 4         # many ties
    z[5, V // 2] = np.nan                 # a NaN counts as -inf
    out = np.full((9, k), -1, np.int64)
    got = K.topk_rows(z, k, out=out)
    assert got is out
    np.testing.assert_array_equal(got, ref.topk_rows(z, k))


def test_topk_rows_bad_input():
    z = np.zeros((2, 5), np.float32)
    for bad_k in (0, 6):
        with pytest.raises(ValueError, match="k must be in"):
            K.topk_rows(z, bad_k)
    with pytest.raises(ValueError, match="float32"):
        K.topk_rows(z.astype(np.float64), 2)
    with pytest.raises(ValueError, match="int64"):
        K.topk_rows(z, 2, out=np.zeros((2, 2), np.int32))


# --- weights packed once for many products (a decoding run) ---------------------------------------
@pytest.mark.parametrize("path", PACKED or [None])
@pytest.mark.parametrize("cell,B,E,H", [("lstm", 24, 29, 37), ("lstm", 40, 64, 16),
                                        ("lstm", 40, 300, 256), ("rnn", 24, 29, 37)])
def test_steps_on_weights_packed_before_give_the_same_bits(path, cell, B, E, H):
    # pack_weight packs the panels each step would pack (H = 37: a gate ends mid half panel;
    # 300 x 256: the weights need 32 streams before a step packs); the threads' column split
    # is the same, so every output is the same bits, on 1 and 2 threads
    if path is None:
        pytest.skip("no packed path on this CPU")
    rng = np.random.default_rng(40)
    p = lstm_params(rng, 1, B, E, H, False)
    G = 4 if cell == "lstm" else 1
    w = {k: np.ascontiguousarray(p[k][:G * H]) for k in ["w_ih", "w_hh", "b_ih", "b_hh"]}
    old = K.get_num_threads()
    with using(path):
        assert K.step_packs(B, E, H, G)
        packed = (K.pack_weight(w["w_ih"], G), K.pack_weight(w["w_hh"], G))
        try:
            for nt in (1, 2):
                K.set_num_threads(nt)
                outs = []
                for pk in (None, packed):
                    h, c = p["h0"].copy(), p["c0"].copy()
                    for t in range(2):   # the second step reads the first one's h
                        if cell == "lstm":
                            K.lstm_step(p["x"][0], h, c, **w, packed=pk)
                        else:
                            K.rnn_step(p["x"][0], h, **w, packed=pk)
                    outs.append((h, c))
                np.testing.assert_array_equal(outs[1][0], outs[0][0])
                np.testing.assert_array_equal(outs[1][1], outs[0][1])
        finally:
            K.set_num_threads(old)


# --- a step's input part from a table of every token's (a small vocabulary) ----------------------
@pytest.mark.parametrize("path", BACKENDS)
@pytest.mark.parametrize("cell,B,E,H,V", [("lstm", 24, 29, 37, 20), ("lstm", 192, 64, 96, 39),
                                          ("lstm", 40, 300, 256, 40), ("rnn", 24, 29, 37, 24),
                                          ("lstm", 3, 8, 16, 10), ("rnn", 1, 8, 16, 10)])
def test_steps_reading_an_input_table(path, cell, B, E, H, V):
    """input_table is emb W_ih^T + b_ih + b_hh; a step given it and ids gives the same bits as
    one given emb[ids] wherever it runs on the packed GEMM (with or without packed weights, 1
    and 2 threads), and the reference's numbers on every path."""
    rng = np.random.default_rng(43)
    G = 4 if cell == "lstm" else 1
    p = lstm_params(rng, 1, B, E, H, False)
    w = {k: np.ascontiguousarray(p[k][:G * H]) for k in ["w_ih", "w_hh", "b_ih", "b_hh"]}
    emb = rng.standard_normal((V, E)).astype(np.float32)
    ids = rng.integers(0, V, B)
    step = K.lstm_step if cell == "lstm" else K.rnn_step
    old = K.get_num_threads()
    with using(path):
        table = K.input_table(emb, w["w_ih"], w["b_ih"], w["b_hh"], G)
        want = ref.input_table(emb.astype(np.float64), *(w[k].astype(np.float64) for k in
                               ("w_ih", "b_ih", "b_hh")), G)
        np.testing.assert_allclose(table, want, rtol=1e-5, atol=1e-5)
        packs = [None] + ([(K.pack_weight(w["w_ih"], G), K.pack_weight(w["w_hh"], G))]
                          if K.step_packs(B, E, H, G) else [])
        try:
            for nt in (1, 2):
                K.set_num_threads(nt)
                for pk in packs:
                    outs = []
                    for tab in (None, table):
                        if pk is not None:
                            tab = None if tab is None else K.input_table(
                                emb, w["w_ih"], w["b_ih"], w["b_hh"], G, pk[0])
                        h, c = p["h0"].copy(), p["c0"].copy()
                        for t in range(2):   # the second step reads the first one's h
                            x = emb[ids] if tab is None else ids
                            state = (h, c) if cell == "lstm" else (h,)
                            step(x, *state, **w, packed=pk, table=tab)
                        outs.append((h, c))
                    if K.step_packs(B, E, H, G):
                        np.testing.assert_array_equal(outs[1][0], outs[0][0])
                        np.testing.assert_array_equal(outs[1][1], outs[0][1])
                    else:   # dot products or BLAS: the input part's sums in another order
                        np.testing.assert_allclose(outs[1][0], outs[0][0], atol=1e-5)
                    # the reference, reading its own table
                    h, c = p["h0"].astype(np.float64), p["c0"].astype(np.float64)
                    w64 = {k: v.astype(np.float64) for k, v in w.items()}
                    for t in range(2):
                        rstep = ref.lstm_step if cell == "lstm" else ref.rnn_step
                        rstep(ids, *((h, c) if cell == "lstm" else (h,)), **w64, table=want)
                    np.testing.assert_allclose(outs[1][0], h, atol=1e-4)
        finally:
            K.set_num_threads(old)


def test_bad_table_steps_raise_clear_errors():
    rng = np.random.default_rng(44)
    H, E, V, B = 8, 5, 6, 10
    w_ih, w_hh = (rng.standard_normal((4 * H, n)).astype(np.float32) for n in (E, H))
    b = np.zeros(4 * H, np.float32)
    h, c = (np.zeros((B, H), np.float32) for _ in range(2))
    emb = rng.standard_normal((V, E)).astype(np.float32)
    table = K.input_table(emb, w_ih, b, b, 4)
    assert table.shape == (V, 4 * H) and table.dtype == np.float32
    ids = np.arange(B) % V
    for bad, msg in [(ids.astype(np.int32), "int64"), (ids[:, None], "1-D int64"),
                     (ids + V - 1, r"in \[0, 6\), got values in \[5, 10\]"),
                     (ids - 1, r"got values in \[-1, 4\]")]:
        with pytest.raises(ValueError, match=msg):
            K.lstm_step(bad, h, c, w_ih, w_hh, b, b, table=table)
        if "got values" in msg:   # the reference takes any integer ids, checked as rows
            with pytest.raises(ValueError, match=msg):
                ref.lstm_step(bad, h.astype(np.float64), c.astype(np.float64), w_ih, w_hh, b,
                              b, table=table)
    with pytest.raises(ValueError, match="table"):
        K.lstm_step(ids, h, c, w_ih, w_hh, b, b, table=table[:, :-1].copy())
    with pytest.raises(ValueError, match="h"):   # the other inputs keep their checks
        K.lstm_step(ids, h[:-1], c, w_ih, w_hh, b, b, table=table)
    with pytest.raises(ValueError, match="groups must divide"):
        K.input_table(emb, w_ih, b, b, 3)
    with pytest.raises(ValueError, match="groups must divide"):
        ref.input_table(emb, w_ih, b, b, 3)
    with pytest.raises(ValueError, match="w_ih"):
        K.input_table(emb[:, :-1].copy(), w_ih, b, b, 4)


@pytest.mark.parametrize("path", PACKED or [None])
@pytest.mark.parametrize("N,H,V", [(8, 16, 300), (40, 37, 1001), (320, 64, 2000)])
def test_log_softmax_on_a_weight_packed_before_gives_the_same_bits(path, N, H, V):
    if path is None:
        pytest.skip("no packed path on this CPU")
    rng = np.random.default_rng(41)
    h = rng.standard_normal((N, H)).astype(np.float32)
    w = (0.3 * rng.standard_normal((V, H))).astype(np.float32)
    b = rng.standard_normal(V).astype(np.float32)
    with using(path):
        assert K.log_softmax_packs(N) and not K.log_softmax_packs(7)
        pw = K.pack_weight(w)
        for scale in (1.0, 1 / np.log(10)):
            want = K.log_softmax(h, w, b, scale=scale)
            np.testing.assert_array_equal(K.log_softmax(h, w, b, scale=scale, packed=pw), want)
        close(K.log_softmax(h, w, b, packed=pw), ref.log_softmax(*f64({"h": h, "w": w, "b": b}).values()))
        # below 8 rows the kernel streams the unpacked weight: the pack is not used
        np.testing.assert_array_equal(K.log_softmax(h[:3], w, b, packed=pw),
                                      K.log_softmax(h[:3], w, b))


@pytest.mark.parametrize("path", PACKED or [None])
@pytest.mark.parametrize("N,V", [(45, 50), (320, 700), (9, 3000)])
def test_the_output_layers_chunks_of_rows_change_no_bit(path, N, V):
    # the forward's product runs a chunk of rows at a time (the logits of chunk_bytes); chunks
    # of 8 rows (12 on avx2; N = 45: a short last one per thread) and all rows at once give the same
    # log-probabilities, best entries, loss and gradients, on 1 and 2 threads
    if path is None:
        pytest.skip("no packed path on this CPU")
    rng = np.random.default_rng(45)
    h = rng.standard_normal((N, 24)).astype(np.float32)
    w = (0.3 * rng.standard_normal((V, 24))).astype(np.float32)
    b = rng.standard_normal(V).astype(np.float32)
    t = rng.integers(0, V, N)
    old, old_nt = K._softmax_chunk_bytes(), K.get_num_threads()

    def outputs():
        loss, cache = K.softmax_xent_forward(h, w, b, t)
        return [K.log_softmax(h, w, b, scale=0.5), *K.log_softmax_topk(h, w, b, 4, 0.5),
                np.float32(loss), *(g.copy() for g in K.softmax_xent_backward(1.0, cache))]
    try:
        with using(path):
            for nt in (1, 2):
                K.set_num_threads(nt)
                K._softmax_chunk_bytes(1)            # 8 rows (avx2: 12)
                small = outputs()
                K._softmax_chunk_bytes(1 << 40)      # every row at once
                for a, b_ in zip(small, outputs()):
                    np.testing.assert_array_equal(a, b_)
    finally:
        K._softmax_chunk_bytes(old), K.set_num_threads(old_nt)


@pytest.mark.parametrize("N,H,V,k", [(1, 16, 300, 5), (5, 16, 40, 40), (8, 37, 1001, 3),
                                     (320, 64, 2000, 5), (40, 16, 33, 1)])
def test_log_softmax_topk_is_log_softmax_cut_to_its_best(backend, N, H, V, k):
    # the rows' k best entries of the log-probabilities, bit for bit, on every path and for the
    # few-row (dot) and packed paths, with a weight packed before or not: coarse weights make
    # ties, a row of NaN logits, one of equal logits, an infinite logit
    rng = np.random.default_rng(N + V + k)
    h = rng.standard_normal((N, H)).astype(np.float32)
    w = np.round(rng.standard_normal((V, H)), 0).astype(np.float32) * 0.25
    b = np.round(rng.standard_normal(V), 0).astype(np.float32)
    h[min(1, N - 1), 0] = np.nan if N > 2 else h[0, 0]
    if N > 3:
        h[2] = 0
        w2 = w.copy()
        w2[V // 3, 0] = np.inf   # the logit is inf in rows where h[:, 0] > 0
    else:
        w2 = w
    for weight in (w, w2):
        pk = K.pack_weight(weight)
        for scale in (1.0, 1 / np.log(10)):
            lp = K.log_softmax(h, weight, b, scale=scale)
            want = ref.topk_rows(lp, k)
            for packed in (None, pk):
                work = np.empty((N, V), np.float32)
                words, values = K.log_softmax_topk(h, weight, b, k, scale=scale, packed=packed,
                                                   work=work)
                np.testing.assert_array_equal(words, want)
                np.testing.assert_array_equal(values, np.take_along_axis(lp, want, 1))
    # the specification: the reference's log-probabilities cut the same way
    w64 = f64({"h": h, "w": w, "b": b})
    rw, rv = ref.log_softmax_topk(*w64.values(), k, scale=0.5)
    lp64 = ref.log_softmax(*w64.values(), scale=0.5)
    np.testing.assert_array_equal(rw, ref.topk_rows(lp64, k))
    np.testing.assert_array_equal(rv, np.take_along_axis(lp64, rw, 1))
    words, values = K.log_softmax_topk(h, w, b, k, scale=0.5)
    ok = ~np.isnan(h).any(axis=1)
    close(values[ok], rv[ok])


def test_log_softmax_topk_bad_input():
    h, w, b = np.zeros((2, 3), np.float32), np.zeros((5, 3), np.float32), np.zeros(5, np.float32)
    for mod in (K, ref):
        for bad_k in (0, 6):
            with pytest.raises(ValueError, match="k must be in"):
                mod.log_softmax_topk(h, w, b, bad_k)
        with pytest.raises(ValueError, match="scale must be > 0"):
            mod.log_softmax_topk(h, w, b, 2, scale=-1.0)
    with pytest.raises(ValueError, match="work"):
        K.log_softmax_topk(h, w, b, 2, work=np.zeros((2, 4), np.float32))


def test_packed_weights_are_checked():
    rng = np.random.default_rng(42)
    w = rng.standard_normal((40, 16)).astype(np.float32)
    other = w.copy()
    h = rng.standard_normal((8, 16)).astype(np.float32)
    b = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match="groups must divide"):
        K.pack_weight(w, 3)
    with pytest.raises(ValueError, match="must be float32"):
        K.pack_weight(w.astype(np.float64))
    if not PACKED:
        return
    with using(PACKED[-1]):
        pw = K.pack_weight(w)
        assert pw.rows == 40 and pw.cols == 16 and pw.groups == 1 and "PackedWeight" in repr(pw)
        # a pack of another array, even an equal one: it may change while this one does not
        with pytest.raises(ValueError, match="not packed from this weight"):
            K.log_softmax(h, other, b, packed=pw)
        with pytest.raises(ValueError, match="PackedWeight from pack_weight"):
            K.log_softmax(h, w, b, packed=np.zeros(4, np.float32))
        x, hs, c = (np.zeros((8, 16), np.float32) for _ in range(3))
        wi, wh = (rng.standard_normal((40, 16)).astype(np.float32) for _ in range(2))
        bb = np.zeros(40, np.float32)
        with pytest.raises(ValueError, match=r"packed must be \(pack_weight"):
            K.rnn_step(x, hs[:, :16].copy(), wi[:16], wh[:16], bb[:16], bb[:16], packed=[1, 2])
        wi4, wh4 = (rng.standard_normal((64, 16)).astype(np.float32) for _ in range(2))
        with pytest.raises(ValueError, match=r"packed\[0\] was not packed from this weight"):
            K.lstm_step(x, hs, c, wi4, wh4, np.zeros(64, np.float32), np.zeros(64, np.float32),
                        packed=(K.pack_weight(wi4, 1), K.pack_weight(wh4, 4)))
    # on the BLAS backend nothing is packed, and a pack made before is ignored
    with using(PACKED[-1]):
        pw = K.pack_weight(w)
    with using("generic"):
        assert K.pack_weight(w) is None and not K.log_softmax_packs(100)
        np.testing.assert_array_equal(K.log_softmax(h, w, b, packed=pw), K.log_softmax(h, w, b))


# --- attention (nn/attention.py's dot and general scores) -----------------------------------------
@pytest.mark.parametrize("T,B,S,H,D", [(1, 3, 4, 5, 5), (5, 7, 9, 16, 32), (2, 4, 13, 37, 20)])
def test_attend_matches_reference(backend, T, B, S, H, D):
    # queries as a transposed view (a beam's K states per sentence), padded positions, a
    # sentence with no real position (uniform weights, as the -1e30 scores give), the context
    # written into the first D columns of [T, B, D + H]
    rng = np.random.default_rng(T * 100 + S)
    q = rng.standard_normal((B, T, H)).astype(np.float32).transpose(1, 0, 2)
    keys = rng.standard_normal((S, B, H)).astype(np.float32)
    enc = rng.standard_normal((S, B, D)).astype(np.float32)
    mask = np.arange(S)[None, :] < rng.integers(1, S + 1, B)[:, None]
    mask[-1] = False
    alpha, cat = np.empty((B, T, S), np.float32), np.full((T, B, D + H), 7.0, np.float32)
    K.attend(q, keys, enc, mask, alpha, cat[..., :D])
    want_a, want_c = np.empty((B, T, S)), np.empty((T, B, D))
    ref.attend(*f64({"q": q, "k": keys, "e": enc}).values(), mask, want_a, want_c)
    close(alpha, want_a)
    close(cat[..., :D], want_c)
    assert (cat[..., D:] == 7.0).all()                      # the rest of the rows untouched
    assert (alpha[:-1][~np.broadcast_to(mask[:-1, None], alpha[:-1].shape)] == 0).all()
    np.testing.assert_allclose(alpha[-1], 1.0 / S)
    with pytest.raises(ValueError, match="do not agree"):
        K.attend(q, keys[:-1], enc, mask, alpha, cat)
    with pytest.raises(ValueError, match="contiguous rows"):
        K.attend(q, keys, enc.astype(np.float64), mask, alpha, cat)


# --- sequences of different lengths in one window (batch_sizes, reference.steps_of) -------------
def ragged_rows(lengths, a):
    T = max(lengths)
    bs = np.array([sum(n > t for n in lengths) for t in range(T)], np.int32)
    return np.ascontiguousarray(np.concatenate([a[t, :bs[t]] for t in range(T)])), bs


@pytest.mark.parametrize("lengths", [[4, 4, 2, 1], [7, 3, 3, 3, 2, 1, 1, 1, 1], [1], [3, 3]])
@pytest.mark.parametrize("cell", ["lstm", "peephole", "no-forget", "rnn"])
def test_ragged_windows_match_reference(lengths, cell, backend):
    rng = np.random.default_rng(len(lengths))
    B, T, E, H = len(lengths), max(lengths), 5, 37
    p = lstm_params(rng, T, B, E, H, cell == "peephole")
    fg = cell != "no-forget"
    x, bs = ragged_rows(lengths, p["x"])
    dh, _ = ragged_rows(lengths, rng.standard_normal((T, B, H)).astype(np.float32))
    dT = rng.standard_normal((B, H)).astype(np.float32)
    if cell == "rnn":
        w = {k: np.ascontiguousarray(p[k][:H]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
        h, hT, cache = K.rnn_forward(x, p["h0"], **w, batch_sizes=bs)
        rh, rhT, rcache = ref.rnn_forward(x.astype(np.float64), p["h0"].astype(np.float64),
                                          **f64(w), batch_sizes=bs)
        got, want = K.rnn_backward(dh, dT, cache), ref.rnn_backward(dh, dT, rcache)
        outs = [(h, rh), (hT, rhT)]
    else:
        h, hT, cT, cache = K.lstm_forward(**dict(p, x=x), forget_gate=fg, batch_sizes=bs)
        rh, rhT, rcT, rcache = ref.lstm_forward(**f64(dict(p, x=x)), forget_gate=fg,
                                                batch_sizes=bs)
        got, want = K.lstm_backward(dh, dT, dT, cache), ref.lstm_backward(dh, dT, dT, rcache)
        outs = [(h, rh), (hT, rhT), (cT, rcT)]
    assert h.shape == (sum(lengths), H)
    for g, w in outs + [(g, w) for g, w in zip(got, want) if w is not None]:
        assert g.shape == w.shape
        close(g, w)


@pytest.mark.parametrize("path", PACKED or [None])
def test_ragged_windows_give_the_same_bits_on_any_thread_count(path):
    if path is None:
        pytest.skip("no packed path on this CPU: every thread count runs one thread")
    rng = np.random.default_rng(3)
    lengths, E, H = [9, 8, 8, 6, 5, 5, 3, 2] * 4, 24, 200      # B·4H² >= 2^20: threaded
    B, T = len(lengths), max(lengths)
    lengths = sorted(lengths, reverse=True)
    p = lstm_params(rng, T, B, E, H, False)
    x, bs = ragged_rows(lengths, p["x"])
    dh, _ = ragged_rows(lengths, rng.standard_normal((T, B, H)).astype(np.float32))
    dT = np.zeros((B, H), np.float32)

    def compute():
        h, hT, cT, c = K.lstm_forward(**dict(p, x=x), batch_sizes=bs)
        return [h.copy(), hT, cT] + [g.copy() for g in K.lstm_backward(dh, dT, dT, c)
                                     if g is not None]
    assert_the_same_on_1_2_and_3_threads(path, compute)


def test_bad_batch_sizes_raise_clear_errors():
    rng = np.random.default_rng(0)
    p = lstm_params(rng, 2, 2, 3, 4, False)
    x = np.ascontiguousarray(p["x"].reshape(4, 3))
    for bs in ([2, 3], [2, 1], [1, 3], [3, 1], [2, 2, 0], [[2, 2]]):
        with pytest.raises(ValueError, match="batch_sizes must fall from B = 2"):
            K.lstm_forward(**dict(p, x=x), batch_sizes=bs)
    with pytest.raises(ValueError, match="dh"):
        _, _, _, c = K.lstm_forward(**dict(p, x=x), batch_sizes=[2, 2])
        K.lstm_backward(np.zeros((2, 2, 4), np.float32), p["h0"], p["c0"], c)


def adam_buffers(rng, n):
    """params, grads, m, v [n] as training holds them (v >= 0), gradients over many scales."""
    return [rng.standard_normal(n).astype(np.float32),
            (rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 2, n)).astype(np.float32),
            (rng.standard_normal(n) * 0.1).astype(np.float32),
            np.abs(rng.standard_normal(n) * 1e-3).astype(np.float32)]


@pytest.mark.parametrize("n", [1, 15, 17, 4095, 4097, 70001])
def test_adam_step_is_the_reference_bit_for_bit(n, backend):
    """Every operation rounded in float32, none fused: the reference's bits on every path, for
    any length (vectors and their tails) and any thread split."""
    rng = np.random.default_rng(n)
    want = adam_buffers(rng, n)
    start = [a.copy() for a in want]
    ref.adam_step(*want, 0.9, 0.999, 7e-4, 3e-10)
    for nt in (1, 2, 3):
        got = [a.copy() for a in start]
        old = K.get_num_threads()
        try:
            K.set_num_threads(nt)
            K.adam_step(*got, 0.9, 0.999, 7e-4, 3e-10)
        finally:
            K.set_num_threads(old)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.view(np.int32), w.view(np.int32))
    np.testing.assert_array_equal(got[1], start[1])          # the gradient is only read


def test_adam_step_by_hand():
    """The first step from m = v = 0 with Adam's bias corrections folded into step and eps:
    m = 0.1 g, v = 0.001 g^2, so p moves by step * 0.1 g / (sqrt(0.001) |g| + eps)."""
    p = np.array([1.0, -1.0, 0.0], np.float32)
    g = np.array([2.0, -0.5, 0.0], np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    K.adam_step(p, g, m, v, 0.9, 0.999, 0.01, 1e-8)
    np.testing.assert_allclose(m, [0.2, -0.05, 0.0], rtol=1e-6)
    np.testing.assert_allclose(v, [0.004, 0.00025, 0.0], rtol=1e-6)
    move = 0.01 * 0.1 / np.sqrt(0.001)          # the same for every g != 0: Adam's sign step
    np.testing.assert_allclose(p, [1.0 - move, -1.0 + move, 0.0], rtol=1e-5)


def test_adam_step_refuses_bad_buffers():
    ok = [np.zeros(8, np.float32) for _ in range(4)]
    for i, name in enumerate(("params", "grads", "m", "v")):
        for bad in (np.zeros(8, np.float64), np.zeros(16, np.float32)[::2],
                    np.zeros((2, 4), np.float32), [0.0] * 8) + ((np.zeros(7, np.float32),) if i else ()):
            args = list(ok)
            args[i] = bad
            with pytest.raises(ValueError, match=f"{name} must be a contiguous 1-D float32"):
                K.adam_step(*args, 0.9, 0.999, 1e-3, 1e-8)
    frozen = np.zeros(8, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="m must be writeable"):
        K.adam_step(ok[0], ok[1], frozen, ok[3], 0.9, 0.999, 1e-3, 1e-8)


@pytest.mark.parametrize("n", [0, 1, 9, 65535, 65537, 200003])
def test_sgd_step_and_sum_squares_are_the_reference_bit_for_bit(n, backend):
    """The norm's sums in a fixed order (32 double lanes per block of 65,536, the blocks in
    order) and SGD's rounded product then difference: the reference's bits on every path and
    thread split."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 3, n)).astype(np.float32)
    p0 = rng.standard_normal(n).astype(np.float32)
    want_p = p0.copy()
    ref.sgd_step(want_p, x, 0.37)
    want = ref.sum_squares(x)
    old = K.get_num_threads()
    try:
        for nt in (1, 2, 3):
            K.set_num_threads(nt)
            assert K.sum_squares(x) == want
            p = p0.copy()
            K.sgd_step(p, x, 0.37)
            np.testing.assert_array_equal(p.view(np.int32), want_p.view(np.int32))
    finally:
        K.set_num_threads(old)


def test_sgd_step_and_sum_squares_by_hand():
    x = np.array([3.0, 4.0, 1.0, 2.0, 2.0] + [0.0] * 27 + [10.0, 1.0], np.float32)  # 33rd: lane 0
    assert K.sum_squares(x) == 9 + 16 + 1 + 4 + 4 + 100 + 1
    assert K.sum_squares(np.zeros(0, np.float32)) == 0.0
    big = np.full(3 * 65536 + 5, 0.5, np.float32)          # three whole blocks and a tail
    assert K.sum_squares(big) == 0.25 * big.size
    p = np.array([1.0, -2.0, 0.5], np.float32)
    K.sgd_step(p, np.array([0.5, 1.0, -4.0], np.float32), 0.5)
    np.testing.assert_array_equal(p, [0.75, -2.5, 2.5])
    with pytest.raises(ValueError, match="grads must be a contiguous 1-D float32 array of the "
                                         "length of params"):
        K.sgd_step(p, np.zeros(4, np.float32), 0.1)
    with pytest.raises(ValueError, match="x must be a contiguous 1-D float32"):
        K.sum_squares(np.zeros(4))
