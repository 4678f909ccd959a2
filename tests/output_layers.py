"""Checks shared by the output-layer tests (adaptive softmax, class softmax)."""
import numpy as np
import pytest


def assert_backends_agree(a, ga, b, gb, h, t):
    """Two output layers with the same weights (a on the reference backend, b on the compiled
    kernels; ga, gb their gradient views by name) give the same loss, gradients and
    log-probabilities for rows h [N, H] and targets t [N] -- twice, since the kernels reuse
    their caches."""
    for _ in range(2):
        assert b.loss_forward(h, t) == pytest.approx(a.loss_forward(h, t), rel=1e-5)
        dha, _ = a.loss_backward(0.5)
        dhb, _ = b.loss_backward(0.5)
        np.testing.assert_allclose(dhb, dha, atol=1e-5)
        for name in ga:
            np.testing.assert_allclose(gb[name], ga[name], atol=1e-5, err_msg=name)
    np.testing.assert_allclose(b.log_probs(h[:5]), a.log_probs(h[:5]), atol=1e-5)
    np.testing.assert_allclose(b.target_log_probs(h, t), a.target_log_probs(h, t), atol=1e-5)
