"""Output layers: hidden states -> a distribution over the V words.

Dimension letters: N rows (positions), B streams, H hidden size, V vocabulary.

Every output layer offers the same four operations, so a model never touches the output's
tensors itself and a class-factored or adaptive softmax plugs in without changing the models:
  loss_forward(h [N, H], targets [N]) -> summed cross-entropy (natural log); caches for backward
  loss_backward(scale) -> (dh [N, H], dweight_tied or None)   weight gradients into the grads
  log_probs(h [B, H], out=None) -> [B, V] natural log of the full distribution (sums to 1)
  target_log_probs(h [N, H], targets [N]) -> [N] natural log p(target), in blocks of rows
"""
from __future__ import annotations

import math

import numpy as np

LN10 = math.log(10.0)     # output layers give natural logs; the LM protocol speaks log10:
LOG10E = 1.0 / LN10       # log10 p = ln p * LOG10E
LOGIT_BLOCK = 1 << 22  # at most this many logits ([rows, V] floats) at once when scoring


def full_softmax_shapes(V: int, H: int, prefix: str = "decoder.", tied: bool = False
                        ) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of a full softmax's tensors; tied: the weight is the embedding's, stored
    under the embedding's name (so only the bias is listed)."""
    return ([] if tied else [(f"{prefix}weight", (V, H))]) + [(f"{prefix}bias", (V,))]


class FullSoftmax:
    """logits = h W^T + b over every word: {prefix}weight [V, H], {prefix}bias [V] (PyTorch's
    nn.Linear). With tied weights W is the input embedding [V, E = H] (Press & Wolf 2017;
    Inan et al. 2017): its gradient is returned by loss_backward for the model to add to the
    embedding's."""

    def __init__(self, V: int, H: int, backend, params: dict, grads: dict | None = None,
                 prefix: str = "decoder.", tied: bool = False):
        self.V, self.H, self.backend, self.tied = V, H, backend, tied
        self.weight = params[f"{prefix}weight"]   # [V, H] (the embedding's view when tied)
        self.bias = params[f"{prefix}bias"]       # [V]
        self._dweight = None if grads is None or tied else grads[f"{prefix}weight"]
        self._dbias = None if grads is None else grads[f"{prefix}bias"]
        self._cache = None  # the softmax kernel's cache: logits -> probabilities -> d loss/d logits

    def loss_forward(self, h: np.ndarray, targets: np.ndarray) -> float:
        """Summed cross-entropy (natural log) of the targets [N] given h [N, H]."""
        loss, self._cache = self.backend.softmax_xent_forward(h, self.weight, self.bias, targets,
                                                             cache=self._cache)
        self._h, self._targets = h, targets  # for label smoothing's gradient
        return loss

    def loss_backward(self, scale: float, smoothing: float = 0.0):
        """Gradients of scale * the last loss_forward's loss: (dh [N, H], dW [V, H] when tied
        (for the model to add to its embedding gradient), else None).

        smoothing = eps > 0: the gradient of the label-smoothed loss (Szegedy et al. 2016,
        section 7): (1 - eps) (-log p_target) + eps * mean over the V words of (-log p_w) per
        row. Its logit gradient is the cross-entropy's, p - e_target, plus eps (e_target - 1/V),
        so the extra terms need no second pass over the [N, V] logits. (loss_forward still
        returns the plain cross-entropy: the perplexity stays comparable.)
        """
        dh, dweight, dbias = self.backend.softmax_xent_backward(scale, self._cache)
        if smoothing:
            e = smoothing * scale
            h, t, W = self._h, self._targets, self.weight
            dh += e * (W[t] - W.mean(axis=0))                       # [N, H]
            np.add.at(dweight, t, e * h)                            # dW[t_n] += e h_n
            dweight -= (e / self.V) * h.sum(axis=0)                 # every row: - e/V sum_n h_n
            dbias += e * (np.bincount(t, minlength=self.V) - len(t) / self.V)
        self._dbias[...] = dbias
        if self.tied:
            return dh, dweight
        self._dweight[...] = dweight
        return dh, None

    def log_probs(self, h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Natural-log probabilities [B, V] of every word given h [B, H]."""
        if out is None:
            return self.backend.log_softmax(h, self.weight, self.bias)
        return self.backend.log_softmax(h, self.weight, self.bias, out=out)

    def target_log_probs(self, h: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Natural-log p(target) [N] of each row of h [N, H], in blocks of LOGIT_BLOCK logits."""
        lp = np.empty(len(h))
        step = max(1, LOGIT_BLOCK // self.V)
        for r in range(0, len(h), step):
            block = self.log_probs(h[r:r + step])                          # [r, V]
            lp[r:r + step] = block[np.arange(len(block)), targets[r:r + step]]
        return lp
