"""The adaptive softmax (nn/output.py AdaptiveSoftmax): its numpy specification
(reference.adaptive_log_softmax) by hand and against the layer, central finite differences of
every parameter in float64, the compiled kernels against the reference backend in float32, and
PyTorch's AdaptiveLogSoftmaxWithLoss (weights both ways, log-probabilities and gradients) when
torch is installed."""
import math

import numpy as np
import pytest

from rnnkit.nn import reference as ref
from rnnkit.nn.backend import kernels
from rnnkit.nn.output import AdaptiveSoftmax, adaptive_softmax_shapes, check_cutoffs
from rnnkit.nn.params import ParamLayout
from fd import numgrad
from output_layers import assert_backends_agree

V, H, CUTOFFS = 11, 8, [4, 7]   # head: ids 0-3 + 2 cluster tokens; clusters [4, 7), [7, 11)


def layer(backend, dtype, head_bias, rng, V=V, H=H, cutoffs=CUTOFFS, div=2.0, scale=0.5):
    """An AdaptiveSoftmax over random weights, with its flat parameters and gradient."""
    layout = ParamLayout(adaptive_softmax_shapes(V, H, cutoffs, div, head_bias))
    flat = (rng.standard_normal(layout.size) * scale).astype(dtype)
    flat[layout.padding_mask()] = 0
    grad = np.zeros_like(flat)
    p, g = layout.views(flat), layout.views(grad)
    out = AdaptiveSoftmax(V, H, cutoffs, backend, p, g, div_value=div, head_bias=head_bias)
    return out, p, g


def spec(out, p, h):
    """reference.adaptive_log_softmax over the layer's tensors: [N, V]."""
    tail = [(p[f"decoder.tail.{i}.0.weight"], p[f"decoder.tail.{i}.1.weight"])
            for i in range(out.K)]
    return ref.adaptive_log_softmax(h, p["decoder.head.weight"], p.get("decoder.head.bias"),
                                    tail, out.cutoffs)


def test_shapes_follow_pytorch_names():
    shapes = dict(adaptive_softmax_shapes(33278, 650, [2000, 10000], 4.0, head_bias=True))
    assert shapes == {"decoder.head.weight": (2002, 650), "decoder.head.bias": (2002,),
                      "decoder.tail.0.0.weight": (162, 650),
                      "decoder.tail.0.1.weight": (8000, 162),
                      "decoder.tail.1.0.weight": (40, 650),
                      "decoder.tail.1.1.weight": (23278, 40)}


@pytest.mark.parametrize("cutoffs,msg", [([], "at least one cutoff"), ([5, 5], "increasing"),
                                         ([0], "increasing"), ([4, 11], "increasing"),
                                         ([1, 2, 3, 4], "projection of size 0")])
def test_bad_cutoffs_say_why(cutoffs, msg):
    with pytest.raises(ValueError, match=msg):
        check_cutoffs(11, 8, cutoffs, 2.0)


def test_reference_by_hand():
    """Zero weights: the head gives 1/3 to each of w0, w1 and the cluster token, the cluster
    1/2 to each of w2, w3: p = 1/3, 1/3, 1/6, 1/6."""
    h = np.ones((1, 2))
    lp = ref.adaptive_log_softmax(h, np.zeros((3, 2)), None, [(np.zeros((1, 2)),
                                                                np.zeros((2, 1)))], [2])
    np.testing.assert_allclose(np.exp(lp), [[1 / 3, 1 / 3, 1 / 6, 1 / 6]], rtol=1e-12)


@pytest.mark.parametrize("head_bias", [False, True])
def test_layer_equals_reference_and_sums_to_one(head_bias):
    rng = np.random.default_rng(0)
    out, p, _ = layer(ref, np.float64, head_bias, rng)
    h = rng.standard_normal((6, H))
    t = np.array([0, 3, 4, 6, 7, 10])
    want = spec(out, p, h)                                                # [N, V]
    np.testing.assert_allclose(np.exp(want).sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out.log_probs(h), want, rtol=1e-12)
    np.testing.assert_allclose(out.target_log_probs(h, t), want[np.arange(6), t], rtol=1e-12)
    assert out.loss_forward(h, t) == pytest.approx(-want[np.arange(6), t].sum(), rel=1e-12)


