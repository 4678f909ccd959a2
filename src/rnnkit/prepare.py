"""`rnnkit prepare`: UTF-8 text -> vocabulary and token-id arrays, and `Corpus`, its reader.

Dimension letters: N tokens of a split (each sentence's tokens followed by </s>), S sentences.

One streaming pass reads every line, splits it with the Tokenizer and gives each new token a
provisional id in order of first appearance (the "table"). Counting, splitting, ranking and the
final id mapping are then whole-array numpy operations on those ids: no Python strings are held
beyond one line and the table of distinct tokens.
"""
from __future__ import annotations

import hashlib
import json
import os
from array import array
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InputError
from .textio import atomic_directory, atomic_write, display_name, read_lines
from .vocab import EOS, SPECIALS, UNK, Tokenizer, Vocab

CORPUS_FORMAT = "rnnkit-corpus"
CORPUS_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")
DEFAULT_SPLIT = (0.9, 0.05, 0.05)
SAMPLES = ("en", "ko")

Progress = Callable[[int], None]  # called with the number of bytes read since the last call


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
    """Provisional ids of every sentence in `paths`, each followed by </s>; blank lines skipped."""
    buf = array("I")
    lookup = table.__getitem__
    split = tokenizer.split
    for path in paths:
        done = 0
        for _, line in read_lines(path, errors=errors):
            if progress is not None:
                done += len(line) + 1
                if done >= 1 << 20:
                    progress(done)
                    done = 0
            tokens = split(line)
            if tokens:
                buf.extend(map(lookup, tokens))
                buf.append(EOS)
        if progress is not None and done:
            progress(done)
    return np.frombuffer(buf, dtype=np.uint32) if len(buf) else np.zeros(0, np.uint32)


def _parse_split(split) -> tuple[float, float, float]:
    if split is None:
        return DEFAULT_SPLIT
    if isinstance(split, str):
        try:
            parts = tuple(float(x) for x in split.split(","))
        except ValueError:
            raise InputError(f"--split {split!r}: expected three numbers like 0.9,0.05,0.05") from None
    else:
        parts = tuple(float(x) for x in split)
    if len(parts) != 3:
        raise InputError(f"--split needs three fractions (train,valid,test), got {len(parts)}")
    if any(p < 0 for p in parts):
        raise InputError(f"--split fractions must not be negative, got {parts}")
    if abs(sum(parts) - 1.0) > 1e-6:
        raise InputError(f"--split fractions must sum to 1, they sum to {sum(parts):g}")
    if parts[0] == 0:
        raise InputError("--split gives the training split no sentences")
    return parts


def _split_sentences(ids: np.ndarray, fractions, seed: int) -> dict[str, np.ndarray]:
    """Assign whole sentences to splits at random (seeded); sentences keep their order."""
    ends = np.flatnonzero(ids == EOS)
    lengths = np.diff(np.concatenate(([-1], ends)))  # [S] tokens per sentence incl. </s>
    s = len(ends)
    n_valid = int(round(s * fractions[1]))
    n_test = int(round(s * fractions[2]))
    order = np.random.default_rng(seed).permutation(s)
    which = np.zeros(s, np.uint8)  # [S] 0 train, 1 valid, 2 test
    which[order[:n_valid]] = 1
    which[order[n_valid:n_valid + n_test]] = 2
    per_token = np.repeat(which, lengths)  # [N]
    out = {}
    for k, name in enumerate(SPLITS):
        if fractions[k] > 0:
            out[name] = ids[per_token == k]
    return out


def _build_vocab(train: np.ndarray, table: _Table, min_count: int, max_vocab: int | None):
    """Vocabulary from the training split and the provisional -> final id map.

    Tokens ranked by count, ties by first appearance (their provisional id): deterministic.
    """
    counts = np.bincount(train, minlength=len(table))  # [table] counts by provisional id
    cand = np.arange(3, len(table))
    cand = cand[counts[3:] >= max(min_count, 1)]
    cand = cand[np.lexsort((cand, -counts[cand]))]
    if max_vocab is not None:
        cand = cand[:max(max_vocab - 3, 0)]
    remap = np.zeros(len(table), np.uint32)  # [table] provisional -> final id (default <unk>)
    remap[EOS] = EOS
    remap[cand] = np.arange(3, 3 + len(cand), dtype=np.uint32)
    keys = list(table.keys())
    tokens = list(SPECIALS) + [keys[i] for i in cand.tolist()]
    sentences = int(counts[EOS])
    return tokens, remap, sentences


