"""The n-gram estimator under a memory budget: lmplz's stages, each streaming blocks of arrays
through raw binary files in a temporary directory, so memory stays bounded however large the
corpus is, and the model is bit-identical to estimate.estimate() (the same arithmetic, in the
same order of floating-point operations: estimate.initial_order / interpolate_order /
context_backoff are called per block, and a block always holds whole contexts).

Dimension letters as in estimate.py: N order, V vocabulary, P positions of the padded stream
(<s> z1 .. zT </s> per sentence), n_k the number of distinct k-grams, C positions per chunk,
R sorted runs of one order.

The stages, and what each sorts by or holds:
  count        per order k = 2..N, one pass over the corpus in chunks of C positions: the key of
               the k-gram ending at each position is (index of the (k-1)-gram ending before it)
               * V + word, read from the previous order's per-position index file g_{k-1} [P];
               each chunk's keys are sorted and counted (a run on disk), then the R runs are
               merged by key (a block merge) into table k, sorted by (context, word) exactly as
               the in-memory sort; the merge also gives every run element its index in table k,
               from which g_k [P] is written. In memory: one chunk, one block per run.
  adjust       continuation counts N1+(. w) = bincount of the suffix column of order k+1 into
               ranges of table k that fit the budget; counts-of-counts and discounts.
  initial,     per order, blocks of table k cut at context boundaries (the table is sorted by
  interpolate  context): numerators, denominators, gamma and p; p(w|h') of each k-gram's suffix
               comes from a gather of order k-1's p by the suffix column, in ranges that fit.
  prune        renumbers ctx and suffix of the order above (the same gather) and drops rows.
  write        the safetensors model file streamed from the temporary arrays (atomic write).
V-sized arrays (unigrams, the vocabulary) are held in memory.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import resource
import shutil
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ... import modelfile
from ..._version import __version__
from ...errors import TrainingError
from ...nn.backend import kernels
from ...text.prepare import Corpus, load_data
from ...text.textio import atomic_write
from ...text.vocab import BOS, EOS, UNK
from . import estimate as est

STAGES = ("count", "adjust", "interpolate", "prune", "write")
# Above this many training tokens `rnnkit train --type ngram` estimates under a budget even
# without --memory: on WikiText-2 (2.05M tokens, 5-gram) the two estimators take the same time,
# on the same text x5 (10.3M tokens) the external one is 1.45x faster in 0.58x the memory (busy
# machine), and the in-memory one grows ~250 bytes per token against a fixed budget.
AUTO_TOKENS = 4_000_000
AUTO_MEMORY = 2 << 30  # lmplz's -S 2G, or half the machine's memory when that is less
_MIN_ROWS = 256  # the smallest block, whatever the budget


class SpillFullError(TrainingError):
    """The temporary directory (or the output's disk) is full."""


def _write(f, arr: np.ndarray) -> None:
    """Append the bytes of `arr` to the open file `f` (one place, so a full disk is one error)."""
    arr.tofile(f)


def current_rss() -> int:
    """Resident memory of this process now, in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def auto_memory(tokens: int) -> int | None:
    """The budget for a corpus of `tokens` training tokens when none was given: None (estimate
    in memory) up to AUTO_TOKENS, else AUTO_MEMORY or half the physical memory if smaller."""
    if tokens <= AUTO_TOKENS:
        return None
    try:
        half = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (OSError, ValueError):
        half = AUTO_MEMORY
    return min(AUTO_MEMORY, half)


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (getrusage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Spill:
    """The temporary directory: files, the bytes they hold now and at most, and the progress
    callback progress(stage, done, total, temp_bytes) (done/total in bytes of the stage's
    input)."""

    def __init__(self, parent, progress=None):
        if parent is not None and not Path(parent).is_dir():
            raise TrainingError(f"--temp-dir {parent}: no such directory")
        try:
            self.dir = Path(tempfile.mkdtemp(prefix="rnnkit-ngram-", dir=parent))
        except OSError as e:
            raise TrainingError(f"cannot create a temporary directory in "
                                f"{parent or tempfile.gettempdir()}: {e.strerror or e}") from None
        self.progress = progress
        self.in_use = 0
        self.peak = 0
        self.stage = ""
        self.runs = []  # sorted runs merged per order (2..N) of the count stage
        self._n = 0

    def array(self, name: str, dtype) -> "_Array":
        self._n += 1
        return _Array(self, f"{self._n:04d}-{name}.bin", dtype)

    def written(self, nbytes: int) -> None:
        self.in_use += nbytes
        self.peak = max(self.peak, self.in_use)

    def report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(self.stage, int(done), int(total), self.in_use)

    def full(self, e: OSError, where) -> SpillFullError:
        return SpillFullError(
            f"no space left on the disk of {where} (the estimation held {self.in_use:,} bytes "
            f"of temporary files); free space or point --temp-dir at a larger disk")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _Array:
    """A 1-D array in a raw binary file of the temporary directory: appended in blocks, read in
    blocks (explicit reads, no memory map: the process's resident memory is what it holds)."""

    def __init__(self, spill: _Spill, name: str, dtype):
        self.spill = spill
        self.path = spill.dir / name
        self.dtype = np.dtype(dtype)
        self.n = 0
        self._f = None

    def append(self, a) -> None:
        a = np.ascontiguousarray(a, self.dtype)
        if self._f is None:
            self._f = open(self.path, "ab")
        try:
            _write(self._f, a)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self.spill.full(e, self.spill.dir) from None
            raise
        self.n += len(a)
        self.spill.written(a.nbytes)

    def done(self) -> "_Array":
        if self._f is not None:
            try:
                self._f.close()
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise self.spill.full(e, self.spill.dir) from None
                raise
            self._f = None
        return self

    def read(self, a: int = 0, b: int | None = None) -> np.ndarray:
        self.done()
        b = self.n if b is None else min(b, self.n)
        if b <= a:
            return np.zeros(0, self.dtype)
        with open(self.path, "rb") as f:
            f.seek(a * self.dtype.itemsize)
            return np.fromfile(f, self.dtype, b - a)

    def blocks(self, rows: int):
        """(start, block) over the whole array, `rows` at a time."""
        for a in range(0, self.n, rows):
            yield a, self.read(a, a + rows)

    def find(self, value, lo: int = 0, hi: int | None = None, side: str = "left") -> int:
        """searchsorted in a sorted array on disk (a binary search that reads log n items)."""
        hi = self.n if hi is None else hi
        while lo < hi:
            mid = (lo + hi) // 2
            v = self.read(mid, mid + 1)[0]
            if v < value or (side == "right" and v == value):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def delete(self) -> None:
        self.done()
        if self.path.exists():
            self.spill.in_use -= self.path.stat().st_size
            self.path.unlink()


class _Budget:
    """Rows per block for each kind of work, from the memory left after the interpreter's own."""

    def __init__(self, memory: int, threads: int = 1):
        if memory <= 0:
            raise TrainingError(f"--memory must be positive, got {memory}")
        self.memory = memory
        self.threads = max(1, threads)
        self.work = max(memory - current_rss(), memory // 4)
        # count: ~90 bytes per position in flight, a chunk per thread
        self.chunk = max(self.work // 128 // self.threads, _MIN_ROWS)
        self.rows = max(self.work // 192, _MIN_ROWS)  # table blocks: ~12 float64/int64 columns
        self.piece = max(self.work // 4 // 8, _MIN_ROWS)  # a gather's or bincount's range


# ------------------------------------------------------------------------------------------------
# reading the corpus in chunks of whole sentences
# ------------------------------------------------------------------------------------------------
def _id_source(ids):
    """A function (a, b) -> ids[a:b] as a fresh uint32 array: explicit file reads for a memory
    map (a prepared corpus), so the corpus is never resident whole; slices otherwise."""
    whole = False
    if isinstance(ids, np.memmap) and ids.filename and ids.ndim == 1:
        # a view of the whole file's array (a slice of a memmap keeps its parent's offset)
        with contextlib.suppress(OSError):
            whole = ids.offset + ids.nbytes == os.path.getsize(ids.filename)
    if whole:
        path, offset, dtype = ids.filename, ids.offset, ids.dtype

        def read(a, b):
            with open(path, "rb") as f:
                f.seek(offset + a * dtype.itemsize)
                return np.fromfile(f, dtype, max(b - a, 0))
        return read
    return lambda a, b: np.array(ids[a:b])


def _chunks(ids, rows: int):
    """(first id, ids of whole sentences) over the training ids, about `rows` ids at a time; a
    sentence longer than `rows` is one chunk of its own. The last sentence gets its </s> if it
    lacks one, as estimate._stream does."""
    n = len(ids)
    read = _id_source(ids)
    a = 0
    while a < n:
        b = min(a + rows, n)
        block = read(a, b)
        while b < n:
            ends = np.flatnonzero(block == EOS)
            if len(ends):
                cut = int(ends[-1]) + 1
                block, b = block[:cut], a + cut
                break
            more = read(b, min(b + rows, n))
            block = np.concatenate((block, more))
            b += len(more)
        yield a, block
        a = b


def _chunk_stream(block: np.ndarray, last: bool):
    """estimate._stream of one chunk (x [C'], offset [C'], sentences)."""
    if last and block[-1] != EOS:
        block = np.append(block, np.uint32(EOS))
    return est._stream(block)


# ------------------------------------------------------------------------------------------------
# stage 1: count
# ------------------------------------------------------------------------------------------------
class _Table:
    """One order's table on disk: ctx, word (int32), raw counts (int64), suffix (int32)."""

    def __init__(self, spill: _Spill, k: int):
        self.k = k
        self.ctx = spill.array(f"ctx{k}", np.int32)
        self.word = spill.array(f"word{k}", np.int32)
        self.raw = spill.array(f"raw{k}", np.int64)
        self.suffix = spill.array(f"suffix{k}", np.int32)
        self.bos = (0, 0)  # rows [lo, hi) of the k-grams starting with <s> (one run: sorted)

    @property
    def n(self) -> int:
        return self.word.n

    def done(self):
        for a in (self.ctx, self.word, self.raw, self.suffix):
            a.done()
        return self

    def find(self, ctx: int, word: int) -> int:
        """Row of the k-gram (ctx, word), or -1."""
        lo = self.ctx.find(ctx)
        hi = self.ctx.find(ctx, lo, side="right")
        i = self.word.find(word, lo, hi)
        return i if i < hi and self.word.read(i, i + 1)[0] == word else -1


def _merge_runs(runs, rows: int, V: int, table: _Table, maps) -> None:
    """Merge the sorted runs (keys int64, counts int64, suffix int32) of one order into `table`
    (keys summed), and write to maps[r] the table row of every element of run r, in run order.

    A block merge: from every run's buffer take the keys up to the smallest last key of the
    buffers still to be refilled, sort and reduce them in one numpy step, repeat."""
    R = len(runs)
    b = max(rows // max(R, 1), _MIN_ROWS)
    read_to = [0] * R
    buf = [None] * R
    written = 0
    total = sum(r[0].n for r in runs)
    consumed = 0
    while True:
        for r in range(R):
            if (buf[r] is None or len(buf[r][0]) == 0) and read_to[r] < runs[r][0].n:
                a, e = read_to[r], read_to[r] + b
                buf[r] = tuple(arr.read(a, e) for arr in runs[r])
                read_to[r] = min(e, runs[r][0].n)
        live = [r for r in range(R) if buf[r] is not None and len(buf[r][0])]
        if not live:
            break
        pending = [buf[r][0][-1] for r in live if read_to[r] < runs[r][0].n]
        bound = min(pending) if pending else None
        parts, lens = [], []
        for r in range(R):
            if r not in live:
                lens.append(0)
                continue
            keys = buf[r][0]
            m = len(keys) if bound is None else int(np.searchsorted(keys, bound, "right"))
            parts.append(tuple(col[:m] for col in buf[r]))
            buf[r] = tuple(col[m:] for col in buf[r])
            lens.append(m)
        key = np.concatenate([p[0] for p in parts])
        cnt = np.concatenate([p[1] for p in parts])
        suf = np.concatenate([p[2] for p in parts])
        perm = np.argsort(key)
        sk = key[perm]
        new = np.empty(len(sk), bool)
        new[0] = True
        np.not_equal(sk[1:], sk[:-1], out=new[1:])
        first = np.flatnonzero(new)
        uniq = sk[first]
        inv = np.empty(len(sk), np.int64)
        inv[perm] = np.cumsum(new) - 1 + written
        table.ctx.append(uniq // V)
        table.word.append(uniq % V)
        table.raw.append(np.add.reduceat(cnt[perm], first))
        table.suffix.append(suf[perm][first])
        at = 0
        for r, m in enumerate(lens):
            if m:
                maps[r].append(inv[at:at + m])
                at += m
        written += len(uniq)
        consumed += len(key)
        table.raw.spill.report(consumed * 20, total * 20)
    for m in maps:
        m.done()


def _ordered_map(fn, items, threads: int):
    """fn over items on `threads` threads, the results in the items' order, at most `threads`
    items in flight (each holds a chunk's arrays: the budget divides the chunk by the threads).
    The work is numpy's sorts and gathers, which release the GIL."""
    if threads <= 1:
        yield from map(fn, items)
        return
    pending = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="rnnkit-count") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def _count_chunk(item, k: int, V: int):
    """The k-grams of one chunk: (c, a, block, x, offset, distinct keys [U] ascending, inverse
    [positions], counts [U], suffix [U]: the (k-1)-gram index of each key's last k-1 words)."""
    c, a, block, x, offset, g_prev, start = item
    gp = x if g_prev is None else g_prev.read(start, start + len(x))
    pos = np.flatnonzero(offset >= k - 1)
    key = gp[pos - 1].astype(np.int64) * V + x[pos]
    uniq, inv, cnt = est._unique(key)
    del key
    suf = np.empty(len(uniq), np.int32)
    suf[inv] = gp[pos]
    return c, a, block, x, offset, uniq, inv, cnt, suf


def _count(ids, order: int, V: int, quirk: bool, spill: _Spill, budget: _Budget):
    """Stage 1 on disk: (tables [N] (None for k = 1), raw unigram counts [V], sentences, tokens,
    quirk rows per order)."""
    n_ids = len(ids)
    if n_ids == 0:
        raise TrainingError("the training split is empty: there is nothing to count")
    spill.stage = "count"
    # pass 0: checks, unigram counts and KenLM's vocabulary ranks (first appearance)
    raw1 = np.zeros(V, np.int64)
    first_pos = np.full(V, np.iinfo(np.int64).max, np.int64)
    sentences = positions = 0
    for a, block in _chunks(ids, budget.chunk):
        if int(block.max()) >= V:
            raise TrainingError(f"token id {int(block.max())} is outside the vocabulary of {V}")
        if np.any(block == BOS):
            raise TrainingError("the training ids contain <s> (id 1) inside a sentence; <s> is "
                                "context only (rerun `rnnkit prepare`, which maps a literal <s> "
                                "to <unk>)")
        u, f = np.unique(block, return_index=True)
        first_pos[u] = np.minimum(first_pos[u], f + a)
        x, _, s = _chunk_stream(block, a + len(block) == n_ids)
        raw1 += np.bincount(x, minlength=V)
        sentences += s
        positions += len(x)
        spill.report(a + len(block), n_ids * (order + 1))
    first_pos[[UNK, BOS, EOS]] = [-3, -2, -1]
    ranks = np.empty(V, np.int64)
    ranks[np.argsort(first_pos, kind="stable")] = np.arange(V)
    del first_pos
    # the quirk's position: the last top-order n-gram in KenLM's suffix order, over all chunks
    best = None  # (rank tuple, words [order], offset)
    tables = [None, None]  # tables[k]: order k (k >= 2)
    g_prev = None  # _Array int32 [P]: index of the (k-1)-gram ending at each position
    for k in range(2, order + 1):
        table = _Table(spill, k)
        runs, invs = [], []

        def streams(g_prev=g_prev):
            start = 0  # where the chunk begins in the padded stream
            for c, (at, chunk) in enumerate(_chunks(ids, budget.chunk)):
                xs, offs, _ = _chunk_stream(chunk, at + len(chunk) == n_ids)
                yield c, at, chunk, xs, offs, g_prev, start
                start += len(xs)

        for c, a, block, x, offset, uniq, inv, cnt, suf in _ordered_map(
                lambda item, k=k: _count_chunk(item, k, V), streams(), budget.threads):
            if quirk and k == 2:
                best = _quirk_candidate(x, offset, order, ranks, best)
            run = (spill.array(f"run{k}-{c}-key", np.int64),
                   spill.array(f"run{k}-{c}-cnt", np.int64),
                   spill.array(f"run{k}-{c}-suf", np.int32))
            for arr, v in zip(run, (uniq, cnt, suf)):
                arr.append(v)
                arr.done()
            runs.append(run)
            inv_arr = spill.array(f"inv{k}-{c}", np.int32)
            inv_arr.append(inv)
            invs.append(inv_arr.done())
            spill.report(n_ids * (k - 1) + a + len(block), n_ids * (order + 1))
        spill.runs.append(len(runs))
        maps = [spill.array(f"map{k}-{c}", np.int32) for c in range(len(runs))]
        _merge_runs(runs, budget.rows, V, table, maps)
        for run in runs:
            for arr in run:
                arr.delete()
        if k < order:  # the per-position index of order k, for order k+1
            g_new = spill.array(f"g{k}", np.int32)
            for c, (a, block) in enumerate(_chunks(ids, budget.chunk)):
                x, offset, _ = _chunk_stream(block, a + len(block) == n_ids)
                pos = np.flatnonzero(offset >= k - 1)
                g = np.zeros(len(x), np.int32)
                g[pos] = maps[c].read()[invs[c].read()]
                g_new.append(g)
            g_new.done()
        else:
            g_new = None
        for arr in maps + invs:
            arr.delete()
        if g_prev is not None:
            g_prev.delete()
        g_prev = g_new
        tables.append(table.done())
    if order == 1 and quirk:
        for a, block in _chunks(ids, budget.chunk):
            x, offset, _ = _chunk_stream(block, a + len(block) == n_ids)
            best = _quirk_candidate(x, offset, order, ranks, best)
    # the rows of the k-grams that start with <s>: one run of each sorted table
    lo, hi = BOS, BOS + 1
    for k in range(2, order + 1):
        lo, hi = tables[k].ctx.find(lo), tables[k].ctx.find(hi)
        tables[k].bos = (lo, hi)
    quirk_rows = _quirk_rows(best, order, tables, V) if quirk else [-1] * order
    return tables, raw1, sentences, positions - 2 * sentences, quirk_rows


def _quirk_candidate(x, offset, order: int, ranks, best):
    """The chunk's last n-gram in KenLM's suffix order (estimate._last_in_suffix_order), kept if
    it comes after `best`; ties keep the earlier chunk, as the in-memory search keeps the first
    position."""
    if not np.any(x != BOS):
        return best
    p = est._last_in_suffix_order(x, offset, order, ranks)
    vals = tuple(int(ranks[x[p - j]]) if offset[p] >= j else int(ranks[BOS])
                 for j in range(order))
    if best is None or vals > best[0]:
        words = [int(x[p - j]) if offset[p] >= j else BOS for j in range(order)][::-1]
        return vals, words, int(offset[p])
    return best


def _quirk_rows(best, order: int, tables, V: int) -> list[int]:
    """counts.quirk of estimate.count: per order, the row of the k-word suffix of the quirk's
    n-gram when it does not start with <s> (-1 otherwise; always -1 at the top order)."""
    if best is None:
        return [-1] * order
    _, words, offset = best
    out = [words[-1]]
    for k in range(2, order + 1):
        if offset < k or k == order:
            out.append(-1)
            continue
        row = words[-k]
        for j in range(2, k + 1):
            row = tables[j].find(row, words[-k + j - 1])
        out.append(row)
    out[-1] = -1
    return out


# ------------------------------------------------------------------------------------------------
# stage 2: adjust counts, counts-of-counts, discounts
# ------------------------------------------------------------------------------------------------
def _bincount(idx: _Array, n: int, budget: _Budget, out: _Array) -> _Array:
    """out [n] int64 = bincount(idx, minlength=n), in ranges of the budget's piece."""
    for lo in range(0, max(n, 1), budget.piece):
        hi = min(lo + budget.piece, n)
        acc = np.zeros(hi - lo, np.int64)
        for _, blk in idx.blocks(budget.rows):
            sel = blk[(blk >= lo) & (blk < hi)]
            acc += np.bincount(sel - lo, minlength=hi - lo)
        out.append(acc)
    return out.done()


def _gather(src: _Array, idx: _Array, out: _Array, budget: _Budget) -> _Array:
    """out[i] = src[idx[i]], with src held in ranges of the budget's piece (one range, and one
    pass, when it fits)."""
    piece = max(budget.piece * 8 // src.dtype.itemsize, _MIN_ROWS)
    if src.n <= piece:
        whole = src.read()
        for _, blk in idx.blocks(budget.rows):
            out.append(whole[blk])
        return out.done()
    for _, blk in idx.blocks(budget.rows):  # sized first, then filled range by range
        out.append(np.zeros(len(blk), src.dtype))
    out.done()
    for lo in range(0, src.n, piece):
        part = src.read(lo, lo + piece)
        with open(out.path, "r+b") as f:
            for a, blk in idx.blocks(budget.rows):
                m = (blk >= lo) & (blk < lo + len(part))
                if not m.any():
                    continue
                f.seek(a * out.dtype.itemsize)
                cur = np.fromfile(f, out.dtype, len(blk))
                cur[m] = part[blk[m] - lo]
                f.seek(a * out.dtype.itemsize)
                try:
                    _write(f, cur)
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise out.spill.full(e, out.spill.dir) from None
                    raise
    return out


def _adjust(tables, raw1, order: int, smoothing: str, quirk_rows, quirk: bool, spill, budget):
    """Stage 2: adjusted counts per order (unigrams in memory, the others on disk) and the
    counts-of-counts [N, 5], as estimate.adjust_counts and estimate.counts_of_counts."""
    spill.stage = "adjust"
    kn = smoothing in ("kn", "mkn")
    adjusted = []
    coc = np.zeros((order, 5), np.int64)
    total = sum(t.n for t in tables[2:]) + len(raw1)
    done = 0
    for k in range(1, order + 1):
        cont = None
        if kn and k < order:
            n_k = len(raw1) if k == 1 else tables[k].n
            cont = _bincount(tables[k + 1].suffix, n_k, budget, spill.array(f"cont{k}", np.int64))
        if k == 1:
            if cont is not None:
                a = np.where(np.arange(len(raw1)) == BOS, raw1, cont.read())
            else:
                a = raw1.copy()
            a[BOS] = 0
            adjusted.append(a)
            coc[0] = np.bincount(np.minimum(a, 5), minlength=6)[:5]
            raw_at = lambda j: int(raw1[j])  # noqa: E731
            a_at = lambda j: int(a[j])  # noqa: E731
            is_bos = lambda j: j == BOS  # noqa: E731
        else:
            t = tables[k]
            out = spill.array(f"adj{k}", np.int64)
            lo, hi = t.bos
            for s, raw in t.raw.blocks(budget.rows):
                if cont is not None:
                    c = cont.read(s, s + len(raw))
                    rows = np.arange(s, s + len(raw))
                    a = np.where((rows >= lo) & (rows < hi), raw, c)
                else:
                    a = raw
                out.append(a)
                coc[k - 1] += np.bincount(np.minimum(a, 5), minlength=6)[:5]
            adjusted.append(out.done())
            raw_at = lambda j, t=t: int(t.raw.read(j, j + 1)[0])  # noqa: E731
            a_at = lambda j, out=out: int(out.read(j, j + 1)[0])  # noqa: E731
            is_bos = lambda j, t=t: t.bos[0] <= j < t.bos[1]  # noqa: E731
        if cont is not None:
            cont.delete()
        coc[k - 1, 0] = 0
        j = quirk_rows[k - 1] if quirk else -1
        if j >= 0 and not is_bos(j):  # KenLM_QUIRK of estimate.counts_of_counts
            aj, rj = a_at(j), raw_at(j)
            if 1 <= aj <= 4:
                coc[k - 1, aj] -= 1
            if 1 <= rj <= 4:
                coc[k - 1, rj] += 1
        done += len(raw1) if k == 1 else tables[k].n
        spill.report(done, total)
    return adjusted, coc


# ------------------------------------------------------------------------------------------------
# stages 3 and 4: initial probabilities and interpolation, block by block
# ------------------------------------------------------------------------------------------------
def _context_blocks(ctx: _Array, n_ctx: int, rows: int):
    """(row start, row end, first context, end context) over a table sorted by context: blocks
    of about `rows` rows that hold whole contexts and, together, every context 0..n_ctx-1."""
    n = ctx.n
    a, lo = 0, 0
    while a < n:
        b = min(a + rows, n)
        if b < n:
            blk = ctx.read(a, b + 1)
            last = blk[-1]  # the context of row b
            cut = int(np.searchsorted(blk[:-1], last, "left"))
            if cut > 0:
                b = a + cut
            else:  # one context longer than the block: take it whole
                b = ctx.find(last, b, side="right")
        hi = int(ctx.read(b, b + 1)[0]) if b < n else n_ctx
        yield a, b, lo, hi
        a, lo = b, hi
    if n == 0 and n_ctx:
        yield 0, 0, 0, n_ctx


def _keep_block(raw: np.ndarray, t: int) -> np.ndarray | None:
    return raw > t if t > 0 else None


def _interpolate(tables, adjusted, disc, order: int, V: int, smoothing: str, thresholds,
                 add_k: float, spill: _Spill, budget: _Budget):
    """Stages 3 and 4: per order, logp [n_k] float32 and the backoff of the order below, on disk
    (unigram arrays in memory), as estimate.initial_probabilities and estimate.interpolate; no
    backoff column for the top order above order 1 (None)."""
    spill.stage = "interpolate"
    total = sum(t.n for t in tables[2:]) + V
    done = 0
    logp, backoff = [None] * order, [None] * order
    keep1 = None
    # order 1 in memory, exactly as estimate.interpolate's first step
    num, den, gnum = est.initial_order(adjusted[0], disc[0], smoothing, np.zeros(V, np.int64), 1,
                                       keep1, add_k, V)
    with np.errstate(divide="ignore", invalid="ignore"):
        if smoothing == "addk":
            p = num / den[0]
        else:
            gamma0 = gnum[0] / den[0]
            p = num / den[0]
            p += gamma0 * (1.0 / (V - 1))
        p[BOS] = 1.0
        logp[0] = np.log10(p).astype(np.float32)
    prev = spill.array("p1", np.float64)
    prev.append(p)
    prev.done()
    del num, den, gnum, p
    done += V
    spill.report(done, total)
    for k in range(2, order + 1):
        t = tables[k]
        n_ctx = V if k == 2 else tables[k - 1].n
        lower = _gather(prev, t.suffix, spill.array(f"lower{k}", np.float64), budget)
        prev.delete()
        lp = spill.array(f"logp{k}", np.float32)
        bo = spill.array(f"backoff{k - 1}", np.float32) if k > 2 else None
        bo_mem = []
        cur = spill.array(f"p{k}", np.float64) if k < order else None
        for a, b, lo, hi in _context_blocks(t.ctx, n_ctx, budget.rows):
            ctx = t.ctx.read(a, b).astype(np.int64) - lo
            adj = adjusted[k - 1].read(a, b)
            raw = t.raw.read(a, b)
            kept = _keep_block(raw, thresholds[k - 1]) if thresholds else None
            num, den, gnum = est.initial_order(adj, disc[k - 1], smoothing, ctx, hi - lo, kept,
                                               add_k, V)
            below = lower.read(a, b)
            if smoothing == "addk":
                fake = est.NgramCounts(k, V, word=[], ctx=[None] * (k - 1) + [ctx],
                                       suffix=[None] * (k - 1) + [np.arange(b - a)],
                                       raw=[None] * (k - 1) + [raw], bos=[])
                p, g = est._addk_order(fake, k, num, den, below, [None] * (k - 1) + [kept],
                                       add_k)
            else:
                p, g = est.interpolate_order(num, den, gnum, ctx, below)
            back = est.context_backoff(g, ctx, kept)
            if bo is None:
                bo_mem.append(back)
            else:
                bo.append(back)
            with np.errstate(divide="ignore"):
                lp.append(np.log10(p).astype(np.float32))
            if cur is not None:
                cur.append(p)
            done += b - a
            spill.report(done, total)
        lower.delete()
        adjusted[k - 1].delete()
        logp[k - 1] = lp.done()
        if bo is None:
            backoff[0] = np.concatenate(bo_mem) if bo_mem else np.zeros(V, np.float32)
        else:
            backoff[k - 2] = bo.done()
        if cur is not None:
            prev = cur.done()
    if order == 1:
        prev.delete()
        backoff[0] = np.zeros(V, np.float32)
    # above order 1 the top order's backoffs (all 0) are never built: the file does not store them
    return logp, backoff


# ------------------------------------------------------------------------------------------------
# prune: drop rows, renumber the order above (estimate._apply_prune)
# ------------------------------------------------------------------------------------------------
def _prune(tables, logp, backoff, order: int, thresholds, spill: _Spill, budget: _Budget):
    """The final columns per order: dict name -> _Array or in-memory array."""
    spill.stage = "prune"
    cols = [{"word": np.arange(len(logp[0]), dtype=np.int32),
             "logp": logp[0], "backoff": backoff[0]}]
    remap = None
    total = sum(t.n for t in tables[2:])
    done = 0
    for k in range(2, order + 1):
        t = tables[k]
        c = {"word": t.word, "ctx": t.ctx, "suffix": t.suffix, "logp": logp[k - 1],
             "backoff": backoff[k - 1]}
        if c["backoff"] is None:  # the top order
            del c["backoff"]
        if remap is not None:
            for name in ("ctx", "suffix"):
                old = c[name]
                c[name] = _gather(remap, old, spill.array(f"{name}{k}-renum", np.int32), budget)
                if name == "suffix":
                    old.delete()
            t.ctx.delete() if c["ctx"] is not t.ctx else None
            remap.delete()
            remap = None
        thr = thresholds[k - 1] if thresholds else 0
        if thr > 0:
            new = {name: spill.array(f"{name}{k}-kept", arr.dtype) for name, arr in c.items()}
            remap = spill.array(f"remap{k}", np.int32)
            kept_so_far = 0
            for a in range(0, t.n, budget.rows):
                m = t.raw.read(a, a + budget.rows) > thr
                for name, arr in c.items():
                    new[name].append(arr.read(a, a + budget.rows)[m])
                remap.append(np.cumsum(m) - 1 + kept_so_far)
                kept_so_far += int(m.sum())
                done += len(m)
                spill.report(done, total)
            for arr in c.values():
                arr.delete()
            remap.done()
            c = {name: arr.done() for name, arr in new.items()}
        t.raw.delete()
        cols.append(c)
    if remap is not None:
        remap.delete()
    return cols


# ------------------------------------------------------------------------------------------------
# write: the model file, streamed
# ------------------------------------------------------------------------------------------------
def _length(col) -> int:
    return col.n if isinstance(col, _Array) else len(col)


def _col_blocks(col, rows: int):
    if isinstance(col, _Array):
        for _, blk in col.blocks(rows):
            yield blk
    else:
        yield col


def _starts(ctx, n_ctx: int, spill: _Spill, budget: _Budget) -> _Array:
    """The start array of the order below (NgramModel._starts) from a sorted ctx column."""
    out = spill.array("start", est.start_dtype(_length(ctx)))
    out.append(np.zeros(1, np.int64))
    carry = 0
    counts = _bincount(ctx, n_ctx, budget, spill.array("start-count", np.int64))
    for _, blk in counts.blocks(budget.rows):
        c = np.cumsum(blk) + carry
        out.append(c)
        carry = int(c[-1]) if len(c) else carry
    counts.delete()
    return out.done()


def _write_model(path, cols, order: int, meta: dict, spill: _Spill, budget: _Budget) -> None:
    """The rnnkit model file of NgramModel.save, written from the columns in blocks."""
    spill.stage = "write"
    tensors = []  # (name, dtype, column)
    for k in range(1, order + 1):
        c = cols[k - 1]
        tensors.append((f"ngram.{k}.word", np.int32, c["word"]))
        tensors.append((f"ngram.{k}.logp", np.float32, c["logp"]))
        if k < order:  # the top order's backoffs are 0: not stored (as NgramModel.save)
            tensors.append((f"ngram.{k}.backoff", np.float32, c["backoff"]))
        if k >= 2:  # no ctx: the start array of the order below holds the same ranges
            tensors.append((f"ngram.{k}.suffix", np.int32, c["suffix"]))
    for k in range(1, order):
        st = _starts(cols[k]["ctx"], _length(cols[k - 1]["word"]), spill, budget)
        tensors.append((f"ngram.{k}.start", st.dtype.type, st))
    tensors.sort(key=lambda t: (-np.dtype(t[1]).itemsize, t[0]))  # 8-byte tensors first: aligned
    header, at = {}, 0
    for name, dtype, col in tensors:
        n = _length(col)
        nbytes = n * np.dtype(dtype).itemsize
        header[name] = {"dtype": {np.int32: "I32", np.int64: "I64", np.float32: "F32"}[dtype],
                        "shape": [n], "data_offsets": [at, at + nbytes]}
        at += nbytes
    doc = {"format": modelfile.FORMAT, "format_version": modelfile.FORMAT_VERSION, **meta}
    header["__metadata__"] = {modelfile.META_KEY: json.dumps(doc, ensure_ascii=False)}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    done = 0
    # atomic_write removes its temporary file on any error; a full disk is its OutputError
    with atomic_write(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for _, dtype, col in tensors:
            for blk in _col_blocks(col, budget.rows):
                _write(f, np.ascontiguousarray(blk, np.dtype(dtype).newbyteorder("<")))
                done += blk.nbytes
                spill.report(done, at)


# ------------------------------------------------------------------------------------------------
# the whole pipeline
# ------------------------------------------------------------------------------------------------
def train_to_file(data, out_path, order: int = 3, smoothing: str = "mkn", *, memory: int,
                  temp_dir=None, add_k: float = 0.1, prune=None, discount_fallback: bool = False,
                  lmplz_quirk: bool = True, progress=None, threads: int | None = None) -> dict:
    """Train an n-gram model on DATA within `memory` bytes and write it to `out_path`.

    The model file holds the same tables, bit for bit, as estimate.train(...).save(out_path).
    Temporary files go to a fresh directory inside `temp_dir` (default: the system's), removed
    on success, on error and on KeyboardInterrupt. progress(stage, done, total, temp_bytes) is
    called as the stages advance. Returns the training statistics (as the model's manifest holds
    them) plus the seconds per stage, the temporary disk's peak and the process's peak RSS."""
    if smoothing not in est.SMOOTHINGS:
        raise TrainingError(f"unknown --smoothing {smoothing!r}: use one of "
                            f"{', '.join(est.SMOOTHINGS)}")
    if not 1 <= order <= est.MAX_ORDER:
        raise TrainingError(f"--order must be between 1 and {est.MAX_ORDER}, got {order}")
    if smoothing == "addk" and not (add_k > 0 and np.isfinite(add_k)):
        raise TrainingError(f"--add-k must be a positive number, got {add_k}")
    if threads is None:
        threads = kernels().get_num_threads()
    budget = _Budget(memory, threads)
    corpus = data if isinstance(data, Corpus) else load_data(data)
    if "train" not in corpus or len(corpus["train"]) == 0:
        raise TrainingError("the training split is empty: there is nothing to count")
    V = len(corpus.vocab)
    if V < 4:
        raise TrainingError("the vocabulary has no word besides <unk>, <s> and </s>")
    thresholds = est.prune_thresholds(prune, order)
    quirk = lmplz_quirk and smoothing in ("kn", "mkn")
    spill = _Spill(temp_dir, progress)
    timings = {}
    t_all = time.perf_counter()
    try:
        t0 = time.perf_counter()
        tables, raw1, sentences, tokens, quirk_rows = _count(corpus["train"], order, V, quirk,
                                                             spill, budget)
        timings["count"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        adjusted, coc = _adjust(tables, raw1, order, smoothing, quirk_rows, quirk, spill, budget)
        disc = est.discounts(coc, smoothing, discount_fallback)
        timings["adjust"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        before = [V] + [t.n for t in tables[2:]]
        logp, backoff = _interpolate(tables, adjusted, disc, order, V, smoothing, thresholds,
                                     add_k, spill, budget)
        timings["interpolate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cols = _prune(tables, logp, backoff, order, thresholds, spill, budget)
        timings["prune"] = time.perf_counter() - t0
        stats = {
            "sentences": sentences, "tokens": tokens,
            "ngrams": [_length(c["word"]) for c in cols],
            "ngrams_before_pruning": before,
            "counts_of_counts": coc[:, 1:].tolist(),
            "discounts": disc[:, 1:].tolist() if smoothing in ("kn", "mkn") else None,
        }
        meta = {
            "smoothing": smoothing,
            "add_k": add_k if smoothing == "addk" else None,
            "prune": list(prune) if prune else None,
            "discount_fallback": discount_fallback,
            "lmplz_quirk": quirk,
            "training": {
                "created_by": f"rnnkit {__version__}",
                "data": str(data) if not isinstance(data, Corpus) else None,
                "corpus": corpus.manifest.get("options") if corpus.manifest else None,
                "seconds": round(time.perf_counter() - t_all, 3),
                "memory": memory,
                **stats,
            },
            "model_type": est.MODEL_TYPE, "order": order, "vocab": corpus.vocab.tokens,
            "tokenizer": corpus.tokenizer.to_dict(),
        }
        t0 = time.perf_counter()
        _write_model(out_path, cols, order, meta, spill, budget)
        timings["write"] = time.perf_counter() - t0
    finally:
        spill.remove()
    return {**stats, "memory": memory, "temp_peak_bytes": spill.peak, "count_runs": spill.runs,
            "stage_seconds": {k: round(v, 3) for k, v in timings.items()},
            "seconds": round(time.perf_counter() - t_all, 3), "peak_rss_bytes": peak_rss()}
