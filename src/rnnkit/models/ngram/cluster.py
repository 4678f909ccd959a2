"""The n-gram estimator on a Dask cluster (dask.distributed): the stages of estimate.py, each
a shuffle by the key that keeps its work local, then estimate.py's own arithmetic per shard.

Dimension letters as in estimate.py: N order, V vocabulary, k an order, P shards (partitions),
C corpus chunks (sentence ranges). A shard of order k holds whole k-grams as a word matrix
W [m, k] int32 (rows sorted lexicographically, which is the in-memory table order) with
per-row arrays beside it. `_shard(W[:, cols])` is the one hash that places rows, so a k-gram
and a (k+1)-gram whose suffix (or context) is that k-gram land on the same shard.

  count          chunks of whole sentences count their k-grams; shuffle by the whole k-gram;
                 sum (shard of order k = hash of w1..wk)
  adjust         (k+1)-grams shuffled by their suffix w2..wk+1 meet the k-gram they continue:
                 continuation counts; counts-of-counts summed over shards -> discounts (driver)
  probabilities  k-grams shuffled by their context w1..wk-1: each context's k-grams together,
                 in word order, so den(h) and gamma(h) are the in-memory sums bit for bit
  interpolate    order by order: k-grams shuffled by their suffix meet p(suffix) of order k-1
                 (sharded by the whole (k-1)-gram); order 1 and its p are on the driver
                 (add-k, a backoff form: p needs nothing more, but gamma(h) sums p(suffix)
                 over h's words, so the joined k-grams go back to their context's shard)
  assemble       the driver gathers (W, log10 p, log10 backoff), sorts each order and numbers
                 the contexts and suffixes: the NgramTables of estimate.estimate

Every floating-point operation is the in-memory one on the same operands in the same order
(elementwise, or np.bincount over one context's k-grams in word order), so the tables are
bit-identical to estimate.estimate for any number of workers and shards.
"""
from __future__ import annotations

import contextlib
import math
import operator
import time

import numpy as np

from ..._version import __version__
from ...errors import InputError, RnnkitError, TrainingError
from ...text.prepare import Corpus, load_data
from ...text.vocab import BOS, EOS
from . import estimate as est

CLUSTER_HINT = "pip install 'rnnkit[cluster]' (dask and distributed)"
STAGES = ("count", "adjust", "probabilities", "assemble")   # what progress() reports
SMOOTHINGS = ("mkn", "kn", "wb", "addk", "mle")
CHUNK_TOKENS = 4_000_000  # at most this many ids per counting task
_MIX = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3's fmix64 constant


def _dask():
    """The distributed module, or an RnnkitError saying how to install it."""
    try:
        import distributed
    except ImportError as e:
        raise RnnkitError(f"the Dask cluster estimator needs dask.distributed ({e}): "
                          f"{CLUSTER_HINT}") from None
    return distributed


def check_available() -> None:
    """RnnkitError (with how to install them) unless dask.distributed can be imported."""
    _dask()


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None, timeout: float = 10.0):
    """A distributed.Client: on the scheduler at `scheduler` (tcp://HOST:8786), or on a local
    cluster of `workers` single-threaded worker processes, closed on exit."""
    distributed = _dask()
    if (scheduler is None) == (workers is None):
        raise RnnkitError("give either --scheduler ADDRESS or --workers N")
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=f"{timeout}s")
        except (OSError, ValueError, TypeError) as e:  # refused, timed out, unknown protocol
            raise RnnkitError(
                f"could not reach the Dask scheduler at {scheduler!r} ({type(e).__name__}: "
                f"{e}); is `dask scheduler` running there, and is the address "
                f"tcp://HOST:PORT (default port 8786)?") from None
        with client:
            yield client
        return
    if workers < 1:
        raise RnnkitError(f"--workers must be at least 1, got {workers}")
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        yield client


