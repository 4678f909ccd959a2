# cython: language_level=3, cdivision=True
"""Hot loops of the n-gram model (rnnkit.ngram and rnnkit.arpa hold the logic and the checks).

- NgramIndex: the flat trie of an n-gram model; scores token streams, advances batched states and
  fills full next-token distributions (log10, float32 arithmetic as KenLM's query).
- VocabHash: token bytes -> id, for ARPA parsing and fast encoding of text.
- TupleIndex: a k-tuple of word ids -> its row, to link ARPA n-grams to their context and suffix.
- parse_section / format_section: one ARPA section in, one out.
- NgramSampler: exact sampling in O(explicit successors) per token; join_tokens: ids to text.
(Counting stays in numpy: one vectorised sort per order over packed (context, word) keys is
already faster than lmplz, see rnnkit.ngram.count.)

Dimension letters: N order, V vocabulary, B batch, n_k k-grams in table k (tables 0-based: table o
holds the (o+1)-grams). A state is (m, c): the context is the m-gram number c of table m-1
(m = 0: no context).
Bounds checks are switched by RNNKIT_DEBUG=1 at build time (setup.py).
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, realloc, strtod
from libc.string cimport memcpy, memcmp
from libc.stdio cimport snprintf
from libc.math cimport INFINITY, isinf, pow

cnp.import_array()

DEF MAX_ORDER = 9  # the index's capacity: estimate.MAX_ORDER, exported below (a test checks)

INDEX_MAX_ORDER = MAX_ORDER
cdef int32_t BOS = 1
cdef int32_t EOS = 2


cdef inline int64_t find_child(const int32_t* words, int64_t lo, int64_t hi, int32_t w) noexcept nogil:
    """Index of w among words[lo:hi] (sorted ascending), or -1."""
    cdef int64_t end = hi, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if words[mid] < w:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and words[lo] == w:
        return lo
    return -1


cdef class NgramIndex:
    """The tables of one model as raw pointers; the numpy arrays are kept alive in `_keep`."""
    cdef int order
    cdef int64_t vocab_size
    cdef const int32_t* word[MAX_ORDER]
    cdef const int32_t* suffix[MAX_ORDER]
    # where the children of each k-gram begin in table k+1: int32 in files whose next table
    # has fewer than 2^31 n-grams, int64 otherwise (and in files of earlier versions)
    cdef const int32_t* start32[MAX_ORDER]
    cdef const int64_t* start64[MAX_ORDER]
    cdef const float* logp[MAX_ORDER]
    cdef const float* bo[MAX_ORDER]
    cdef int64_t n[MAX_ORDER]
    cdef list _keep
    # set by any loop that followed an index out of its table (a damaged, memory-mapped file
    # is not checked in full when it is opened); the def that ran the loop raises
    cdef bint damaged

    def __init__(self, list word, list suffix, list start, list logp, list backoff):
        cdef int o
        cdef cnp.ndarray a
        self.order = len(word)
        if not 1 <= self.order <= MAX_ORDER:
            raise ValueError(f"order must be in 1..{MAX_ORDER}")
        self._keep = []
        self.vocab_size = len(word[0])
        for o in range(self.order):
            a = self._hold(word[o], np.int32)
            self.word[o] = <const int32_t*> a.data
            self.n[o] = a.shape[0]
            a = self._hold(logp[o], np.float32)
            if a.shape[0] != self.n[o]:
                raise ValueError("logp and word differ in length")
            self.logp[o] = <const float*> a.data
            a = self._hold(backoff[o], np.float32)
            if a.shape[0] != self.n[o]:
                raise ValueError("backoff and word differ in length")
            self.bo[o] = <const float*> a.data
            if o >= 1:
                a = self._hold(suffix[o], np.int32)
                if a.shape[0] != self.n[o]:
                    raise ValueError("suffix and word differ in length")
                self.suffix[o] = <const int32_t*> a.data
            else:
                self.suffix[o] = NULL
            if o < self.order - 1:
                narrow = np.asarray(start[o]).dtype == np.int32  # else held as int64
                a = self._hold(start[o], np.int32 if narrow else np.int64)
                if a.shape[0] != self.n[o] + 1:
                    raise ValueError("start must have one entry more than the table")
                if a.shape[0] and (a[0] != 0 or a[self.n[o]] != len(word[o + 1])):
                    raise ValueError("start must run from 0 to the next table's length")
                self.start32[o] = <const int32_t*> a.data if narrow else NULL
                self.start64[o] = NULL if narrow else <const int64_t*> a.data
            else:
                self.start32[o] = NULL
                self.start64[o] = NULL

    cdef cnp.ndarray _hold(self, arr, dtype):
        cdef cnp.ndarray a = np.ascontiguousarray(arr, dtype=dtype)
        self._keep.append(a)
        return a

    cdef inline int64_t start(self, int o, int64_t i) noexcept nogil:
        """Where the children of k-gram i of table o begin in table o + 1."""
        return self.start32[o][i] if self.start32[o] != NULL else self.start64[o][i]

    cdef inline float step(self, int* m, int64_t* c, int32_t w, int* matched) noexcept nogil:
        """log10 p(w | context (m, c)) by the longest match, backing off; moves the state to the
        longest n-gram ending in w that can be a context (at most N-1 words). An index outside
        its table sets `damaged` and ends at the unigram (one comparison per index followed)."""
        cdef float backoff = 0.0
        cdef int cm = m[0]
        cdef int64_t cc = c[0], j, lo, hi, nxt
        while cm > 0:
            lo = self.start(cm - 1, cc)
            hi = self.start(cm - 1, cc + 1)
            if lo < 0 or hi < lo or hi > self.n[cm]:
                self.damaged = True
                break
            j = find_child(self.word[cm], lo, hi, w)
            if j >= 0:
                matched[0] = cm + 1
                if cm + 1 == self.order:
                    nxt = self.suffix[cm][j]
                    if not 0 <= nxt < self.n[cm - 1]:
                        self.damaged = True
                        break
                    m[0] = cm
                    c[0] = nxt
                else:
                    m[0] = cm + 1
                    c[0] = j
                return self.logp[cm][j] + backoff
            backoff = backoff + self.bo[cm - 1][cc]
            if cm >= 2:
                cc = self.suffix[cm - 1][cc]
                if not 0 <= cc < self.n[cm - 2]:
                    self.damaged = True
                    break
            cm -= 1
        matched[0] = 1
        if self.order == 1:
            m[0] = 0
            c[0] = 0
        else:
            m[0] = 1
            c[0] = w
        return self.logp[0][w] + backoff

    cdef int _check_damaged(self) except -1:
        if self.damaged:
            self.damaged = False
            raise IndexError("an index of the n-gram tables points outside its table: the model "
                             "file is damaged")
        return 0

    cdef int _check_ids(self, const uint32_t[::1] ids) except -1:
        cdef Py_ssize_t t
        cdef uint32_t w
        for t in range(ids.shape[0]):
            w = ids[t]
            if w >= self.vocab_size or w == BOS:
                raise ValueError(f"token id {w} at {t} is outside [0, {self.vocab_size}) or <s>")
        return 0

    def score(self, const uint32_t[::1] ids, const int64_t[::1] offsets, bint bos=True,
              bint eos=True):
        """Per token log10 p and matched n-gram length of sentences ids[offsets[s]:offsets[s+1]].

        Returns (lp [T + S*eos] float64, length [same] int8): each sentence's tokens, then </s>.
        """
        cdef Py_ssize_t S = offsets.shape[0] - 1, s
        cdef int64_t t, o = 0, total
        cdef int m, L
        cdef int64_t c
        if S < 0:
            raise ValueError("offsets needs at least one entry")
        if offsets[0] != 0 or offsets[S] != ids.shape[0]:
            raise ValueError("offsets must start at 0 and end at len(ids)")
        for s in range(S):
            if offsets[s + 1] < offsets[s]:
                raise ValueError("offsets must not decrease")
        self._check_ids(ids)
        total = ids.shape[0] + (S if eos else 0)
        lp_arr = np.empty(total, np.float64)
        len_arr = np.empty(total, np.int8)
        cdef double[::1] lp = lp_arr
        cdef int8_t[::1] ln = len_arr
        cdef int start_m = 1 if (bos and self.order > 1) else 0
        cdef int64_t start_c = BOS if start_m else 0
        with nogil:
            for s in range(S):
                m = start_m
                c = start_c
                for t in range(offsets[s], offsets[s + 1]):
                    lp[o] = self.step(&m, &c, <int32_t> ids[t], &L)
                    ln[o] = <int8_t> L
                    o += 1
                if eos:
                    lp[o] = self.step(&m, &c, EOS, &L)
                    ln[o] = <int8_t> L
                    o += 1
        self._check_damaged()
        return lp_arr, len_arr

    def start_state(self, Py_ssize_t batch, bint bos=True):
        """States (m [B] int32, c [B] int64) after <s> (or with no context)."""
        m = np.full(batch, 1 if (bos and self.order > 1) else 0, np.int32)
        c = np.full(batch, BOS if (bos and self.order > 1) else 0, np.int64)
        return m, c

    def advance(self, const int32_t[::1] m_in, const int64_t[::1] c_in, ids):
        """Feed one token per row: returns (m, c, log10 p of the tokens [B])."""
        cdef const uint32_t[::1] w = np.ascontiguousarray(ids, dtype=np.uint32)
        cdef Py_ssize_t B = m_in.shape[0], b
        if w.shape[0] != B or c_in.shape[0] != B:
            raise ValueError("state and ids differ in batch size")
        self._check_ids(w)
        m_arr = np.array(m_in, dtype=np.int32)
        c_arr = np.array(c_in, dtype=np.int64)
        lp_arr = np.empty(B, np.float64)
        cdef int32_t[::1] m = m_arr
        cdef int64_t[::1] c = c_arr
        cdef double[::1] lp = lp_arr
        cdef int mm, L
        cdef int64_t cc
        for b in range(B):
            if not (0 <= m[b] < self.order) or (m[b] > 0 and not 0 <= c[b] < self.n[m[b] - 1]):
                raise ValueError(f"invalid state ({m[b]}, {c[b]}) in row {b}")
        with nogil:
            for b in range(B):
                mm = m[b]
                cc = c[b]
                lp[b] = self.step(&mm, &cc, <int32_t> w[b], &L)
                m[b] = mm
                c[b] = cc
        self._check_damaged()
        return m_arr, c_arr, lp_arr

    def log_probs(self, const int32_t[::1] m_in, const int64_t[::1] c_in):
        """The full next-token distribution, log10 [B, V] float64 (<s> is -inf)."""
        cdef Py_ssize_t B = m_in.shape[0], b
        cdef int64_t V = self.vocab_size, j, w, lo, hi
        cdef int l, mm
        cdef int64_t ctxs[MAX_ORDER]
        cdef float above[MAX_ORDER]
        out_arr = np.empty((B, V), np.float64)
        cdef double[:, ::1] out = out_arr
        for b in range(B):
            if not (0 <= m_in[b] < self.order) or (m_in[b] > 0 and not 0 <= c_in[b] < self.n[m_in[b] - 1]):
                raise ValueError(f"invalid state ({m_in[b]}, {c_in[b]}) in row {b}")
        with nogil:
            for b in range(B):
                mm = m_in[b]
                # ctxs[l]: the context of length l (index in table l-1), l = mm down to 1
                if mm > 0:
                    ctxs[mm] = c_in[b]
                    for l in range(mm, 1, -1):
                        ctxs[l - 1] = self.suffix[l - 1][ctxs[l]]
                        if not 0 <= ctxs[l - 1] < self.n[l - 2]:
                            self.damaged = True
                            mm = 0
                            break
                # above[l]: the backoffs of the contexts longer than l, summed from the longest
                # (as step() adds them, and without subtracting: a backoff may be -inf)
                above[mm] = 0.0
                for l in range(mm, 0, -1):
                    above[l - 1] = above[l] + self.bo[l - 1][ctxs[l]]
                for w in range(V):
                    out[b, w] = self.logp[0][w] + above[0]
                for l in range(1, mm + 1):
                    lo = self.start(l - 1, ctxs[l])
                    hi = self.start(l - 1, ctxs[l] + 1)
                    if lo < 0 or hi < lo or hi > self.n[l]:
                        self.damaged = True
                        break
                    for j in range(lo, hi):
                        w = self.word[l][j]
                        if not 0 <= w < V:
                            self.damaged = True
                            break
                        out[b, w] = self.logp[l][j] + above[l]
                out[b, BOS] = -INFINITY
        self._check_damaged()
        return out_arr


# ------------------------------------------------------------------------------------------------
# hashing of tokens and word tuples
# ------------------------------------------------------------------------------------------------
cdef inline uint64_t hash_bytes(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL  # FNV-1a
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    return h ^ (h >> 29)


cdef inline uint64_t mix(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    return h


cdef class VocabHash:
    """Token (UTF-8 bytes) -> id, open addressing."""
    cdef int64_t[::1] slots
    cdef uint64_t mask
    cdef bytes data
    cdef const uint8_t* base
    cdef int64_t[::1] offs
    cdef public int64_t size

    def __init__(self, list tokens):
        cdef Py_ssize_t i, n = len(tokens)
        cdef uint64_t cap = 16, h
        cdef const uint8_t* p
        cdef int64_t a, b
        while cap < 2 * <uint64_t> n + 2:
            cap <<= 1
        self.mask = cap - 1
        self.slots = np.full(cap, -1, np.int64)
        encoded = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in tokens]
        offs = np.zeros(n + 1, np.int64)
        offs[1:] = np.cumsum([len(t) for t in encoded]) if n else []
        self.offs = offs
        self.data = b"".join(encoded)
        self.size = n
        self.base = <const uint8_t*> (<char*> self.data)
        p = self.base
        for i in range(n):
            a = self.offs[i]
            b = self.offs[i + 1]
            if self._find(p + a, b - a) >= 0:
                raise ValueError(f"duplicate token {tokens[i]!r}")
            h = hash_bytes(p + a, b - a) & self.mask
            while self.slots[h] >= 0:
                h = (h + 1) & self.mask
            self.slots[h] = i

    cdef inline int64_t _find(self, const uint8_t* s, Py_ssize_t n) noexcept nogil:
        cdef uint64_t h = hash_bytes(s, n) & self.mask
        cdef int64_t i, a
        cdef const uint8_t* base = self.base
        while True:
            i = self.slots[h]
            if i < 0:
                return -1
            a = self.offs[i]
            if self.offs[i + 1] - a == n and memcmp(base + a, s, n) == 0:
                return i
            h = (h + 1) & self.mask

    def get(self, token) -> int:
        cdef bytes b = token.encode("utf-8") if isinstance(token, str) else bytes(token)
        return self._find(<const uint8_t*> (<char*> b), len(b))

    def token_bytes(self):
        """(all tokens concatenated, offsets [V+1]) for format_section."""
        return self.data, np.asarray(self.offs)

    def encode_lines(self, const uint8_t[::1] text, int64_t unk=0):
        """Split '\\n'-separated lines on ASCII whitespace and map tokens to ids (unknown: unk;
        <s> and </s> inside a line are unknown too). Returns (ids uint32, offsets int64 [lines+1])."""
        cdef Py_ssize_t n = text.shape[0], i = 0, a, lines = 0
        cdef int64_t t = 0, idx
        for i in range(n):
            if text[i] == 10:
                lines += 1
        if n and text[n - 1] != 10:
            lines += 1
        ids_arr = np.empty(n // 2 + 1, np.uint32)
        off_arr = np.zeros(lines + 1, np.int64)
        cdef uint32_t[::1] ids = ids_arr
        cdef int64_t[::1] off = off_arr
        cdef const uint8_t* p = &text[0] if n else NULL
        cdef Py_ssize_t line = 0
        i = 0
        with nogil:
            while i < n:
                if p[i] == 10:
                    line += 1
                    off[line] = t
                    i += 1
                elif is_space(p[i]):
                    i += 1
                else:
                    a = i
                    while i < n and not is_space(p[i]) and p[i] != 10:
                        i += 1
                    idx = self._find(p + a, i - a)
                    if idx < 0 or idx == BOS or idx == EOS:
                        idx = unk
                    ids[t] = <uint32_t> idx
                    t += 1
            if n and p[n - 1] != 10:
                line += 1
                off[line] = t
        return ids_arr[:t], off_arr


cdef inline bint is_space(uint8_t ch) noexcept nogil:
    # the ASCII whitespace of str.split() (without '\n', handled by the callers)
    return ch == 32 or ch == 9 or ch == 13 or ch == 11 or ch == 12 or (28 <= ch <= 31)


cdef class TupleIndex:
    """A [n, k] int32 matrix of word tuples, hashed: tuple -> row."""
    cdef int32_t[::1] slots
    cdef uint64_t mask
    cdef const int32_t[:, ::1] rows
    cdef int k
    cdef public int64_t duplicate

    def __init__(self, const int32_t[:, ::1] rows):
        cdef Py_ssize_t n = rows.shape[0], i
        cdef uint64_t cap = 16, h
        self.k = rows.shape[1]
        self.rows = rows
        while cap < 2 * <uint64_t> n + 2:
            cap <<= 1
        self.mask = cap - 1
        self.slots = np.full(cap, -1, np.int32)
        self.duplicate = -1
        with nogil:
            for i in range(n):
                h = self._hash(&rows[i, 0], self.k) & self.mask
                while self.slots[h] >= 0:
                    if memcmp(&rows[self.slots[h], 0], &rows[i, 0], self.k * sizeof(int32_t)) == 0:
                        if self.duplicate < 0:
                            self.duplicate = i
                        break
                    h = (h + 1) & self.mask
                if self.slots[h] < 0:
                    self.slots[h] = <int32_t> i

    cdef inline uint64_t _hash(self, const int32_t* t, int k) noexcept nogil:
        cdef uint64_t h = 0x9E3779B97F4A7C15ULL
        cdef int i
        for i in range(k):
            h = mix(h ^ (<uint64_t> <uint32_t> t[i] + 0x9E3779B97F4A7C15ULL * (i + 1)))
        return h

    def lookup(self, const int32_t[:, ::1] q, int col, int k):
        """Row of each tuple q[i, col:col+k] (-1 when absent), as int64 [len(q)]."""
        if k != self.k or col < 0 or col + k > q.shape[1]:
            raise ValueError("tuple length mismatch")
        cdef Py_ssize_t m = q.shape[0], i
        cdef uint64_t h
        cdef int32_t r
        out_arr = np.empty(m, np.int64)
        cdef int64_t[::1] out = out_arr
        with nogil:
            for i in range(m):
                h = self._hash(&q[i, col], k) & self.mask
                out[i] = -1
                while True:
                    r = self.slots[h]
                    if r < 0:
                        break
                    if memcmp(&self.rows[r, 0], &q[i, col], k * sizeof(int32_t)) == 0:
                        out[i] = r
                        break
                    h = (h + 1) & self.mask
        return out_arr


# ------------------------------------------------------------------------------------------------
# ARPA sections
# ------------------------------------------------------------------------------------------------
cdef double POW10[23]
cdef int _i
for _i in range(23):
    POW10[_i] = 10.0 ** _i


cdef inline bint is_blank(uint8_t ch) noexcept nogil:
    return ch == 32 or ch == 9 or ch == 13


cdef inline bint ends_field(const uint8_t* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    return i >= end or p[i] == 32 or p[i] == 9 or p[i] == 13 or p[i] == 10


cdef inline Py_ssize_t parse_number(const uint8_t* p, Py_ssize_t i, Py_ssize_t end,
                                     double* out) noexcept nogil:
    """A decimal number at p[i:] ending at a blank or the line end; returns the index after it
    or -1. Up to 18 significant digits without an exponent take an exact fast path (one
    correctly rounded multiplication or division); anything else goes to strtod (the buffer is
    a NUL-terminated bytes object)."""
    cdef Py_ssize_t s = i
    cdef bint neg = False
    cdef uint64_t mant = 0
    cdef int digits = 0, e = 0
    cdef bint any_digit = False
    cdef double v
    if i < end and (p[i] == 45 or p[i] == 43):
        neg = p[i] == 45
        i += 1
    if i + 3 <= end and (p[i] | 32) == 105 and (p[i + 1] | 32) == 110 and (p[i + 2] | 32) == 102:
        i += 3
        if not ends_field(p, i, end):
            return -1
        out[0] = -INFINITY if neg else INFINITY
        return i
    while i < end and 48 <= p[i] <= 57:
        if digits < 18:
            mant = mant * 10 + (p[i] - 48)
            if mant:
                digits += 1
        else:
            e += 1
        any_digit = True
        i += 1
    if i < end and p[i] == 46:
        i += 1
        while i < end and 48 <= p[i] <= 57:
            if digits < 18:
                mant = mant * 10 + (p[i] - 48)
                if mant:
                    digits += 1
                e -= 1
            any_digit = True
            i += 1
    if not any_digit:
        return -1
    if i < end and (p[i] == 101 or p[i] == 69):
        i += 1
        if i < end and (p[i] == 45 or p[i] == 43):
            i += 1
        if not (i < end and 48 <= p[i] <= 57):
            return -1
        while i < end and 48 <= p[i] <= 57:
            i += 1
        if not ends_field(p, i, end):
            return -1
        out[0] = strtod(<const char*> (p + s), NULL)
        return i
    if not ends_field(p, i, end):
        return -1
    if -22 <= e <= 22:
        v = <double> mant
        if e < 0:
            v = v / POW10[-e]
        else:
            v = v * POW10[e]
        out[0] = -v if neg else v
    else:
        out[0] = strtod(<const char*> (p + s), NULL)
    return i


def parse_section(const uint8_t[::1] buf, Py_ssize_t pos, int k, Py_ssize_t count,
                  VocabHash vocab, bint allow_backoff):
    """Parse `count` lines of k-grams starting at byte `pos`.

    vocab None (k = 1 only): the words are returned as byte spans [count, 2] instead of ids.
    Returns (words [count, k] int32 or spans, logp float32, backoff float32, pos after the
    lines, error): error is None or (line index in the section, message).
    """
    cdef Py_ssize_t n = buf.shape[0], i = pos, line, a, j
    cdef const uint8_t* p = &buf[0]
    cdef double v
    cdef int w
    cdef int64_t idx
    cdef bint spans = vocab is None
    if spans and k != 1:
        raise ValueError("spans only for unigrams")
    words_arr = np.empty((count, 2 if spans else k), np.int64 if spans else np.int32)
    logp_arr = np.empty(count, np.float32)
    bo_arr = np.zeros(count, np.float32)
    cdef float[::1] logp = logp_arr
    cdef float[::1] bo = bo_arr
    cdef int32_t[:, ::1] words
    cdef int64_t[:, ::1] sp
    if spans:
        sp = words_arr
    else:
        words = words_arr
    cdef int err = 0
    cdef int64_t bad_word_a = 0, bad_word_b = 0
    with nogil:
        for line in range(count):
            if i >= n:
                err = 1
                break
            j = i
            # the line must start with a number
            i = parse_number(p, i, n, &v)
            if i < 0:
                i = j
                err = 2
                break
            logp[line] = <float> v
            for w in range(k):
                while i < n and is_blank(p[i]):
                    i += 1
                if i >= n or p[i] == 10:
                    err = 3
                    break
                a = i
                while i < n and not is_blank(p[i]) and p[i] != 10:
                    i += 1
                if spans:
                    sp[line, 0] = a
                    sp[line, 1] = i
                else:
                    idx = vocab._find(p + a, i - a)
                    if idx < 0:
                        err = 4
                        bad_word_a = a
                        bad_word_b = i
                        break
                    words[line, w] = <int32_t> idx
            if err:
                i = j
                break
            while i < n and is_blank(p[i]):
                i += 1
            if i < n and p[i] != 10:
                if not allow_backoff:
                    err = 5
                    i = j
                    break
                a = parse_number(p, i, n, &v)
                if a < 0:
                    err = 6
                    i = j
                    break
                bo[line] = <float> v
                i = a
                while i < n and is_blank(p[i]):
                    i += 1
                if i < n and p[i] != 10:
                    err = 7
                    i = j
                    break
            if i < n:
                i += 1  # the newline
    if err:
        msgs = {1: "the file ends before the section does",
                2: "expected a log10 probability at the start of the line",
                3: f"expected {k} word{'s' if k > 1 else ''} after the probability",
                4: "word {word!r} is not among the 1-grams",
                5: f"a {k}-gram of the highest order takes no backoff weight",
                6: "the backoff weight is not a number",
                7: f"more fields than a {k}-gram line has (probability, {k} word{'s' if k > 1 else ''}, backoff)"}
        msg = msgs[err]
        if err == 4:
            msg = msg.format(word=bytes(buf[bad_word_a:bad_word_b]).decode("utf-8", "replace"))
        return words_arr, logp_arr, bo_arr, i, (line, msg)
    return words_arr, logp_arr, bo_arr, i, None


cdef inline int format_float(char* out, float value) noexcept nogil:
    """The shortest decimal text that reads back as the same float32 (lmplz writes it so)."""
    cdef int prec, n = 0
    if isinf(value):
        if value < 0:
            memcpy(out, b"-99", 3)  # SRILM's log10(0)
            return 3
        memcpy(out, b"99", 2)
        return 2
    if value == 0.0:
        out[0] = 48
        return 1
    for prec in range(6, 10):
        n = snprintf(out, 32, "%.*g", prec, <double> value)
        if <float> strtod(out, NULL) == value:
            return n
    return n


def format_section(const int32_t[:, ::1] words, const float[::1] logp, backoff,
                   const uint8_t[::1] tok_data, const int64_t[::1] tok_off,
                   Py_ssize_t begin, Py_ssize_t end):
    """ARPA lines `logp<TAB>w1 .. wk[<TAB>backoff]` for rows begin..end, as bytes."""
    cdef Py_ssize_t r, w, k = words.shape[1], used = 0, cap = 0, a, b
    cdef bint has_bo = backoff is not None
    cdef const float[::1] bo
    if has_bo:
        bo = backoff
    if not (0 <= begin <= end <= words.shape[0]) or logp.shape[0] != words.shape[0]:
        raise ValueError("rows out of range")
    for r in range(begin, end):
        cap += 2 * 32 + k + 3
        for w in range(k):
            cap += tok_off[words[r, w] + 1] - tok_off[words[r, w]]
    cdef char* out = <char*> malloc(cap + 1)
    if out == NULL:
        raise MemoryError()
    try:
        with nogil:
            for r in range(begin, end):
                used += format_float(out + used, logp[r])
                out[used] = 9
                used += 1
                for w in range(k):
                    if w:
                        out[used] = 32
                        used += 1
                    a = tok_off[words[r, w]]
                    b = tok_off[words[r, w] + 1]
                    memcpy(out + used, &tok_data[0] + a, b - a)
                    used += b - a
                if has_bo:
                    out[used] = 9
                    used += 1
                    used += format_float(out + used, bo[r])
                out[used] = 10
                used += 1
        return out[:used]
    finally:
        free(out)


# ------------------------------------------------------------------------------------------------
# exact sampling in O(explicit successors) per step
# ------------------------------------------------------------------------------------------------
cdef inline uint64_t rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef inline double next_uniform(uint64_t* s) noexcept nogil:
    """xoshiro256** (Blackman and Vigna 2018): a double in [0, 1) from the top 53 bits."""
    cdef uint64_t result = rotl(s[1] * 5, 7) * 9
    cdef uint64_t t = s[1] << 17
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 45)
    return (result >> 11) * (1.0 / 9007199254740992.0)


cdef inline int64_t first_above(const double* cum, int64_t lo, int64_t hi, double u) noexcept nogil:
    """The first j in [lo, hi) with cum[j] > u (cum non-decreasing), or hi - 1 when none is
    (u rounded past the run's total)."""
    cdef int64_t end = hi, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[mid] <= u:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < end else end - 1


cdef class NgramSampler:
    """Draws sentences from a backoff model written as the mixture it was interpolated from:

        p(w | h) = a_h(w) + b(h) p(w | h'),   a_h(w) = p*(hw) - b(h) p(w | h') for the explicit
                                              successors w of h, 0 for the others,

    an identity for any backoff model; a_h(w) >= 0 when the model is interpolated (then a_h is the
    discounted, uninterpolated p of Chen and Goodman eq. 4 and b(h) = gamma(h)). So one uniform u
    on [0, Z(h)) picks an explicit successor by the running sum of a_h when u < A(h) = sum a_h,
    otherwise goes on with (u - A(h)) / b(h) on [0, Z(h')) in the shorter context: O(explicit
    successors) precomputation, O(log successors) per level per token. Z(h) = A(h) + b(h) Z(h')
    is the sum of the model's p(. | h) over the vocabulary without <s> (1 up to float32
    rounding), so draws follow exactly the distribution the generic sampler normalises.

    Tables (o = 0..N-1 as in NgramIndex): cum[o] [n_o] running sum of a within each context's run
    (o >= 1; table 0 over the whole vocabulary), total[o] [n_o] Z of each o+1-gram as a context
    (o < N-1), negative: how many a_h(w) were below -1e-5 p*(hw) (not an interpolated model).
    """
    cdef NgramIndex idx
    cdef const double* cum[MAX_ORDER]
    cdef const double* total[MAX_ORDER]
    cdef const double* gamma[MAX_ORDER]
    cdef double z0
    cdef list _keep
    cdef public int64_t negative

    def __init__(self, NgramIndex idx):
        cdef int N = idx.order, o, m, L
        cdef int64_t j, cc, c, lo, hi, neg = 0
        cdef double p_star, lower, a, run, b
        cdef cnp.ndarray arr
        cdef double* cu
        cdef double* tot
        self.idx = idx
        self._keep = []
        for o in range(N):
            arr = np.zeros(idx.n[o], np.float64)
            self._keep.append(arr)
            self.cum[o] = <const double*> arr.data
            if o < N - 1:
                arr = np.zeros(idx.n[o], np.float64)
                self._keep.append(arr)
                self.total[o] = <const double*> arr.data
                # the backoffs in linear space, so a draw computes no power
                arr = np.power(10.0, np.asarray(<float[:idx.n[o]]> idx.bo[o], np.float64))
                self._keep.append(arr)
                self.gamma[o] = <const double*> arr.data
            else:
                self.total[o] = NULL
                self.gamma[o] = NULL
        with nogil:
            cu = <double*> self.cum[0]
            run = 0.0
            for j in range(idx.n[0]):
                if j != BOS:
                    run += pow(10.0, idx.logp[0][j])
                cu[j] = run
            self.z0 = run
            for o in range(1, N):
                cu = <double*> self.cum[o]
                tot = <double*> self.total[o - 1]
                for cc in range(idx.n[o - 1]):
                    lo = idx.start(o - 1, cc)
                    hi = idx.start(o - 1, cc + 1)
                    if lo < 0 or hi < lo or hi > idx.n[o] or (
                            o >= 2 and not 0 <= idx.suffix[o - 1][cc] < idx.n[o - 2]):
                        idx.damaged = True
                        break
                    b = self.gamma[o - 1][cc]
                    run = 0.0
                    for j in range(lo, hi):
                        if not 0 <= idx.word[o][j] < idx.vocab_size:
                            idx.damaged = True
                            break
                        # p(w | h') in the context one word shorter, backing off as the model does
                        if o >= 2:
                            m = o - 1
                            c = idx.suffix[o - 1][cc]
                        else:
                            m = 0
                            c = 0
                        lower = pow(10.0, idx.step(&m, &c, idx.word[o][j], &L))
                        p_star = pow(10.0, idx.logp[o][j])
                        a = p_star - b * lower
                        if a < 0.0:
                            if a < -1e-5 * p_star:
                                neg += 1
                            a = 0.0
                        if idx.word[o][j] == BOS:
                            a = 0.0
                        run += a
                        cu[j] = run
                    # Z(h) = A(h) + b(h) Z(h')
                    if o >= 2:
                        tot[cc] = run + b * self.total[o - 2][idx.suffix[o - 1][cc]]
                    else:
                        tot[cc] = run + b * self.z0
        idx._check_damaged()
        self.negative = neg

    cdef inline int32_t draw(self, int m, int64_t c, uint64_t* rng) noexcept nogil:
        """One word from p(. | context (m, c))."""
        cdef double u, A, b
        cdef int64_t lo, hi
        if m == 0:
            u = next_uniform(rng) * self.z0
        else:
            u = next_uniform(rng) * self.total[m - 1][c]
        while m > 0:
            lo = self.idx.start(m - 1, c)
            hi = self.idx.start(m - 1, c + 1)
            A = self.cum[m][hi - 1] if hi > lo else 0.0
            b = self.gamma[m - 1][c]
            if u < A or (b <= 0.0 and hi > lo):
                return self.idx.word[m][first_above(self.cum[m], lo, hi, u)]
            u = (u - A) / b if b > 0.0 else 0.0
            if m >= 2:
                c = self.idx.suffix[m - 1][c]
            m -= 1
        return <int32_t> first_above(self.cum[0], 0, self.idx.n[0], u)

    def sample(self, Py_ssize_t num, Py_ssize_t max_len, int m0, int64_t c0,
               const uint64_t[::1] seed):
        """`num` sentences from the context (m0, c0), each until </s> or max_len tokens.

        Returns (ids uint32 [T] the tokens, </s> excluded; offsets int64 [num+1];
        log10 p float64 [num] of the drawn tokens, </s> included when drawn; complete bool [num]).
        """
        cdef NgramIndex idx = self.idx
        if seed.shape[0] != 4:
            raise ValueError("seed must be 4 uint64")
        if not (0 <= m0 < idx.order) or (m0 > 0 and not 0 <= c0 < idx.n[m0 - 1]):
            raise ValueError(f"invalid state ({m0}, {c0})")
        if max_len < 1 or num < 0:
            raise ValueError("max_len must be >= 1 and num >= 0")
        cdef uint64_t s[4]
        cdef int i
        for i in range(4):
            s[i] = seed[i]
        if s[0] == 0 and s[1] == 0 and s[2] == 0 and s[3] == 0:
            s[0] = 1
        off_arr = np.zeros(num + 1, np.int64)
        lp_arr = np.zeros(num, np.float64)
        done_arr = np.zeros(num, np.uint8)
        cdef int64_t[::1] off = off_arr
        cdef double[::1] lp = lp_arr
        cdef uint8_t[::1] done = done_arr
        cdef int64_t cap = max(1024, num * 24), t = 0, k
        cdef uint32_t* buf = <uint32_t*> malloc(cap * sizeof(uint32_t))
        cdef uint32_t* grown
        cdef int m, L
        cdef int64_t c
        cdef int32_t w
        cdef double total
        cdef Py_ssize_t n
        cdef bint failed = False
        if buf == NULL:
            raise MemoryError()
        try:
            with nogil:
                for n in range(num):
                    m = m0
                    c = c0
                    total = 0.0
                    for k in range(max_len):
                        w = self.draw(m, c, s)
                        total += idx.step(&m, &c, w, &L)
                        if w == EOS:
                            done[n] = 1
                            break
                        if t == cap:
                            grown = <uint32_t*> realloc(buf, 2 * cap * sizeof(uint32_t))
                            if grown == NULL:
                                failed = True
                                break
                            buf = grown
                            cap *= 2
                        buf[t] = <uint32_t> w
                        t += 1
                    if failed:
                        break
                    lp[n] = total
                    off[n + 1] = t
            if failed:
                raise MemoryError()
            ids_arr = np.empty(t, np.uint32)
            if t:
                memcpy(<void*> cnp.PyArray_DATA(ids_arr), buf, t * sizeof(uint32_t))
            return ids_arr, off_arr, lp_arr, done_arr.astype(bool)
        finally:
            free(buf)


def join_tokens(const uint32_t[::1] ids, const int64_t[::1] offsets, const uint8_t[::1] tok_data,
                const int64_t[::1] tok_off):
    """Sentences ids[offsets[s]:offsets[s+1]] as text: tokens joined by spaces, one line each."""
    cdef Py_ssize_t S = offsets.shape[0] - 1, s, V = tok_off.shape[0] - 1
    cdef int64_t t, cap = 0, used = 0, a, b
    if S < 0 or offsets[0] != 0 or offsets[S] != ids.shape[0]:
        raise ValueError("offsets must start at 0 and end at len(ids)")
    for t in range(ids.shape[0]):
        if ids[t] >= V:
            raise ValueError(f"token id {ids[t]} at {t} is outside the vocabulary")
        cap += tok_off[ids[t] + 1] - tok_off[ids[t]] + 1
    cap += S + 1
    cdef char* out = <char*> malloc(cap)
    if out == NULL:
        raise MemoryError()
    try:
        with nogil:
            for s in range(S):
                for t in range(offsets[s], offsets[s + 1]):
                    if t > offsets[s]:
                        out[used] = 32
                        used += 1
                    a = tok_off[ids[t]]
                    b = tok_off[ids[t] + 1]
                    memcpy(out + used, &tok_data[0] + a, b - a)
                    used += b - a
                out[used] = 10
                used += 1
        return out[:used]
    finally:
        free(out)
