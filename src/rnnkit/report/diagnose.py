"""`rnnkit diagnose`: how the gradient of the loss at step t with respect to the hidden state at
step t-k decays with the distance k -- the vanishing-gradient picture (Bengio, Simard & Frasconi
1994; Hochreiter & Schmidhuber 1997), measured on a trained model and real data.

Dimension letters: B streams, K the largest distance, L layers, H hidden size.

For each of a few positions t in B streams of the data: run the model step by step up to t,
keeping the state of every layer at t-K .. t-1; then, for each k, start from the state at t-k,
run the k steps to t through the window kernels and back-propagate the cross-entropy of the
target at t alone. The backward pass's dL/dh_0 is dL_t/dh_{t-k} for every layer; the table
shows its Euclidean norm averaged over streams and positions.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..models.rnnlm import RNNLM, RecurrentState
from ..training.lm_task import batchify, lm_stream


def gradient_by_distance(model: RNNLM, ids: np.ndarray, max_distance: int = 30,
                         streams: int = 32, positions: int = 4, warmup: int = 20) -> dict:
    """Mean ||dL_t / dh_{t-k}|| per layer for k = 1 .. max_distance (see the module docstring).

    Returns {"distance": [K], "grad_norm": [K][L], "cell_grad_norm": [K][L] or None,
    "streams": B, "positions": [...]}.
    """
    if max_distance < 1:
        raise InputError(f"--max-distance must be at least 1, got {max_distance}")
    a = model.arch
    model.grad  # the stack's backward writes weight gradients: bind it to a gradient buffer
    x, y = lm_stream(ids)
    K = max_distance
    need = K + warmup + 1
    B = max(1, min(streams, len(x) // need))
    xb, yb = batchify(x, B), batchify(y, B)        # [S, B]
    S = xb.shape[0]
    if S < K + 1:
        raise InputError(f"the data has {len(x)} tokens: too few for --max-distance {K} "
                         f"(needs at least {K + 1} per stream); use a smaller --max-distance")
    lo = min(K + warmup, S - 1)
    ts = sorted(set(np.linspace(lo, S - 1, max(1, positions)).astype(int).tolist()))
    gh = np.zeros((K, a.layers))                   # [K, L] summed norms of dL/dh
    gc = np.zeros((K, a.layers)) if a.lstm else None
    H = a.hidden
    for t in ts:
        t0 = max(0, t - K - warmup)
        state = RecurrentState(a, B, model.dtype)
        past_h = np.zeros((K, a.layers, B, H), model.dtype)   # state after input t-k, k = 1..K
        past_c = np.zeros_like(past_h) if a.lstm else None
        for s in range(t0, t):
            state.ids[:] = xb[s]
            model.step(state)
            k = t - s
            if k <= K:
                past_h[k - 1] = state.h
                if a.lstm:
                    past_c[k - 1] = state.c
        for k in range(1, min(K, t - t0) + 1):
            xs = np.ascontiguousarray(xb[t - k + 1:t + 1])     # [k, B] inputs t-k+1 .. t
            inp = model.backend.embedding_forward(xs, model.p["encoder.weight"])  # [k, B, E]
            h0 = np.ascontiguousarray(past_h[k - 1])
            c0 = np.ascontiguousarray(past_c[k - 1]) if a.lstm else None
            top, _, _ = model.stack.forward(inp, h0, c0)                         # [k, B, H]
            model.output.loss_forward(np.ascontiguousarray(top[-1]), np.ascontiguousarray(yb[t]))
            dtop, _ = model.output.loss_backward(1.0)          # [B, H] dL_t/dh_t
            dh = np.zeros((k, B, H), model.dtype)
            dh[-1] = dtop
            _, dh0, dc0 = model.stack.backward(dh)             # [L, B, H] dL_t/dh_{t-k}
            gh[k - 1] += np.linalg.norm(dh0, axis=2).sum(axis=1)
            if a.lstm:
                gc[k - 1] += np.linalg.norm(dc0, axis=2).sum(axis=1)
    n = B * len(ts)
    return {"distance": list(range(1, K + 1)), "grad_norm": (gh / n).tolist(),
            "cell_grad_norm": None if gc is None else (gc / n).tolist(),
            "streams": B, "positions": ts, "layers": a.layers, "model_type": a.model_type}

