"""Output layers: hidden states -> a distribution over the V words.

Dimension letters: N rows (positions), B streams, H hidden size, V vocabulary.

Every output layer offers the same four operations, so a model never touches the output's
tensors itself and a class-factored or adaptive softmax plugs in without changing the models:
  loss_forward(h [N, H], targets [N]) -> summed cross-entropy (natural log); caches for backward
  loss_backward(scale) -> (dh [N, H], dweight_tied or None)   weight gradients into the grads
  log_probs(h [B, H], out=None, packs=None) -> [B, V] natural log of the full distribution
      (sums to 1); packs: a dict kept for one decoding run, where the layer may keep its
      weights packed between calls (the same results)
  target_log_probs(h [N, H], targets [N]) -> [N] natural log p(target), in blocks of rows
  top_log_probs(h [B, H], k, scale, packs, work) -> (words [B, k], values [B, k]): the k best
      entries of each row of log_probs (times scale), best first, the same values; the full
      softmax takes them without writing the [B, V] array (a beam search's first cut)

Three layers: FullSoftmax (every word's logit), AdaptiveSoftmax (Grave et al. 2017: a head
over the frequent words plus one token per tail cluster) and ClassSoftmax (Mikolov et al. 2011:
a softmax over N word classes, then one over the words of the class; the adaptive softmax's
machinery with no head words and no projections).
"""
from __future__ import annotations

import math

import numpy as np

LN10 = math.log(10.0)     # output layers give natural logs; the LM protocol speaks log10:
LOG10E = 1.0 / LN10       # log10 p = ln p * LOG10E
LOGIT_BLOCK = 1 << 22  # at most this many logits ([rows, V] floats) at once when scoring


