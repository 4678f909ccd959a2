"""`rnnkit prepare SRC TRG --parallel`: two files aligned line by line -> a parallel corpus.

Dimension letters: P sentence pairs of a split.

The directory holds manifest.json (format "rnnkit-parallel": the options, the pair counts, what
the filters dropped) and two complete corpus directories `src/` and `trg/` (corpus.py), sentence
i of a split on one side the translation of sentence i on the other. Each side has its own
tokenizer and vocabulary, or (--joint-vocab) both share one.

Reading is strict: both files are read together line by line; line counts that differ, a line
empty on one side only, or invalid UTF-8 stop with an error naming the file and the line. A line
blank on both sides is skipped (as prepare skips blank lines), and counted.
Training pairs may be filtered by length and length ratio (--max-length, --max-ratio); held-out
pairs never are, so that scores stay comparable.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from itertools import zip_longest
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import InputError
from .corpus import MANIFEST, SPLITS, Corpus, is_corpus_dir
from .prepare import (
    _bincount,
    _build_vocab,
    _check_inputs,
    _check_out_dir,
    _parse_split,
    _remap,
    _Table,
    split_assignment,
)
from .subword import train_sentencepiece
from .textio import atomic_directory, check_errors, display_name, read_lines
from .vocab import EOS, Tokenizer, Vocab

PARALLEL_SAMPLES = {"ko-en": ("ko", "en")}
PARALLEL_FORMAT = "rnnkit-parallel"
PARALLEL_VERSION = 1
SIDES = ("src", "trg")


def is_parallel_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory written by `rnnkit prepare --parallel`."""
    try:
        m = json.loads((Path(path) / MANIFEST).read_text("utf-8"))
        return m.get("format") == PARALLEL_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class ParallelCorpus:
    """Two aligned corpora: `.src` and `.trg` (corpus.py), the same splits and sentence counts.

    `ParallelCorpus.load(dir)` reads a directory written by `prepare_parallel`;
    `build_parallel` makes one in memory.
    """

    def __init__(self, src: Corpus, trg: Corpus, manifest: dict):
        self.src, self.trg, self.manifest = src, trg, manifest

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(self.src.sentences(k)):,}" for k in self.src.splits)
        return f"ParallelCorpus(src={len(self.src.vocab):,}, trg={len(self.trg.vocab):,}, {sizes})"

    def __contains__(self, split: str) -> bool:
        return split in self.src and split in self.trg

    def pairs(self, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(source ids, target ids)] of a split, uint32 arrays without </s>; KeyError if the
        corpus has no such split."""
        src, trg = self.src.sentences(split), self.trg.sentences(split)
        if len(src) != len(trg):
            raise InputError(f"the {split} split has {len(src)} source and {len(trg)} target "
                             f"sentences; rerun `rnnkit prepare --parallel`")
        return list(zip(src, trg))

    def text(self, split: str) -> list[tuple[str, str]]:
        """[(source text, target text)] of a split (OOV tokens read <unk>)."""
        return list(zip(self.src.text(split), self.trg.text(split)))

    def write(self, out_dir: str | os.PathLike) -> dict:
        """Write the directory atomically (the two corpora, then the manifest); return the
        manifest."""
        with atomic_directory(Path(out_dir)) as tmp:
            for side, corpus in zip(SIDES, (self.src, self.trg)):
                corpus.write(tmp / side)
            with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(self.manifest, f, ensure_ascii=False, indent=2)
                f.write("\n")
        return self.manifest

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = False) -> "ParallelCorpus":
        path = Path(path)
        if not is_parallel_dir(path):
            hint = (" (it is a monolingual corpus: prepare two aligned files with --parallel)"
                    if is_corpus_dir(path) else "")
            raise InputError(f"{path}: not a parallel corpus made by `rnnkit prepare --parallel` "
                             f"(no valid {MANIFEST}){hint}")
        manifest = json.loads((path / MANIFEST).read_text("utf-8"))
        if manifest.get("format_version") != PARALLEL_VERSION:
            raise InputError(f"{path}: parallel corpus format version "
                             f"{manifest.get('format_version')} is not supported; rerun "
                             f"`rnnkit prepare --parallel`")
        src, trg = (Corpus.load(path / side, verify=verify) for side in SIDES)
        for split in src.splits:
            a = src.manifest["splits"][split]["sentences"]
            b = trg.manifest["splits"].get(split, {}).get("sentences")
            if a != b:
                raise InputError(f"{path}: the {split} split has {a} source and {b} target "
                                 f"sentences; rerun `rnnkit prepare --parallel`")
        return cls(src, trg, manifest)


def parallel_sample_paths(name: str) -> tuple[Path, Path]:
    """The two files of a parallel sample shipped with rnnkit (scripts/make_samples.py)."""
    if name not in PARALLEL_SAMPLES:
        raise InputError(f"unknown parallel sample {name!r}: use one of "
                         f"{', '.join(PARALLEL_SAMPLES)}")
    root = Path(str(resources.files("rnnkit") / "data"))
    return tuple(root / f"sample-{name}.{lang}.txt" for lang in PARALLEL_SAMPLES[name])


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_pairs(src_path, trg_path, errors: str = "strict") -> tuple[list[str], list[str], int]:
    """The aligned lines of two files (plain or gzip) and the number of lines blank on both sides
    (skipped). Raises InputError naming the file and line on a line-count mismatch, a line empty
    on one side, or invalid UTF-8 (unless errors="replace")."""
    src_name, trg_name = display_name(src_path), display_name(trg_path)
    src_lines, trg_lines, blank = [], [], 0
    end = object()
    number = 0
    for a, b in zip_longest(read_lines(src_path, errors), read_lines(trg_path, errors),
                            fillvalue=end):
        if a is end or b is end:
            shorter, longer = (src_name, trg_name) if a is end else (trg_name, src_name)
            number = (b if a is end else a)[0]
            raise InputError(
                f"{shorter}: ends at line {number - 1}, but {longer} has a line {number}: the "
                f"files are not aligned line by line (a sentence split or joined across lines, "
                f"or a missing translation?)")
        number, s = a
        t = b[1]
        s_blank, t_blank = not s.strip(), not t.strip()
        if s_blank and t_blank:
            blank += 1
            continue
        if s_blank or t_blank:
            empty, other = (src_name, trg_name) if s_blank else (trg_name, src_name)
            raise InputError(f"{empty}:{number}: empty line, but line {number} of {other} is "
                             f"not: every sentence needs its translation (remove the pair from "
                             f"both files)")
        src_lines.append(s)
        trg_lines.append(t)
    return src_lines, trg_lines, blank


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------
def _filter(src_tok, trg_tok, max_length: int | None, max_ratio: float | None):
    """Indices of the training pairs kept, and how many each filter dropped (length first)."""
    keep, too_long, bad_ratio = [], 0, 0
    for i, (s, t) in enumerate(zip(src_tok, trg_tok)):
        ls, lt = len(s), len(t)
        if max_length is not None and max(ls, lt) > max_length:
            too_long += 1
        elif max_ratio is not None and max(ls, lt) > max_ratio * min(ls, lt):
            bad_ratio += 1
        else:
            keep.append(i)
    return keep, {"max_length": too_long, "max_ratio": bad_ratio}


def _ids(token_lists, table: _Table) -> np.ndarray:
    """Provisional ids of the sentences, each followed by </s>."""
    lookup = table.__getitem__
    out: list[int] = []
    for tokens in token_lists:
        out.extend(map(lookup, tokens))
        out.append(EOS)
    return np.array(out, np.uint32)


def _tokenizers(train_text, level, normalize, lowercase, vocab_size, subword_model, joint):
    if level != "subword":
        if vocab_size is not None:
            raise InputError("--vocab-size is the number of subword units; it needs --level "
                             "subword (use --max-vocab to cap a word or character vocabulary)")
        t = Tokenizer(level=level, normalize=normalize, lowercase=lowercase)
        return t, t
    plain = Tokenizer(normalize=normalize, lowercase=lowercase)

    def clean(lines):
        return [" ".join(plain.clean(x).split()) for x in lines]

    def make(lines):
        return Tokenizer(level="subword", normalize=normalize, lowercase=lowercase,
                         subword_model=train_sentencepiece(lines, vocab_size, subword_model))

    src, trg = clean(train_text[0]), clean(train_text[1])
    if joint:  # one model over both sides' training text (Sennrich et al. 2016's joint BPE)
        t = make(src + trg)
        return t, t
    return make(src), make(trg)


def build_parallel(src, trg, *, valid=None, test=None, sample: str | None = None,
                   level: str = "word", lowercase: bool = False, normalize: str = "nfc",
                   min_count: int = 1, max_vocab: int | None = None,
                   vocab_size: int | None = None, subword_model: str = "unigram",
                   joint_vocab: bool = False, split=None, seed: int = 0,
                   max_length: int | None = None, max_ratio: float | None = None,
                   errors: str = "strict") -> ParallelCorpus:
    """Read, split, tokenise and filter aligned files into an in-memory ParallelCorpus (see
    `prepare_parallel` for the options)."""
    if sample is not None:
        if src or trg:
            raise InputError("give either SRC TRG files or --sample, not both")
        src, trg = parallel_sample_paths(sample)
    if not src or not trg:
        raise InputError("--parallel needs two files, SRC TRG, aligned line by line (or "
                         "--sample ko-en)")
    src, trg = os.fspath(src), os.fspath(trg)
    valid = tuple(map(os.fspath, valid)) if valid else None
    test = tuple(map(os.fspath, test)) if test else None
    for name, pair in (("valid", valid), ("test", test)):
        if pair is not None and len(pair) != 2:
            raise InputError(f"--{name} with --parallel needs two files: --{name} SRC TRG")
    if min_count < 1:
        raise InputError(f"--min-count {min_count}: must be at least 1 (1 keeps every token)")
    if max_vocab is not None and max_vocab < 4:
        raise InputError(f"--max-vocab {max_vocab}: must be at least 4 (the 3 specials and a "
                         f"token)")
    if max_length is not None and max_length < 1:
        raise InputError(f"--max-length {max_length}: must be at least 1 token")
    if max_ratio is not None and not max_ratio >= 1:
        raise InputError(f"--max-ratio {max_ratio}: must be at least 1 (the longer side over "
                         f"the shorter)")
    if (valid or test) and split is not None:
        raise InputError("--split divides the input; it cannot be combined with --valid/--test")
    check_errors(errors)
    files = [src, trg] + list(valid or ()) + list(test or ())
    if "-" in files:
        raise InputError("--parallel reads files, not `-` (stdin): give the two aligned files")
    _check_inputs(files)

    src_lines, trg_lines, blank = read_pairs(src, trg, errors)
    if not src_lines:
        raise InputError(f"{display_name(src)}, {display_name(trg)}: no sentence pairs (the "
                         f"input is empty or blank)")
    texts = {}  # split -> (source lines, target lines)
    if valid or test:
        texts["train"] = (src_lines, trg_lines)
        for name, pair in (("valid", valid), ("test", test)):
            if pair:
                s, t, _ = read_pairs(pair[0], pair[1], errors)
                if not s:
                    raise InputError(f"{pair[0]}, {pair[1]}: no sentence pairs (the --{name} "
                                     f"files are empty or blank)")
                texts[name] = (s, t)
        fractions = None
    else:
        fractions = _parse_split(split)
        which = split_assignment(len(src_lines), fractions, seed)
        for k, name in enumerate(SPLITS):
            if k == 0 or fractions[k] > 0:
                idx = range(len(src_lines)) if which is None else \
                    np.flatnonzero(which == k).tolist()
                texts[name] = ([src_lines[i] for i in idx], [trg_lines[i] for i in idx])
    del src_lines, trg_lines

    src_tok, trg_tok = _tokenizers(texts["train"], level, normalize, lowercase, vocab_size,
                                   subword_model, joint_vocab)
    tokens = {name: ([src_tok.split(x) for x in s], [trg_tok.split(x) for x in t])
              for name, (s, t) in texts.items()}
    read_counts = {name: len(s) for name, (s, _) in texts.items()}
    keep, dropped = _filter(*tokens["train"], max_length, max_ratio)
    if not keep:
        raise InputError(f"the filters dropped every training pair ({dropped['max_length']} by "
                         f"--max-length, {dropped['max_ratio']} by --max-ratio); relax them")
    tokens["train"] = tuple([side[i] for i in keep] for side in tokens["train"])

    # one provisional-id table per side, or one for both (a joint vocabulary)
    tables = (_Table(),) * 2 if joint_vocab else (_Table(), _Table())
    ids = {side: {name: _ids(tokens[name][k], tables[k]) for name in tokens}
           for k, side in enumerate(SIDES)}
    if joint_vocab:
        n = len(tables[0])
        counts = _bincount(ids["src"]["train"], n) + _bincount(ids["trg"]["train"], n)
        shared = _build_vocab(counts, tables[0], min_count, max_vocab)
        built = {"src": shared, "trg": shared}
    else:
        built = {side: _build_vocab(_bincount(ids[side]["train"], len(tables[k])), tables[k],
                                    min_count, max_vocab)
                 for k, side in enumerate(SIDES)}
    options = {"inputs": [display_name(src), display_name(trg)], "sample": sample,
               "level": level, "lowercase": lowercase, "normalize": normalize,
               "min_count": min_count, "max_vocab": max_vocab, "joint_vocab": joint_vocab,
               "valid": list(valid) if valid else None, "test": list(test) if test else None,
               "split": list(fractions) if fractions is not None else None, "seed": seed,
               "max_length": max_length, "max_ratio": max_ratio, "errors": errors}
    if level == "subword":
        options.update(vocab_size=vocab_size, subword_model=subword_model)
    splits = {side: {name: _remap(arr, built[side][1]) for name, arr in ids[side].items()}
              for side in SIDES}  # final ids
    corpora = []
    for side, tok in zip(SIDES, (src_tok, trg_tok)):
        vocab_tokens = built[side][0]
        counts = _bincount(splits[side]["train"], len(vocab_tokens))
        if joint_vocab:  # both sides count toward the shared vocabulary's counts
            counts += _bincount(splits["trg" if side == "src" else "src"]["train"],
                                len(vocab_tokens))
        counts[1] = counts[EOS]
        corpora.append(Corpus(Vocab(vocab_tokens, counts), tok, splits[side],
                              options={**options, "side": side}))
    manifest = {
        "format": PARALLEL_FORMAT, "format_version": PARALLEL_VERSION,
        "created_by": f"rnnkit {__version__}", "options": options,
        "pairs": {name: len(tokens[name][0]) for name in tokens},
        "read": read_counts,
        "dropped": {"split": "train", **dropped, "blank_lines": blank},
        "splits": {side: {name: {k: v for k, v in info.items() if k != "file"}
                          for name, info in c.manifest["splits"].items()}
                   for side, c in zip(SIDES, corpora)},
        "src": {"dir": "src", "vocab_size": len(corpora[0].vocab),
                "level": src_tok.level},
        "trg": {"dir": "trg", "vocab_size": len(corpora[1].vocab),
                "level": trg_tok.level},
    }
    return ParallelCorpus(corpora[0], corpora[1], manifest)


def prepare_parallel(src=None, trg=None, out_dir: str | os.PathLike | None = None, *,
                     force: bool = False, **options) -> dict:
    """Prepare a parallel corpus directory from two aligned UTF-8 files; return its manifest.

    src, trg: files aligned line by line (gzip recognised by its magic bytes); a line blank on
    both sides is skipped, one blank on one side only is an error. valid, test: (src, trg) file
    pairs for those splits; otherwise split (fractions, default 0.9,0.05,0.05) divides the pairs
    at random with seed. sample: "ko-en", the bundled sample instead of files.
    level: "word", "char" or "subword" (vocab_size units, subword_model unigram or bpe, one model
    per side or with joint_vocab one for both). lowercase, normalize, min_count, max_vocab,
    errors: as `prepare`. joint_vocab: one vocabulary (and subword model) for both sides.
    max_length: drop training pairs with a side longer than this many tokens; max_ratio: drop
    training pairs whose longer side has more than max_ratio times the tokens of the shorter.
    The manifest counts what each filter dropped. out_dir is written atomically, and an existing
    one replaced only if it is a corpus directory or empty (or force=True).
    """
    if out_dir is None:
        raise InputError("--out DIR is required: the directory to write the corpus to")
    out_dir = Path(out_dir)
    inputs = [p for p in (src, trg) if p]
    for pair in (options.get("valid"), options.get("test")):
        inputs += list(pair or ())
    _check_out_dir(out_dir, force or is_parallel_dir(out_dir), [os.fspath(p) for p in inputs])
    return build_parallel(src, trg, **options).write(out_dir)
