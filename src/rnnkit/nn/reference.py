"""Plain numpy implementation of every compiled kernel: the specification _kernels.pyx is held to.

Written for reading, not speed. Works in float64 and float32 (the dtype of `x`, or of `h`, is
the dtype of every result). The compiled module rnnkit._kernels has the same function names and
argument order, float32 only.

Dimension letters (used in every shape comment):
  T time steps in a window, B batch (parallel streams), E input (embedding) size,
  H hidden size, V vocabulary, N rows of the output layer (usually T*B).

Layout follows PyTorch so weights move between rnnkit and torch unchanged: time-major inputs,
gate order i, f, g, o, weight_ih [4H, E], weight_hh [4H, H], bias_ih / bias_hh [4H];
nn.RNN's weight_ih [H, E], weight_hh [H, H]; the decoder's weight [V, H] and bias [V].

Every layer is a forward / backward pair: forward returns its outputs and a cache holding
exactly what backward needs; backward takes the gradients of forward's outputs first and the
cache last, and returns the gradients of forward's inputs in the order forward took them.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "lstm_forward", "lstm_backward", "lstm_step",
    "rnn_forward", "rnn_backward", "rnn_step", "input_table",
    "softmax_xent_forward", "softmax_xent_backward", "log_softmax",
    "embedding_forward", "embedding_backward", "matmul",
    "adaptive_log_softmax", "topk_rows", "beam_select", "adam_step", "sgd_step", "sum_squares",
]


def sigmoid(z):
    # written through tanh so that no exp overflows for very large |z|: σ(z) = (1 + tanh(z/2)) / 2
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class Cache:
    """What a backward pass needs from its forward pass (a plain bag of arrays)."""

    def __init__(self, **arrays):
        self.__dict__.update(arrays)


# --------------------------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------------------------
def _lstm_cell(a, c_prev, w_peep, forget_gate):
    """One step of the gates from the pre-activations a [B, 4H] (gate order i, f, g, o).

    Returns (i, f, g, o, c) each [B, H]. With peepholes (Gers, Schraudolph & Schmidhuber 2002)
    the input and forget gates see c_{t-1} and the output gate sees the new c_t, through the
    diagonal weights w_peep [3, H] (rows i, f, o).
    """
    H = c_prev.shape[1]
    ai, af, ag, ao = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    if w_peep is not None:
        ai = ai + w_peep[0] * c_prev
        af = af + w_peep[1] * c_prev
    i = sigmoid(ai)
    f = sigmoid(af) if forget_gate else np.zeros_like(i)
    g = np.tanh(ag)
    # forget_gate=False is the original memory block (Hochreiter & Schmidhuber 1997): the
    # constant error carousel c_t = c_{t-1} + i*g; the f rows of the weights are ignored
    c = (f * c_prev if forget_gate else c_prev) + i * g
    if w_peep is not None:
        ao = ao + w_peep[2] * c
    o = sigmoid(ao)
    return i, f, g, o, c


def steps_of(x, B, batch_sizes):
    """The steps of a window: (batch sizes [T], row offsets [T], x as rows [N, E]).

    Without batch_sizes x is [T, B, E], every step has the B rows. With batch_sizes x holds
    only the real positions of sequences of different lengths, sorted longest first
    (PyTorch's PackedSequence layout): step t is rows off_t .. off_t + n_t - 1 of x [N, E],
    the first n_t = batch_sizes[t] sequences, n_0 = B >= n_1 >= ... >= 1; a sequence's last
    step is its final state (hT, cT), and dhT, dcT enter there.
    """
    if batch_sizes is None:
        T = x.shape[0]
        return np.full(T, B), np.arange(T) * B, x.reshape(T * B, x.shape[2])
    bs = np.asarray(batch_sizes)
    if (bs.ndim != 1 or bs.size == 0 or bs[0] != B or np.any(bs[1:] > bs[:-1])
            or bs[-1] < 1 or bs.sum() != x.shape[0]):
        raise ValueError(f"batch_sizes must fall from B = {B} to at least 1 and add up to the "
                         f"{x.shape[0]} rows of x")
    return bs, np.concatenate([[0], np.cumsum(bs)[:-1]]), x


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, cache=None,
                 batch_sizes=None):
    """One LSTM layer over a window: returns (h [T, B, H], hT [B, H], cT [B, H], cache).

    x [T, B, E], h0 / c0 [B, H], w_ih [4H, E], w_hh [4H, H], b_ih / b_hh [4H],
    w_peep [3, H] or None (peephole weights for i, f, o), forget_gate False for the original
    LSTM without a forget gate. h holds h_1 .. h_T. With batch_sizes, x [N, E] and h [N, H]
    hold sequences of different lengths (steps_of); no work is spent on their padding.
    `cache`, a cache from an earlier call, lets the kernels reuse its buffers; the reference
    accepts it and ignores it.
    """
    B, H = h0.shape
    bs, off, xr = steps_of(x, B, batch_sizes)
    N, dt = xr.shape[0], x.dtype
    h = np.empty((N, H), dt)             # h_1 .. h_T
    c = np.empty((N, H), dt)             # c_1 .. c_T
    gates = np.empty((N, 4 * H), dt)     # activated gates i, f, g, o per step
    hT, cT = h0.astype(dt), c0.astype(dt)
    # the input projection does not depend on the recurrence: all T steps in one product
    xw = xr @ w_ih.T + (b_ih + b_hh)     # [N, 4H]
    h_prev, c_prev = h0, c0
    for n, o in zip(bs, off):
        s = slice(o, o + n)
        a = xw[s] + h_prev[:n] @ w_hh.T  # [n, 4H]
        i, f, g, og, c[s] = _lstm_cell(a, c_prev[:n], w_peep, forget_gate)
        h[s] = og * np.tanh(c[s])
        gates[s] = np.concatenate([i, f, g, og], axis=1)
        hT[:n], cT[:n] = h[s], c[s]      # a sequence's last step is its final state
        h_prev, c_prev = h[s], c[s]
    cache = Cache(x=xr, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, w_peep=w_peep, bs=bs, off=off,
                  forget_gate=forget_gate, h=h, c=c, gates=gates, shape=x.shape)
    return h.reshape(x.shape[:-1] + (H,)), hT, cT, cache


def _previous(h0, h, bs, off):
    """h_0 .. h_{T-1} as the rows of the steps that read them [N, H]."""
    return np.concatenate([h0[:bs[0]]] + [h[o:o + n] for o, n in zip(off[:-1], bs[1:])])


def lstm_backward(dh, dhT, dcT, cache):
    """Gradients of an LSTM window: (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep).

    dh [T, B, H] (with batch_sizes [N, H]) is dL/dh_t from above for every step, dhT / dcT
    [B, H] dL/dh_T and dL/dc_T from the next window (zeros for the last one). dw_peep is None
    when the forward had no peepholes.
    """
    x, w_ih, w_hh, w_peep = cache.x, cache.w_ih, cache.w_hh, cache.w_peep
    bs, off = cache.bs, cache.off
    H = cache.h0.shape[1]
    dh = dh.reshape(-1, H)
    dgates = np.empty((x.shape[0], 4 * H), x.dtype)  # dL/d(pre-activation), i, f, g, o
    dw_peep = None if w_peep is None else np.zeros_like(w_peep)
    dh_next, dc_next = dhT.astype(x.dtype), dcT.astype(x.dtype)
    for t in reversed(range(len(bs))):
        n, s = bs[t], slice(off[t], off[t] + bs[t])
        g4 = cache.gates[s]
        i, f, g, o = g4[:, :H], g4[:, H:2 * H], g4[:, 2 * H:3 * H], g4[:, 3 * H:]
        c_t = cache.c[s]
        c_prev = cache.c[off[t - 1]:off[t - 1] + n] if t > 0 else cache.c0[:n]
        tc = np.tanh(c_t)
        dht = dh[s] + dh_next[:n]
        da_o = dht * tc * o * (1 - o)
        dc = dc_next[:n] + dht * o * (1 - tc * tc)
        if w_peep is not None:
            dc = dc + da_o * w_peep[2]             # o_t saw c_t
        da_i = dc * g * i * (1 - i)
        da_g = dc * i * (1 - g * g)
        if cache.forget_gate:
            da_f = dc * c_prev * f * (1 - f)
            dc_next[:n] = dc * f
        else:
            da_f = np.zeros_like(dc)
            dc_next[:n] = dc
        if w_peep is not None:
            dc_next[:n] += da_i * w_peep[0] + da_f * w_peep[1]   # i_t and f_t saw c_{t-1}
            dw_peep[0] += (da_i * c_prev).sum(0)
            dw_peep[1] += (da_f * c_prev).sum(0)
            dw_peep[2] += (da_o * c_t).sum(0)
        dgates[s] = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
        dh_next[:n] = dgates[s] @ w_hh
    h_prev = _previous(cache.h0, cache.h, bs, off)                  # [N, H] h_0 .. h_{T-1}
    dx = (dgates @ w_ih).reshape(cache.shape)                       # [T, B, E] or [N, E]
    dw_ih = dgates.T @ x                                            # [4H, E]
    dw_hh = dgates.T @ h_prev                                       # [4H, H]
    db = dgates.sum(0)                                              # [4H]
    return dx, dh_next, dc_next, dw_ih, dw_hh, db, db.copy(), dw_peep


def _step_input(x, w_ih, b_ih, b_hh, table):
    """A step's input part x W_ih^T + b_ih + b_hh [B, G*H], or the rows x of input_table's."""
    if table is None:
        return x @ w_ih.T + (b_ih + b_hh)
    ids = _check_ids(x, table.shape[0], "x")
    return table[ids]


def input_table(emb, w_ih, b_ih, b_hh, groups, packed=None):
    """The input part of a step's gates for every row of emb [V, E]: [V, G*H], row v = emb[v]
    W_ih^T + b_ih + b_hh. lstm_step and rnn_step given it (table=) read their input part from
    its rows x (ids [B]) instead of computing it; packed is accepted for the kernels' signature.
    """
    if groups < 1 or w_ih.shape[0] % groups:
        raise ValueError(f"groups must divide the {w_ih.shape[0]} rows of w_ih, got {groups}")
    return emb @ w_ih.T + (b_ih + b_hh)


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, gates=None,
              packed=None, table=None):
    """One step for B streams, updating h [B, H] and c [B, H] in place; returns (h, c).

    x [B, E], or with table (input_table's [V, 4H]) the streams' rows of it, ids [B]. gates, an
    optional [B, 4H] workspace, and packed (pack_weight's) are accepted for the kernels'
    signature.
    """
    a = _step_input(x, w_ih, b_ih, b_hh, table) + h @ w_hh.T
    if gates is not None:
        gates[...] = a
    i, f, g, o, c_new = _lstm_cell(a, c, w_peep, forget_gate)
    c[...] = c_new
    h[...] = o * np.tanh(c_new)
    return h, c


# --------------------------------------------------------------------------------------------
# tanh RNN (Elman)
# --------------------------------------------------------------------------------------------
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, cache=None, batch_sizes=None):
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh): returns (h [T, B, H], hT [B, H], cache).

    x [T, B, E], h0 [B, H], w_ih [H, E], w_hh [H, H], b_ih / b_hh [H]; `cache` and
    batch_sizes as lstm_forward.
    """
    B, H = h0.shape
    bs, off, xr = steps_of(x, B, batch_sizes)
    h = np.empty((xr.shape[0], H), x.dtype)
    hT = h0.astype(x.dtype)
    xw = xr @ w_ih.T + (b_ih + b_hh)  # [N, H]
    h_prev = h0
    for n, o in zip(bs, off):
        h[o:o + n] = np.tanh(xw[o:o + n] + h_prev[:n] @ w_hh.T)
        h_prev = hT[:n] = h[o:o + n]
    cache = Cache(x=xr, h0=h0, w_ih=w_ih, w_hh=w_hh, h=h, bs=bs, off=off, shape=x.shape)
    return h.reshape(x.shape[:-1] + (H,)), hT, cache


def rnn_backward(dh, dhT, cache):
    """Gradients of a tanh-RNN window: (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    x, w_ih, w_hh, h, bs, off = cache.x, cache.w_ih, cache.w_hh, cache.h, cache.bs, cache.off
    dh = dh.reshape(h.shape)
    da = np.empty_like(h)  # [N, H] dL/d(pre-activation)
    dh_next = dhT.astype(x.dtype)
    for t in reversed(range(len(bs))):
        n, s = bs[t], slice(off[t], off[t] + bs[t])
        da[s] = (dh[s] + dh_next[:n]) * (1 - h[s] * h[s])
        dh_next[:n] = da[s] @ w_hh
    dx = (da @ w_ih).reshape(cache.shape)
    dw_ih = da.T @ x
    dw_hh = da.T @ _previous(cache.h0, h, bs, off)
    db = da.sum(0)
    return dx, dh_next, dw_ih, dw_hh, db, db.copy()


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, work=None, packed=None, table=None):
    """One tanh-RNN step for B streams, updating h [B, H] in place; returns h.

    x [B, E], or with table the streams' rows of it (as lstm_step's); work, an optional [B, H]
    workspace, and packed are accepted for the kernels' signature.
    """
    h[...] = np.tanh(_step_input(x, w_ih, b_ih, b_hh, table) + h @ w_hh.T)
    return h


# --------------------------------------------------------------------------------------------
# output layer: logits, log-softmax, cross-entropy
# --------------------------------------------------------------------------------------------
def _check_ids(ids, V, name):
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"{name} must be in [0, {V}), got values in "
                         f"[{ids.min()}, {ids.max()}]")
    return ids.astype(np.int64)


def step_packs(B, E, H, groups):
    """The specification packs nothing (see pack_weight): False."""
    return False


def log_softmax_packs(N):
    return False


def pack_weight(w, groups=1):
    """The kernels pack a weight once for many products (a decoding run); packing changes no
    result, so the specification packs nothing: None, which every kernel accepts as `packed`."""
    if groups < 1 or w.shape[0] % groups:
        raise ValueError(f"groups must divide the {w.shape[0]} rows of w, got {groups}")
    return None


def log_softmax(h, w, b, out=None, scale=1.0, packed=None):
    """Natural-log probabilities [N, V] of the decoder: log softmax(h w^T + b) per row, times
    `scale` (1 / ln 10 gives log10).

    h [N, H], w [V, H] (decoder.weight), b [V]; written into `out` [N, V] when given; packed
    (pack_weight's) is accepted for the kernels' signature.
    """
    z = h @ w.T + b                             # [N, V] logits
    z = z - z.max(axis=1, keepdims=True)        # row-wise max: no overflow in exp
    lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    if scale != 1.0:
        lp *= lp.dtype.type(scale)
    return _into(out, lp)


def log_softmax_topk(h, w, b, k, scale=1.0, packed=None, work=None):
    """The k best entries of each row of log_softmax(h, w, b, scale=scale), best first: (words
    [N, k] int64, values [N, k]); ties go to the lower word, a NaN counts as -inf (topk_rows).
    packed and work are accepted for the kernels' signature."""
    if not 1 <= k <= w.shape[0]:
        raise ValueError(f"k must be in [1, {w.shape[0]}], got {k}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    lp = log_softmax(h, w, b, scale=scale)
    words = topk_rows(lp, k)
    return words, np.take_along_axis(lp, words, 1)


def softmax_xent_forward(h, w, b, targets, cache=None):
    """Summed cross-entropy (natural log) of the targets [N] under softmax(h w^T + b).

    Returns (loss_sum, cache); `cache` as lstm_forward.
    """
    V = w.shape[0]
    t = _check_ids(targets, V, "targets")
    logp = log_softmax(h, w, b)                 # [N, V]
    loss = -logp[np.arange(len(t)), t].sum()
    return float(loss), Cache(h=h, w=w, p=np.exp(logp), targets=t)


def softmax_xent_backward(dloss, cache):
    """Gradients (dh [N, H], dw [V, H], db [V]) of loss_sum * dloss."""
    dz = cache.p.copy()                         # d loss / d logits = softmax - onehot
    dz[np.arange(len(cache.targets)), cache.targets] -= 1
    dz *= dloss
    return dz @ cache.w, dz.T @ cache.h, dz.sum(0)


def matmul(a, b, c=None, *, trans_a=False, trans_b=False, beta=0.0):
    """C = op(a) op(b) + beta c (into `c` when given), as the compiled matmul."""
    r = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if c is None:
        return r
    c[...] = r + beta * c
    return c


# --------------------------------------------------------------------------------------------
# adaptive softmax (a layer composed of the kernels above: nn/output.py's AdaptiveSoftmax, which
# runs on either backend; this is its specification, with no compiled twin)
# --------------------------------------------------------------------------------------------
def adaptive_log_softmax(h, head_w, head_b, tail, cutoffs):
    """Natural-log probabilities [N, V] of the adaptive softmax (Grave et al. 2017, eq. of
    section 4.1: p(w) = p_head(cluster(w)) p_cluster(w)) for h [N, H].

    head_w [C0 + K, H], head_b [C0 + K] or None, tail: K pairs (proj [D_i, H], out [S_i, D_i]),
    cutoffs: the K boundaries C0 < c1 < ... (cluster i holds ids [cutoffs[i], cutoffs[i+1]),
    the last one ends at V = C0 + sum S_i).
    """
    head = h @ head_w.T + (0 if head_b is None else head_b)           # [N, C0 + K]
    head_lp = head - np.logaddexp.reduce(head, axis=1, keepdims=True)
    C0 = cutoffs[0]
    parts = [head_lp[:, :C0]]
    for i, (proj, out) in enumerate(tail):
        z = (h @ proj.T) @ out.T                                        # [N, S_i]
        parts.append(head_lp[:, C0 + i, None] + z - np.logaddexp.reduce(z, axis=1, keepdims=True))
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------------
# embedding
# --------------------------------------------------------------------------------------------
def embedding_forward(ids, weight, out=None):
    """Rows of weight [V, E] for ids [T, B]: x [T, B, E] (into `out` when given)."""
    return _into(out, weight[_check_ids(ids, weight.shape[0], "ids")])


def embedding_backward(dx, ids, V, out=None, accumulate=False):
    """dweight [V, E]: the rows of dx [T, B, E] added up per id (scatter-add); into `out`
    (overwritten, or added to with accumulate) when given."""
    ids = _check_ids(ids, V, "ids")
    dw = np.zeros((V, dx.shape[-1]), dx.dtype)
    np.add.at(dw, ids.reshape(-1), dx.reshape(-1, dx.shape[-1]))
    if out is not None and accumulate:
        out += dw
        return out
    return _into(out, dw)


def topk_rows(z, k, out=None):
    """The k largest entries of each row of z [R, V], best first: indices [R, k] (int64); ties
    go to the earlier index, a NaN counts as -inf."""
    z = np.where(np.isnan(z), -np.inf, z)
    return _into(out, np.argsort(-z, axis=1, kind="stable")[:, :k].astype(np.int64))


def beam_select(cand, cand_lp, scores, greedy, last, eos, worst, penalties):
    """One step of beam search's bookkeeping for A inputs with a beam of K (decoding/beam.py).

    cand [A*K, r] the r (<= K) best next tokens after each alive hypothesis (K rows per input),
    best first, ties to the lower token (topk_rows of the row's log-probabilities: the K best
    continuations of an input are among them), cand_lp [A*K, r] their log-probabilities;
    scores [A, K] (float64) the hypotheses' scores (-inf: an empty slot), greedy [A] the
    slot of the greedy path (-1: it has ended), last [A] (bool) the inputs at their length limit,
    eos the id of </s>; worst [A] each input's n_best-th best finished normalized score (-inf:
    fewer), penalties (lp with </s>, lp without: at the limit) the length penalties of a
    hypothesis ending at this step. Each input's K best continuations (score + lp, ties to the
    earlier row, then the earlier token in its row's best-first order) are split into those
    that end (</s>, or at the limit) and those that go on, which fill the new slots in order.
    Returns
      new_rows [A, K]   the parent row of each new slot (i*K for an empty one),
      new_tokens [A, K] its token (eos when empty), new_scores [A, K] (-inf when empty),
      new_greedy [A]    the new slot of the greedy path's continuation, -1 if it is not kept,
      kept [A]          the slots filled, g_done [A] (bool): no greedy path, or it ended here,
      g_row [A], g_tok [A], g_score [A]: the greedy path's row, its argmax token and the score
                        of that continuation (for the caller's fallback when it was pushed out),
      ends              (input [E], row [E], token [E], score [E], normalized [E]) of the
                        continuations that end and rank above their input's worst (the others
                        can never be returned), by input, best first,
      fallback [F]      the inputs whose greedy path goes on but fell out of the K best.
    """
    A, K = scores.shape
    r = cand.shape[1]
    cand_lp = np.asarray(cand_lp, np.float64)                       # [A*K, r]
    total = (scores.reshape(-1, 1) + cand_lp).reshape(A, K * r)     # [A, K*r]
    order = np.argsort(-total, axis=1, kind="stable")[:, :K]        # [A, K] best first
    best = np.take_along_axis(total, order, 1)                      # [A, K]
    rows = np.arange(A)[:, None] * K + order // r                   # [A, K] parent rows
    tokens = np.take_along_axis(cand.reshape(A, K * r), order, 1)   # [A, K]
    valid = best > -np.inf                     # a prefix of each row (-inf and NaN sort last)
    ends = valid & ((tokens == eos) | last[:, None])
    keeps = valid & ~ends
    has_g = greedy >= 0
    g_row = np.arange(A) * K + np.maximum(greedy, 0)               # [A]
    g_k = np.argmax(cand_lp[g_row], axis=1)
    g_tok = cand[g_row, g_k]
    g_score = scores[np.arange(A), np.maximum(greedy, 0)] + cand_lp[g_row, g_k]
    is_g = valid & has_g[:, None] & (rows == g_row[:, None]) & (tokens == g_tok[:, None])
    slots = np.cumsum(keeps, axis=1) - 1                            # [A, K] slot if kept
    kept = keeps.sum(axis=1)
    new_greedy = np.where((is_g & keeps).any(axis=1), (slots * (is_g & keeps)).sum(axis=1), -1)
    g_done = ~has_g | (is_g & ends).any(axis=1)
    ii, jj = np.nonzero(keeps)
    new_rows = np.repeat(np.arange(A)[:, None] * K, K, axis=1)
    new_tokens = np.full((A, K), eos, np.int64)
    new_scores = np.full((A, K), -np.inf)
    new_rows[ii, slots[ii, jj]] = rows[ii, jj]
    new_tokens[ii, slots[ii, jj]] = tokens[ii, jj]
    new_scores[ii, slots[ii, jj]] = best[ii, jj]
    norm = best / np.where(tokens == eos, *penalties)
    ei, ej = np.nonzero(ends & (norm > np.asarray(worst)[:, None]))
    fallback = np.nonzero(~g_done & (new_greedy < 0))[0]
    return (new_rows, new_tokens, new_scores, new_greedy.astype(np.int64),
            kept.astype(np.int64), g_done, g_row, g_tok.astype(np.int64), g_score,
            (ei.astype(np.int64), rows[ei, ej], tokens[ei, ej].astype(np.int64), best[ei, ej],
             norm[ei, ej]), fallback.astype(np.int64))


def beam_next(new_rows, new_tokens, new_scores, new_greedy, kept, last, worst, penalty,
              history):
    """The end of a beam search step (decoding/beam.py): which inputs go on, and their rows.

    beam_select's new_rows, new_tokens [A, K] (int64), new_scores [A, K] (float64), new_greedy,
    kept [A] (int64) after the greedy path's fallback; last [A] (bool) the inputs at their
    length limit; worst [A] (float64) each input's n_best-th best finished normalized score
    (-inf: fewer); penalty the length penalty of a hypothesis ending at the next step;
    history [A*K, t] (int64) the rows' tokens so far. An input goes on unless it is at its
    limit, has nothing alive (kept 0), or its greedy path has ended (new_greedy -1) and worst
    is at least the best an alive hypothesis can still reach, its best score / penalty (a
    score only falls as it grows). Returns going [A'] (indices of the inputs that go on),
    rows [A'*K] (their slots' parent rows), tokens [A'*K], scores [A', K], greedy [A'] and
    history [A'*K, t+1] (the parents' tokens and the new one).
    """
    bound = new_scores.max(axis=1) / penalty
    done = (new_greedy < 0) & (worst > -np.inf) & (bound <= worst)
    going = np.nonzero(~last & (kept > 0) & ~done)[0]
    rows = new_rows[going].reshape(-1)
    tokens = new_tokens[going].reshape(-1)
    history = np.concatenate([history[rows], tokens[:, None]], axis=1)
    return going, rows, tokens, new_scores[going], new_greedy[going], history


PAD_SCORE = -1e30  # an attention score of a padding position: exp() makes it exactly 0


def attend(q, keys, enc, mask, alpha, ctx):
    """Attention of decoder states q [T, B, H] over keys [S, B, H] and states enc [S, B, D]
    (mask [B, S]: the real positions; nn/attention.py's dot and general scores): writes alpha
    [B, T, S], the softmax over the real positions of q . key (a padded position scores -1e30:
    exp makes it exactly 0), and ctx[..., :D] [T, B, D], sum_s alpha_ts enc_s."""
    scores = np.matmul(q.transpose(1, 0, 2), keys.transpose(1, 2, 0))        # [B, T, S]
    scores = np.where(mask[:, None, :], scores, PAD_SCORE)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    alpha[...] = e / e.sum(axis=-1, keepdims=True)
    np.matmul(alpha, enc.transpose(1, 0, 2), out=ctx[..., :enc.shape[2]].transpose(1, 0, 2))


def adam_step(params, grads, m, v, beta1, beta2, step, eps):
    """One Adam step in place (Kingma & Ba 2015, Algorithm 1; the bias corrections are folded
    into step and eps by nn/optim.Adam) over flat buffers [P] of one dtype:
        m = beta1 m + (1 - beta1) g
        v = beta2 v + (1 - beta2) g^2
        params -= step m / (sqrt(v) + eps)
    every operation rounded in the buffers' dtype, in this order, no fused multiply-add (the
    constants rounded to it first; 1 - beta computed in double). The compiled kernel gives the
    same bits in float32."""
    f = params.dtype.type
    b1, c1, b2, c2 = f(beta1), f(1.0 - beta1), f(beta2), f(1.0 - beta2)
    m[...] = b1 * m + c1 * grads
    v[...] = b2 * v + c2 * (grads * grads)
    params[...] = params - f(step) * (m / (np.sqrt(v) + f(eps)))


def sgd_step(params, grads, lr):
    """params -= lr grads in place (lr in the buffers' dtype; the product rounded, then the
    difference)."""
    params -= params.dtype.type(lr) * grads


def sum_squares(x, block=65536):
    """The sum of the squares of x [P] as a float, in the order the kernel adds them: blocks of
    `block` entries; in a block, entry i's square (exact in float64) goes to lane i % 32, each
    lane summed in order, then the 32 lanes in order; then the blocks' sums in order."""
    total = 0.0
    for b in range(0, len(x), block):
        sq = np.asarray(x[b:b + block], np.float64) ** 2
        sq = np.concatenate([sq, np.zeros(-len(sq) % 32)]).reshape(-1, 32)
        lanes = np.cumsum(sq, axis=0)[-1]            # each lane in order
        s = 0.0
        for v in lanes:
            s += float(v)
        total += s
    return total


def _into(out, value):
    """`value`, or written into `out` (the kernels' optional output buffers) and `out`."""
    if out is None:
        return value
    out[...] = value
    return out

