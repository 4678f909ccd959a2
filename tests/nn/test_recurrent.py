"""nn/params.py and nn/recurrent.py: the flat buffer's views, and the recurrent stack's
forward, backward (every weight, the input and the initial state, by central finite
differences in float64 through the numpy reference) and single steps."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.nn import reference as ref
from rnnkit.nn.backend import kernels
from rnnkit.nn.params import ALIGN, ParamLayout, scoped
from rnnkit.nn.recurrent import RecurrentStack, stack_shapes
from fd import numgrad

CELLS = ["lstm", "lstm-peephole", "lstm-nofg", "rnn"]


def test_layout_aligns_views_and_aliases():
    lay = ParamLayout([("a.weight", (3, 5)), ("a.bias", (3,)), ("b", (2,))],
                      aliases={"c": "a.weight"})
    assert lay.offsets == {"a.weight": (0, (3, 5)), "a.bias": (ALIGN, (3,)), "b": (2 * ALIGN, (2,))}
    assert lay.size == 3 * ALIGN and lay.num_parameters == 20
    flat = np.zeros(lay.size, np.float32)
    v = lay.views(flat)
    assert v["c"] is v["a.weight"] and np.shares_memory(v["b"], flat)
    v["a.bias"][:] = 1
    assert np.flatnonzero(flat).tolist() == [16, 17, 18]
    assert lay.padding_mask().sum() == lay.size - 20
    assert list(scoped(v, "a.")) == ["weight", "bias"]
    with pytest.raises(ValueError, match="listed twice"):
        ParamLayout([("x", (1,)), ("x", (2,))])
    with pytest.raises(ValueError, match="needs"):
        lay.views(np.zeros(5, np.float32))


def make_stack(cell, E=3, H=4, L=2, dtype=np.float64, backend=ref, seed=0, suffix=""):
    lay = ParamLayout(stack_shapes(cell, E, H, L, prefix="enc.rnn.", suffix=suffix))
    rng = np.random.default_rng(seed)
    flat = (rng.uniform(-0.6, 0.6, lay.size)).astype(dtype)
    grad = np.zeros_like(flat)
    st = RecurrentStack(cell, E, H, L, backend, lay.views(flat), lay.views(grad),
                        prefix="enc.rnn.", suffix=suffix)
    return st, flat, grad, lay


def test_names_follow_pytorch_with_prefix_and_suffix():
    names = [n for n, _ in stack_shapes("lstm-peephole", 3, 4, 2, "encoder.rnn.", "_reverse")]
    assert names[:5] == ["encoder.rnn.weight_ih_l0_reverse", "encoder.rnn.weight_hh_l0_reverse",
                         "encoder.rnn.bias_ih_l0_reverse", "encoder.rnn.bias_hh_l0_reverse",
                         "encoder.rnn.weight_peep_l0_reverse"]
    assert dict(stack_shapes("rnn", 3, 4, 2))["rnn.weight_ih_l1"] == (4, 4)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_matches_finite_differences_including_initial_state(cell):
    """L = sum(h_top * A) + sum(hT * Bh) + sum(cT * Bc): every weight, x, h0 and c0."""
    T, B, E, H, L = 3, 2, 3, 4, 2
    st, flat, grad, _ = make_stack(cell, E, H, L)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, E))
    h0 = rng.standard_normal((L, B, H)) * 0.5
    c0 = rng.standard_normal((L, B, H)) * 0.5 if st.lstm else None
    A, Bh = rng.standard_normal((T, B, H)), rng.standard_normal((L, B, H))
    Bc = rng.standard_normal((L, B, H)) if st.lstm else None
    masks = [rng.integers(0, 2, (T, B, E if k == 0 else H)) * 2.0 for k in range(L)]

    def loss():
        top, hT, cT = st.forward(x, h0, c0, masks=masks)
        return (top * A).sum() + (hT * Bh).sum() + (0 if cT is None else (cT * Bc).sum())

    loss()
    dx, dh0, dc0 = st.backward(A, Bh, Bc, masks=masks)

    def numeric(arr):
        return numgrad(loss, arr)

    np.testing.assert_allclose(dx, numeric(x), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dh0, numeric(h0), rtol=1e-5, atol=1e-8)
    if st.lstm:
        np.testing.assert_allclose(dc0, numeric(c0), rtol=1e-5, atol=1e-8)
    else:
        assert dc0 is None
    np.testing.assert_allclose(grad, numeric(flat), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("cell", CELLS)
def test_steps_equal_one_window_with_the_compiled_kernels(cell):
    T, B, E, H, L = 5, 3, 4, 6, 2
    st, *_ = make_stack(cell, E, H, L, dtype=np.float32, backend=kernels(), seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, E)).astype(np.float32)
    h0, c0 = st.zero_state(B)
    h0 += 0.1
    top, hT, cT = st.forward(x, h0, c0)
    assert h0.max() == pytest.approx(0.1)      # the initial state is left unchanged
    h, c = h0.copy(), None if c0 is None else c0.copy()
    work = np.empty((B, st.G), np.float32)
    for t in range(T):
        out = st.step(np.ascontiguousarray(x[t]), h, c, work)
        np.testing.assert_allclose(out, top[t], atol=2e-6)
    np.testing.assert_allclose(h, hT, atol=2e-6)
    if c is not None:
        np.testing.assert_allclose(c, cT, atol=2e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_token_rows_fill_as_a_run_feeds_tokens_and_change_no_bit(cell):
    """A run's token table gains a row per token the first time it is fed (past its first
    64 rows it grows), each emb[v] W_ih^T + b_ih + b_hh; steps reading it give the bits of
    steps given the embeddings. Below the packed GEMM's streams, or without packs: none."""
    K = kernels()
    B, E, H, V = 24, 5, 8, 300
    st, *_ = make_stack(cell, E, H, 2, dtype=np.float32, backend=K, seed=4)
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((V, E)).astype(np.float32)
    assert st.token_rows(emb, np.arange(B), None) is None
    assert st.token_rows(emb, np.arange(3), {}) is None
    if K.gemm_backend() != "packed":
        return
    packs, fed = {}, set()
    h = [x + 0.1 for x in st.zero_state(B) if x is not None]
    h2 = [x.copy() for x in h]
    work = np.empty((B, st.G), np.float32)
    for step in range(6):
        ids = rng.integers(0, V if step else 10, B)   # a few tokens first, then many
        fed |= set(ids.tolist())
        table, rows = st.token_rows(emb, ids, packs)
        t = packs[(id(st), "table")]
        assert t.n == len(fed) == len(table) and sorted(np.flatnonzero(t.slot >= 0)) == sorted(fed)
        np.testing.assert_array_equal(table[rows], t.rows[t.slot[ids]])
        w_ih, _, b_ih, b_hh = st._w[0]
        np.testing.assert_allclose(table[rows], emb[ids] @ w_ih.T + b_ih + b_hh, atol=1e-5)
        st.step(rows, *(h if len(h) == 2 else (h[0], None)), work, packs, table)
        st.step(np.ascontiguousarray(emb[ids]), *(h2 if len(h2) == 2 else (h2[0], None)), work,
                {})
        for a, b in zip(h, h2):
            np.testing.assert_array_equal(a, b)
    assert t.n > 64   # grown past its first block
    # 30 tokens: fed lazily in another order until all are in (8 and 24 streams), then, once
    # 40 streams outnumber them, computed whole in token order; every step the same bits
    emb, packs = emb[:30], {}
    for B2, ids in [(8, np.arange(8)[::-1] + 20), (24, (np.arange(24) * 7) % 30),
                    (24, np.arange(24) % 30), (40, np.arange(40) % 30), (40, np.arange(40) % 7)]:
        table, rows = st.token_rows(emb, ids, packs)
        w_ih, _, b_ih, b_hh = st._w[0]
        np.testing.assert_allclose(table[rows], emb[ids] @ w_ih.T + b_ih + b_hh, atol=1e-5)
        h1 = [x[:, :B2].copy() + 0.2 for x in st.zero_state(B2) if x is not None]
        h2 = [x.copy() for x in h1]
        w = np.empty((B2, st.G), np.float32)
        st.step(rows, *(h1 if len(h1) == 2 else (h1[0], None)), w, packs, table)
        st.step(np.ascontiguousarray(emb[ids]), *(h2 if len(h2) == 2 else (h2[0], None)), w, {})
        for a, b in zip(h1, h2):
            np.testing.assert_array_equal(a, b)
    assert packs[(id(st), "table")].whole
    # a table that would pass its size limit stops growing: those steps look their embeddings
    # up (token_rows None), the tokens it holds are still read from it
    import rnnkit.nn.recurrent as rec
    emb, packs, old = rng.standard_normal((100, E)).astype(np.float32), {}, rec.TOKEN_TABLE_BYTES
    try:
        rec.TOKEN_TABLE_BYTES = 40 * st.G * 4                           # 40 rows
        assert len(st.token_rows(emb, np.arange(24), packs)[0]) == 24
        assert len(st.token_rows(emb, np.arange(24) + 10, packs)[0]) == 34
        assert st.token_rows(emb, np.arange(24) + 20, packs) is None     # 44 rows
        table, rows = st.token_rows(emb, np.arange(24) + 5, packs)
        assert len(table) == 34 and (rows == np.arange(24) + 5).all()
    finally:
        rec.TOKEN_TABLE_BYTES = old


