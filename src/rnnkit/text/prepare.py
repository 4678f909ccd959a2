"""`rnnkit prepare`: UTF-8 text -> vocabulary and token-id arrays (a `Corpus`, see corpus.py).

Dimension letters: N tokens of a split (each sentence's tokens followed by </s>), S sentences.

One streaming pass reads the input in blocks of whole lines (about 1 MB), splits each line with
the Tokenizer and gives each new token a provisional id in order of first appearance (the
"table", a dict). Splitting, counting, ranking and the final id mapping are then whole-array
numpy steps on those uint32 ids, done in slices so that no step copies the whole array as int64:
no Python strings are held beyond one block and the table of distinct tokens. Peak memory is
about 9 bytes per token (the read buffer, the split arrays and a byte per token
for the split each belongs to) plus the table.
"""
from __future__ import annotations

import math
import os
from array import array
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError
from .corpus import MANIFEST, SPLITS, Corpus, is_corpus_dir
from .textio import BLOCK, check_errors, check_replaceable_dir, display_name, read_blocks
from .vocab import EOS, SPECIALS, UNK, Tokenizer, Vocab

DEFAULT_SPLIT = (0.9, 0.05, 0.05)
SAMPLES = ("en", "ko")
CHUNK = 1 << 20  # ids per slice in whole-array steps: bounds their temporary copies

Progress = Callable[[int], None]  # called with the number of bytes read since the last call
ID_TYPECODE = next(c for c in "IL" if array(c).itemsize == 4)  # the array type of uint32


class _Table(dict):
    """token -> provisional id; a new token gets the next id. The specials all map to <unk>'s id
    (a literal <s> or </s> inside a sentence cannot be a boundary), so the first new id is 3."""

    def __init__(self):
        super().__init__((s, UNK) for s in SPECIALS)

    def __missing__(self, token):
        i = self[token] = len(self)
        return i


def sample_path(lang: str) -> Path:
    """The sample corpus shipped with rnnkit: `en` or `ko`."""
    if lang not in SAMPLES:
        raise InputError(f"unknown sample {lang!r}: use one of {', '.join(SAMPLES)}")
    return Path(str(resources.files("rnnkit") / "data" / f"sample-{lang}.txt"))


def _read(paths, tokenizer: Tokenizer, table: _Table, errors: str,
          progress: Progress | None) -> np.ndarray:
    """Provisional ids of every sentence in `paths`, each followed by </s>; blank lines skipped.

    The one hot loop of prepare: per line, a C-level split and a C-level dict lookup per token
    (`map` over the table's __getitem__); the text arrives in blocks of about 1 MB.
    """
    buf = array(ID_TYPECODE)
    extend, append = buf.extend, buf.append
    lookup = table.__getitem__
    split_lines = tokenizer.split_lines
    for path in paths:
        for _, text in read_blocks(path, errors, progress):
            if len(text) > LONG_LINE and tokenizer.level == "word":
                _read_long(text, split_lines, lookup, extend, append)
                continue
            for tokens in split_lines(text):
                if tokens:
                    extend(map(lookup, tokens))
                    append(EOS)
    # frombuffer shares the array's memory (no copy); the array lives as long as the result
    return np.frombuffer(buf, dtype=np.uint32) if len(buf) else np.zeros(0, np.uint32)


LONG_LINE = 1 << 22  # characters: a block this long holds a very long line