@pytest.mark.parametrize("head_bias,targets", [
    (False, [0, 3, 4, 6, 7, 10, 5]),
    (True, [1, 8, 9, 2, 10, 7, 0]),      # cluster 0 holds no target: its gradients are zero
])
def test_every_gradient_matches_finite_differences(head_bias, targets):
    rng = np.random.default_rng(1)
    out, p, g = layer(ref, np.float64, head_bias, rng)
    h = rng.standard_normal((len(targets), H))
    t = np.array(targets)
    scale = 0.7

    def loss():   # the specification, not the layer: an independent forward
        return -scale * spec(out, p, h)[np.arange(len(t)), t].sum()

    out.loss_forward(h, t)
    dh, tied = out.loss_backward(scale)
    assert tied is None
    np.testing.assert_allclose(dh, numgrad(loss, h), atol=1e-7)
    for name, view in p.items():
        np.testing.assert_allclose(g[name], numgrad(loss, view), atol=1e-7, err_msg=name)
    if head_bias:
        assert np.all(g["decoder.tail.0.1.weight"] == 0) and np.all(g["decoder.tail.0.0.weight"] == 0)


@pytest.mark.parametrize("head_bias", [False, True])
def test_compiled_kernels_equal_the_reference_backend(head_bias):
    K = kernels()
    rng = np.random.default_rng(2)
    V, H, cutoffs = 300, 32, [50, 120]
    a, _, ga = layer(ref, np.float32, head_bias, rng, V, H, cutoffs, 4.0)
    b, _, gb = layer(K, np.float32, head_bias, np.random.default_rng(2), V, H, cutoffs, 4.0)
    h = rng.standard_normal((40, H)).astype(np.float32)
    t = rng.integers(0, V, 40)
    assert_backends_agree(a, ga, b, gb, h, t)
    outbuf = np.empty((5, V), np.float32)
    assert b.log_probs(h[:5], out=outbuf) is outbuf


def test_targets_out_of_range_are_refused():
    out, _, _ = layer(ref, np.float64, False, np.random.default_rng(3))
    with pytest.raises(ValueError, match=r"targets must be in \[0, 11\)"):
        out.loss_forward(np.zeros((1, H)), np.array([11]))


def _torch():
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed (pip install torch runs this comparison)")
    return torch


@pytest.mark.parametrize("head_bias", [False, True])
def test_pytorch_adaptive_softmax_weights_load_both_ways(head_bias):
    """PyTorch's AdaptiveLogSoftmaxWithLoss with our names (minus `decoder.`): its weights give
    our layer the same log-probabilities (1e-5) and gradients (1e-4), and ours load into it."""
    torch = _torch()
    V, H, cutoffs = 500, 64, [40, 200]
    torch.manual_seed(0)
    tm = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs, div_value=4.0, head_bias=head_bias)
    ours, p, g = layer(kernels(), np.float32, head_bias, np.random.default_rng(4), V, H, cutoffs,
                       4.0)
    assert {f"decoder.{k}" for k in tm.state_dict()} == set(p)
    # PyTorch -> rnnkit
    for k, v in tm.state_dict().items():
        p[f"decoder.{k}"][...] = v.numpy()
    rng = np.random.default_rng(5)
    h = rng.standard_normal((30, H)).astype(np.float32)
    t = rng.integers(0, V, 30)
    t[:3] = [0, 100, 400]   # one target in the head and in each cluster at least
    th = torch.tensor(h, requires_grad=True)
    res = tm(th, torch.tensor(t))
    (res.loss * len(t)).backward()   # PyTorch's loss is the mean, ours the sum
    np.testing.assert_allclose(ours.log_probs(h), tm.log_prob(th).detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(ours.target_log_probs(h, t), res.output.detach().numpy(),
                               atol=1e-5)
    assert ours.loss_forward(h, t) == pytest.approx(float(res.loss.detach()) * len(t), rel=1e-5)
    dh, _ = ours.loss_backward(1.0)
    np.testing.assert_allclose(dh, th.grad.numpy(), atol=1e-4)
    for k, param in tm.named_parameters():
        np.testing.assert_allclose(g[f"decoder.{k}"], param.grad.numpy(), atol=1e-4, err_msg=k)
    # rnnkit -> PyTorch
    ours2, p2, _ = layer(kernels(), np.float32, head_bias, np.random.default_rng(6), V, H,
                         cutoffs, 4.0)
    tm.load_state_dict({k[len("decoder."):]: torch.tensor(v) for k, v in p2.items()},
                       strict=True)
    np.testing.assert_allclose(ours2.log_probs(h), tm.log_prob(torch.tensor(h)).detach().numpy(),
                               atol=1e-5)
    assert math.isfinite(float(res.loss.detach()))
