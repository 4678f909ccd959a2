"""The ARPA back-off language model format: a strict reader and a writer, plain or gzip.

    \\data\\
    ngram 1=V
    ngram 2=n_2
    (blank line)
    \\1-grams:
    log10p<TAB>word<TAB>log10backoff
    ...
    \\2-grams:
    log10p<TAB>w1 w2[<TAB>log10backoff]
    ...
    \\end\\

Conventions: `<s>` has log10 probability 0 as lmplz writes it (SRILM's -99 reads too; `<s>` is
never predicted); a missing backoff is 0; the highest order has none. A file without `<unk>`
gets one with log10 p = -100, as KenLM does. Values are float32, written in the shortest form
that reads back identically; log10(0) is written -99 (SRILM). A file that leaves out the
context or suffix of some n-grams (pruned models may) gets them added with the probability
that backing off gives them and backoff 0, which changes no score. Errors name the file and
line.
"""
from __future__ import annotations

import gzip
import re

import numpy as np

from ...errors import FormatError, InputError, ModelFileError
from ...text.textio import atomic_write, display_name, open_binary
from ...text.vocab import SPECIALS, Tokenizer, Vocab
from .estimate import MAX_ORDER, NgramModel, NgramTables, index_module

MISSING_UNK_LOGP = -100.0  # KenLM's substitute when an ARPA file has no <unk>
_HEADER = re.compile(rb"ngram\s+(\d+)\s*=\s*(\d+)\s*")
CHUNK = 1 << 18  # n-gram lines formatted per call when writing


def looks_like_arpa(path) -> bool:
    """True when the file's first non-blank line is `\\data\\` (plain or gzip)."""
    try:
        f = open_binary(path)
    except InputError:
        return False
    try:
        head = f.read(4096)
    except InputError as e:
        if f.gzip:
            raise ModelFileError(f"{display_name(path)}: a gzip file that cannot be "
                                 f"decompressed ({e}); is it truncated?") from None
        return False
    finally:
        f.close()
    return head.lstrip().startswith(b"\\data\\")


def _read_bytes(path) -> bytes:
    f = open_binary(path)
    try:
        data = f.read()
    except InputError as e:
        raise InputError(f"{e}; is the file truncated or damaged?") from None
    finally:
        f.close()
    return bytes(data)


