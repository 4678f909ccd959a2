"""The beam search as it was written first, one input at a time in a Python loop over the K best
continuations: the specification decoding/beam.py's vectorized search must match exactly
(tests/decoding/test_beam.py compares them on random models)."""
from __future__ import annotations

import numpy as np

from rnnkit.decoding.beam import Hypothesis, length_penalty
from rnnkit.nn.reference import topk_rows
from rnnkit.decoding.state import select_state
from rnnkit.text.vocab import EOS


def loop_beam_search(model, context: list, beam: int = 5, max_len=100, n_best: int = 1,
                alpha: float = 1.0, keep_attention: bool = False) -> list[list[Hypothesis]]:
    """The n_best hypotheses (best first) for each of the len(context) inputs.

    max_len: the most output tokens per input (an int, or one per input). A search stops for an
    input when no alive hypothesis can beat its n_best-th finished one and the greedy path has
    ended (see the module's docstring), or at its length limit (the alive hypotheses then end
    there, marked incomplete).
    """
    if beam < 1 or n_best < 1 or n_best > beam:
        raise ValueError(f"need 1 <= n_best <= beam, got n_best={n_best}, beam={beam}")
    B, K = len(context), beam
    limits = np.broadcast_to(np.asarray(max_len, np.int64), (B,)).tolist()
    # a conditional model (translation, captions) starts from its inputs; a language model from
    # <s> alone (context = [None] * B)
    state = model.start(B) if all(c is None for c in context) else model.start(B, context=context)
    state = select_state(state, np.repeat(np.arange(B), K))         # [A*K] rows: K per active input
    active = np.arange(B)                                    # [A] the inputs still searched
    scores = np.full((B, K), -np.inf)                        # [A, K] log10 of the alive hyps
    scores[:, 0] = 0.0                                       # one hypothesis to start from
    history = np.zeros((B * K, 0), np.int64)                 # [A*K, t] tokens so far
    att_hist = None                                          # [A*K, t, S]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    greedy = np.zeros(B, np.int64)                           # [A] slot of the greedy path, -1: ended
    t = 0
    while len(active):
        A = len(active)
        lp = model.log_probs(state)                          # [A*K, V] log10
        V = lp.shape[1]
        alpha_t = getattr(state, "alpha", None) if keep_attention else None
        # the K best continuations of an input are among its rows' own K best tokens, so
        # each row is cut to those first (one pass over [A*K, V], no float64 copy of it)
        m = min(K, K * V)
        r = min(m, V)
        cand = topk_rows(lp, r) if r < V else np.broadcast_to(
            np.arange(V), lp.shape)                                    # [A*K, r] token ids
        cand_lp = np.take_along_axis(lp, cand, 1).astype(np.float64)  # [A*K, r]
        total = (scores.reshape(-1, 1) + cand_lp).reshape(A, K * r)     # [A, K*r]
        order = np.argsort(-total, axis=1, kind="stable")[:, :m]       # [A, m] best first
        best = np.take_along_axis(total, order, 1).tolist()
        parents = (order // r).tolist()
        tokens = np.take_along_axis(cand.reshape(A, K * r), order, 1).tolist()
        new_rows = np.repeat(np.arange(A)[:, None] * K, K, axis=1)  # [A, K]
        new_tokens = np.full((A, K), EOS, np.int64)
        new_scores = np.full((A, K), -np.inf)
        new_greedy = np.full(A, -1, np.int64)                # [A] the greedy path's new slot
        going = []                                           # active positions that go on

        def finish(b, row, tok, s):
            toks = history[row].tolist() + ([] if tok == EOS else [tok])
            att = None
            if keep_attention and alpha_t is not None:
                prev = att_hist[row] if att_hist is not None else np.zeros((0, alpha_t.shape[1]))
                att = np.concatenate([prev, alpha_t[row][None]], axis=0)
            finished[b].append(Hypothesis(toks, float(s),
                                          float(s / length_penalty(len(toks) + 1, alpha)), att,
                                          complete=tok == EOS))

        for i, b in enumerate(active.tolist()):
            last_step = t + 1 >= limits[b]
            g_row = i * K + greedy[i] if greedy[i] >= 0 else -1
            g_k = int(np.argmax(cand_lp[g_row])) if g_row >= 0 else 0
            g_tok = int(cand[g_row, g_k]) if g_row >= 0 else -1
            g_done = g_row < 0
            kept = 0
            for j in range(m):                               # the K best continuations
                s = best[i][j]
                if s == -np.inf or s != s:
                    break
                row = i * K + parents[i][j]
                tok = tokens[i][j]
                is_greedy = row == g_row and tok == g_tok
                if tok == EOS or last_step:
                    finish(b, row, tok, s)
                    g_done |= is_greedy
                    continue
                if is_greedy:
                    new_greedy[i] = kept
                new_rows[i, kept] = row
                new_tokens[i, kept] = tok
                new_scores[i, kept] = s
                kept += 1
            if not g_done and new_greedy[i] < 0:
                # greedy's continuation fell out of the K best: it keeps a place (the last), so
                # the beam never returns less than greedy search would (plain beam search can:
                # all K survivors may end below the greedy path they pushed out)
                s = float(scores[i, greedy[i]] + cand_lp[g_row, g_k])
                if g_tok == EOS or last_step:
                    finish(b, g_row, g_tok, s)
                else:
                    slot = min(kept, K - 1)
                    new_rows[i, slot], new_tokens[i, slot], new_scores[i, slot] = g_row, g_tok, s
                    new_greedy[i] = slot
                    kept = slot + 1
            if last_step or kept == 0:
                continue
            if new_greedy[i] < 0 and len(finished[b]) >= n_best:
                # the n_best-th best finished against the best an alive one can still reach
                # (its score falls with every token; lp as if it ended at the next step)
                worst = sorted((h.normalized for h in finished[b]), reverse=True)[n_best - 1]
                bound = max(new_scores[i, :kept]) / float(length_penalty(t + 2, alpha))
                if bound <= worst:
                    continue
            going.append(i)
        if not going:
            break
        # finished inputs leave the batch: later steps compute only the rows still searched
        active = active[going]
        flat_rows = new_rows[going].reshape(-1)
        step_tokens = new_tokens[going].reshape(-1)
        history = np.concatenate([history[flat_rows], step_tokens[:, None]], axis=1)
        if keep_attention and alpha_t is not None:
            step_att = alpha_t[flat_rows][:, None]
            att_hist = step_att if att_hist is None else np.concatenate(
                [att_hist[flat_rows], step_att], axis=1)
        scores = new_scores[going]
        greedy = new_greedy[going]
        state = model.advance(select_state(state, flat_rows), step_tokens)
        t += 1
    out = []
    for b in range(B):
        hyps = sorted(finished[b], key=lambda h: -h.normalized)
        out.append(hyps[:n_best])
    return out