@pytest.mark.parametrize("backend,dtype,tol", [(ref, np.float64, 1e-12),
                                               (kernels(), np.float32, 2e-5)])
@pytest.mark.parametrize("cell", CELLS)
def test_step_forward_backward_accumulate_to_the_window_gradients(cell, backend, dtype, tol):
    """T one-step passes (step_forward, then step_backward in reverse, the state's gradient
    carried from step to step) = one window's forward and backward: outputs, dx, dh0, dc0 and
    every weight gradient (accumulated), with dropout masks."""
    T, B, E, H, L = 4, 3, 3, 5, 2
    st, flat, grad, _ = make_stack(cell, E, H, L, dtype=dtype, backend=backend, seed=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, E)).astype(dtype)
    h0 = (rng.standard_normal((L, B, H)) * 0.5).astype(dtype)
    c0 = (rng.standard_normal((L, B, H)) * 0.5).astype(dtype) if st.lstm else None
    A = rng.standard_normal((T, B, H)).astype(dtype)
    masks = [(rng.integers(0, 2, (T, B, E if k == 0 else H)) * 2.0).astype(dtype)
             for k in range(L)]
    top, hT, cT = st.forward(x, h0, c0, masks=masks)
    dx, dh0, dc0 = st.backward(A, masks=masks)
    window = grad.copy()
    grad[...] = 1.0                       # accumulation adds to what is there
    h, c, steps = h0, c0, []
    for t in range(T):
        m = [mk[t:t + 1] for mk in masks]
        out, h, c, caches = st.step_forward(np.ascontiguousarray(x[t]), h, c, masks=m)
        np.testing.assert_allclose(out, top[t], atol=tol)
        steps.append((caches, m))
    np.testing.assert_allclose(h, hT, atol=tol)
    dh = np.zeros((L, B, H), dtype)
    dc = np.zeros((L, B, H), dtype) if st.lstm else None
    for t in reversed(range(T)):
        caches, m = steps[t]
        dxt, dh, dc = st.step_backward(np.ascontiguousarray(A[t]), dh, dc, caches, masks=m)
        np.testing.assert_allclose(dxt, dx[t], atol=tol)
    np.testing.assert_allclose(dh, dh0, atol=tol)
    if st.lstm:
        np.testing.assert_allclose(dc, dc0, atol=tol)
    np.testing.assert_allclose(grad - 1.0, window, atol=10 * tol)