def _read_long(text: str, split_lines, lookup, extend, append) -> None:
    """`_read`'s loop for a block holding a very long line (one 50 MB line would otherwise become
    one list of millions of token strings, ~20x its size): each line is tokenised in pieces of
    about a block, cut at a space, which changes nothing at the word level (tokens never span
    whitespace; NFC never combines across a space)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        any_token = False
        a = start
        while a < end:
            b = text.find(" ", min(a + BLOCK, end), end)
            b = end if b < 0 else b
            for tokens in split_lines(text[a:b]):
                if tokens:
                    extend(map(lookup, tokens))
                    any_token = True
            a = b + 1
        if any_token:
            append(EOS)
        start = end + 1


def _parse_split(split) -> tuple[float, float, float]:
    if split is None:
        return DEFAULT_SPLIT
    text = split if isinstance(split, str) else ",".join(map(str, split))
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"--split {text!r}: expected three fractions train,valid,test like "
                         f"0.9,0.05,0.05") from None
    if len(parts) != 3:
        raise InputError(f"--split {text!r}: expected three fractions train,valid,test like "
                         f"0.9,0.05,0.05, got {len(parts)}")
    if not all(math.isfinite(p) for p in parts):
        raise InputError(f"--split {text!r}: the fractions must be finite numbers")
    if any(p < 0 for p in parts):
        raise InputError(f"--split {text!r}: a fraction is negative")
    if abs(sum(parts) - 1.0) > 1e-6:
        raise InputError(f"--split {text!r}: the fractions must sum to 1, they sum to "
                         f"{sum(parts):g}")
    if parts[0] == 0:
        raise InputError(f"--split {text!r}: the training split gets no sentences")
    return parts


def split_assignment(s: int, fractions, seed: int) -> np.ndarray | None:
    """The split of each of `s` sentences (0 train, 1 valid, 2 test), None if all are training.

    The valid and test splits get round(S * fraction) sentences (at least one when their
    fraction is positive and there are three sentences or more), the training split the rest.
    """
    sizes = [int(round(s * f)) for f in fractions[1:]]
    sizes = [max(n, 1) if f > 0 and s >= 3 else n for n, f in zip(sizes, fractions[1:])]
    if sum(sizes) >= s:
        raise InputError(f"--split {','.join(f'{f:g}' for f in fractions)} leaves no sentence of "
                         f"the {s} for training; use more input or smaller valid/test fractions")
    if sum(sizes) == 0:
        return None
    order = np.random.default_rng(seed).permutation(s)  # [S]
    which = np.zeros(s, np.uint8)  # [S] 0 train, 1 valid, 2 test
    which[order[:sizes[0]]] = 1
    which[order[sizes[0]:sizes[0] + sizes[1]]] = 2
    return which


def _subword_tokenizer(inputs, fractions, seed, errors, normalize, lowercase, vocab_size,
                       subword_model) -> Tokenizer:
    """Train the SentencePiece model on the training sentences only (those the random split
    keeps for training, or all of `inputs` when --valid/--test are given)."""
    from .subword import train_sentencepiece

    plain = Tokenizer(level="word", normalize=normalize, lowercase=lowercase)
    lines = [" ".join(plain.clean(line).split()) for path in inputs
             for _, text in read_blocks(path, errors) for line in text.split("\n")]
    lines = [line for line in lines if line]
    which = split_assignment(len(lines), fractions, seed) if fractions is not None else None
    if which is not None:
        lines = [line for line, k in zip(lines, which.tolist()) if k == 0]
    model = train_sentencepiece(lines, vocab_size, subword_model)
    return Tokenizer(level="subword", normalize=normalize, lowercase=lowercase,
                     subword_model=model)


def _split_sentences(ids: np.ndarray, fractions, seed: int) -> dict[str, np.ndarray]:
    """Assign whole sentences to splits at random (seeded, `split_assignment`); sentences keep
    their order."""
    ends = np.flatnonzero(ids == EOS)  # [S] index of each sentence's </s>
    which = split_assignment(len(ends), fractions, seed)
    out = {"train": ids}
    if which is None:
        out.update({name: np.zeros(0, np.uint32)
                    for name, f in zip(SPLITS[1:], fractions[1:]) if f > 0})
        return out
    lengths = np.diff(ends, prepend=-1)  # [S] tokens per sentence with its </s>
    per_token = np.repeat(which, lengths)  # [N] split of each token
    del lengths, ends
    for k, name in enumerate(SPLITS):
        if k == 0 or fractions[k] > 0:
            out[name] = ids[per_token == k]
    return out


def _chunks(n: int):
    return ((a, min(a + CHUNK, n)) for a in range(0, n, CHUNK))


def _bincount(ids: np.ndarray, n: int) -> np.ndarray:
    """np.bincount in slices: it would otherwise make an int64 copy of the whole uint32 array."""
    counts = np.zeros(n, np.int64)
    for a, b in _chunks(len(ids)):
        counts += np.bincount(ids[a:b], minlength=n)
    return counts


def _remap(ids: np.ndarray, remap: np.ndarray) -> np.ndarray:
    """ids <- remap[ids], in place and in slices (no int64 index copy of the whole array)."""
    if not ids.flags.writeable:
        ids = ids.copy()
    for a, b in _chunks(len(ids)):
        ids[a:b] = remap[ids[a:b]]
    return ids


def _build_vocab(counts: np.ndarray, table: _Table, min_count: int, max_vocab: int | None):
    """The vocabulary's tokens and the provisional -> final id map, from training counts.

    Tokens are ranked by count, ties by first appearance in the input (their provisional id):
    the result depends on nothing but the input and the options.
    """
    cand = np.arange(3, len(table))  # provisional ids of the non-special tokens
    cand = cand[counts[3:] >= min_count]
    cand = cand[np.lexsort((cand, -counts[cand]))]
    if max_vocab is not None:
        cand = cand[:max_vocab - 3]
    remap = np.zeros(len(table), np.uint32)  # [table] provisional -> final id (default <unk>)
    remap[EOS] = EOS
    remap[cand] = np.arange(3, 3 + len(cand), dtype=np.uint32)
    keys = list(table)
    tokens = list(SPECIALS) + [keys[i] for i in cand.tolist()]
    return tokens, remap


def _vocab_remap(vocab: Vocab, table: _Table) -> np.ndarray:
    remap = np.zeros(len(table), np.uint32)  # [table] provisional -> final id (default <unk>)
    get = vocab.index.get
    for token, pid in table.items():
        if pid >= 3:
            remap[pid] = get(token, UNK)
    remap[EOS] = EOS
    return remap


def _check_out_dir(out_dir: Path, force: bool, inputs) -> None:
    """Refuse to replace what is not ours: a file, or a non-empty directory without a corpus
    manifest (unless --force), or a directory that holds one of the inputs."""
    check_replaceable_dir(out_dir, is_corpus_dir, f"an rnnkit corpus directory (no {MANIFEST})",
                          force)
    if not out_dir.is_dir():
        return
    root = out_dir.resolve()
    for p in inputs:
        if p and p != "-" and root in Path(p).resolve().parents:
            raise InputError(f"{out_dir}: holds the input {p}, which replacing the directory "
                             f"would delete; choose another --out")


def _check_inputs(paths) -> None:
    """Fail before any work on an input that cannot be opened (not after reading the others)."""
    if sum(1 for p in paths if p == "-") > 1:
        raise InputError("`-` (stdin) is given more than once; it can be read only once")
    for p in paths:
        if p == "-":
            continue
        path = Path(p)
        if path.is_dir():
            raise InputError(f"{p}: is a directory, expected a text file")
        if not path.exists():
            raise InputError(f"{p}: no such file")
        if not os.access(path, os.R_OK):
            raise InputError(f"{p}: permission denied")


def _as_list(inputs) -> list[str]:
    if inputs is None:
        return []
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    return [os.fspath(p) for p in inputs]


def check_options(inputs: list[str], sample, min_count: int, max_vocab, vocab, valid, test,
                  split, errors: str) -> tuple[list[str], tuple | None]:
    """The checks every way of preparing shares: (the input paths, --sample resolved; the split
    fractions, None with --valid/--test), or InputError saying which option is wrong."""
    if sample is not None:
        if inputs:
            raise InputError("give either input files or --sample, not both")
        inputs = [str(sample_path(sample))]
    if not inputs:
        raise InputError("no input: give one or more text files, `-` for stdin, or --sample en|ko")
    if min_count < 1:
        raise InputError(f"--min-count {min_count}: must be at least 1 (1 keeps every token)")
    if max_vocab is not None and max_vocab < 4:
        raise InputError(f"--max-vocab {max_vocab}: must be at least 4 (the 3 specials and a "
                         f"token)")
    if vocab is not None and (min_count != 1 or max_vocab is not None):
        raise InputError("--vocab reuses a vocabulary as it is; it cannot be combined with "
                         "--min-count or --max-vocab")
    if (valid or test) and split is not None:
        raise InputError("--split divides the input; it cannot be combined with --valid/--test")
    check_errors(errors)
    fractions = None if (valid or test) else _parse_split(split)
    _check_inputs(inputs + [p for p in (valid, test) if p])
    return inputs, fractions


def manifest_options(inputs, sample, min_count, max_vocab, vocab, valid, test, fractions,
                     seed, errors) -> dict:
    """The options a prepared directory's manifest records (both ways of preparing)."""
    return {"inputs": [display_name(p) for p in inputs], "sample": sample,
            "min_count": min_count, "max_vocab": max_vocab,
            "vocab": os.fspath(vocab) if vocab is not None else None,
            "valid": valid, "test": test,
            "split": list(fractions) if fractions is not None else None,
            "seed": seed, "errors": errors}