def top_entries(backend, lp: np.ndarray, k: int):
    """The k best entries of each row of lp [B, V], best first (ties to the lower word, a NaN
    ranked as -inf): (words [B, k] int64, values [B, k]), by backend.topk_rows."""
    words = backend.topk_rows(lp, k)
    return words, np.take_along_axis(lp, words, 1)


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

    def log_probs(self, h: np.ndarray, out: np.ndarray | None = None,
                  scale: float = 1.0, packs: dict | None = None) -> np.ndarray:
        """Natural-log probabilities [B, V] of every word given h [B, H], times `scale`
        (LOG10E: log10, in the kernel's pass). packs: a dict kept for one decoding run while
        the weights do not change; the weight is packed into it on the first call that runs on
        the packed GEMM and reused (the same results, without packing it at every step)."""
        K, packed = self.backend, self._packed(len(h), packs)
        if out is None:
            return K.log_softmax(h, self.weight, self.bias, scale=scale, packed=packed)
        return K.log_softmax(h, self.weight, self.bias, out=out, scale=scale, packed=packed)

    def top_log_probs(self, h: np.ndarray, k: int, scale: float = 1.0,
                      packs: dict | None = None, work: np.ndarray | None = None):
        """The min(k, V) best entries of each row of log_probs(h, scale=scale), best first:
        (words [B, k] int64, values [B, k]), bit for bit those of log_probs, taken while each
        row's logits are in cache (work, a [B, V] buffer, is its scratch); packs as log_probs'."""
        K, packed = self.backend, self._packed(len(h), packs)
        return K.log_softmax_topk(h, self.weight, self.bias, min(k, self.V), scale=scale,
                                  packed=packed, work=work)

    def _packed(self, rows: int, packs: dict | None):
        """The weight packed for this decoding run (in packs, made on the first call whose rows
        run on the packed GEMM), or None: the kernel packs it itself, or does not pack."""
        K = self.backend
        if packs is None or not K.log_softmax_packs(rows):
            return None
        packed = packs.get(id(self))
        if packed is None:
            packed = packs[id(self)] = K.pack_weight(self.weight)
        return packed

    def target_log_probs(self, h: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Natural-log p(target) [N] of each row of h [N, H], in blocks of LOGIT_BLOCK logits."""
        lp = np.empty(len(h))
        step = max(1, min(len(h), LOGIT_BLOCK // self.V))
        buf = np.empty((step, self.V), np.float32)  # one block buffer, reused: no page faults
        for r in range(0, len(h), step):
            n = min(step, len(h) - r)
            block = self.log_probs(np.ascontiguousarray(h[r:r + n]), out=buf[:n])   # [n, V]
            lp[r:r + n] = block[np.arange(n), targets[r:r + n]]
        return lp


# --- adaptive softmax (Grave et al. 2017) --------------------------------------------------------
# More dimension letters: C0 words in the head (cutoffs[0]), K tail clusters, S_i words of cluster
# i, D_i its projection size (H // div_value^(i+1), as PyTorch's AdaptiveLogSoftmaxWithLoss).

def check_cutoffs(V: int, H: int, cutoffs, div_value: float = 4.0) -> list[int]:
    """The cutoffs as a list of ints, or ValueError saying what is wrong with them: strictly
    increasing, each in [1, V), and every cluster's projection H // div^(i+1) at least 1."""
    cutoffs = [int(c) for c in cutoffs]
    if not cutoffs:
        raise ValueError("the adaptive softmax needs at least one cutoff (e.g. --cutoffs 2000,10000)")
    if any(b <= a for a, b in zip(cutoffs, cutoffs[1:])) or cutoffs[0] < 1 or cutoffs[-1] >= V:
        raise ValueError(f"cutoffs {','.join(map(str, cutoffs))} must be strictly increasing and "
                         f"between 1 and the vocabulary size - 1 ({V - 1})")
    if div_value < 1:
        raise ValueError(f"div_value must be at least 1, got {div_value}")
    for i in range(len(cutoffs)):
        if int(H // (div_value ** (i + 1))) < 1:
            raise ValueError(f"tail cluster {i} would have a projection of size 0 (hidden {H} // "
                             f"{div_value:g}^{i + 1}); use fewer cutoffs or a smaller div_value")
    return cutoffs


def adaptive_softmax_shapes(V: int, H: int, cutoffs, div_value: float = 4.0,
                            head_bias: bool = False, prefix: str = "decoder."
                            ) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of an adaptive softmax's tensors, named as PyTorch's
    AdaptiveLogSoftmaxWithLoss state dict: head.weight [C0 + K, H] (head.bias [C0 + K] when
    head_bias), tail.{i}.0.weight [D_i, H], tail.{i}.1.weight [S_i, D_i]."""
    cutoffs = check_cutoffs(V, H, cutoffs, div_value)
    bounds = cutoffs + [V]
    head = cutoffs[0] + len(cutoffs)
    shapes = [(f"{prefix}head.weight", (head, H))]
    if head_bias:
        shapes.append((f"{prefix}head.bias", (head,)))
    for i in range(len(cutoffs)):
        D = int(H // (div_value ** (i + 1)))
        shapes += [(f"{prefix}tail.{i}.0.weight", (D, H)),
                   (f"{prefix}tail.{i}.1.weight", (bounds[i + 1] - bounds[i], D))]
    return shapes


class AdaptiveSoftmax:
    """The adaptive softmax (Grave et al. 2017, PyTorch's AdaptiveLogSoftmaxWithLoss): a head
    softmax over the C0 most frequent words and one token per tail cluster; a word w of cluster i
    has p(w | h) = p_head(cluster i | h) * p_i(w | h), where cluster i's softmax sees h projected
    to D_i = H / div^(i+1) units (Grave et al., section 4.2: rarer words, smaller capacity).
    Word ids are sorted by frequency, so the head is ids [0, C0) and cluster i the contiguous
    range [cutoffs[i], cutoffs[i+1]). The probabilities are exact (normalised): log_probs sums to 1.

    Built on the softmax kernels (softmax_xent_forward/backward, log_softmax) and matmul of the
    backend: the head runs on every row, each cluster only on the rows whose target it holds
    (for training and scoring), which is where the speed comes from. The head has no bias unless
    head_bias (PyTorch's default); the tail layers never have one.
    """

    def __init__(self, V: int, H: int, cutoffs, backend, params: dict, grads: dict | None = None,
                 prefix: str = "decoder.", div_value: float = 4.0, head_bias: bool = False):
        self.cutoffs = check_cutoffs(V, H, cutoffs, div_value)
        self.V, self.H, self.backend, self.tied = V, H, backend, False
        self.bounds = np.array(self.cutoffs + [V], np.int64)   # [K + 1] cluster i: [b_i, b_i+1)
        self.C0, self.K = self.cutoffs[0], len(self.cutoffs)
        self.head_w = params[f"{prefix}head.weight"]          # [C0 + K, H]
        dtype = self.head_w.dtype
        self.head_bias = head_bias
        self.head_b = (params[f"{prefix}head.bias"] if head_bias    # [C0 + K]
                       else np.zeros(self.C0 + self.K, dtype))
        self.proj = [params[f"{prefix}tail.{i}.0.weight"] for i in range(self.K)]  # [D_i, H]
        self.out = [params[f"{prefix}tail.{i}.1.weight"] for i in range(self.K)]   # [S_i, D_i]
        self.zero_b = [np.zeros(len(w), dtype) for w in self.out]                   # [S_i]
        self._g = None if grads is None else {
            "head_w": grads[f"{prefix}head.weight"],
            "head_b": grads[f"{prefix}head.bias"] if head_bias else None,
            "proj": [grads[f"{prefix}tail.{i}.0.weight"] for i in range(self.K)],
            "out": [grads[f"{prefix}tail.{i}.1.weight"] for i in range(self.K)]}
        self._head_cache = None
        self._tail_caches = [None] * self.K
        self._rows = [None] * self.K   # per cluster: (rows [n_i], h rows [n_i, H]) of the forward

    def _split(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cluster [N]: -1 for head words, else the tail cluster; head targets [N]: the word in
        the head, or the cluster's token C0 + i)."""
        t = np.asarray(targets, np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.V):
            raise ValueError(f"targets must be in [0, {self.V})")
        cluster = np.searchsorted(self.bounds, t, side="right") - 1
        return cluster, np.where(cluster < 0, t, self.C0 + cluster)

    def loss_forward(self, h: np.ndarray, targets: np.ndarray) -> float:
        """Summed cross-entropy (natural log) of the targets [N] given h [N, H]:
        -log p_head(head target) - log p_i(word) for tail words."""
        K = self.backend
        t = np.asarray(targets, np.int64)
        cluster, head_t = self._split(t)
        loss, self._head_cache = K.softmax_xent_forward(h, self.head_w, self.head_b, head_t,
                                                        cache=self._head_cache)
        for i in range(self.K):
            rows = np.flatnonzero(cluster == i)
            if len(rows) == 0:
                self._rows[i] = None
                continue
            hi = np.ascontiguousarray(h[rows])                            # [n_i, H]
            p = self._project(i, hi)                                      # [n_i, D_i]
            li, self._tail_caches[i] = K.softmax_xent_forward(
                p, self.out[i], self.zero_b[i], t[rows] - self.bounds[i],
                cache=self._tail_caches[i])
            loss += li
            self._rows[i] = (rows, hi)
        return float(loss)

    def loss_backward(self, scale: float):
        """Gradients of scale * the last loss_forward's loss: (dh [N, H], None); the weight
        gradients go into the gradient views."""
        K, g = self.backend, self._g
        dh, dw, db = K.softmax_xent_backward(scale, self._head_cache)    # dh [N, H]
        g["head_w"][...] = dw
        if self.head_bias:
            g["head_b"][...] = db
        for i in range(self.K):
            if self._rows[i] is None:
                if self.proj[i] is not None:
                    g["proj"][i][...] = 0
                g["out"][i][...] = 0
                continue
            rows, hi = self._rows[i]
            dp, dwo, _ = K.softmax_xent_backward(scale, self._tail_caches[i])  # dp [n_i, D_i]
            g["out"][i][...] = dwo
            if self.proj[i] is None:                                     # no projection: p = h
                dh[rows] += dp
                continue
            g["proj"][i][...] = K.matmul(dp, hi, trans_a=True)           # [D_i, H]
            dh[rows] += K.matmul(dp, self.proj[i])                       # [n_i, H]
        return dh, None

    def _project(self, i: int, h: np.ndarray) -> np.ndarray:
        """Cluster i's input: h [n, H] projected to [n, D_i] (h itself without a projection)."""
        if self.proj[i] is None:
            return h
        return self.backend.matmul(h, self.proj[i], trans_b=True)

    def log_probs(self, h: np.ndarray, out: np.ndarray | None = None,
                  scale: float = 1.0, packs: dict | None = None) -> np.ndarray:
        """Natural-log probabilities [B, V] of every word given h [B, H] (sums to 1 per row),
        times `scale` (LOG10E: log10). packs is accepted for the protocol (nothing packed
        ahead: the head and the clusters are small)."""
        K = self.backend
        if out is None:
            out = np.empty((len(h), self.V), h.dtype)
        head = K.log_softmax(h, self.head_w, self.head_b)                # [B, C0 + K]
        out[:, :self.C0] = head[:, :self.C0]
        for i in range(self.K):
            p = self._project(i, np.ascontiguousarray(h))                       # [B, D_i]
            tail = K.log_softmax(p, self.out[i], self.zero_b[i])               # [B, S_i]
            tail += head[:, self.C0 + i, None]
            out[:, self.bounds[i]:self.bounds[i + 1]] = tail
        if scale != 1.0:
            out *= out.dtype.type(scale)
        return out

    def top_log_probs(self, h: np.ndarray, k: int, scale: float = 1.0,
                      packs: dict | None = None, work: np.ndarray | None = None):
        """The min(k, V) best entries of each row of log_probs(h, work, scale), best first:
        (words [B, k] int64, values [B, k]) (FullSoftmax.top_log_probs's contract)."""
        return top_entries(self.backend, self.log_probs(h, out=work, scale=scale),
                           min(k, self.V))

    def target_log_probs(self, h: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Natural-log p(target) [N] of each row of h [N, H]: the head on every row, each
        cluster only on the rows whose target it holds, in blocks of LOGIT_BLOCK logits."""
        K = self.backend
        cluster, head_t = self._split(targets)
        t = np.asarray(targets, np.int64)
        lp = np.empty(len(h))
        step = max(1, LOGIT_BLOCK // (self.C0 + self.K))
        for r in range(0, len(h), step):
            block = K.log_softmax(np.ascontiguousarray(h[r:r + step]), self.head_w, self.head_b)
            lp[r:r + step] = block[np.arange(len(block)), head_t[r:r + step]]
        for i in range(self.K):
            rows = np.flatnonzero(cluster == i)
            step = max(1, LOGIT_BLOCK // len(self.out[i]))
            for r in range(0, len(rows), step):
                blk = rows[r:r + step]
                p = self._project(i, np.ascontiguousarray(h[blk]))          # [n, D_i]
                tail = K.log_softmax(p, self.out[i], self.zero_b[i])        # [n, S_i]
                lp[blk] += tail[np.arange(len(blk)), t[blk] - self.bounds[i]]
        return lp


# --- the class-factored softmax (Mikolov et al. 2011) --------------------------------------------
# More dimension letters: K classes, S_i words of class i (contiguous ids [starts[i], starts[i+1])).

def check_class_starts(V: int, starts) -> list[int]:
    """The classes' first ids as a list of ints, or ValueError: 0 first, strictly increasing,
    each below V (so no class is empty)."""
    starts = [int(c) for c in starts]
    if not starts or starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])) \
            or starts[-1] >= V:
        raise ValueError(f"class starts {','.join(map(str, starts))} must begin at 0 and "
                         f"increase strictly below the vocabulary size {V}")
    return starts


def frequency_classes(counts, n: int) -> list[int]:
    """Mikolov's frequency binning (Mikolov et al. 2011, "Extensions of recurrent neural network
    language model", section 3; the RNNLM toolkit's default): walking the ids in order (sorted
    by frequency), a word joins the current class while the unigram mass seen so far is at most
    (class + 1) / n, so each class holds about 1/n of the mass -- the frequent words alone in
    small classes, the rare ones many to a class. Returns the n classes' first ids; ValueError
    when n is not in [1, V]. Every class gets at least one word."""
    counts = np.asarray(counts, np.float64)
    V = len(counts)
    if not 1 <= n <= V:
        raise ValueError(f"--classes {n} must be between 1 and the vocabulary size {V}")
    total = counts.sum()
    mass = np.cumsum(counts) / total if total > 0 else np.arange(1, V + 1) / V   # [V]
    starts, cls = [0], 0
    for i in range(1, V):
        # word i - 1 closed class `cls` if the mass through it passed (cls + 1) / n; keep enough
        # words for the classes still to come
        if cls < n - 1 and (mass[i - 1] > (cls + 1) / n or V - i == n - 1 - cls):
            starts.append(i)
            cls += 1
    return starts


def class_softmax_shapes(V: int, H: int, starts, prefix: str = "decoder."
                         ) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of a class softmax's tensors: head.weight [K, H] (one row per class),
    tail.{i}.weight [S_i, H] (the words of class i)."""
    starts = check_class_starts(V, starts)
    bounds = starts + [V]
    return [(f"{prefix}head.weight", (len(starts), H))] + [
        (f"{prefix}tail.{i}.weight", (bounds[i + 1] - bounds[i], H)) for i in range(len(starts))]


class ClassSoftmax(AdaptiveSoftmax):
    """The class-factored softmax (Mikolov et al. 2011; the RNNLM toolkit's classes):
    p(w | h) = p(class(w) | h) p(w | class(w), h), a softmax over the K classes (head.weight
    [K, H]) times one over the words of the class (tail.{i}.weight [S_i, H]), both reading h
    directly. It is the adaptive softmax with an empty head (C0 = 0) and no projections, so the
    same code trains, scores and gives the exact full distribution; no biases, like it."""

    def __init__(self, V: int, H: int, starts, backend, params: dict, grads: dict | None = None,
                 prefix: str = "decoder."):
        self.cutoffs = check_class_starts(V, starts)
        self.V, self.H, self.backend, self.tied = V, H, backend, False
        self.bounds = np.array(self.cutoffs + [V], np.int64)   # [K + 1]
        self.C0, self.K = 0, len(self.cutoffs)
        self.head_w = params[f"{prefix}head.weight"]           # [K, H]
        self.head_bias = False
        self.head_b = np.zeros(self.K, self.head_w.dtype)
        self.proj = [None] * self.K
        self.out = [params[f"{prefix}tail.{i}.weight"] for i in range(self.K)]   # [S_i, H]
        self.zero_b = [np.zeros(len(w), self.head_w.dtype) for w in self.out]
        self._g = None if grads is None else {
            "head_w": grads[f"{prefix}head.weight"], "head_b": None, "proj": [None] * self.K,
            "out": [grads[f"{prefix}tail.{i}.weight"] for i in range(self.K)]}
        self._head_cache = None
        self._tail_caches = [None] * self.K
        self._rows = [None] * self.K