def test_reverse_direction_has_its_own_tensors():
    fwd, flat_f, *_ = make_stack("lstm", seed=4)
    rev, flat_r, *_ = make_stack("lstm", seed=4, suffix="_reverse")
    np.testing.assert_array_equal(flat_f, flat_r)  # same numbers, other names: same results
    x = np.random.default_rng(5).standard_normal((2, 1, 3))
    h0, c0 = fwd.zero_state(1, np.float64)
    np.testing.assert_array_equal(fwd.forward(x, h0, c0)[0], rev.forward(x, h0, c0)[0])


def test_label_smoothing_gradient_matches_finite_differences():
    from rnnkit.nn.output import FullSoftmax
    rng = np.random.default_rng(9)
    N, H, V, eps = 5, 3, 7, 0.2
    lay = ParamLayout([("out.weight", (V, H)), ("out.bias", (V,))])
    flat = rng.standard_normal(lay.size)
    grad = np.zeros_like(flat)
    h = rng.standard_normal((N, H))
    t = rng.integers(0, V, N)
    out = FullSoftmax(V, H, ref, lay.views(flat), lay.views(grad), prefix="out.")

    def smoothed():
        logp = ref.log_softmax(h, out.weight, out.bias)
        return ((1 - eps) * -logp[np.arange(N), t] + eps * -logp.mean(axis=1)).sum()

    ce = out.loss_forward(h, t)
    assert ce == pytest.approx(-ref.log_softmax(h, out.weight, out.bias)[np.arange(N), t].sum())
    dh, _ = out.loss_backward(0.5, smoothing=eps)
    num_flat = np.zeros_like(flat)
    for i in range(len(flat)):
        old = flat[i]
        flat[i] = old + 1e-6
        fp = smoothed()
        flat[i] = old - 1e-6
        fm = smoothed()
        flat[i] = old
        num_flat[i] = 0.5 * (fp - fm) / 2e-6
    np.testing.assert_allclose(grad, num_flat, rtol=1e-6, atol=1e-9)
    num_h = np.zeros_like(h)
    for i in np.ndindex(h.shape):
        old = h[i]
        h[i] = old + 1e-6
        fp = smoothed()
        h[i] = old - 1e-6
        fm = smoothed()
        h[i] = old
        num_h[i] = 0.5 * (fp - fm) / 2e-6
    np.testing.assert_allclose(dh, num_h, rtol=1e-6, atol=1e-9)