# ------------------------------------------------------------------------------------------------
# rows: hashing, sorting, matching (numpy, run on the workers)
# ------------------------------------------------------------------------------------------------
def _shard(W: np.ndarray, P: int) -> np.ndarray:
    """The shard [m] of each row of W [m, j]: a fixed 64-bit mix of its words (the same in every
    process, unlike Python's hash), so equal rows of any origin meet on one shard."""
    h = np.full(len(W), 0x9E3779B97F4A7C15, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(W.shape[1]):
            h ^= W[:, j].astype(np.uint64)
            h *= _MIX
            h ^= h >> np.uint64(33)
    return (h % np.uint64(P)).astype(np.int64)


def _row_keys(W: np.ndarray) -> np.ndarray:
    """One int64 key per row of W [m, j] whose order is the rows' lexicographic order (equal
    rows, equal keys): words are packed base 2^31 while they fit in 63 bits, and the packed
    prefix is replaced by its dense rank (one int64 sort) when the next word would not fit. One
    or two int64 sorts for a 5-gram instead of np.lexsort over 5 columns (~20x slower)."""
    m, j = W.shape
    if j == 0:
        return np.zeros(m, np.int64)
    key = W[:, 0].astype(np.int64)
    top = int(key.max()) + 1 if m else 1
    for c in range(1, j):
        col = W[:, c].astype(np.int64)
        width = int(col.max()) + 1 if m else 1
        if top * width >= 2**63:  # rank the prefix first: ranks < m, so rank * width fits
            _, inv, _ = est._unique(key)
            key, top = inv.astype(np.int64), int(inv.max()) + 1
        key = key * width + col
        top *= width
    return key


def _lexsort(W: np.ndarray) -> np.ndarray:
    """The permutation that sorts the rows of W lexicographically."""
    return np.argsort(_row_keys(W))


def _group_starts(W: np.ndarray) -> np.ndarray:
    """[m] bool: row i of the sorted W differs from row i-1."""
    new = np.ones(len(W), bool)
    if len(W) > 1:
        new[1:] = np.any(W[1:] != W[:-1], axis=1)
    return new


def _sum_rows(W: np.ndarray, *values: np.ndarray):
    """Distinct rows of W, sorted, with each value array summed over equal rows."""
    key = _row_keys(W)
    perm = np.argsort(key)
    sk = key[perm]
    new = np.ones(len(sk), bool)
    if len(sk) > 1:
        np.not_equal(sk[1:], sk[:-1], out=new[1:])
    first = np.flatnonzero(new)
    return (W[perm[first]],) + tuple(np.add.reduceat(v[perm], first) if len(first) else v[:0]
                                     for v in values)


def _match(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Index in A (distinct rows, sorted) of each row of B; every row of B must be in A."""
    key = _row_keys(np.concatenate([A, B]))  # one key space for both
    return _searchsorted(key[:len(A)], key[len(A):])


def _searchsorted(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """np.searchsorted(a, v) with the needles sorted first: numpy's binary search narrows from
    the previous answer, so sorted needles stay in cache (~3x faster on millions of keys)."""
    if len(v) < 2:
        return np.searchsorted(a, v)
    order = np.argsort(v)
    out = np.empty(len(v), np.int64)
    out[order] = np.searchsorted(a, v[order])
    return out


def _split(P: int, key: np.ndarray, *arrays):
    """Rows of each array grouped by shard key [m] -> list of P tuples (rows keep their order)."""
    # a 16-bit key makes numpy's stable sort a radix sort: O(m), not O(m log m)
    perm = np.argsort(key.astype(np.uint16) if P <= 1 << 16 else key, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(key, minlength=P))))
    return [tuple(a[perm[bounds[p]:bounds[p + 1]]] for a in arrays) for p in range(P)]


def _pick(parts, i):
    return parts[i]


def _concat(*pieces):
    """Piecewise concatenation of tuples of arrays."""
    return tuple(np.concatenate(col) for col in zip(*pieces))


# ------------------------------------------------------------------------------------------------
# the tasks
# ------------------------------------------------------------------------------------------------
def _load_chunk(path: str, start: int, stop: int) -> np.ndarray:
    """ids[start:stop] of a .npy file that every worker can read (a shared filesystem)."""
    try:
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[start:stop])
    except OSError as e:
        raise InputError(f"a Dask worker cannot read {path} ({e}); --shared-data needs the "
                         f"corpus at the same path on every worker (a shared filesystem); "
                         f"without it the driver sends the ids") from None


def _check_chunk(chunk: np.ndarray, V: int) -> None:
    """estimate.count's checks of the ids, on one chunk."""
    if len(chunk) and int(chunk.max()) >= V:
        raise TrainingError(f"token id {int(chunk.max())} is outside the vocabulary of {V}")
    if np.any(chunk == BOS):
        raise TrainingError("the training ids contain <s> (id 1) inside a sentence; <s> is "
                            "context only (rerun `rnnkit prepare`, which maps a literal <s> to "
                            "<unk>)")


def _first_seen(chunk: np.ndarray, start: int, V: int) -> np.ndarray:
    """First position [V] of every word in the chunk (global positions; int64 max: absent)."""
    _check_chunk(chunk, V)
    first = np.full(V, np.iinfo(np.int64).max, np.int64)
    words, at = np.unique(chunk, return_index=True)
    first[words] = at + start
    return first


def _count_chunk(chunk: np.ndarray, order: int, V: int, P: int, ranks):
    """Stage 1, map: (raw unigram counts [V], the chunk's last n-gram in KenLM's suffix order as
    (rank key, words, offset), then per order k >= 2 its k-grams and counts split into P
    shards by the whole k-gram)."""
    _check_chunk(chunk, V)
    x, offset, sentences = est._stream(chunk)
    raw1 = np.bincount(x, minlength=V).astype(np.int64)
    last = None
    if ranks is not None:
        i = est._last_in_suffix_order(x, offset, order, ranks)
        back = np.arange(order)
        key = tuple(np.where(offset[i] >= back, ranks[x[np.maximum(i - back, 0)]],
                             ranks[BOS]).tolist())
        last = (key, x[max(i - order + 1, 0):i + 1].tolist(), int(offset[i]))
    shards = []
    for k in range(2, order + 1):
        pos = np.flatnonzero(offset >= k - 1)  # where a k-gram ends
        W = np.stack([x[pos - (k - 1 - j)] for j in range(k)], axis=1)  # [m, k]
        W, c = _sum_rows(W, np.ones(len(W), np.int64))
        shards.append(_split(P, _shard(W, P), W, c))
    return raw1, last, (sentences, int(len(x) - 2 * sentences)), shards


def _pick_count(result, k: int, p: int):
    return result[3][k - 2][p]


def _sum_counts(*pieces):
    """Stage 1, reduce: one shard's distinct k-grams (sorted) and raw counts."""
    W, c = _concat(*pieces)
    return _sum_rows(W, c)


def _suffixes(shard, P: int):
    """Stage 2, map: the distinct suffixes w2..wk+1 of a shard of (k+1)-grams with how many
    (k+1)-grams continue each, split by the suffix's shard."""
    W, _ = shard
    S, n = _sum_rows(W[:, 1:], np.ones(len(W), np.int64))
    return _split(P, _shard(S, P), S, n)


def _unigram_continuations(shard, V: int) -> np.ndarray:
    """N1+(. w) [V] from one shard of the 2-grams."""
    return np.bincount(shard[0][:, 1], minlength=V).astype(np.int64)


def _adjust(shard, quirk, kn: bool, *pieces):
    """Stage 2, reduce: one shard of order k with its adjusted counts and its counts-of-counts
    [5]; `pieces` are the continuation counts of its k-grams from the (k+1)-gram shards (none at
    the top order or without Kneser-Ney). Also (adjusted, raw) of the quirk's k-gram when it
    lives here (estimate.counts_of_counts)."""
    W, raw = shard
    a = raw.astype(np.int64)
    if kn and pieces:
        S, n = _concat(*pieces)
        cont = np.zeros(len(W), np.int64)
        if len(S):
            S, n = _sum_rows(S, n)
            cont[_match(W, S)] = n
        a = np.where(W[:, 0] == BOS, a, cont)  # N1+(. w..) except after <s> (estimate.adjust_counts)
    coc = np.bincount(np.minimum(a, 5), minlength=6)[:5]
    found = None
    if quirk is not None:
        hit = np.flatnonzero(np.all(W == np.asarray(quirk, np.int32), axis=1))
        if len(hit):
            found = (int(a[hit[0]]), int(raw[hit[0]]))
    return (W, a, raw), coc, found


def _get(x, i):
    return x[i]


def _slice(x, a, b):
    return x[a:b]


def _by_context(shard, P: int):
    """Stage 3, map: a shard's (W, adjusted, raw) split by the context w1..wk-1."""
    W, a, raw = shard
    return _split(P, _shard(W[:, :-1], P), W, a, raw)


def _probabilities(disc_k, smoothing: str, V: int, p1, P: int, threshold: int, add_k: float,
                   *pieces):
    """Stage 3, reduce: one shard of contexts. Sorted by (context, word) as the in-memory table,
    so estimate.initial_order's sums add each context's k-grams in the same order. Returns the k-grams'
    (W, q = num/den(h), gamma(h), kept) split by their suffix (or, for k = 2, (W, p, kept) split
    by the whole 2-gram) and each context's gamma (the backoff of the order below, on the shard
    of the context's own hash; 1 where no kept k-gram extends it). kept: the raw count is above
    --prune's `threshold` (all kept at 0); a pruned k-gram's numerator goes to gamma(h).
    add-k (backoff form, estimate._addk_order): q is p itself, and gamma(h) needs p(suffix) of
    the seen words, so for k >= 3 the k-grams go out with each context's left-over mass
    instead of gamma, and _interpolate_addk / _addk_contexts finish gamma after the join."""
    W, adjusted, raw = _concat(*pieces)
    perm = _lexsort(W)
    W, adjusted, raw = W[perm], adjusted[perm], raw[perm]
    ctx_new = _group_starts(W[:, :-1])
    idx = np.cumsum(ctx_new) - 1  # local context index of each k-gram
    kept = raw > threshold if threshold > 0 else None
    num, den, gnum = est.initial_order(adjusted, disc_k, smoothing, idx, int(ctx_new.sum()),
                                       kept, add_k, V)
    if smoothing == "addk":
        return _addk_probabilities(W, raw, idx, ctx_new, kept, num, den, add_k, V, p1, P)
    # estimate.interpolate_order split in two: its p = num / den[ctx] and gamma here, its
    # p += gamma[ctx] * p(suffix) where p(suffix) is (_interpolate; here for k = 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.divide(gnum, den, out=np.zeros_like(gnum), where=den > 0)  # gamma(h)
        q = num / den[idx]
    gk = g[idx]
    contexts = W[ctx_new, :-1]
    if kept is None:
        kept = np.ones(len(W), bool)
    else:  # estimate.context_backoff: backoff 0 (gamma 1) where no kept k-gram extends h
        g = np.where(np.bincount(idx[kept], minlength=len(g)) > 0, g, 1.0)
    if p1 is not None:  # k = 2: the suffix is one word, p of the order below is on every worker
        q += gk * p1[W[:, 1]]  # ... p += gamma(h) p(w|h')
        out = _split(P, _shard(W, P), W, q, kept)
    else:
        out = _split(P, _shard(W[:, 1:], P), W, q, gk, kept)
    return out, contexts, g


def _addk_probabilities(W, raw, idx, ctx_new, kept, num, den, add_k, V, p1, P):
    """_probabilities for add-k, as estimate._addk_order computes it per context: p = num / den
    and the mass left for the unseen words, (pruned counts + k (|V'| - seen)) / den."""
    n_ctx = len(den)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = num / den[idx]
        sel = np.ones(len(W), bool) if kept is None else kept
        n_seen = np.bincount(idx[sel], minlength=n_ctx)
        pruned_c = 0.0
        if kept is not None:
            pruned_c = np.bincount(idx[~sel], weights=raw[~sel].astype(np.float64),
                                   minlength=n_ctx)
        left = (pruned_c + add_k * (V - 1 - n_seen)) / den
    if p1 is not None:  # k = 2: p of each suffix (one word) is on every worker
        g = _addk_gamma(idx, sel, p1[W[:, 1]], left)
        return _split(P, _shard(W, P), W, q, sel), W[ctx_new, :-1], g
    return _split(P, _shard(W[:, 1:], P), W, q, left[idx], sel), None, None


def _addk_gamma(idx, kept, lower, left):
    """gamma(h) of add-k's backoff form (estimate._addk_order, then estimate.context_backoff):
    left(h) / (1 - sum of p(w|h') over the kept seen words), 1 where nothing is left or no
    kept k-gram extends h. idx [n] the context of each k-gram, sorted by (context, word)."""
    n_ctx = len(left)
    with np.errstate(divide="ignore", invalid="ignore"):
        seen_lower = np.bincount(idx[kept], weights=lower[kept], minlength=n_ctx)
        rest = 1.0 - seen_lower
        g = np.where(left > 0, left / np.where(rest > 0, rest, 1.0), 1.0)
    return np.where(np.bincount(idx[kept], minlength=n_ctx) > 0, g, 1.0)


def _interpolate_addk(prev_shard, P: int, *pieces):
    """Stage 4 for add-k (k >= 3): p needs nothing more; the k-grams whose suffix is on this
    shard take p(suffix) to their context's shard, where _addk_contexts sums it. Returns
    ((W, p, kept), that split)."""
    W, q, leftk, kept = _concat(*pieces)
    Wp, pp = prev_shard[:2]
    lower = pp[_match(Wp, W[:, 1:])] if len(W) else np.zeros(0)
    return (W, q, kept), _split(P, _shard(W[:, :-1], P), W, lower, leftk, kept)


def _addk_contexts(*pieces):
    """One shard of contexts for add-k: (contexts, gamma), summed in (context, word) order as
    the in-memory table is."""
    W, lower, leftk, kept = _concat(*pieces)
    perm = _lexsort(W)
    W, lower, leftk, kept = W[perm], lower[perm], leftk[perm], kept[perm]
    ctx_new = _group_starts(W[:, :-1])
    idx = np.cumsum(ctx_new) - 1
    return W[ctx_new, :-1], _addk_gamma(idx, kept, lower, leftk[ctx_new])


def _interpolate(prev_shard, *pieces):
    """Stage 4, reduce (k >= 3): the k-grams whose suffix is on this shard of order k-1 meet
    p(suffix): p(w|h) = q + gamma(h) p(w|h') (estimate.interpolate, the same two operations)."""
    W, q, gk, kept = _concat(*pieces)
    Wp, pp = prev_shard[:2]
    p = q
    if len(W):
        p = q + gk * pp[_match(Wp, W[:, 1:])]
    return W, p, kept


def _rehash(shard, P: int):
    W, p, kept = shard
    return _split(P, _shard(W, P), W, p, kept)


def _store(*pieces):
    """One shard of order k's final p (and kept), by the whole k-gram, sorted (to match
    suffixes)."""
    W, p, kept = _concat(*pieces)
    perm = _lexsort(W)
    return W[perm], p[perm], kept[perm]


def _finish(shard, ctx_piece):
    """A shard's log10 p and log10 backoff (0 where the k-gram has no children), float32, and
    which of its k-grams survive --prune."""
    W, p, kept = shard
    bo = np.ones(len(W))
    if ctx_piece is not None and len(ctx_piece[0]):
        C, g = ctx_piece
        bo[_match(W, C)] = g
    with np.errstate(divide="ignore"):
        return W, np.log10(p).astype(np.float32), np.log10(bo).astype(np.float32), kept


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
def _chunks(ids: np.ndarray, n: int) -> list[tuple[int, int]]:
    """About n ranges of whole sentences (each ends after an </s>, the last at the end)."""
    bounds = [0]
    for i in range(1, n):
        at = max(bounds[-1], len(ids) * i // n)
        while at < len(ids):  # to the next </s>, in small windows
            hit = np.flatnonzero(np.asarray(ids[at:at + 65536]) == EOS)
            if len(hit):
                at += int(hit[0]) + 1
                break
            at += 65536
        if bounds[-1] < at < len(ids):
            bounds.append(at)
    bounds.append(len(ids))
    return list(zip(bounds[:-1], bounds[1:]))


def estimate(client, ids: np.ndarray, vocab_size: int, order: int = 3, smoothing: str = "mkn",
             *, add_k: float = 0.1, prune=None, discount_fallback: bool = False,
             lmplz_quirk: bool = True, partitions: int | None = None,
             ids_path: str | None = None, progress=None) -> tuple[est.NgramTables, dict]:
    """estimate.estimate on the cluster of `client`: the same (tables, stats), bit for bit,
    plus stats["stage_seconds"] (count, adjust, probabilities: with the interpolation, which
    runs order by order in one pipeline with it, assemble). partitions: shards per order
    (default: 2 per worker). prune: --prune's thresholds (estimate.prune_thresholds).
    ids_path: a .npy file holding `ids` that every worker can read (a shared filesystem); the
    workers then read their own sentence ranges instead of receiving them from the driver.
    progress(stage, done, total, temp_bytes) reports each stage's advance in bytes of the
    corpus's ids (temp_bytes None: the workers' spill is theirs), as the external estimator's."""
    if smoothing not in SMOOTHINGS:
        raise TrainingError(f"--smoothing {smoothing} is not available on a cluster (use one of "
                            f"{', '.join(SMOOTHINGS)}, or train without --workers/--scheduler)")
    if not 1 <= order <= est.MAX_ORDER:
        raise TrainingError(f"--order must be between 1 and {est.MAX_ORDER}, got {order}")
    if smoothing == "addk" and not (add_k > 0 and math.isfinite(add_k)):
        raise TrainingError(f"--add-k must be a positive number, got {add_k}")
    if vocab_size < 4:
        raise TrainingError("the vocabulary has no word besides <unk>, <s> and </s>")
    ids = np.asarray(ids) if ids_path is None else np.load(ids_path, mmap_mode="r")
    if len(ids) == 0:
        raise TrainingError("the training split is empty: there is nothing to count")
    V, N = vocab_size, order
    thresholds = est.prune_thresholds(prune, N) or [0] * N
    kn = smoothing in ("kn", "mkn")
    quirk_on = lmplz_quirk and kn
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    P = partitions or 2 * n_workers
    def submit(fn, *args):
        return client.submit(fn, *args, pure=False)  # every call is new work, never deduplicated

    times = {}
    nbytes = 4 * len(ids)

    def report(name, fraction):
        if progress is not None:
            progress(name, int(nbytes * min(fraction, 1.0)), nbytes, None)

    def stage(name):
        report(name, 0.0)
        times[name] = time.perf_counter()

    def done(name, futures):
        _wait(client, futures)
        report(name, 1.0)
        times[name] = round(time.perf_counter() - times[name], 3)

    # --- stage 1: count ------------------------------------------------------------------------
    stage("count")
    ranges = _chunks(ids, max(P, -(-len(ids) // CHUNK_TOKENS)))
    if ids_path is None:
        chunk_f = [client.scatter(np.ascontiguousarray(ids[a:b]), hash=False) for a, b in ranges]
    else:
        chunk_f = [submit(_load_chunk, ids_path, a, b) for a, b in ranges]
    ranks = None
    if quirk_on:
        firsts = client.gather([submit(_first_seen, c, a, V) for c, (a, _) in zip(chunk_f, ranges)])
        first = np.minimum.reduce(firsts)
        first[[0, BOS, EOS]] = [-3, -2, -1]  # <unk>, <s>, </s> first (est.kenlm_ranks)
        ranks = np.empty(V, np.int64)
        ranks[np.argsort(first, kind="stable")] = np.arange(V)
        ranks = client.scatter(ranks, broadcast=True, hash=False)
    counted = [submit(_count_chunk, c, N, V, P, ranks) for c in chunk_f]
    _wait(client, counted, lambda i, n: report("count", 0.9 * i / n))
    heads = client.gather([submit(_slice, f, 0, 3) for f in counted])
    raw1 = np.sum([h[0] for h in heads], axis=0)
    sentences = sum(h[2][0] for h in heads)
    tokens = sum(h[2][1] for h in heads)
    shards = {}  # order k -> [P] futures of (W, raw)
    for k in range(2, N + 1):
        shards[k] = [submit(_sum_counts, *[submit(_pick_count, f, k, p) for f in counted])
                     for p in range(P)]
    done("count", [f for k in shards for f in shards[k]])
    del counted, chunk_f

    # --- stage 2: adjust counts, counts-of-counts, discounts -----------------------------------
    stage("adjust")
    quirk = [None] * (N + 1)  # per order k < N: the words of the quirk's k-gram
    if quirk_on:
        key, words, off = max(h[1] for h in heads)
        for k in range(1, N):
            if off >= k:  # the k-word suffix of the last n-gram, when it does not start with <s>
                quirk[k] = words[-k:]
    bos1 = np.arange(V) == BOS
    a1 = raw1.copy()
    if kn and N > 1:
        cont1 = np.sum(client.gather([submit(_unigram_continuations, s, V) for s in shards[2]]),
                       axis=0)
        a1 = np.where(bos1, raw1, cont1)
    a1[BOS] = 0
    coc = np.zeros((N, 5), np.int64)
    coc[0] = np.bincount(np.minimum(a1, 5), minlength=6)[:5]
    found = {1: (int(a1[quirk[1][0]]), int(raw1[quirk[1][0]]))} if quirk[1] else {}
    adjusted = {}
    for k in range(2, N + 1):
        pieces = [[] for _ in range(P)]
        if kn and k < N:
            sfx = [submit(_suffixes, s, P) for s in shards[k + 1]]
            pieces = [[submit(_pick, f, p) for f in sfx] for p in range(P)]
        res = [submit(_adjust, shards[k][p], quirk[k], kn, *pieces[p]) for p in range(P)]
        adjusted[k] = [submit(_get, r, 0) for r in res]
        for c, f in client.gather([submit(_slice, r, 1, 3) for r in res]):
            coc[k - 1] += c
            if f is not None:
                found[k] = f
        report("adjust", (k - 1) / N)
    del shards
    coc[:, 0] = 0
    for k, (a, r) in found.items():  # estimate.counts_of_counts: lmplz's quirk
        if 1 <= a <= 4:
            coc[k - 1, a] -= 1
        if 1 <= r <= 4:
            coc[k - 1, r] += 1
    disc = est.discounts(coc, smoothing, discount_fallback)
    done("adjust", [f for k in adjusted for f in adjusted[k]])

    # --- stage 1 of the model: unigrams on the driver (estimate.interpolate, k = 1) ------------
    num, den, gnum = est.initial_order(a1, disc[0], smoothing, np.zeros(V, np.int64), 1, None,
                                       add_k, V)
    p1 = num / den[0]
    if smoothing != "addk":  # add-k's unigrams are add-k over |V'| words, nothing to add
        p1 += gnum[0] / den[0] * (1.0 / (V - 1))
    p1[BOS] = 1.0
    with np.errstate(divide="ignore"):
        logp1 = np.log10(p1).astype(np.float32)

    # --- stages 3 and 4: probabilities by context, interpolation by suffix ---------------------
    stage("probabilities")
    stage_p = 0.0
    p1_f = client.scatter(p1, broadcast=True, hash=False) if N > 1 else None
    final = {}  # order k -> [P] futures of (W, p) sharded by the whole k-gram
    contexts = {}  # order k -> [P] futures of (contexts (k-1 words), gamma), by the context
    for k in range(2, N + 1):
        t0 = time.perf_counter()
        by_ctx = [submit(_by_context, s, P) for s in adjusted[k]]
        probs = [submit(_probabilities, disc[k - 1], smoothing, V, p1_f if k == 2 else None, P,
                        thresholds[k - 1], add_k, *[submit(_pick, f, p) for f in by_ctx])
                 for p in range(P)]
        contexts[k] = [submit(_slice, r, 1, 3) for r in probs]
        outs = [submit(_get, r, 0) for r in probs]
        if k > 2 and smoothing == "addk":  # gamma needs p(suffix): the join, then contexts
            joined = [submit(_interpolate_addk, final[k - 1][s], P,
                             *[submit(_pick, o, s) for o in outs]) for s in range(P)]
            by_context = [submit(_get, j, 1) for j in joined]
            contexts[k] = [submit(_addk_contexts, *[submit(_pick, b, p) for b in by_context])
                           for p in range(P)]
            outs = [submit(_rehash, submit(_get, j, 0), P) for j in joined]
        elif k > 2:
            joined = [submit(_interpolate, final[k - 1][s], *[submit(_pick, o, s) for o in outs])
                      for s in range(P)]
            outs = [submit(_rehash, j, P) for j in joined]
        final[k] = [submit(_store, *[submit(_pick, o, p) for o in outs]) for p in range(P)]
        _wait(client, final[k])
        report("probabilities", (k - 1) / (N - 1))
        stage_p += time.perf_counter() - t0
        del adjusted[k]
    report("probabilities", 1.0)
    times["probabilities"] = round(stage_p, 3)

    # --- assemble: gather, sort, number the contexts and suffixes ------------------------------
    stage("assemble")
    word, ctx, suffix = [np.arange(V, dtype=np.int32)], [None], [None]
    logp = [logp1]
    g1 = None
    if N > 1:
        parts = client.gather(contexts[2])
        g1 = np.ones(V)
        for C, g in parts:
            g1[C[:, 0]] = g
    with np.errstate(divide="ignore"):
        backoff = [np.log10(g1).astype(np.float32) if g1 is not None else np.zeros(V, np.float32)]
    key_of = {1: np.arange(V, dtype=np.int64)}  # per order, the sorted keys ctx * V + word
    keep = [None]  # per order, which k-grams survive --prune (None: all)
    for k in range(2, N + 1):
        fin = [submit(_finish, final[k][p], contexts[k + 1][p] if k < N else None)
               for p in range(P)]
        W, lp, bo, kept = _concat(*client.gather(fin))
        del final[k]
        # the index of the (k-1)-word prefix in table k-1, through the sorted keys of each order
        # (each shard's rows are sorted: P sorted runs, which both the binary searches and the
        # stable sort (a merge of runs) exploit)
        prefix = W[:, 0].astype(np.int64)
        for j in range(2, k):
            prefix = np.searchsorted(key_of[j], prefix * V + W[:, j - 1])
        key = prefix * V + W[:, -1]
        perm = np.argsort(key, kind="stable")  # table order
        key, lp, bo = key[perm], lp[perm], bo[perm]
        keep.append(kept[perm] if thresholds[k - 1] > 0 else None)
        c, w = prefix[perm].astype(np.int32), W[perm, -1]
        del W
        # the suffix: (the suffix of the context) + w, found among table k-1's keys
        s = w.astype(np.int64) if k == 2 else _searchsorted(key_of[k - 1],
                                                               suffix[-1][c].astype(np.int64) * V + w)
        word.append(w.astype(np.int32))
        ctx.append(c)
        suffix.append(s.astype(np.int32))
        logp.append(lp)
        backoff.append(bo if k < N else np.zeros(len(w), np.float32))
        key_of[k] = key
        report("assemble", (k - 1) / (N - 1))
    report("assemble", 1.0)
    times["assemble"] = round(time.perf_counter() - times["assemble"], 3)
    tables = est.NgramTables(N, V, word=word, ctx=ctx, suffix=suffix, logp=logp, backoff=backoff)
    before = [int(len(w)) for w in word]
    tables = est._apply_prune(tables, keep)   # drop and renumber, as the in-memory estimator
    stats = {
        "sentences": sentences, "tokens": tokens,
        "ngrams": [int(len(w)) for w in tables.word],
        "ngrams_before_pruning": before,
        "counts_of_counts": coc[:, 1:].tolist(),
        "discounts": disc[:, 1:].tolist() if kn else None,
        "stage_seconds": times, "workers": n_workers, "partitions": P,
    }
    return tables, stats


def _wait(client, futures, report=None) -> None:
    """Wait for futures; a task's exception (a TrainingError from a worker) is raised here.
    report(i, n) after each of the n futures finishes."""
    if report is None:
        _dask().wait(futures)
    else:
        for i, _ in enumerate(_dask().as_completed(futures), 1):
            report(i, len(futures))
    for f in futures:
        if f.status == "error":
            f.result()


def train(data, order: int = 3, smoothing: str = "mkn", *, scheduler: str | None = None,
          workers: int | None = None, add_k: float = 0.1, prune=None,
          discount_fallback: bool = False, lmplz_quirk: bool = True,
          partitions: int | None = None, shared: bool = False,
          progress=None) -> "est.NgramModel":
    """estimate.train on a Dask cluster: --scheduler tcp://HOST:8786 or a local cluster of
    --workers N processes. shared: DATA is a prepared corpus directory on a filesystem every
    worker sees at the same path, and the workers read their sentence ranges from it; otherwise
    the driver sends each worker its ranges."""
    corpus = data if isinstance(data, Corpus) else load_data(data)
    if "train" not in corpus or len(corpus["train"]) == 0:
        raise TrainingError("the training split is empty: there is nothing to count")
    ids_path = None
    if shared:
        ids_path = getattr(corpus["train"], "filename", None)
        if ids_path is None:
            raise RnnkitError(f"--shared-data needs a corpus directory made by `rnnkit prepare` "
                              f"(the workers read its train.npy), not {data}")
        ids_path = str(ids_path)
    t0 = time.perf_counter()
    with connect(scheduler, workers) as client:
        tables, stats = estimate(client, corpus["train"], len(corpus.vocab), order, smoothing,
                                 add_k=add_k, prune=prune, discount_fallback=discount_fallback, lmplz_quirk=lmplz_quirk,
                                 partitions=partitions, ids_path=ids_path, progress=progress)
    meta = {
        "smoothing": smoothing, "add_k": add_k if smoothing == "addk" else None, "prune": list(prune) if prune else None,
        "discount_fallback": discount_fallback, "lmplz_quirk": lmplz_quirk and smoothing in ("kn", "mkn"),
        "training": {
            "created_by": f"rnnkit {__version__}",
            "data": str(data) if not isinstance(data, Corpus) else None,
            "corpus": corpus.manifest.get("options") if corpus.manifest else None,
            "seconds": round(time.perf_counter() - t0, 3),
            "estimator": "dask",
            **stats,
        },
    }
    return est.NgramModel(tables, corpus.vocab, corpus.tokenizer, meta)