def _vocab_remap(vocab: Vocab, table: _Table) -> np.ndarray:
    remap = np.zeros(len(table), np.uint32)
    for token, pid in table.items():
        if pid >= 3:
            remap[pid] = vocab.index.get(token, UNK)
    remap[EOS] = EOS
    return remap


def _stats(ids: np.ndarray) -> dict:
    sentences = int(np.count_nonzero(ids == EOS))
    tokens = len(ids) - sentences
    oov = int(np.count_nonzero(ids == UNK))
    return {"sentences": sentences, "tokens": tokens, "oov": oov,
            "oov_rate": round(oov / tokens, 6) if tokens else 0.0}


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.is_file():
        raise InputError(f"{out_dir}: exists and is a file; choose a directory for --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_corpus_dir(out_dir) and not force:
        raise InputError(
            f"{out_dir}: exists and is not an rnnkit corpus directory; choose another --out, "
            f"or pass --force to replace it")


def is_corpus_dir(path: Path) -> bool:
    try:
        return json.loads((Path(path) / MANIFEST).read_text("utf-8")).get("format") == CORPUS_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def build_corpus(inputs, *, sample: str | None = None, level: str = "word",
                 lowercase: bool = False, min_count: int = 1, max_vocab: int | None = None,
                 vocab: str | os.PathLike | None = None, valid=None, test=None, split=None,
                 seed: int = 0, normalize: str = "nfc", errors: str = "strict",
                 progress: Progress | None = None) -> "Corpus":
    """Read and tokenise the inputs into an in-memory Corpus (see `prepare` for the options)."""
    inputs = [str(p) for p in (inputs or [])]
    if sample is not None:
        if inputs:
            raise InputError("give either input files or --sample, not both")
        inputs = [str(sample_path(sample))]
    if not inputs:
        raise InputError("no input: give one or more text files, `-` for stdin, or --sample en|ko")
    if min_count < 1:
        raise InputError(f"--min-count must be at least 1, got {min_count}")
    if max_vocab is not None and max_vocab < 4:
        raise InputError(f"--max-vocab must be at least 4 (3 specials and a token), got {max_vocab}")
    if (valid or test) and split is not None:
        raise InputError("--split divides the input; it cannot be combined with --valid/--test")
    fractions = None if (valid or test) else _parse_split(split)
    tokenizer = Tokenizer(level=level, normalize=normalize, lowercase=lowercase)
    given_vocab = Vocab.read(vocab) if vocab is not None else None

    table = _Table()
    ids = _read(inputs, tokenizer, table, errors, progress)
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
    if len(splits["train"]) == 0:
        raise InputError("the training split has no sentences; use more input or change --split")

    if given_vocab is None:
        tokens, remap, _ = _build_vocab(splits["train"], table, min_count, max_vocab)
    else:
        tokens, remap = given_vocab.tokens, _vocab_remap(given_vocab, table)
    for name in splits:
        splits[name] = remap[splits[name]]  # [N] final ids
    counts = np.bincount(splits["train"], minlength=len(tokens)).astype(np.int64)
    counts[1] = counts[EOS]  # one <s> per sentence
    vocab_obj = Vocab(tokens, counts)
    options = {"inputs": [display_name(p) for p in inputs], "sample": sample,
               "min_count": min_count, "max_vocab": max_vocab,
               "vocab": str(vocab) if vocab is not None else None,
               "valid": valid, "test": test,
               "split": list(fractions) if fractions is not None else None,
               "seed": seed, "errors": errors}
    return Corpus(vocab_obj, tokenizer, splits, options=options)


def prepare(inputs=None, out_dir: str | os.PathLike | None = None, *, force: bool = False,
            **options) -> dict:
    """Prepare a corpus directory and return its manifest.

    out_dir receives vocab.txt (token<TAB>count, id = line number from 0), one uint32 .npy
    per split (each sentence's ids followed by </s>) and manifest.json, all written at once
    (a crash never leaves a directory that looks complete). Options: sample, level, lowercase,
    min_count, max_vocab, vocab, valid, test, split, seed, normalize, errors, progress.
    """
    if out_dir is None:
        raise InputError("--out DIR is required: the directory to write the corpus to")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, force)
    corpus = build_corpus(inputs, **options)
    return corpus.write(out_dir)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Corpus:
    """A prepared corpus: vocabulary, tokenizer and the id arrays of its splits.

    `Corpus(dir)` reads a directory written by `rnnkit prepare`; `build_corpus` makes one in memory.
    """

    def __init__(self, vocab, tokenizer: Tokenizer | None = None, splits=None, options=None,
                 manifest: dict | None = None):
        if isinstance(vocab, (str, os.PathLike)):
            loaded = Corpus.load(vocab)
            vocab, tokenizer, splits, manifest = (loaded.vocab, loaded.tokenizer, loaded.splits,
                                                  loaded.manifest)
        self.vocab: Vocab = vocab
        self.tokenizer: Tokenizer = tokenizer
        self.splits: dict[str, np.ndarray] = dict(splits)
        self.manifest = manifest if manifest is not None else self._manifest(options or {})

    def _manifest(self, options: dict) -> dict:
        from . import __version__

        return {
            "format": CORPUS_FORMAT, "format_version": CORPUS_VERSION,
            "created_by": f"rnnkit {__version__}",
            "tokenizer": self.tokenizer.to_dict(),
            "options": options,
            "vocab": {"file": "vocab.txt", "size": len(self.vocab), "sha256": self.vocab.sha256()},
            "splits": {name: {"file": f"{name}.npy", **_stats(ids)}
                       for name, ids in self.splits.items()},
        }

    def __getitem__(self, name: str) -> np.ndarray:
        return self.splits[name]

    def __contains__(self, name: str) -> bool:
        return name in self.splits

    def sentences(self, name: str) -> list[np.ndarray]:
        """The sentences of a split as id arrays, without their </s>."""
        ids = self.splits[name]
        ends = np.flatnonzero(ids == EOS)
        starts = np.concatenate(([0], ends[:-1] + 1))
        return [ids[a:b] for a, b in zip(starts.tolist(), ends.tolist())]

    def text(self, name: str) -> Iterator[str]:
        """The sentences of a split as text (OOV tokens read <unk>)."""
        for ids in self.sentences(name):
            yield self.tokenizer.join(self.vocab.decode(ids.tolist()))

    def write(self, out_dir: str | os.PathLike) -> dict:
        out_dir = Path(out_dir)
        with atomic_directory(out_dir) as tmp:
            with open(tmp / "vocab.txt", "w", encoding="utf-8") as f:
                self.vocab.write(f)
            for name, ids in self.splits.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(ids, dtype=np.uint32))
                self.manifest["splits"][name]["sha256"] = _sha256(tmp / f"{name}.npy")
            # the manifest last: a directory with a manifest is complete
            with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(self.manifest, f, ensure_ascii=False, indent=2)
                f.write("\n")
        return self.manifest

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = False) -> "Corpus":
        """Read a corpus directory; with verify, check every array against its sha256."""
        path = Path(path)
        if not is_corpus_dir(path):
            raise InputError(f"{path}: not a corpus directory made by `rnnkit prepare` "
                             f"(no valid {MANIFEST})")
        manifest = json.loads((path / MANIFEST).read_text("utf-8"))
        if manifest.get("format_version") != CORPUS_VERSION:
            raise InputError(f"{path}: corpus format version {manifest.get('format_version')} is "
                             f"not supported; rerun `rnnkit prepare`")
        vocab = Vocab.read(path / manifest["vocab"]["file"])
        if vocab.sha256() != manifest["vocab"]["sha256"]:
            raise InputError(f"{path}: vocab.txt does not match the manifest; rerun `rnnkit prepare`")
        splits = {}
        for name, info in manifest["splits"].items():
            f = path / info["file"]
            if verify and _sha256(f) != info["sha256"]:
                raise InputError(f"{f}: checksum mismatch (the file was changed or damaged)")
            try:
                splits[name] = np.load(f, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise InputError(f"{f}: cannot read ({e}); rerun `rnnkit prepare`") from None
        return cls(vocab, Tokenizer.from_dict(manifest["tokenizer"]), splits, manifest=manifest)


def load_data(path: str | os.PathLike, progress: Progress | None = None) -> Corpus:
    """DATA of `rnnkit train`: a corpus directory, or a text file prepared with the defaults."""
    p = Path(path)
    if p.is_dir():
        return Corpus.load(p)
    return build_corpus([str(p)], progress=progress)
