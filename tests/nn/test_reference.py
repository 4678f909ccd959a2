"""The numpy reference (the kernels' specification) against central finite differences in float64,
hand-worked values, and its own consistency (steps vs windows, probabilities summing to 1)."""
import numpy as np
import pytest

from rnnkit.nn import reference as ref
from fd import numgrad

VARIANTS = [  # (peephole, forget_gate)
    (False, True), (False, False), (True, True), (True, False)]


def lstm_params(rng, T, B, E, H, peep, dtype=np.float64, scale=0.5):
    p = dict(
        x=rng.standard_normal((T, B, E)), h0=rng.standard_normal((B, H)),
        c0=rng.standard_normal((B, H)), w_ih=rng.standard_normal((4 * H, E)) * scale,
        w_hh=rng.standard_normal((4 * H, H)) * scale, b_ih=rng.standard_normal(4 * H) * scale,
        b_hh=rng.standard_normal(4 * H) * scale)
    p["w_peep"] = rng.standard_normal((3, H)) * scale if peep else None
    return {k: (None if v is None else v.astype(dtype)) for k, v in p.items()}


LSTM_INPUTS = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_peep"]


@pytest.mark.parametrize("peep,fg", VARIANTS)
def test_lstm_gradients_match_finite_differences(peep, fg):
    rng = np.random.default_rng(1)
    T, B, E, H = 3, 2, 3, 2
    p = lstm_params(rng, T, B, E, H, peep)
    # a random linear function of every output makes every gradient path count
    rh, rhT, rcT = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), \
        rng.standard_normal((B, H))

    def loss():
        h, hT, cT, _ = ref.lstm_forward(**p, forget_gate=fg)
        return (h * rh).sum() + (hT * rhT).sum() + (cT * rcT).sum()

    _, _, _, cache = ref.lstm_forward(**p, forget_gate=fg)
    grads = ref.lstm_backward(rh, rhT, rcT, cache)
    assert len(grads) == 8
    for name, g in zip(LSTM_INPUTS, grads):
        if p[name] is None:
            assert g is None
            continue
        np.testing.assert_allclose(g, numgrad(loss, p[name]), rtol=1e-6, atol=1e-8,
                                   err_msg=name)
    if not fg:  # the forget-gate rows are unused: zero gradient
        H2 = slice(H, 2 * H)
        assert not grads[3][H2].any() and not grads[4][H2].any() and not grads[5][H2].any()
        if peep:
            assert not grads[7][1].any()


