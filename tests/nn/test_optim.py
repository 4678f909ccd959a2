"""Optimizers and clipping over flat buffers: hand-worked steps, Adam's Algorithm 1 written out,
PyTorch's Adam and SGD when torch is installed, state round trips."""
import math

import numpy as np
import pytest

from rnnkit.errors import RnnkitError
from rnnkit.nn.optim import SGD, Adam, SparseRows, clip_grad_norm, grad_norm, make_optimizer


def test_sgd_step_by_hand():
    p = np.array([1.0, -2.0, 0.5], np.float32)
    g = np.array([0.5, 1.0, -4.0], np.float32)
    SGD(3).step(p, g, lr=0.5)
    np.testing.assert_array_equal(p, [0.75, -2.5, 2.5])


def test_clip_grad_norm_by_hand():
    g = np.array([3.0, 4.0], np.float32)            # norm 5
    assert clip_grad_norm(g, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(g, [3.0, 4.0])     # under the limit: untouched
    assert clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-5)
    assert grad_norm(g) == pytest.approx(1.0, rel=1e-5)
    g = np.array([3.0, 4.0], np.float32)
    assert clip_grad_norm(g, None) == pytest.approx(5.0) and g[0] == 3.0  # off
    bad = np.array([np.nan, 1.0], np.float32)
    assert math.isnan(clip_grad_norm(bad, 1.0))     # reported, left for the caller to stop
    inf = np.array([np.inf, 1.0], np.float32)
    assert math.isinf(clip_grad_norm(inf, 1.0)) and inf[1] == 1.0


def test_sparse_rows_by_hand():
    """A [3, 2] block at offset 1 of a [9] buffer whose rows 0 and 2 may be non-zero: norm,
    clipping and SGD read and write those rows and the dense rest, never row 1."""
    g = np.array([1, 2, 2, 9, 9, 0, 4, 0, 0], np.float32)  # row 1 (9, 9) is not named
    rows = (SparseRows(start=1, count=3, width=2, rows=np.array([0, 2])),)
    assert rows[0].end == 7
    assert grad_norm(g, rows) == pytest.approx(5.0)         # sqrt(1 + 4 + 4 + 16)
    assert clip_grad_norm(g, 2.5, rows) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.5, 1, 1, 9, 9, 0, 2, 0, 0], rtol=1e-6)
    p = np.zeros(9, np.float32)
    SGD(9).step(p, g, 2.0, rows)
    np.testing.assert_allclose(p, [-1, -2, -2, 0, 0, 0, -4, 0, 0], rtol=1e-6)


def test_sparse_rows_agree_with_the_dense_passes():
    rng = np.random.default_rng(3)
    V, E, P = 50, 7, 700
    g = rng.standard_normal(P).astype(np.float32)
    rows = (SparseRows(100, V, E, np.array([2, 3, 17, 49])),
            SparseRows(460, 20, 10, np.array([0, 19])))
    for s in rows:    # zero outside the named rows, as a model keeps it
        keep = s.block(g)[s.rows].copy()
        s.block(g)[...] = 0
        s.block(g)[s.rows] = keep
    assert grad_norm(g, rows) == pytest.approx(grad_norm(g), rel=1e-6)
    gd, gs = g.copy(), g.copy()
    clip_grad_norm(gd, 1.0)
    clip_grad_norm(gs, 1.0, rows[::-1])                     # any order of the blocks
    np.testing.assert_allclose(gs, gd, rtol=1e-6)
    pd, ps = np.ones(P, np.float32), np.ones(P, np.float32)
    SGD(P).step(pd, gd, 0.3)
    SGD(P).step(ps, gs, 0.3, rows)
    np.testing.assert_allclose(ps, pd, rtol=1e-6)
    pa, pb = np.ones(P, np.float32), np.ones(P, np.float32)
    Adam(P).step(pa, gd, 0.1)
    Adam(P).step(pb, gd, 0.1, rows)                          # Adam stays dense
    np.testing.assert_array_equal(pa, pb)


def adam_algorithm_1(p, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba (2015), Algorithm 1, literally, in float64."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        vhat = v / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


def test_adam_is_algorithm_1():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) * 10 ** rng.uniform(-6, 1) for _ in range(7)]
    want = adam_algorithm_1(p0.copy(), grads, lr=0.01)
    p = p0.copy()
    opt = Adam(50, np.float64)
    for g in grads:
        opt.step(p, g.copy(), 0.01)
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-14)
    assert opt.t == 7


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(20).astype(np.float32) for _ in range(6)]
    p1 = np.ones(20, np.float32)
    a = Adam(20)
    for g in grads:
        a.step(p1, g, 1e-2)
    p2 = np.ones(20, np.float32)
    b = Adam(20)
    for g in grads[:3]:
        b.step(p2, g, 1e-2)
    c = Adam(20)
    c.load_state({k: v.copy() for k, v in b.state_tensors().items()}, b.state_meta())
    for g in grads[3:]:
        c.step(p2, g, 1e-2)
    np.testing.assert_array_equal(p1, p2)


def test_make_optimizer():
    assert isinstance(make_optimizer("sgd", 3), SGD)
    assert isinstance(make_optimizer("adam", 3), Adam)
    with pytest.raises(RnnkitError, match="unknown --optimizer 'rmsprop'"):
        make_optimizer("rmsprop", 3)


def test_against_pytorch_sgd_clipping_and_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(30).astype(np.float32)
    grads = [rng.standard_normal(30).astype(np.float32) * 3 for _ in range(5)]
    for name in ("sgd", "adam"):
        tp = torch.nn.Parameter(torch.tensor(p0.copy()))
        topt = (torch.optim.SGD([tp], lr=0.3) if name == "sgd"
                else torch.optim.Adam([tp], lr=0.03))
        p = p0.copy()
        opt = make_optimizer(name, 30)
        for g in grads:
            tp.grad = torch.tensor(g.copy())
            torch.nn.utils.clip_grad_norm_([tp], 2.0)
            topt.step()
            gg = g.copy()
            clip_grad_norm(gg, 2.0)
            opt.step(p, gg, 0.3 if name == "sgd" else 0.03)
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_grad_norm_of_a_large_buffer_is_accurate():
    """4M float32 gradients: the norm matches float64 to 1e-6 (a single float32 dot over them
    was off by 1.1e-5, and by 2.6e-4 over the 33M of a WikiText-2 model)."""
    g = (np.random.default_rng(0).standard_normal(4_000_000) * 0.01).astype(np.float32)
    want = float(np.linalg.norm(g.astype(np.float64)))
    assert abs(grad_norm(g) - want) / want < 1e-6
