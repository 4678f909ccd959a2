"""Finite differences: of a scalar with respect to any array (numgrad), and over a model's flat
parameter buffer for the whole-model gradient tests (numeric_gradient)."""
import numpy as np


def numgrad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar f() w.r.t. every entry of x (changed in place
    and restored)."""
    g = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + eps
        fp = f()
        x[k] = old - eps
        fm = f()
        x[k] = old
        g[k] = (fp - fm) / (2 * eps)
    return g


def numeric_gradient(flat: np.ndarray, loss, scale: float = 1.0, eps: float = 1e-6) -> np.ndarray:
    """scale * d loss / d flat[i] for every i by central differences: flat is changed in place
    and restored, loss() recomputes the (float64) loss from it."""
    return scale * numgrad(loss, flat, eps)
