"""Beam search through the protocol: a hand-built model where the best sequence is known (beam
finds it, greedy misses it), beam 1 = greedy = step-by-step argmax, the length limit, n-best."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnkit.decoding.beam import beam_search, greedy_search, length_penalty
from rnnkit.text.vocab import BOS, EOS

A, B_, C, D = 3, 4, 5, 6  # token ids after the three specials
V = 7


class Prev:
    """The state: the previous token of each row."""

    def __init__(self, ids):
        self.ids = np.asarray(ids, np.int64)

    def select(self, rows):
        return Prev(self.ids[np.asarray(rows)])


class HandModel:
    """P(next | previous) from a table; the context is ignored (a conditional model's shape)."""

    def __init__(self):
        t = np.full((V, V), 1e-9)
        t[BOS, [A, B_]] = [0.55, 0.45]
        t[A, [C, D, EOS]] = [0.34, 0.33, 0.33]
        t[B_, [EOS, C]] = [0.9, 0.1]
        t[C, EOS] = 1.0
        t[D, EOS] = 1.0
        self.table = t / t.sum(axis=1, keepdims=True)
        self.calls = 0

    def start(self, batch, context=None):
        return Prev(np.full(batch, BOS))

    def advance(self, state, ids):
        state.ids = np.asarray(ids, np.int64).copy()
        return state

    def log_probs(self, state):
        self.calls += 1
        with np.errstate(divide="ignore"):
            return np.log10(self.table[state.ids])


def test_beam_finds_what_greedy_misses():
    m = HandModel()
    (g,) = greedy_search(m, [None], max_len=10)
    assert g.tokens == [A, C] and g.score == pytest.approx(math.log10(0.55 * 0.34), abs=1e-6)
    (best, second), = beam_search(m, [None], beam=2, n_best=2, alpha=0.0, max_len=10)
    assert best.tokens == [B_] and best.score == pytest.approx(math.log10(0.45 * 0.9), abs=1e-6)
    assert second.score < best.score and best.complete


def test_beam_one_is_greedy_and_greedy_is_the_argmax():
    rng = np.random.default_rng(0)
    m = HandModel()
    m.table = rng.dirichlet(np.ones(V) * 0.5, size=V)
    ctx = [None] * 4
    greedy = greedy_search(m, ctx, max_len=8)
    beam1 = [h[0] for h in beam_search(m, ctx, beam=1, max_len=8, alpha=1.0)]
    for g, b in zip(greedy, beam1):
        assert g.tokens == b.tokens and g.score == pytest.approx(b.score)
    # by hand: follow the argmax until </s> or 8 tokens
    prev, toks, score = BOS, [], 0.0
    for _ in range(8):
        w = int(np.argmax(m.table[prev]))
        score += math.log10(m.table[prev, w])
        if w == EOS:
            break
        toks.append(w)
        prev = w
    assert greedy[0].tokens == toks and greedy[0].score == pytest.approx(score)


def test_length_limit_ends_hypotheses_incomplete():
    m = HandModel()
    m.table[C] = 0
    m.table[C, C] = 1.0  # c repeats forever
    m.table[A] = 0
    m.table[A, C] = 1.0
    m.table[BOS] = 0
    m.table[BOS, A] = 1.0
    (h,), = beam_search(m, [None], beam=2, max_len=4)
    assert h.tokens == [A, C, C, C] and not h.complete


def test_n_best_is_sorted_by_normalized_score_and_checks_arguments():
    m = HandModel()
    hyps, = beam_search(m, [None], beam=3, n_best=3, alpha=1.0, max_len=10)
    norm = [h.normalized for h in hyps]
    assert norm == sorted(norm, reverse=True)
    for h in hyps:
        assert h.normalized == pytest.approx(h.score / length_penalty(len(h.tokens) + 1, 1.0))
    with pytest.raises(ValueError):
        beam_search(m, [None], beam=2, n_best=3)


def test_a_language_model_decodes_with_the_same_search():
    """An n-gram LM (array state, no context): the most probable sentence from <s>."""
    from rnnkit.models.ngram.estimate import train
    from rnnkit.text.prepare import build_corpus
    lm = train(build_corpus(None, sample="en", split="1,0,0"), 3)
    (g,) = greedy_search(lm, [None], max_len=30)
    (b,), = beam_search(lm, [None], beam=4, alpha=0.0, max_len=30)
    assert g.score == pytest.approx(lm.score(lm.tokenizer.join(lm.vocab.decode(g.tokens))),
                                    abs=1e-4)
    assert b.score >= g.score - 1e-9 and b.complete


def test_inputs_that_finish_leave_the_batch_and_the_rest_is_unchanged():
    """Each input's result is the one it gets alone, while the model sees fewer rows once inputs
    have finished (a length limit of 1 ends the first input after one step)."""
    rows_seen = []

    class Counting(HandModel):
        def log_probs(self, state):
            rows_seen.append(len(state.ids))
            return super().log_probs(state)

    m = Counting()
    together = beam_search(m, [None] * 3, 3, [1, 5, 5], n_best=3)
    assert rows_seen[0] == 3 and rows_seen[1] == 6   # 1 row per input first, then 2 inputs x 3
    for b, limit in enumerate([1, 5, 5]):
        alone = beam_search(HandModel(), [None], 3, limit, n_best=3)[0]
        assert [(h.tokens, h.score, h.complete) for h in together[b]] == \
            [(h.tokens, h.score, h.complete) for h in alone]


def test_the_search_goes_on_while_an_alive_hypothesis_can_still_win():
    """Beam 2 sees two endings (b </s> 0.27, a d </s> 0.12) before a d g </s> (0.28, the greedy
    path) is complete; ending the search at K finished hypotheses returned b, worse than
    greedy's caption."""
    m = HandModel()
    G = 0  # <unk>'s id serves as a sixth word here
    t = np.full((V, V), 1e-12)
    t[BOS, [A, B_, C]] = [0.5, 0.3, 0.2]
    t[A, [D, EOS]] = [0.8, 0.2]
    t[B_, [EOS, C]] = [0.9, 0.1]
    t[C, EOS] = 1.0
    t[D, [G, EOS]] = [0.7, 0.3]
    t[G, EOS] = 1.0
    m.table = t / t.sum(axis=1, keepdims=True)
    (g,) = greedy_search(m, [None], max_len=10)
    assert g.tokens == [A, D, G] and g.score == pytest.approx(math.log10(0.28), abs=1e-6)
    for alpha in (0.0, 0.6, 1.0):
        (best,), = beam_search(m, [None], beam=2, alpha=alpha, max_len=10)
        greedy_norm = g.score / length_penalty(len(g.tokens) + 1, alpha)
        assert best.normalized >= greedy_norm - 1e-9
    (best,), = beam_search(m, [None], beam=2, alpha=0.0, max_len=10)
    assert best.tokens == [A, D, G]


def test_blas_is_held_to_one_thread_while_decoding_on_the_packed_kernels():
    # OpenBLAS's threads spin after each numpy product and took the cores from the kernels'
    # pool (beam-3 captions: the LSTM step 77 -> 230 us); the decoding entry points hold BLAS
    # at one thread while the packed kernels do the threading, and give it back after
    from threadpoolctl import threadpool_info

    from rnnkit.nn.backend import kernels

    def blas_threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas"}

    seen = []

    class Watching(HandModel):
        def log_probs(self, state):
            seen.append(blas_threads())
            return super().log_probs(state)

    before = blas_threads()
    beam_search(Watching(), [0, 1], beam=2, max_len=4)
    assert seen and blas_threads() == before
    packed = kernels().gemm_backend() == "packed"
    for during in seen:
        assert set(during) == set(before)
        if packed:
            assert all(n == 1 for n in during.values())
        else:
            assert during == before or all(n == kernels().get_num_threads()
                                           for n in during.values())


class Tables:
    """A first-order model with one random table per input (the context picks it)."""

    def __init__(self, rng, n, V, conc):
        self.tables = rng.dirichlet(np.ones(V) * conc, size=(n, V))

    class State:
        def __init__(self, ctx, ids):
            self.ctx, self.ids = ctx, ids

        def select(self, rows):
            rows = np.asarray(rows)
            return Tables.State(self.ctx[rows], self.ids[rows])

    def start(self, batch, context=None):
        return Tables.State(np.asarray(context), np.full(len(context), BOS))

    def advance(self, state, ids):
        state.ids = np.asarray(ids, np.int64).copy()
        return state

    dtype = np.float32   # float64: the search takes the numpy reference of its bookkeeping

    def log_probs(self, state):
        with np.errstate(divide="ignore"):
            return np.log10(self.tables[state.ctx, state.ids]).astype(self.dtype)


@pytest.mark.parametrize("seed", range(60))
def test_the_vectorized_search_returns_what_the_loop_over_inputs_did(seed):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from beam_loop import loop_beam_search

    rng = np.random.default_rng(seed)
    n, V = int(rng.integers(1, 7)), int(rng.choice([3, 5, 9, 40]))
    model = Tables(rng, n, V, float(rng.choice([0.05, 0.3, 1.0])))
    if seed % 5 == 0:
        model.tables[..., EOS] = 0.0              # only the length limit ends a hypothesis
        model.tables /= model.tables.sum(-1, keepdims=True)
    if seed % 3 == 0:
        model.dtype = np.float64
    K = int(rng.integers(1, 6))
    nb = int(rng.integers(1, K + 1))
    alpha = float(rng.choice([0.0, 0.6, 1.0]))
    limits = rng.integers(1, 9, n).tolist() if seed % 2 else int(rng.integers(1, 12))
    ctx = list(range(n))
    got = beam_search(model, ctx, K, limits, nb, alpha)
    want = loop_beam_search(model, ctx, K, limits, nb, alpha)
    assert [[(h.tokens, h.score, h.normalized, h.complete) for h in hs] for hs in got] == \
        [[(h.tokens, h.score, h.normalized, h.complete) for h in hs] for hs in want]