class _Lines:
    """Line-by-line walk over a byte buffer that knows its line number."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name, self.pos, self.line = data, name, 0, 0

    def next(self) -> bytes | None:
        if self.pos >= len(self.data):
            return None
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            end = len(self.data)
        text = self.data[self.pos:end].rstrip(b"\r")
        self.pos = end + 1
        self.line += 1
        return text

    def next_nonblank(self) -> bytes | None:
        while True:
            text = self.next()
            if text is None or text.strip():
                return text

    def error(self, msg: str, line: int | None = None) -> FormatError:
        return FormatError(f"{self.name}:{self.line if line is None else line}: {msg}")


def read_arpa(path):
    """An NgramModel from an ARPA file (plain or gzip); FormatError naming the line if malformed."""
    _ngram = index_module()
    name = display_name(path)
    data = _read_bytes(path)
    lines = _Lines(data, name)
    first = lines.next_nonblank()
    if first is None or first.strip() != b"\\data\\":
        raise lines.error("not an ARPA file: the first line must be \\data\\")
    counts = []
    while True:
        text = lines.next()
        if text is None:
            raise lines.error("the file ends inside the \\data\\ section")
        if not text.strip():
            if counts:
                break
            continue
        m = _HEADER.fullmatch(text.strip())
        if not m:
            raise lines.error(f"expected 'ngram N=count' in the \\data\\ section, got "
                              f"{text.decode('utf-8', 'replace')!r}")
        k, n = int(m.group(1)), int(m.group(2))
        if k != len(counts) + 1:
            raise lines.error(f"'ngram {k}=' is out of order: expected 'ngram {len(counts) + 1}='")
        counts.append(n)
    order = len(counts)
    if order > MAX_ORDER:
        raise lines.error(f"order {order} is above the maximum of {MAX_ORDER}")
    if counts[0] == 0:
        raise lines.error("the model has no 1-grams")

    parsed = {}  # k -> [words [n, k] int32 (file order), logp, backoff, first line number]
    vocab_hash, tokens = None, []
    for k in range(1, order + 1):
        header = lines.next_nonblank()
        if header is None or header.strip() != f"\\{k}-grams:".encode():
            got = ("the end of the file" if header is None
                   else repr(header.decode("utf-8", "replace")))
            raise lines.error(f"expected \\{k}-grams: , got {got}")
        first_line = lines.line + 1
        W, lp, bo, pos, err = _ngram.parse_section(
            data, lines.pos, k, counts[k - 1], vocab_hash, k < order)
        if err is not None:
            at, msg = err
            bad = first_line + at
            lines.pos, lines.line = pos, bad - 1
            text = lines.next()
            if text is None or not text.strip() or text.startswith(b"\\"):
                raise lines.error(
                    f"wrong count in \\data\\: 'ngram {k}={counts[k - 1]}' but the {k}-grams "
                    f"section has {at} line{'s' if at != 1 else ''}", bad)
            raise lines.error(f"{msg}: {text.decode('utf-8', 'replace')!r}", bad)
        _check_values(lp, bo, k, first_line, lines)
        lines.pos, lines.line = pos, first_line + counts[k - 1] - 1
        saved = (lines.pos, lines.line)
        after = lines.next_nonblank()
        expect = f"\\{k + 1}-grams:".encode() if k < order else b"\\end\\"
        if after is None or after.strip() != expect:
            if after is not None and not after.startswith(b"\\"):
                raise lines.error(f"wrong count in \\data\\: the {k}-grams section has more than "
                                  f"'ngram {k}={counts[k - 1]}' lines")
            got = "the end of the file" if after is None else repr(after.decode("utf-8", "replace"))
            raise lines.error(f"expected {expect.decode()}, got {got}")
        lines.pos, lines.line = saved  # unread it
        if k == 1:
            tokens, lp, bo = _unigrams(data, W, lp, bo, lines, first_line)
            vocab_hash = _ngram.VocabHash(tokens)
        parsed[k] = [np.ascontiguousarray(W), lp, bo, first_line]
    end = lines.next_nonblank()
    if end is None or end.strip() != b"\\end\\":
        raise lines.error("expected \\end\\")
    try:
        tables = _build(parsed, order, len(tokens), lines)
    except _NotClosed:
        # a pruned model may lack the context or suffix of some n-grams: add them, then build
        virtual = _close(parsed, order)
        tables = _build(parsed, order, len(tokens), lines, virtual)
    return NgramModel(tables, Vocab(tokens), Tokenizer(level="word", normalize="none"),
                      {"smoothing": "arpa", "source": name})


def _check_values(lp, bo, k, first_line, lines) -> None:
    """Reject a log10 probability above 0 (a probability above 1: perplexities below 1 would
    follow) or NaN/+inf, and a non-finite backoff. KenLM clamps positive values to 0 with a
    warning; rnnkit rejects them, since a library that never prints cannot warn, and a model
    with such a value was not estimated correctly. -inf (log10 of 0) is accepted."""
    bad = np.flatnonzero(np.isnan(lp) | (lp > 0))
    what = "log10 probability"
    if not len(bad) and bo is not None and len(bo):
        bad = np.flatnonzero(~np.isfinite(bo))
        what = "log10 backoff"
    if len(bad):
        i = int(bad[0])
        value = lp[i] if what == "log10 probability" else bo[i]
        rule = ("must be <= 0 (a probability of at most 1)" if what == "log10 probability"
                else "must be a finite number")
        raise lines.error(f"{k}-gram {i + 1} of its section: {what} {float(value)} {rule}; "
                          f"the file was not written by a correct estimator (KenLM would clamp "
                          f"it to 0 with a warning; rnnkit refuses the file)", first_line + i)


class _NotClosed(Exception):
    """An n-gram's context or suffix is not in the file."""


def _build(parsed, order, V, lines, virtual=None):
    """The (context, word)-sorted tables from the parsed sections. Without `virtual`, a missing
    context or suffix raises _NotClosed; with it (from _close), the added n-grams get the
    probability that backing off gives them."""
    _ngram = index_module()
    words, logp, backoff, ctx, suffix = [], [], [], [None], [None]
    words.append(np.arange(V, dtype=np.int32))
    logp.append(parsed[1][1])
    backoff.append(parsed[1][2])
    index = None  # TupleIndex of the previous order's word tuples (sorted)
    for k in range(2, order + 1):
        W, lp, bo, first_line = parsed[k]
        if k == 2:
            c = W[:, 0].astype(np.int64)
            s = W[:, 1].astype(np.int64)
        else:
            c = index.lookup(W, 0, k - 1)
            s = index.lookup(W, 1, k - 1)
        if (c < 0).any() or (s < 0).any():
            raise _NotClosed()
        key = c * V + W[:, -1]
        perm = np.argsort(key)
        key_sorted = key[perm]
        dup = np.flatnonzero(key_sorted[1:] == key_sorted[:-1])
        if len(dup):
            i = int(max(perm[dup[0]], perm[dup[0] + 1]))  # the later of the two lines
            raise lines.error(f"duplicate {k}-gram", first_line + i)
        words.append(np.ascontiguousarray(W[perm, -1]))
        ctx.append(c[perm].astype(np.int32))
        suffix.append(s[perm].astype(np.int32))
        logp.append(lp[perm])
        backoff.append(bo[perm])
        if virtual is not None and virtual[k] is not None:
            j = np.flatnonzero(virtual[k][perm])
            # p(w | h) of an n-gram the file leaves out: backoff(h) + log10 p(w | h'), ARPA's rule
            logp[-1][j] = backoff[-2][ctx[-1][j]] + logp[-2][suffix[-1][j]]
        if k < order:
            index = _ngram.TupleIndex(np.ascontiguousarray(W[perm]))
    return NgramTables(order, V, words, ctx, suffix, logp, backoff)