def test_rnn_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    T, B, E, H = 4, 2, 3, 3
    p = dict(x=rng.standard_normal((T, B, E)), h0=rng.standard_normal((B, H)),
             w_ih=rng.standard_normal((H, E)) * 0.5, w_hh=rng.standard_normal((H, H)) * 0.5,
             b_ih=rng.standard_normal(H) * 0.5, b_hh=rng.standard_normal(H) * 0.5)
    rh, rhT = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    def loss():
        h, hT, _ = ref.rnn_forward(**p)
        return (h * rh).sum() + (hT * rhT).sum()

    _, _, cache = ref.rnn_forward(**p)
    grads = ref.rnn_backward(rh, rhT, cache)
    for name, g in zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], grads):
        np.testing.assert_allclose(g, numgrad(loss, p[name]), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_softmax_xent_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    N, H, V = 5, 3, 7
    h, w, b = rng.standard_normal((N, H)), rng.standard_normal((V, H)), rng.standard_normal(V)
    targets = rng.integers(0, V, N).astype(np.uint32)

    def loss():
        return ref.softmax_xent_forward(h, w, b, targets)[0]

    _, cache = ref.softmax_xent_forward(h, w, b, targets)
    dh, dw, db = ref.softmax_xent_backward(0.7, cache)
    for g, x in [(dh, h), (dw, w), (db, b)]:
        np.testing.assert_allclose(g, 0.7 * numgrad(loss, x), rtol=1e-6, atol=1e-8)


def test_embedding_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    V, E, T, B = 5, 3, 3, 2
    wgt = rng.standard_normal((V, E))
    ids = np.array([[0, 4], [4, 2], [0, 0]])
    r = rng.standard_normal((T, B, E))
    dw = ref.embedding_backward(r, ids, V)
    np.testing.assert_allclose(dw, numgrad(lambda: (ref.embedding_forward(ids, wgt) * r).sum(),
                                           wgt), rtol=1e-6, atol=1e-8)
    assert not dw[[1, 3]].any()  # ids never seen get no gradient


def test_hand_worked_lstm_step():
    # H = E = B = 1, all weights 1, biases 0, x = 1, h0 = 0, c0 = 0:
    # every pre-activation is 1: i = f = o = σ(1), g = tanh(1); c = σ(1)·tanh(1), h = σ(1)·tanh(c)
    one = np.ones((4, 1))
    h, hT, cT, _ = ref.lstm_forward(np.ones((1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1)),
                                    one, one, np.zeros(4), np.zeros(4))
    s = 1 / (1 + np.exp(-1.0))
    c = s * np.tanh(1.0)
    assert cT[0, 0] == pytest.approx(c, rel=1e-14)
    assert h[0, 0, 0] == pytest.approx(s * np.tanh(c), rel=1e-14)
    # the same with peepholes all 1: i and f see c0 = 0 (unchanged), o sees c: σ(1 + c)
    h, _, cT2, _ = ref.lstm_forward(np.ones((1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1)),
                                    one, one, np.zeros(4), np.zeros(4), w_peep=np.ones((3, 1)))
    assert cT2[0, 0] == pytest.approx(c, rel=1e-14)
    assert h[0, 0, 0] == pytest.approx(np.tanh(c) / (1 + np.exp(-(1 + c))), rel=1e-14)


def test_hand_worked_softmax_xent():
    # logits [0, log 3] -> p = [1/4, 3/4]; loss for target 1 = -log(3/4)
    h = np.array([[1.0]])
    w = np.array([[0.0], [np.log(3)]])
    loss, cache = ref.softmax_xent_forward(h, w, np.zeros(2), np.array([1]))
    assert loss == pytest.approx(-np.log(0.75))
    dh, dw, db = ref.softmax_xent_backward(1.0, cache)
    np.testing.assert_allclose(db, [0.25, -0.25])
    lp = ref.log_softmax(h, w, np.zeros(2))
    np.testing.assert_allclose(np.exp(lp), [[0.25, 0.75]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_rows_sum_to_one_even_for_huge_logits(dtype):
    rng = np.random.default_rng(5)
    h = (rng.standard_normal((4, 3)) * 1e3).astype(dtype)
    lp = ref.log_softmax(h, rng.standard_normal((6, 3)).astype(dtype), np.zeros(6, dtype))
    assert lp.dtype == dtype and np.isfinite(lp).all()
    np.testing.assert_allclose(np.exp(lp).sum(1), 1, rtol=1e-5)


@pytest.mark.parametrize("peep,fg", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_steps_and_windows_agree(peep, fg, dtype):
    rng = np.random.default_rng(6)
    T, B, E, H = 6, 3, 4, 5
    p = lstm_params(rng, T, B, E, H, peep, dtype)
    h, hT, cT, _ = ref.lstm_forward(**p, forget_gate=fg)
    assert h.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    # T single steps carrying state = one T-step call
    hs, cs = p["h0"].copy(), p["c0"].copy()
    w = {k: p[k] for k in ["w_ih", "w_hh", "b_ih", "b_hh", "w_peep"]}
    for t in range(T):
        ref.lstm_step(p["x"][t], hs, cs, **w, forget_gate=fg)
        np.testing.assert_allclose(hs, h[t], **tol)
    np.testing.assert_allclose(cs, cT, **tol)
    # two windows of T/2 = one window of T, forward and backward
    a = dict(p, x=p["x"][:3])
    ha, hTa, cTa, ca = ref.lstm_forward(**a, forget_gate=fg)
    b = dict(p, x=p["x"][3:], h0=hTa, c0=cTa)
    hb, hTb, cTb, cb = ref.lstm_forward(**b, forget_gate=fg)
    np.testing.assert_allclose(np.concatenate([ha, hb]), h, **tol)
    np.testing.assert_allclose(cTb, cT, **tol)
    dh = rng.standard_normal((T, B, H)).astype(dtype)
    z = np.zeros((B, H), dtype)
    _, _, _, cache = ref.lstm_forward(**p, forget_gate=fg)
    full = ref.lstm_backward(dh, z, z, cache)
    gb = ref.lstm_backward(dh[3:], z, z, cb)
    ga = ref.lstm_backward(dh[:3], gb[1], gb[2], ca)
    np.testing.assert_allclose(np.concatenate([ga[0], gb[0]]), full[0], **tol)
    for k in range(1, 8):
        if full[k] is None:
            continue
        got = ga[k] if k in (1, 2) else ga[k] + gb[k]
        np.testing.assert_allclose(got, full[k], **tol)


def test_rnn_steps_and_windows_agree():
    rng = np.random.default_rng(7)
    T, B, E, H = 5, 2, 3, 4
    x, h0 = rng.standard_normal((T, B, E)), rng.standard_normal((B, H))
    w = dict(w_ih=rng.standard_normal((H, E)), w_hh=rng.standard_normal((H, H)) * 0.5,
             b_ih=rng.standard_normal(H), b_hh=rng.standard_normal(H))
    h, hT, _ = ref.rnn_forward(x, h0, **w)
    hs = h0.copy()
    for t in range(T):
        ref.rnn_step(x[t], hs, **w)
        np.testing.assert_allclose(hs, h[t], rtol=1e-12)
    ha, hTa, _ = ref.rnn_forward(x[:2], h0, **w)
    hb, hTb, _ = ref.rnn_forward(x[2:], hTa, **w)
    np.testing.assert_allclose(np.concatenate([ha, hb]), h, rtol=1e-12)


def test_no_nan_for_huge_preactivations():
    rng = np.random.default_rng(8)
    p = lstm_params(rng, 2, 2, 3, 2, True, scale=1e4)
    p["x"] *= 1e4
    for fg in (True, False):
        h, hT, cT, cache = ref.lstm_forward(**p, forget_gate=fg)
        assert np.isfinite(h).all() and np.isfinite(cT).all()
        grads = ref.lstm_backward(np.ones_like(h), hT * 0, cT * 0, cache)
        assert all(np.isfinite(g).all() for g in grads)


def test_ids_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"ids must be in \[0, 3\)"):
        ref.embedding_forward(np.array([[0, 3]]), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="targets must be in"):
        ref.softmax_xent_forward(np.zeros((1, 2)), np.zeros((3, 2)), np.zeros(3), np.array([-1]))
    with pytest.raises(ValueError, match="must be integers"):
        ref.embedding_backward(np.zeros((1, 1, 2)), np.array([[0.5]]), 3)


# --- sequences of different lengths in one window (batch_sizes) ---------------------------------
def ragged(lengths, x):
    """The rows of the real positions of x [T, B, E] (lengths longest first), step by step, and
    the batch sizes: the layout the layers take with batch_sizes."""
    T = max(lengths)
    bs = np.array([sum(n > t for n in lengths) for t in range(T)])
    return np.concatenate([x[t, :bs[t]] for t in range(T)]), bs


@pytest.mark.parametrize("cell", ["lstm", "peephole", "rnn"])
def test_a_ragged_window_is_each_sequence_alone(cell):
    """With batch_sizes every sequence runs its own steps only: its outputs, final state and
    input gradients are those of a window holding it alone, dhT and dcT enter at its last step,
    and the weight gradients are the sums over the sequences."""
    rng = np.random.default_rng(5)
    lengths, E, H = [5, 3, 3, 1], 3, 4
    B, T = len(lengths), max(lengths)
    p = lstm_params(rng, T, B, E, H, cell == "peephole")
    if cell == "rnn":
        p = {k: p[k][:H] if k.startswith(("w_", "b_")) else p[k] for k in ("x", "h0", "w_ih",
                                                                         "w_hh", "b_ih", "b_hh")}
    fwd, bwd = (ref.rnn_forward, ref.rnn_backward) if cell == "rnn" else \
        (ref.lstm_forward, ref.lstm_backward)
    x, bs = ragged(lengths, p["x"])
    dh_full = rng.standard_normal((T, B, H))
    dh, _ = ragged(lengths, dh_full)
    dT = rng.standard_normal((B, H))
    lstm = cell != "rnn"
    out = fwd(**dict(p, x=x), batch_sizes=bs)
    grads = bwd(dh, dT, dT, out[-1]) if lstm else bwd(dh, dT, out[-1])
    h = out[0]
    sums = None
    for b, n in enumerate(lengths):
        one = {k: (v[:n, b:b + 1] if k == "x" else v[b:b + 1] if k in ("h0", "c0") else v)
               for k, v in p.items()}
        o = fwd(**one)
        g = bwd(dh_full[:n, b:b + 1], dT[b:b + 1], dT[b:b + 1], o[-1]) if lstm else \
            bwd(dh_full[:n, b:b + 1], dT[b:b + 1], o[-1])
        rows = [int(bs[:t].sum()) + b for t in range(n)]      # its rows in the ragged layout
        np.testing.assert_allclose(h[rows], o[0][:, 0], rtol=1e-12)
        for a, w in zip(out[1:-1], o[1:-1]):                  # hT (and cT)
            np.testing.assert_allclose(a[b], w[0], rtol=1e-12)
        np.testing.assert_allclose(grads[0][rows], g[0][:, 0], rtol=1e-12, atol=1e-12)  # dx
        for a, w in zip(grads[1:3 if lstm else 2], g[1:3 if lstm else 2]):             # dh0, dc0
            np.testing.assert_allclose(a[b], w[0], rtol=1e-12, atol=1e-12)
        first = 3 if lstm else 2
        sums = [w.copy() for w in g[first:] if w is not None] if sums is None else \
            [s + w for s, w in zip(sums, [w for w in g[first:] if w is not None])]
    for a, w in zip([v for v in grads[3 if lstm else 2:] if v is not None], sums):
        np.testing.assert_allclose(a, w, rtol=1e-10, atol=1e-12)


def test_bad_batch_sizes_are_refused():
    rng = np.random.default_rng(0)
    p = lstm_params(rng, 2, 2, 3, 2, False)
    x = p["x"].reshape(4, 3)
    for bs in ([2, 3], [2, 1], [1, 3], [3, 1], [2, 2, 0], [2, 1, 1, 0]):   # x has 4 rows
        with pytest.raises(ValueError, match="batch_sizes must fall from B = 2"):
            ref.lstm_forward(**dict(p, x=x), batch_sizes=bs)
