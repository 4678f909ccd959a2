"""Length buckets: the batching the sentence-pair and caption tasks share.

Examples (pairs, captions) are sorted by length and cut into batches of similar lengths, so
little of a batch is padding; each epoch visits the batches in an order drawn from (seed,
stream, epoch), so a resumed run sees the same order as an uninterrupted one. Evaluation cuts
examples sorted by length the same way (any batch size gives the same summed loss).
"""
from __future__ import annotations

import numpy as np


def length_buckets(batch: int, *lengths) -> list[np.ndarray]:
    """Example indices sorted by lengths[0], ties by lengths[1] and so on (stable: equal keys
    keep their order), cut into groups of `batch` (the last may be smaller)."""
    order = np.lexsort(tuple(np.asarray(x, np.int64) for x in reversed(lengths)))
    return [order[i:i + batch] for i in range(0, len(order), batch)]


def epoch_order(seed: int, stream: int, epoch: int, num_batches: int) -> np.ndarray:
    """The order in which an epoch visits its batches (stream: a number per task kind)."""
    return np.random.default_rng([seed, stream, epoch]).permutation(num_batches)


def sorted_chunks(lengths, batch: int) -> list[list[int]]:
    """Indices sorted by length (stable), in chunks of `batch`, for evaluation passes."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[a:a + batch] for a in range(0, len(order), batch)]
