"""nn/attention.py: every mechanism's backward against central finite differences (float64),
padding that does not change anything, and the accumulating backward of step-by-step use."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.nn.attention import Attention, attention_shapes, length_mask
from rnnkit.nn.params import ParamLayout
from fd import numgrad

T, S, B, D, H, A = 3, 4, 2, 5, 3, 4
KINDS = ("dot", "general", "additive")


def _setup(kind, seed=0):
    rng = np.random.default_rng(seed)
    d = H if kind == "dot" else D
    layout = ParamLayout(attention_shapes(kind, d, H, A))
    flat = rng.normal(0, 0.5, layout.size)
    grad = np.zeros(layout.size)
    att = Attention(kind, d, H, layout.views(flat), layout.views(grad), np.float64)
    top = rng.normal(size=(T, B, H))
    enc = rng.normal(size=(S, B, d))
    mask = length_mask(np.array([S, S - 1]), S)
    w = rng.normal(size=(T, B, H))             # the loss: sum(w * h~)
    return att, flat, grad, top, enc, mask, w


def _loss(att, top, enc, mask, w):
    out, _, _ = att.forward(top, enc, att.keys(enc), mask)
    return float((w * out).sum())


@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_finite_differences(kind):
    att, flat, grad, top, enc, mask, w = _setup(kind)
    keys = att.keys(enc)
    out, alpha, saved = att.forward(top, enc, keys, mask)
    dtop, denc = att.backward(w, top, enc, keys, alpha, saved)
    for x, dx in ((flat, grad), (top, dtop), (enc, denc)):
        numeric = numgrad(lambda: _loss(att, top, enc, mask, w), x)
        assert np.abs(numeric - dx).max() < 1e-6, kind


@pytest.mark.parametrize("kind", KINDS)
def test_padding_positions_get_no_weight_and_no_gradient(kind):
    att, flat, grad, top, enc, mask, w = _setup(kind)
    out, alpha, saved = att.forward(top, enc, att.keys(enc), mask)
    assert np.all(alpha[1, :, S - 1] == 0)
    enc2 = enc.copy()
    enc2[S - 1, 1] = 1e3                        # the padding of sentence 1
    out2, _, _ = att.forward(top, enc2, att.keys(enc2), mask)
    np.testing.assert_array_equal(out, out2)
    _, denc = att.backward(w, top, enc, att.keys(enc), alpha, saved)
    assert np.all(denc[S - 1, 1] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_steps_one_at_a_time_accumulate_to_the_window_gradient(kind):
    att, flat, grad, top, enc, mask, w = _setup(kind)
    keys = att.keys(enc)
    out, alpha, saved = att.forward(top, enc, keys, mask)
    dtop, denc = att.backward(w, top, enc, keys, alpha, saved)
    whole = grad.copy()
    grad[...] = 0
    denc_sum = np.zeros_like(enc)
    for t in range(T):
        o, al, sv = att.forward(top[t:t + 1], enc, keys, mask)
        np.testing.assert_allclose(o[0], out[t], atol=1e-12)
        dt, de = att.backward(w[t:t + 1], top[t:t + 1], enc, keys, al, sv, accumulate=True)
        np.testing.assert_allclose(dt[0], dtop[t], atol=1e-12)
        denc_sum += de
    np.testing.assert_allclose(grad, whole, atol=1e-12)
    np.testing.assert_allclose(denc_sum, denc, atol=1e-12)