def _close(parsed, order):
    """Add every missing context and suffix (recursively) as an n-gram with backoff 0, marked
    virtual; its probability is filled by _build. No score changes: an n-gram absent from the
    file is scored by backing off, which is the value it gets, and its backoff 0 is what a
    missing context contributes. (The n-gram length reported for such a token is the longer one.)"""
    _ngram = index_module()
    virtual = {k: None for k in range(1, order + 1)}
    for k in range(order, 2, -1):
        W = parsed[k][0]
        lower = parsed[k - 1][0]
        index = _ngram.TupleIndex(lower)
        parts = [W[index.lookup(W, col, k - 1) < 0, col:col + k - 1] for col in (0, 1)]
        missing = np.unique(np.concatenate(parts), axis=0).astype(np.int32)
        if len(missing):
            n = len(missing)
            parsed[k - 1][0] = np.ascontiguousarray(np.concatenate([lower, missing]))
            parsed[k - 1][1] = np.concatenate([parsed[k - 1][1], np.full(n, np.nan, np.float32)])
            parsed[k - 1][2] = np.concatenate([parsed[k - 1][2], np.zeros(n, np.float32)])
            old = virtual[k - 1] if virtual[k - 1] is not None else np.zeros(len(lower), bool)
            virtual[k - 1] = np.concatenate([old, np.ones(n, bool)])
    return virtual


def _unigrams(data: bytes, spans, lp, bo, lines: _Lines, first_line: int):
    """Vocabulary from the 1-grams: <unk>, <s>, </s> first (ids 0, 1, 2), then file order."""
    tokens = []
    for i, (a, b) in enumerate(spans.tolist()):
        try:
            tokens.append(data[a:b].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise lines.error(f"invalid UTF-8 in a word at byte {a + e.start} of the file",
                              first_line + i) from None
    position = {}
    for i, t in enumerate(tokens):
        if t in position:
            raise lines.error(f"duplicate 1-gram {t!r}", first_line + i)
        position[t] = i
    for special in ("<s>", "</s>"):
        if special not in position:
            raise lines.error(f"the 1-grams have no {special}; every ARPA model needs <s> and </s>",
                              first_line)
    order = [position.get(s, -1) for s in SPECIALS] + [
        i for i, t in enumerate(tokens) if t not in SPECIALS]
    idx = np.array(order, np.int64)
    missing = idx < 0  # only <unk> can be missing
    idx_safe = np.where(missing, 0, idx)
    out_lp = np.where(missing, np.float32(MISSING_UNK_LOGP), lp[idx_safe]).astype(np.float32)
    out_bo = np.where(missing, np.float32(0), bo[idx_safe]).astype(np.float32)
    out_tokens = list(SPECIALS) + [tokens[i] for i in order[3:]]
    return out_tokens, out_lp, out_bo


def write_arpa(model, path) -> None:
    """Write an NgramModel as ARPA; gzip when the name ends in .gz. Atomic; `-` is stdout."""
    _ngram = index_module()
    gz = str(path).endswith(".gz")
    counts = model.counts
    vh = _ngram.VocabHash(model.vocab.tokens)
    tok_data, tok_off = vh.token_bytes()
    tok_buf = np.frombuffer(tok_data, np.uint8) if tok_data else np.zeros(1, np.uint8)
    with atomic_write(path, "wb") as raw:
        f = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) if gz else raw
        try:
            f.write(b"\\data\\\n")
            for k, n in enumerate(counts, 1):
                f.write(f"ngram {k}={n}\n".encode())
            for k in range(1, model.order + 1):
                f.write(f"\n\\{k}-grams:\n".encode())
                W = np.ascontiguousarray(model.words_matrix(k))
                lp = np.ascontiguousarray(model.tables.logp[k - 1], np.float32)
                bo = (np.ascontiguousarray(model.tables.backoff[k - 1], np.float32)
                      if k < model.order else None)
                for a in range(0, len(W), CHUNK):
                    f.write(_ngram.format_section(W, lp, bo, tok_buf, tok_off, a,
                                                  min(a + CHUNK, len(W))))
            f.write(b"\n\\end\\\n")
        finally:
            if gz:
                f.close()
