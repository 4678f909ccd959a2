"""N-gram language models: counting, estimation and the model, split at KenLM's pipeline stages.

Dimension letters: N order, V vocabulary, P positions of the training stream (every sentence as
<s> z1 .. zT </s>), n_k the number of distinct k-grams, B batch.

An n-gram table of order k holds its k-grams sorted by (context, word): `ctx` [n_k] is the index
of the (k-1)-word prefix in table k-1 and `word` [n_k] the last word, so the children of one
context are one contiguous run (a trie stored as flat arrays). `suffix` [n_k] is the index of the
(k-1)-word suffix in table k-1. Table 1 is indexed by word id and holds the whole vocabulary.

The stages, as in KenLM's lm/builder:
  count()                  raw counts of every k-gram, k = 1..N (sort/unique over packed keys)
  adjust_counts()          KN continuation counts for the lower orders
  counts_of_counts(),
  discounts()              n1..n4 per order and the discounts (Chen & Goodman eq. 26)
  initial_probabilities()  uninterpolated p and the interpolation weight gamma of each context
  interpolate()            p(w|h) = p_uninterp(w|h) + gamma(h) p(w|h'); backoff = log10 gamma(h)
Everything is whole-array numpy: no Python loop runs over n-grams.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ... import modelfile
from ..._version import __version__
from ...errors import ModelFileError, RnnkitError, TrainingError, missing_build
from ...text.prepare import Corpus, load_data
from ...text.vocab import BOS, EOS, UNK, Tokenizer, Vocab
from ..protocol import LanguageModel

SMOOTHINGS = ("mkn", "kn", "wb", "addk", "mle")
MAX_ORDER = 9  # orders 1..9; the compiled index is built for as many (_ngram.INDEX_MAX_ORDER)
MKN_FALLBACK = (0.5, 1.0, 1.5)  # lmplz's --discount_fallback defaults for D1, D2, D3+
KN_FALLBACK = 0.75  # the classic absolute-discounting value (Ney, Essen and Kneser 1994)
MODEL_TYPE = "ngram"


class DiscountError(TrainingError):
    """Kneser-Ney discounts cannot be computed from the counts-of-counts."""


# ------------------------------------------------------------------------------------------------
# stage 1: count
# ------------------------------------------------------------------------------------------------
@dataclass
class NgramCounts:
    """Raw counts of every k-gram of the training stream, k = 1..N (lists indexed by k-1)."""

    order: int
    vocab_size: int
    word: list  # [n_k] int32 last word
    ctx: list  # [n_k] int32 index of the prefix in table k-1 (None for k = 1)
    suffix: list  # [n_k] int32 index of the suffix in table k-1 (None for k = 1)
    raw: list  # [n_k] int64 raw counts (table 1: <s> counts the sentences)
    bos: list  # [n_k] bool: the k-gram starts with <s>
    sentences: int = 0
    tokens: int = 0  # words, </s> excluded
    # lmplz's discount-statistics quirk: per order k < N, the index of the k-gram that enters
    # the counts-of-counts with its raw count (-1: none), see KenLM_QUIRK below
    quirk: list = field(default_factory=list)


def _stream(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The padded stream X [P] (<s> before every sentence), each position's offset from its <s>
    [P] and the number of sentences."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise TrainingError(f"training ids must be one-dimensional, got shape {ids.shape}")
    if len(ids) == 0:
        raise TrainingError("the training split is empty: there is nothing to count")
    if ids[-1] != EOS:
        ids = np.append(ids, EOS)
    ids = ids.astype(np.int32)
    ends = np.flatnonzero(ids == EOS)
    starts = np.concatenate(([0], ends[:-1] + 1))
    x = np.insert(ids, starts, BOS)  # [P]
    bos_pos = starts + np.arange(len(starts))  # [S] where each <s> landed
    lengths = np.diff(np.append(bos_pos, len(x)))  # [S] positions per sentence incl. <s>
    offset = np.arange(len(x), dtype=np.int32) - np.repeat(bos_pos, lengths).astype(np.int32)  # [P]
    return x, offset, len(starts)


def kenlm_ranks(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """KenLM's vocabulary ids [V]: <unk> 0, <s> 1, </s> 2, then words by first appearance."""
    ids = np.asarray(ids)
    first_pos = np.full(vocab_size, np.iinfo(np.int64).max, np.int64)  # [V] first position
    np.minimum.at(first_pos, ids, np.arange(len(ids)))
    first_pos[[UNK, BOS, EOS]] = [-3, -2, -1]
    ranks = np.empty(vocab_size, np.int64)
    ranks[np.argsort(first_pos, kind="stable")] = np.arange(vocab_size)
    return ranks


def _last_in_suffix_order(x: np.ndarray, offset: np.ndarray, order: int, ranks: np.ndarray) -> int:
    """Position of the last top-order n-gram in KenLM's suffix order (padded with <s>): compared
    by the KenLM id of the last word, then of the word before it, and so on."""
    cand = np.flatnonzero(x != BOS)
    for j in range(order):
        if len(cand) <= 1:
            break
        back = np.maximum(cand - j, 0)
        vals = np.where(offset[cand] >= j, ranks[x[back]], ranks[BOS])
        cand = cand[vals == vals.max()]
    return int(cand[0])


