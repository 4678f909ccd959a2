"""Decoding's shortcuts change no number (tests/models): weights packed once per search, and the
rows' best tokens taken without writing the [rows, V] log-probabilities."""
import numpy as np

from rnnkit.decoding.beam import beam_search
from rnnkit.nn import reference as ref


def assert_packs_change_nothing(model, a, b, vocab_size: int, rng, steps: int = 3) -> None:
    """Steps two equal states of `model` with the same random tokens, `a` with its packs and
    `b` without (packing at every step): every distribution must be the same bits."""
    b.packs = None
    for _ in range(steps):
        np.testing.assert_array_equal(model.log_probs(a), model.log_probs(b))
        ids = rng.integers(3, vocab_size, a.batch)
        model.advance(a, ids), model.advance(b, ids)


class LogProbsOnly:
    """A model seen through start / advance / log_probs alone (no top_log_probs)."""

    def __init__(self, model):
        self.model = model

    def start(self, *args, **kwargs):
        return self.model.start(*args, **kwargs)

    def advance(self, state, ids):
        return self.model.advance(state, ids)

    def log_probs(self, state):
        return self.model.log_probs(state)


def assert_top_log_probs_change_nothing(model, state, context, k: int = 4) -> None:
    """top_log_probs on `state` is log_probs cut to each row's k best, bit for bit (k above V:
    every token); a beam search over `context` returns the same hypotheses, scores and
    attention with it as through log_probs alone."""
    lp = model.log_probs(state).copy()
    for kk in (1, k, lp.shape[1] + 3):
        ids, values = model.top_log_probs(state, kk)
        want = ref.topk_rows(lp, min(kk, lp.shape[1]))
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(values, np.take_along_axis(lp, want, 1))
    for beam in (1, k):
        got = beam_search(model, context, beam, 6, 1, 0.6, keep_attention=True)
        want = beam_search(LogProbsOnly(model), context, beam, 6, 1, 0.6, keep_attention=True)
        for hs, ws in zip(got, want):
            for h, w in zip(hs, ws):
                assert (h.tokens, h.score, h.normalized, h.complete) == \
                    (w.tokens, w.score, w.normalized, w.complete)
                if w.attention is not None:
                    np.testing.assert_array_equal(h.attention, w.attention)
