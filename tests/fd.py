"""Finite differences over a model's flat parameter buffer, for the whole-model gradient tests."""
import numpy as np


def numeric_gradient(flat: np.ndarray, loss, scale: float = 1.0, eps: float = 1e-6) -> np.ndarray:
    """scale * d loss / d flat[i] for every i by central differences: flat is changed in place
    and restored, loss() recomputes the (float64) loss from it."""
    numeric = np.zeros_like(flat)
    for i in range(len(flat)):
        old = flat[i]
        flat[i] = old + eps
        fp = loss()
        flat[i] = old - eps
        fm = loss()
        flat[i] = old
        numeric[i] = scale * (fp - fm) / (2 * eps)
    return numeric