def build_corpus(inputs=None, *, sample: str | None = None, level: str = "word",
                 lowercase: bool = False, min_count: int = 1, max_vocab: int | None = None,
                 vocab: str | os.PathLike | None = None, valid=None, test=None, split=None,
                 seed: int = 0, normalize: str = "nfc", errors: str = "strict",
                 vocab_size: int | None = None, subword_model: str = "unigram",
                 progress: Progress | None = None) -> "Corpus":
    """Read and tokenise the inputs into an in-memory Corpus (see `prepare` for the options)."""
    inputs = _as_list(inputs)
    valid = os.fspath(valid) if valid else None
    test = os.fspath(test) if test else None
    inputs, fractions = check_options(inputs, sample, min_count, max_vocab, vocab, valid, test,
                                      split, errors)
    if level == "subword":
        if vocab is not None:
            raise InputError("--vocab cannot be combined with --level subword: the subword units "
                             "are learned anew from the text, so an old vocabulary would not "
                             "match them")
        if "-" in inputs:
            raise InputError("--level subword reads the training text twice (to learn the "
                             "subword units, then to split it); give a file, not `-`")
        tokenizer = _subword_tokenizer(inputs, fractions, seed, errors, normalize, lowercase,
                                       vocab_size, subword_model)
    else:
        if vocab_size is not None:
            raise InputError("--vocab-size is the number of subword units; it needs --level "
                             "subword (use --max-vocab to cap a word or character vocabulary)")
        tokenizer = Tokenizer(level=level, normalize=normalize, lowercase=lowercase)
    given_vocab = Vocab.read(vocab) if vocab is not None else None

    table = _Table()
    ids = _read(inputs, tokenizer, table, errors, progress)  # [N] provisional ids
    if len(ids) == 0:
        raise InputError(f"{', '.join(map(display_name, inputs))}: no sentences (the input is "
                         f"empty or blank)")
    if fractions is not None:
        splits = _split_sentences(ids, fractions, seed)
    else:
        splits = {"train": ids}
        for name, path in (("valid", valid), ("test", test)):
            if path:
                splits[name] = _read([path], tokenizer, table, errors, progress)
                if len(splits[name]) == 0:
                    raise InputError(f"{display_name(path)}: no sentences (the --{name} file is "
                                     f"empty or blank)")
    del ids  # the splits are copies (or the same array): free the read buffer now

    if given_vocab is None:
        counts = _bincount(splits["train"], len(table))  # [table] by provisional id
        tokens, remap = _build_vocab(counts, table, min_count, max_vocab)
    else:
        tokens, remap = given_vocab.tokens, _vocab_remap(given_vocab, table)
    del table
    for name in splits:
        splits[name] = _remap(splits[name], remap)  # [N] final ids
    counts = _bincount(splits["train"], len(tokens))  # [V] by final id
    counts[1] = counts[EOS]  # one <s> per sentence
    options = manifest_options(inputs, sample, min_count, max_vocab, vocab, valid, test,
                               fractions, seed, errors)
    if level == "subword":
        options.update(vocab_size=vocab_size, subword_model=subword_model)
    return Corpus(Vocab(tokens, counts), tokenizer, splits, options=options)


