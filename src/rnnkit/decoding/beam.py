"""Beam search (and greedy search, its beam of 1) through the decoding protocol.

Dimension letters: B sentences decoded together, K the beam, V vocabulary, S source positions.

Written once against the protocol -- `start(batch, context=...)`, `advance(state, ids)`,
`log_probs(state)` (log10, [rows, V]) and `select_state(state, rows)` -- so a translation model, a
caption generator and (with no context) a language model all decode with it. A model may also
offer `top_log_probs(state, k)`, each row's k best tokens and their log10 p (the same values);
the search then never has the [rows, V] array written. `advance` updates its state in place and
`log_probs` may return a reused buffer, so rows are selected before the search branches and the
top candidates are taken before the next call.

Scores are log10 probabilities. A finished hypothesis is ranked by its score divided by a length
penalty lp(n) = ((5 + n) / 6) ** alpha (Wu et al. 2016, eq. 14; n counts </s>); alpha = 0 ranks by
the raw score, alpha = 1 by roughly the score per token.

Each step keeps the K best continuations of an input; those that end with </s> are finished, the
others go on (so a beam of 1 is exactly greedy search). The greedy path (the argmax token after
the greedy prefix) always keeps a place: when its continuation is not among the K best it
replaces the K-th, so no beam returns a hypothesis ranked below greedy search's -- plain beam
search can, when the K prefixes that pushed the greedy one out all end worse.

An input's search ends when no continuation is left, or when the greedy path has ended and its
n_best best finished hypotheses cannot be beaten by any alive one: an alive hypothesis's score
only falls as it grows, so its bound is score / lp(its length if it ended at the next step) --
exact for alpha = 0; for alpha > 0 it assumes the hypothesis does not improve its per-token score
by growing (the usual early stop; the exact bound, lp(max_len), would search every input to the
length limit). Ending as soon as K hypotheses had finished, as before, returned hypotheses that
a longer alive one beat.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import reference
from ..nn.backend import held_threads, kernels
from ..nn.output import top_entries
from ..text.vocab import EOS
from .state import select_state


@dataclass
class Hypothesis:
    tokens: list[int]                  # the output ids, without </s>
    score: float                       # log10 p(tokens </s> | context)
    normalized: float                  # score / lp(len + 1): what the beam ranks by
    attention: np.ndarray | None = None  # [len + 1, S] the attention of each step, if the model has it
    complete: bool = True              # False: stopped by the length limit, not by </s>


def _compiled(a: np.ndarray) -> bool:
    return a.dtype == np.float32 and a.flags.c_contiguous


def candidates(model, state, k: int):
    """Each row's k best next tokens, best first, and their log10 p: ([rows, r] int64, [rows,
    r]), r = min(k, V). The K best continuations of an input are among its rows' K best, so the
    search never needs more. From the model's top_log_probs when it has one (the full softmax
    takes them without writing the [rows, V] log-probabilities), else cut from log_probs."""
    top = getattr(model, "top_log_probs", None)
    if top is not None:
        return top(state, k)
    lp = model.log_probs(state)
    return top_entries(kernels() if _compiled(lp) else reference, lp, min(k, lp.shape[1]))


def _bookkeeping(cand_lp: np.ndarray):
    """The step's bookkeeping, beam_select and beam_next (nn/reference's are the
    specification): compiled for float32 candidates, the numpy reference for any other array
    (a float64 test model)."""
    if _compiled(cand_lp):
        K = kernels()
        return K.beam_select, K.beam_next
    return reference.beam_select, reference.beam_next


def length_penalty(n: np.ndarray | int, alpha: float):
    """lp(n) = ((5 + n) / 6) ** alpha: a float for an int n, an array for an array."""
    if isinstance(n, (int, np.integer)):
        return ((5.0 + int(n)) / 6.0) ** alpha
    return ((5.0 + np.asarray(n, np.float64)) / 6.0) ** alpha


@held_threads
def beam_search(model, context: list, beam: int = 5, max_len=100, n_best: int = 1,
                alpha: float = 1.0, keep_attention: bool = False) -> list[list[Hypothesis]]:
    """The n_best hypotheses (best first) for each of the len(context) inputs.

    max_len: the most output tokens per input (an int, or one per input). A search stops for an
    input when no alive hypothesis can beat its n_best-th finished one and the greedy path has
    ended (see the module's docstring), or at its length limit (the alive hypotheses then end
    there, marked incomplete).

    Each step's bookkeeping is two calls for all inputs at once (beam_select and beam_next:
    compiled, with nn/reference's as their specification); only the hypotheses that end go through
    Python one by one. tests/beam_loop.py, the loop over inputs this replaced, is the
    specification the whole search is checked against.
    """
    if beam < 1 or n_best < 1 or n_best > beam:
        raise ValueError(f"need 1 <= n_best <= beam, got n_best={n_best}, beam={beam}")
    B, K = len(context), beam
    limits = np.broadcast_to(np.asarray(max_len, np.int64), (B,))
    # a conditional model (translation, captions) starts from its inputs; a language model from
    # <s> alone (context = [None] * B)
    # one row per input until the first step has chosen its K continuations (the other K - 1
    # slots are empty); from then on K rows per active input, [A*K]
    state = model.start(B) if all(c is None for c in context) else model.start(B, context=context)
    active = np.arange(B)                                    # [A] the inputs still searched
    scores = np.full((B, K), -np.inf)                        # [A, K] log10 of the alive hyps
    scores[:, 0] = 0.0                                       # one hypothesis to start from
    history = np.zeros((B * K, 0), np.int64)                 # [A*K, t] tokens so far
    att_hist = None                                          # [A*K, t, S]
    # per input, the finished hypotheses that may still be returned, as (normalized, tokens,
    # score, attention, complete) in the order they ended (Hypothesis objects are made at the
    # end, for the n_best returned), and the n_best best normalized scores, sorted
    finished: list[list[tuple]] = [[] for _ in range(B)]
    best_norms: list[list[float]] = [[] for _ in range(B)]
    worst_needed = np.full(B, -np.inf)                       # [B] the n_best-th of them
    greedy = np.zeros(B, np.int64)                           # [A] slot of the greedy path, -1: ended
    t = 0

    def finish(ei, er, et, es, norm):
        """Hypotheses end: input indices ei (into this step's active), rows, tokens, scores and
        normalized scores (arrays; beam_select passes only those above their input's n_best-th
        finished one); reads the step's history, alpha_t and att_hist when called."""
        for b, row, tok, s, nm, toks in zip(active[ei].tolist(), er.tolist(), et.tolist(),
                                            es.tolist(), norm.tolist(), history[er].tolist()):
            top = best_norms[b]
            if len(top) == n_best and nm <= top[-1]:
                continue   # an earlier one of this step ranks it out
            if tok != EOS:
                toks.append(tok)
            att = None
            if keep_attention and alpha_t is not None:
                prev = (att_hist[row] if att_hist is not None
                        else np.zeros((0, alpha_t.shape[1])))
                att = np.concatenate([prev, alpha_t[row][None]], axis=0)
            finished[b].append((nm, toks, s, att, tok == EOS))
            top.append(nm)
            top.sort(reverse=True)
            del top[n_best:]
            if len(top) == n_best:
                worst_needed[b] = top[-1]

    while len(active):
        cand, cand_lp = candidates(model, state, K)          # [A*K, r] each row's best, log10
        alpha_t = getattr(state, "alpha", None) if keep_attention else None
        if t == 0 and K > 1:   # the first step's one row per input stands for its K slots
            cand, cand_lp = np.repeat(cand, K, axis=0), np.repeat(cand_lp, K, axis=0)
            alpha_t = None if alpha_t is None else np.repeat(alpha_t, K, axis=0)
        last = t + 1 >= limits[active]                                 # [A]
        # a hypothesis that ends here is ranked by its score / lp(n), n = t + 1 tokens with
        # </s>, t + 2 without (at the limit)
        penalties = (length_penalty(t + 1, alpha), length_penalty(t + 2, alpha))
        select, step_end = _bookkeeping(cand_lp)
        # the K best continuations of each input, split into those that end (returned only if
        # they rank above the input's n_best-th finished one) and those that go on (new slots
        # [A, K]); the greedy path's argmax continuation and where it went
        (new_rows, new_tokens, new_scores, new_greedy, kept, g_done, g_row, g_tok, g_score,
         ends, fallback) = select(cand, cand_lp, scores, greedy, last, EOS,
                                  worst_needed[active], penalties)
        if len(ends[0]):
            if n_best == 1 and len(ends[0]) > 1:   # an input's later ends rank below its first
                first = np.empty(len(ends[0]), bool)
                first[0] = True
                np.not_equal(ends[0][1:], ends[0][:-1], out=first[1:])
                ends = tuple(a[first] for a in ends)
            finish(*ends)
        # greedy's continuation fell out of the K best: it keeps a place (the last), so the
        # beam never returns less than greedy search would (plain beam search can: all K
        # survivors may end below the greedy path they pushed out)
        for i in fallback.tolist():
            row, tok, s = int(g_row[i]), int(g_tok[i]), float(g_score[i])
            if tok == EOS or last[i]:
                finish(np.array([i]), np.array([row]), np.array([tok]), np.array([s]),
                       np.array([s / penalties[tok != EOS]]))
            else:
                slot = min(kept[i], K - 1)
                new_rows[i, slot], new_tokens[i, slot], new_scores[i, slot] = row, tok, s
                new_greedy[i] = slot
                kept[i] = slot + 1
        # an input goes on unless it is at its limit, has nothing alive, or (greedy ended) its
        # n_best-th best finished beats the best an alive one can still reach (its score falls
        # with every token; lp as if it ended at the next step); finished inputs leave the
        # batch: later steps compute only the rows still searched
        going, flat_rows, step_tokens, scores, greedy, history = step_end(
            new_rows, new_tokens, new_scores, new_greedy, kept, last, worst_needed[active],
            penalties[1], history)
        if not len(going):
            break
        active = active[going]
        if keep_attention and alpha_t is not None:
            step_att = alpha_t[flat_rows][:, None]
            att_hist = step_att if att_hist is None else np.concatenate(
                [att_hist[flat_rows], step_att], axis=1)
        state = model.advance(select_state(state, flat_rows // K if t == 0 else flat_rows),
                              step_tokens)
        t += 1
    # with n_best 1 each kept one beat every earlier one: the last is the best
    return [[Hypothesis(toks, score, nm, att, complete) for nm, toks, score, att, complete
             in (done_b[-1:] if n_best == 1 else sorted(done_b, key=lambda f: -f[0])[:n_best])]
            for done_b in finished]


def greedy_search(model, context: list, max_len=100, keep_attention: bool = False
                  ) -> list[Hypothesis]:
    """The most probable token at every step: beam search with a beam of 1."""
    return [h[0] for h in beam_search(model, context, 1, max_len, 1, 0.0, keep_attention)]