def _unique(key: np.ndarray):
    """np.unique(key, return_inverse=True, return_counts=True) without its stable sort:
    (distinct keys ascending [U], inverse [n] int32, counts [U] int64)."""
    n = len(key)
    if n == 0:
        return key[:0], np.zeros(0, np.int32), np.zeros(0, np.int64)
    perm = np.argsort(key)  # [n] the default sort is the vectorised one
    sk = key[perm]
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    first = np.flatnonzero(new)  # [U] where each distinct key starts in sk
    inv = np.empty(n, np.int32)
    inv[perm] = np.cumsum(new, dtype=np.int32) - 1
    cnt = np.diff(np.append(first, n)).astype(np.int64)
    return sk[first], inv, cnt


def count(ids: np.ndarray, order: int, vocab_size: int, *, quirk: bool = True,
          progress=None) -> NgramCounts:
    """Stage 1: raw counts of all k-grams, k = 1..order, of sentences `ids` (each ends with </s>).

    A k-gram ending at position i of the padded stream is key (index of the (k-1)-gram ending
    at i-1) * V + word i; one sort per order numbers the k-grams in (context, word) order
    and maps every position to its k-gram, which is the context of the next order.
    """
    if not 1 <= order <= MAX_ORDER:
        raise TrainingError(f"--order must be between 1 and {MAX_ORDER}, got {order}")
    ids = np.asarray(ids)
    if len(ids) and int(ids.max()) >= vocab_size:
        raise TrainingError(f"token id {int(ids.max())} is outside the vocabulary of {vocab_size}")
    if len(ids) and np.any(ids == BOS):
        raise TrainingError("the training ids contain <s> (id 1) inside a sentence; <s> is "
                            "context only (rerun `rnnkit prepare`, which maps a literal <s> to "
                            "<unk>)")
    x, offset, sentences = _stream(ids)
    V = vocab_size
    raw1 = np.bincount(x, minlength=V).astype(np.int64)
    counts = NgramCounts(order, V, word=[np.arange(V, dtype=np.int32)], ctx=[None], suffix=[None],
                         raw=[raw1], bos=[np.arange(V) == BOS], sentences=sentences,
                         tokens=int(len(x) - 2 * sentences))
    special = _last_in_suffix_order(x, offset, order, kenlm_ranks(ids, V)) if quirk else -1
    counts.quirk = [int(x[special]) if special >= 0 else -1]
    g_prev = x  # [P] index of the (k-1)-gram ending at each position
    pos = np.arange(len(x), dtype=np.int32 if len(x) < 2**31 else np.int64)  # where (k-1)-grams end
    for k in range(2, order + 1):
        pos = pos[offset[pos] >= k - 1]  # [n positions] where a k-gram ends
        key = g_prev[pos - 1].astype(np.int64) * V + x[pos]
        uniq, inv, cnt = _unique(key)
        del key
        ctx = (uniq // V).astype(np.int32)
        word = (uniq % V).astype(np.int32)
        suffix = np.empty(len(uniq), np.int32)
        suffix[inv] = g_prev[pos]
        g_new = np.zeros(len(x), np.int32)
        g_new[pos] = inv
        counts.word.append(word)
        counts.ctx.append(ctx)
        counts.suffix.append(suffix)
        counts.raw.append(cnt.astype(np.int32 if len(x) < 2**31 else np.int64))
        counts.bos.append(counts.bos[-1][ctx])
        # the quirk's k-gram: the k-word suffix of the last n-gram, when it does not start with <s>
        counts.quirk.append(int(g_new[special]) if special >= 0 and offset[special] >= k else -1)
        g_prev = g_new
        if progress is not None:
            progress(k)
    counts.quirk[-1] = -1  # the top order uses raw counts anyway
    return counts


# ------------------------------------------------------------------------------------------------
# stage 2: adjust counts and discounts
# ------------------------------------------------------------------------------------------------
def adjust_counts(counts: NgramCounts, smoothing: str) -> list[np.ndarray]:
    """The counts each smoothing estimates from, per order (int64 [n_k]).

    Kneser-Ney (kn, mkn): raw counts at the top order; below it the continuation count
    N1+(. w), the number of distinct words seen before the k-gram (<s> included), except that a
    k-gram starting with <s> keeps its raw count (it cannot be extended to the left).
    The other smoothings use raw counts at every order. <s> is never predicted: its count is 0.
    """
    N = counts.order
    out = []
    for k in range(1, N + 1):
        raw = counts.raw[k - 1]
        if smoothing in ("kn", "mkn") and k < N:
            cont = np.bincount(counts.suffix[k], minlength=len(raw)).astype(np.int64)
            a = np.where(counts.bos[k - 1], raw, cont)
        else:
            a = raw.copy()
        if k == 1:
            a[BOS] = 0
        out.append(a)
    return out


def counts_of_counts(counts: NgramCounts, adjusted: list[np.ndarray], quirk: bool = True
                     ) -> np.ndarray:
    """n_j per order [N, 5]: how many k-grams have (adjusted) count j, j = 0..4 (0: unused).

    KenLM_QUIRK: lmplz's adjust_counts.cc flushes the k-grams still pending when the n-gram
    stream ends with their raw count instead of their adjusted one, so for every order k < N
    exactly one k-gram (the k-word suffix of the last top-order n-gram in suffix order, unless
    it starts with <s>) enters n1..n4 with its raw count. Reproducing it (the default) is what
    makes the discounts, and every probability, agree with lmplz to float precision.
    """
    N = counts.order
    coc = np.zeros((N, 5), np.int64)
    for k in range(1, N + 1):
        a = adjusted[k - 1]
        coc[k - 1] = np.bincount(np.minimum(a, 5), minlength=6)[:5]
        coc[k - 1, 0] = 0
        j = counts.quirk[k - 1] if (quirk and k - 1 < len(counts.quirk)) else -1
        if j >= 0 and not counts.bos[k - 1][j]:
            if 1 <= a[j] <= 4:
                coc[k - 1, a[j]] -= 1
            r = counts.raw[k - 1][j]
            if 1 <= r <= 4:
                coc[k - 1, r] += 1
    return coc


def discounts(coc: np.ndarray, smoothing: str, fallback: bool = False) -> np.ndarray:
    """Discounts [N, 4] (column j: the discount of count j, j = 0..3 where 3 means 3+).

    Computed in float32 as lmplz does, so the values match its log bit for bit.
    """
    N = len(coc)
    out = np.zeros((N, 4), np.float64)
    if smoothing not in ("kn", "mkn"):
        return out
    for i in range(N):
        n = coc[i].astype(np.float32)
        need = (1, 2, 3) if smoothing == "mkn" else (1, 2)
        missing = next((j for j in need if coc[i, j] == 0), None)
        d = None
        if missing is None:
            # See equation (26) in Chen and Goodman: Y = n1 / (n1 + 2 n2)
            y = np.float32(n[1]) / np.float32(float(coc[i, 1]) + 2.0 * float(coc[i, 2]))
            if smoothing == "mkn":
                # D_j = j - (j+1) Y n_{j+1} / n_j, j = 1, 2, 3+ (Chen and Goodman eq. 26)
                d = [np.float32(j) - np.float32(j + 1) * y * n[j + 1] / n[j] for j in (1, 2, 3)]
                bad = next((j for j in (1, 2, 3) if not 0.0 <= d[j - 1] <= j), None)
            else:
                d = [y] * 3  # one discount D = n1 / (n1 + 2 n2) (Ney, Essen and Kneser 1994)
                bad = 1 if not 0.0 < y <= 1.0 else None
            if bad is not None:
                if not fallback:
                    raise DiscountError(
                        f"{i + 1}-gram discount out of range for adjusted count {bad}: "
                        f"{float(d[bad - 1]):g}; is this small or artificial data? rerun with "
                        f"--discount-fallback to use {_fallback_text(smoothing)}")
                d = None
        elif not fallback:
            raise DiscountError(
                f"could not calculate Kneser-Ney discounts for {i + 1}-grams with adjusted count "
                f"{missing + 1} because no {i + 1}-gram has adjusted count {missing}; is this "
                f"small or artificial data? rerun with --discount-fallback to use "
                f"{_fallback_text(smoothing)}")
        if d is None:
            d = list(MKN_FALLBACK) if smoothing == "mkn" else [KN_FALLBACK] * 3
        out[i, 1:] = [float(np.float32(v)) for v in d]
    return out


def _fallback_text(smoothing: str) -> str:
    if smoothing == "mkn":
        return "D1, D2, D3+ = " + ", ".join(f"{v:g}" for v in MKN_FALLBACK)
    return f"D = {KN_FALLBACK:g}"


# ------------------------------------------------------------------------------------------------
# stage 3 and 4: probabilities and interpolation
# ------------------------------------------------------------------------------------------------
def start_dtype(n_next: int):
    """The dtype of a start array whose values run up to n_next (the next table's length)."""
    return np.int32 if n_next < 2**31 else np.int64


class ContextsFromStarts:
    """NgramTables.ctx of a file without ctx arrays: each order's array is derived from the
    start array of the order below when first used (a mapped model that only scores never
    builds one), then kept. Indexed, assigned and iterated like the list it stands for."""

    def __init__(self, ctx: list, starts: list, path):
        self._ctx, self._starts, self._path = list(ctx), starts, path

    def __len__(self):
        return len(self._ctx)

    def __getitem__(self, k):
        if self._ctx[k] is None and k >= 1:
            st = np.asarray(self._starts[k - 1], np.int64)
            try:
                self._ctx[k] = np.repeat(np.arange(len(st) - 1, dtype=np.int32), np.diff(st))
            except ValueError:  # a negative count: a damaged mapped file
                raise ModelFileError(f"{self._path}: damaged n-gram model file (order {k}: "
                                     f"the start array is not sorted)") from None
        return self._ctx[k]

    def __setitem__(self, k, value):
        self._ctx[k] = value

    def __iter__(self):
        return (self[k] for k in range(len(self._ctx)))


@dataclass
class NgramTables:
    """The estimated model: per order k, arrays sorted by (ctx, word); log10 values."""

    order: int
    vocab_size: int
    word: list  # [n_k] int32
    ctx: list  # [n_k] int32 (None for k = 1)
    suffix: list  # [n_k] int32 (None for k = 1)
    logp: list  # [n_k] float32 log10 p(w | h)
    backoff: list  # [n_k] float32 log10 backoff (orders < N; 0 where the k-gram is no context)


def prune_thresholds(prune, order: int) -> list[int] | None:
    """--prune's count threshold per order (the last one repeated up to `order`), or None
    without pruning; TrainingError when they cannot be applied."""
    if not prune:
        return None
    t = [int(v) for v in prune]
    if any(v < 0 for v in t):
        raise TrainingError(f"--prune thresholds must not be negative, got {t}")
    t = (t + [t[-1]] * order)[:order]
    if t[0] != 0:
        raise TrainingError("--prune: unigrams cannot be pruned (they are the vocabulary); "
                            "the first threshold must be 0, e.g. --prune 0 --prune 1")
    if any(b < a for a, b in zip(t, t[1:])):
        raise TrainingError(f"--prune thresholds must not decrease with the order (got {t}): "
                            f"a kept n-gram needs its context and suffix kept too")
    return t


def _keep_masks(counts: NgramCounts, prune) -> list[np.ndarray | None]:
    """Which k-grams survive --prune (raw count above the order's threshold)."""
    N = counts.order
    t = prune_thresholds(prune, N)
    if t is None:
        return [None] * N
    return [None] + [counts.raw[k - 1] > t[k - 1] if t[k - 1] > 0 else None
                     for k in range(2, N + 1)]


def initial_probabilities(counts: NgramCounts, adjusted: list[np.ndarray], disc: np.ndarray,
                          smoothing: str, keep: list, add_k: float = 0.1):
    """Stage 3: per order, the numerator of every k-gram and, per context, the denominator and
    the numerator of the interpolation weight gamma (both indexed by the context's index).

    interpolated family (kn, mkn, wb, mle):  p(w|h) = num(hw)/den(h) + gamma_num(h)/den(h) p(w|h')
    A pruned k-gram's numerator moves into gamma_num(h): the model stays normalised.
    Yields one order at a time (and drops that order's adjusted counts) to bound memory.
    """
    N, V = counts.order, counts.vocab_size
    for k in range(1, N + 1):
        if k == 1:
            idx = np.zeros(V, np.int64)
            n_ctx = 1
        else:
            idx = counts.ctx[k - 1]
            n_ctx = len(counts.raw[k - 2])
        num, den, gnum = initial_order(adjusted[k - 1], disc[k - 1], smoothing, idx, n_ctx,
                                       keep[k - 1], add_k, V)
        adjusted[k - 1] = None
        yield num, den, gnum


def initial_order(adjusted: np.ndarray, disc_k: np.ndarray, smoothing: str, idx: np.ndarray,
                  n_ctx: int, kept, add_k: float, V: int):
    """Stage 3 for the k-grams of one order, or for any run of them that holds whole contexts
    (the external estimator calls it per block): (num [n], den [n_ctx], gnum [n_ctx] or None).
    `idx` [n] is each k-gram's context, numbered 0..n_ctx-1; `kept` [n] bool or None."""
    a = adjusted.astype(np.float64)
    if smoothing in ("kn", "mkn"):
        d = disc_k[np.minimum(adjusted, 3)]  # D(a); D(0) = 0
        num = a - d  # a(hw) - D(a(hw)): absolute discounting, one D (kn) or D1, D2, D3+ (mkn)
        gnum_each = d  # sum of D over a context = D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)
    elif smoothing == "wb":
        num = a  # Witten-Bell: c(hw) + N1+(h.) p(w|h'), over c(h) + N1+(h.)
        gnum_each = (a > 0).astype(np.float64)  # N1+(h.), the number of distinct followers
    elif smoothing == "addk":
        num = a + add_k  # add-k: (c(hw) + k) / (c(h) + k |V'|) for the seen words
        gnum_each = None
    else:  # mle
        num = a
        gnum_each = np.zeros_like(a)
    den = np.bincount(idx, weights=a, minlength=n_ctx)  # sum_w a(hw) [contexts]
    if smoothing == "wb":
        nplus = np.bincount(idx, weights=gnum_each, minlength=n_ctx)
        den = den + nplus
    if smoothing == "addk":
        den = den + add_k * (V - 1)  # |V'| = |V| - 1: every word but <s>
        gnum = None
    else:
        gnum = np.bincount(idx, weights=gnum_each, minlength=n_ctx)
    if kept is not None and smoothing != "addk":
        gnum = gnum + np.bincount(idx[~kept], weights=num[~kept], minlength=n_ctx)
    return num, den, gnum


def interpolate(counts: NgramCounts, initial, smoothing: str, keep: list,
                add_k: float = 0.1) -> NgramTables:
    """Stage 4: interpolate each order with the one below, write log10 p and log10 backoffs,
    then drop pruned k-grams and renumber the tables. `initial` yields stage 3 per order."""
    N, V = counts.order, counts.vocab_size
    logp, backoff = [], []
    prev = None  # [n_{k-1}] float64 p(w|h) of the order below
    uniform = 1.0 / (V - 1)  # |V| - 1: <unk> included, <s> excluded (lmplz's uniform_prob)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, (num, den, gnum) in enumerate(initial, 1):
            g = None  # [n_{k-1}] gamma of the contexts (the k-1-grams)
            if smoothing == "addk":
                p, g = _addk_order(counts, k, num, den, prev, keep, add_k)
            elif k == 1:
                gamma0 = gnum[0] / den[0]
                # the unigrams interpolate with the uniform distribution, so <unk> and words
                # never seen get gamma / (|V| - 1), as lmplz does
                p = num / den[0]
                p += gamma0 * uniform
            else:
                p, g = interpolate_order(num, den, gnum, counts.ctx[k - 1],
                                         prev[counts.suffix[k - 1]])
            del num, den, gnum
            if k == 1:
                p[BOS] = 1.0  # written as log10 p = 0, as lmplz does; <s> is never predicted
            if g is not None:  # the backoff of the k-1-grams: log10 gamma where they have children
                backoff.append(context_backoff(g, counts.ctx[k - 1], keep[k - 1]))
            logp.append(np.log10(p).astype(np.float32))
            prev = p
    backoff.append(np.zeros(len(logp[-1]), np.float32))  # the top order has no backoff
    tables = NgramTables(N, V, word=list(counts.word), ctx=list(counts.ctx),
                         suffix=list(counts.suffix), logp=logp, backoff=backoff)
    return _apply_prune(tables, keep)


def interpolate_order(num: np.ndarray, den: np.ndarray, gnum: np.ndarray, ctx: np.ndarray,
                      prev_at_suffix: np.ndarray):
    """Stage 4 for the k-grams of one order k >= 2 (or a run of them holding whole contexts):
    (p [n] float64, gamma [n_ctx] float64). `ctx` [n] numbers the contexts 0..n_ctx-1 and
    `prev_at_suffix` [n] is p(w|h') of each k-gram's suffix."""
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.divide(gnum, den, out=np.zeros_like(gnum), where=den > 0)  # gamma(h)
        # interpolated (modified) Kneser-Ney, Chen and Goodman section 3:
        # p(w|h) = (a(hw) - D(a))/sum_x a(hx) + gamma(h) p(w|h'), with
        # gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / sum_x a(hx);
        # Witten-Bell: gamma(h) = N1+(h.) / (c(h) + N1+(h.)); MLE: gamma = 0
        p = num / den[ctx]
        p += g[ctx] * prev_at_suffix
    return p, g


def context_backoff(g: np.ndarray, ctx: np.ndarray, kept) -> np.ndarray:
    """log10 backoff (float32) of the contexts [n_ctx] whose gamma is `g` (modified in place):
    log10 gamma where a kept k-gram extends the context, 0 elsewhere. `ctx` [n] as above."""
    children = ctx if kept is None else ctx[kept]
    has_children = np.bincount(children, minlength=len(g)) > 0
    g[~has_children] = 1.0
    with np.errstate(divide="ignore"):
        return np.log10(g).astype(np.float32)


def _addk_order(counts, k, num, den, prev, keep, add_k):
    """add-k in backoff form (as SRILM's -addsmooth): a seen word gets (c(hw) + k)/(c(h) + k|V'|)
    (Chen and Goodman's additive smoothing), and the mass left for the unseen words goes to them
    in proportion to the order below:
    backoff(h) = (1 - sum_seen p(w|h)) / (1 - sum_seen p(w|h')). Returns (p, gamma of the
    contexts)."""
    V = counts.vocab_size
    if k == 1:
        return num / den[0], None  # every word is in table 1: exactly add-k over |V'| words
    ctx = counts.ctx[k - 1]
    kept = keep[k - 1]
    p = num / den[ctx]
    n_ctx = len(den)
    sel = np.ones(len(p), bool) if kept is None else kept
    lower = prev[counts.suffix[k - 1]]
    seen_lower = np.bincount(ctx[sel], weights=lower[sel], minlength=n_ctx)
    n_seen = np.bincount(ctx[sel], minlength=n_ctx)
    # 1 - sum_seen p from the counts, so it does not cancel: (sum_pruned c + k(|V'| - n_seen)) / den
    pruned_c = 0.0
    if kept is not None:
        pruned_c = np.bincount(ctx[~sel], weights=counts.raw[k - 1][~sel].astype(np.float64),
                               minlength=n_ctx)
    left = (pruned_c + add_k * (V - 1 - n_seen)) / den
    rest = 1.0 - seen_lower
    return p, np.where(left > 0, left / np.where(rest > 0, rest, 1.0), 1.0)


def _apply_prune(t: NgramTables, keep: list) -> NgramTables:
    """Drop the pruned k-grams and renumber the context and suffix indices of the order above."""
    remap = None  # [n_{k-1}] old index -> new index of the order below (None: unchanged)
    for k in range(1, t.order + 1):
        if remap is not None:
            t.ctx[k - 1] = remap[t.ctx[k - 1]]
            t.suffix[k - 1] = remap[t.suffix[k - 1]]
        m = keep[k - 1]
        if m is None:
            remap = None
            continue
        remap = (np.cumsum(m) - 1).astype(np.int32)
        for name in ("word", "ctx", "suffix", "logp", "backoff"):
            arr = getattr(t, name)
            arr[k - 1] = arr[k - 1][m]
    return t


# ------------------------------------------------------------------------------------------------
# the whole pipeline
# ------------------------------------------------------------------------------------------------
def estimate(ids: np.ndarray, vocab_size: int, order: int = 3, smoothing: str = "mkn", *,
             add_k: float = 0.1, prune=None, discount_fallback: bool = False,
             lmplz_quirk: bool = True, progress=None) -> tuple[NgramTables, dict]:
    """count -> adjust counts & discounts -> probabilities -> interpolate. Returns the tables and
    the statistics (counts per order, counts-of-counts, discounts) for the manifest."""
    if smoothing not in SMOOTHINGS:
        raise TrainingError(f"unknown --smoothing {smoothing!r}: use one of "
                            f"{', '.join(SMOOTHINGS)}")
    if not 1 <= order <= MAX_ORDER:
        raise TrainingError(f"--order must be between 1 and {MAX_ORDER}, got {order}")
    if smoothing == "addk" and not (add_k > 0 and math.isfinite(add_k)):
        raise TrainingError(f"--add-k must be a positive number, got {add_k}")
    if vocab_size < 4:
        raise TrainingError("the vocabulary has no word besides <unk>, <s> and </s>")
    quirk = lmplz_quirk and smoothing in ("kn", "mkn")
    counts = count(ids, order, vocab_size, quirk=quirk, progress=progress)
    adjusted = adjust_counts(counts, smoothing)
    coc = counts_of_counts(counts, adjusted, quirk)
    disc = discounts(coc, smoothing, discount_fallback)
    keep = _keep_masks(counts, prune)
    initial = initial_probabilities(counts, adjusted, disc, smoothing, keep, add_k)
    tables = interpolate(counts, initial, smoothing, keep, add_k)
    stats = {
        "sentences": counts.sentences, "tokens": counts.tokens,
        "ngrams": [int(len(w)) for w in tables.word],
        "ngrams_before_pruning": [int(len(w)) for w in counts.word],
        "counts_of_counts": coc[:, 1:].tolist(),
        "discounts": disc[:, 1:].tolist() if smoothing in ("kn", "mkn") else None,
    }
    return tables, stats


def train(data, order: int = 3, smoothing: str = "mkn", *, add_k: float = 0.1, prune=None,
          discount_fallback: bool = False, lmplz_quirk: bool = True, progress=None
          ) -> "NgramModel":
    """Train an n-gram model on DATA: a Corpus, a prepared directory or a text file.

    lmplz_quirk (default True) reproduces lmplz's discount statistics exactly (see
    counts_of_counts); False uses the textbook counts-of-counts.
    """
    corpus = data if isinstance(data, Corpus) else load_data(data)
    if "train" not in corpus or len(corpus["train"]) == 0:
        raise TrainingError("the training split is empty: there is nothing to count")
    ids = np.asarray(corpus["train"])
    t0 = time.perf_counter()
    tables, stats = estimate(ids, len(corpus.vocab), order, smoothing, add_k=add_k, prune=prune,
                             discount_fallback=discount_fallback, lmplz_quirk=lmplz_quirk,
                             progress=progress)
    _release_freed_memory()
    meta = {
        "smoothing": smoothing,
        "add_k": add_k if smoothing == "addk" else None,
        "prune": list(prune) if prune else None,
        "discount_fallback": discount_fallback,
        "lmplz_quirk": lmplz_quirk and smoothing in ("kn", "mkn"),
        "training": {
            "created_by": f"rnnkit {__version__}",
            "data": str(data) if not isinstance(data, Corpus) else None,
            "corpus": corpus.manifest.get("options") if corpus.manifest else None,
            "seconds": round(time.perf_counter() - t0, 3),
            **stats,
        },
    }
    return NgramModel(tables, corpus.vocab, corpus.tokenizer, meta)


def _release_freed_memory() -> None:
    """Hand the estimation's freed buffers back to the OS (glibc keeps them in its heap once its
    dynamic mmap threshold has grown), so that saving the model, which serialises it in memory,
    does not stack on top of the estimation's peak. Without glibc this does nothing."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
def index_module():
    """The compiled module rnnkit.models.ngram._ngram, or an RnnkitError that says how to
    build it."""
    try:
        # imported on first use, so that a missing build is an RnnkitError, not an ImportError
        from . import _ngram
    except ImportError as e:
        raise missing_build(e) from None
    return _ngram


@contextlib.contextmanager
def _damaged_file(model):
    """The compiled index's IndexError (an index outside its table, which only a damaged file
    that was mapped without its full check can hold) as a ModelFileError."""
    try:
        yield
    except IndexError as e:
        raise ModelFileError(f"{getattr(model, '_path', 'the model')}: {e}; load it without "
                             f"mmap to check it in full") from None


class NgramModel(LanguageModel):
    """A backoff n-gram model (ARPA semantics): p(w|h) = p*(hw) if hw is in the model, else
    b(h) p(w|h'), all log10. States are (m [B] int32, c [B] int64): the context is m-gram c."""

    model_type = MODEL_TYPE

    def __init__(self, tables: NgramTables, vocab: Vocab, tokenizer: Tokenizer | None = None,
                 meta: dict | None = None):
        if len(vocab) != tables.vocab_size:
            raise ModelFileError(f"the vocabulary has {len(vocab)} tokens, the 1-grams "
                                 f"{tables.vocab_size}")
        self.tables = tables
        self.order = tables.order
        self.vocab = vocab
        self.tokenizer = tokenizer or Tokenizer(normalize="none")
        self.meta = dict(meta or {})
        self.smoothing = self.meta.get("smoothing", "arpa")
        self._idx = None
        self._sampler = None
        self._start = None  # set by from_tensors when the file holds the start arrays

    def _starts(self) -> list:
        """Per order k < N, where the children of each k-gram begin in table k+1 ([n_k + 1],
        start_dtype(n_{k+1})); from the file when it holds them (a mapped model reads no ctx)."""
        if self._start is None:
            t = self.tables
            starts = []
            for k in range(1, t.order):
                n = len(t.word[k - 1])
                per = np.bincount(t.ctx[k], minlength=n) if len(t.ctx[k]) else np.zeros(n, np.int64)
                starts.append(np.concatenate(([0], np.cumsum(per))).astype(
                    start_dtype(len(t.word[k]))))
            self._start = starts + [None]
        return self._start

    @property
    def _index(self):
        if self._idx is None:
            t = self.tables
            self._idx = index_module().NgramIndex(
                list(t.word), [None] + list(t.suffix[1:]), self._starts(), list(t.logp),
                list(t.backoff))
        return self._idx

    def __repr__(self):
        sizes = ", ".join(f"{len(w):,}" for w in self.tables.word)
        return f"NgramModel(order={self.order}, smoothing={self.smoothing!r}, ngrams=[{sizes}])"

    @property
    def counts(self) -> list[int]:
        """The number of n-grams per order, as the \\data\\ section of an ARPA file lists them."""
        return [int(len(w)) for w in self.tables.word]

    # --- the protocol ---------------------------------------------------------------------------
    def start(self, batch: int, bos: bool = True):
        return self._index.start_state(batch, bos)

    def advance(self, state, ids: np.ndarray):
        with _damaged_file(self):
            m, c, _ = self._index.advance(state[0], state[1], np.asarray(ids))
        return (m, c)

    def log_probs(self, state) -> np.ndarray:
        with _damaged_file(self):
            return self._index.log_probs(state[0], state[1])

    def score_flat(self, ids: np.ndarray, offsets: np.ndarray, bos: bool = True, eos: bool = True):
        """(log10 p, n-gram length) of sentences ids[offsets[s]:offsets[s+1]] in one compiled
        call; sentence s's tokens, then its </s> when eos, are at offsets[s] + s*eos onwards."""
        ids = np.ascontiguousarray(ids, np.uint32)
        offsets = np.ascontiguousarray(offsets, np.int64)
        with _damaged_file(self):
            return self._index.score(ids, offsets, bos, eos)

    def score_arrays(self, sentences: list[np.ndarray], bos: bool = True, eos: bool = True):
        """(log10 [total], n-gram length [total], offsets [S+1]) of many sentences in one call:
        sentence s's tokens (then </s> when eos) are at offsets[s]:offsets[s+1]."""
        lengths = np.fromiter((len(s) for s in sentences), np.int64, len(sentences))
        offsets = np.zeros(len(sentences) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate(sentences) if len(sentences) else np.zeros(0, np.uint32)
        lp, ln = self.score_flat(ids, offsets, bos, eos)
        out_off = offsets + (np.arange(len(sentences) + 1) if eos else 0)
        return lp, ln, out_off

    def token_log_probs(self, sentences: list[np.ndarray], bos: bool = True) -> list[np.ndarray]:
        lp, _, off = self.score_arrays(sentences, bos=bos)
        return np.split(lp, off[1:-1])

    def matched_lengths(self, sentences: list[np.ndarray], bos: bool = True) -> list[np.ndarray]:
        _, ln, off = self.score_arrays(sentences, bos=bos)
        return np.split(ln.astype(np.int64), off[1:-1])

    # --- exact sampling in O(explicit successors) per token ------------------------------------
    def sample_ids(self, num: int, max_len: int, prompt_ids: np.ndarray, seed: int | None):
        """The sampling fast path (temperature 1, no filters): `num` sentences drawn from the
        model's distribution as a mixture of each context's discounted successors and its
        backoff (see _ngram.NgramSampler). Returns (ids uint32 [T], offsets int64 [num+1],
        log10 p float64 [num], complete bool [num]), or None when the model is not an
        interpolated one (some p*(hw) < b(h) p(w|h')), for which the generic sampler is exact."""
        if self._sampler is None:
            with _damaged_file(self):
                self._sampler = index_module().NgramSampler(self._index)
        if self._sampler.negative:
            return None
        m, c = self.start(1)
        for w in np.asarray(prompt_ids).tolist():
            m, c = self.advance((m, c), np.array([w]))
        seeds = np.random.default_rng(seed).integers(0, 2**63, 4, dtype=np.uint64)
        return self._sampler.sample(num, max_len, int(m[0]), int(c[0]), seeds)

    # --- KenLM's API (log10) with bos=False supported --------------------------------------------
    def full_scores(self, sentence: str, bos: bool = True, eos: bool = True):
        ids, oov = self.encode(sentence)
        lp, ln, _ = self.score_arrays([ids], bos=bos, eos=eos)
        for t in range(len(lp)):
            yield float(lp[t]), int(ln[t]), bool(oov[t]) if t < len(ids) else False

    def perplexity(self, sentences) -> float:
        """Corpus perplexity as KenLM's query defines it, all sentences in one compiled call."""
        ids, offsets, _ = self.encode_lines(list(sentences))
        if len(offsets) <= 1:
            return math.nan
        lp, _ = self.score_flat(ids, offsets)
        return float(10.0 ** (-lp.sum() / len(lp)))

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        ids, _ = self.encode(sentence)
        lp, _, _ = self.score_arrays([ids], bos=bos, eos=eos)
        return float(lp.sum())

    # --- files ----------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the model as an rnnkit model file (safetensors)."""
        tensors = {}
        t = self.tables
        for k in range(1, t.order + 1):
            tensors[f"ngram.{k}.word"] = t.word[k - 1].astype(np.int32, copy=False)
            tensors[f"ngram.{k}.logp"] = t.logp[k - 1].astype(np.float32, copy=False)
            if k < t.order or np.any(t.backoff[k - 1]):  # the top order's are 0: not stored
                tensors[f"ngram.{k}.backoff"] = t.backoff[k - 1].astype(np.float32, copy=False)
            if k >= 2:  # no ctx: the start array of the order below holds the same ranges
                tensors[f"ngram.{k}.suffix"] = t.suffix[k - 1].astype(np.int32, copy=False)
            if k < t.order:
                tensors[f"ngram.{k}.start"] = self._starts()[k - 1]
        meta = {**self.meta, "model_type": MODEL_TYPE, "order": t.order,
                "vocab": self.vocab.tokens, "tokenizer": self.tokenizer.to_dict()}
        modelfile.save(path, tensors, meta)

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict, path="model", mapped: bool = False
                     ) -> "NgramModel":
        """The model of an rnnkit file (tensors and metadata from modelfile.read).

        mapped: the tensors are views of a memory-mapped file (modelfile.read(mmap=True)); the
        checks that would read every array (ids in range, contexts sorted) are left out, so
        loading reads only the header and scoring touches only the pages it needs. The compiled
        index still checks every index it follows, so a damaged file gives a ModelFileError
        when used, never a crash."""
        try:
            order = int(meta["order"])
            vocab = Vocab(list(meta["vocab"]))
            tokenizer = Tokenizer.from_dict(meta.get("tokenizer") or {})
        except (KeyError, TypeError, ValueError, RnnkitError) as e:
            raise ModelFileError(
                f"{path}: the n-gram metadata is incomplete or damaged ({e})") from None
        if not 1 <= order <= MAX_ORDER:
            raise ModelFileError(f"{path}: order {order} is out of range")
        V = len(vocab)
        word, ctx, suffix, logp, backoff = [], [None], [None], [], []
        # files since format version 2 hold no ctx array (the start arrays hold the same
        # ranges) and no backoff array at the top order (all 0); version 1 files hold both
        starts = None
        try:
            if all(f"ngram.{k}.start" in tensors for k in range(1, order)):
                starts = [np.asarray(tensors[f"ngram.{k}.start"]) for k in range(1, order)]
            for k in range(1, order + 1):
                w = np.asarray(tensors[f"ngram.{k}.word"], np.int32)
                word.append(w)
                logp.append(np.asarray(tensors[f"ngram.{k}.logp"], np.float32))
                if k == order and f"ngram.{k}.backoff" not in tensors:
                    backoff.append(np.zeros(len(w), np.float32))  # pages untouched until read
                else:
                    backoff.append(np.asarray(tensors[f"ngram.{k}.backoff"], np.float32))
                if len(logp[-1]) != len(w) or len(backoff[-1]) != len(w):
                    raise ValueError(f"order {k}: arrays differ in length")
                if not mapped and len(w) and (w.min() < 0 or w.max() >= V):
                    raise ValueError(f"order {k}: word id out of range")
                if k >= 2:
                    s = np.asarray(tensors[f"ngram.{k}.suffix"], np.int32)
                    n_prev = len(word[k - 2])
                    if f"ngram.{k}.ctx" in tensors:
                        c = np.asarray(tensors[f"ngram.{k}.ctx"], np.int32)
                    elif starts is None:
                        raise KeyError(f"ngram.{k}.ctx")
                    else:
                        c = None  # derived from the start array when first used
                    if len(s) != len(w) or (c is not None and len(c) != len(w)):
                        raise ValueError(f"order {k}: arrays differ in length")
                    if not mapped and len(s) and (
                            s.min() < 0 or s.max() >= n_prev or (c is not None and len(c) and (
                                c.min() < 0 or c.max() >= n_prev or np.any(np.diff(c) < 0)))):
                        raise ValueError(f"order {k}: context index out of range or unsorted")
                    ctx.append(c)
                    suffix.append(s)
        except KeyError as e:
            raise ModelFileError(
                f"{path}: tensor {e} is missing (damaged n-gram model file)") from None
        except ValueError as e:
            raise ModelFileError(f"{path}: damaged n-gram model file ({e})") from None
        if len(word[0]) != V:
            raise ModelFileError(f"{path}: {len(word[0])} 1-grams for a vocabulary of {V}")
        if starts is not None:
            for k, st in enumerate(starts, 1):
                if (st.dtype not in (np.int32, np.int64) or st.ndim != 1
                        or len(st) != len(word[k - 1]) + 1 or st[0] != 0
                        or st[-1] != len(word[k])
                        or (not mapped and np.any(np.diff(st) < 0))):
                    raise ModelFileError(f"{path}: damaged n-gram model file (order {k}: the "
                                         f"start array does not match the tables)")
            starts.append(None)
        if any(c is None for c in ctx[1:]):
            ctx = ContextsFromStarts(ctx, starts, path)
        tables = NgramTables(order, V, word, ctx, suffix, logp, backoff)
        meta = {k: v for k, v in meta.items() if k not in ("vocab", "tokenizer")}
        model = cls(tables, vocab, tokenizer, meta)
        model._start = starts
        model._path = str(path)
        return model

    def words_matrix(self, k: int) -> np.ndarray:
        """The word ids of every k-gram, [n_k, k] int32, in table order."""
        t = self.tables
        W = np.empty((len(t.word[k - 1]), k), np.int32)
        W[:, -1] = t.word[k - 1]
        if k >= 2:
            W[:, :-1] = self.words_matrix(k - 1)[t.ctx[k - 1]]
        return W