def prepare(inputs=None, out_dir: str | os.PathLike | None = None, *, sample: str | None = None,
            level: str = "word", lowercase: bool = False, min_count: int = 1,
            max_vocab: int | None = None, vocab: str | os.PathLike | None = None,
            valid: str | os.PathLike | None = None, test: str | os.PathLike | None = None,
            split=None, seed: int = 0, normalize: str = "nfc", errors: str = "strict",
            vocab_size: int | None = None, subword_model: str = "unigram",
            force: bool = False, progress: Progress | None = None) -> dict:
    """Prepare a corpus directory from UTF-8 text and return its manifest (a dict).

    inputs: a path or a list of paths (`-` is stdin; gzip is recognised by its magic bytes),
    one sentence per line, blank lines skipped, the files read one after the other.
    out_dir receives vocab.txt (token<TAB>count, id = line number from 0), one uint32 .npy per
    split (each sentence's ids followed by </s>) and manifest.json, all at once: it is built
    beside out_dir and renamed into place, so a crash never leaves a directory that looks
    complete. An existing out_dir is replaced if it is a corpus directory or empty; any other
    directory only with force=True.

    sample: "en" or "ko", the sample corpus shipped with rnnkit instead of inputs.
    level: "word" (split on Unicode whitespace), "char" (every character, spaces as ▁) or
    "subword" (a SentencePiece model of vocab_size units, subword_model "unigram" or "bpe",
    trained on the training sentences; it travels inside the manifest's tokenizer).
    normalize: "nfc" (default), "nfkc" or "none"; lowercase: lowercase after normalising.
    min_count, max_vocab: tokens seen fewer than min_count times in the training split, or
    ranked past max_vocab (the 3 specials included), become <unk>. vocab: reuse a vocab.txt.
    valid, test: files for those splits; otherwise split (train,valid,test fractions, default
    0.9,0.05,0.05) divides the input's sentences at random with seed.
    errors: "strict" (invalid UTF-8 is an error) or "replace" (U+FFFD).
    progress: called with the number of input bytes read since the previous call.
    """
    if out_dir is None:
        raise InputError("--out DIR is required: the directory to write the corpus to")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, force, _as_list(inputs) + [os.fspath(p) for p in (valid, test) if p])
    corpus = build_corpus(inputs, sample=sample, level=level, lowercase=lowercase,
                          min_count=min_count, max_vocab=max_vocab, vocab=vocab, valid=valid,
                          test=test, split=split, seed=seed, normalize=normalize, errors=errors,
                          vocab_size=vocab_size, subword_model=subword_model, progress=progress)
    return corpus.write(out_dir)


def load_data(path: str | os.PathLike, progress: Progress | None = None,
              valid: str | os.PathLike | None = None) -> Corpus:
    """DATA of `rnnkit train`: a corpus directory (with its own splits), or a text file prepared
    with the defaults. A text file is training data, all of it (as lmplz reads it); held-out text
    comes only from `valid`, a second text file."""
    p = Path(path)
    if p.is_dir():
        if valid is not None:
            raise InputError(f"{p}: a prepared corpus has its own valid split; --valid goes with "
                             f"a text file (or prepare the corpus with --valid)")
        return Corpus.load(p)
    if valid is not None:
        return build_corpus([str(p)], valid=valid, progress=progress)
    return build_corpus([str(p)], split=(1.0, 0.0, 0.0), progress=progress)
