"""Decoding with packed weights: the same bits as without (tests/models)."""
import numpy as np


def assert_packs_change_nothing(model, a, b, vocab_size: int, rng, steps: int = 3) -> None:
    """Steps two equal states of `model` with the same random tokens, `a` with its packs and
    `b` without (packing at every step): every distribution must be the same bits."""
    b.packs = None
    for _ in range(steps):
        np.testing.assert_array_equal(model.log_probs(a), model.log_probs(b))
        ids = rng.integers(3, vocab_size, a.batch)
        model.advance(a, ids), model.advance(b, ids)
