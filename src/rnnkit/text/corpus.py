"""A prepared corpus: the directory `rnnkit prepare` writes, and its in-memory form.

The directory holds vocab.txt, one uint32 id array per split (every sentence followed by </s>)
and manifest.json (format, tokenizer, options, sizes and checksums).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import InputError
from .textio import atomic_directory, read_lines
from .vocab import EOS, UNK, Tokenizer, Vocab

CORPUS_FORMAT = "rnnkit-corpus"
CORPUS_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")


def _stats(ids: np.ndarray) -> dict:
    sentences = int(np.count_nonzero(ids == EOS))
    tokens = len(ids) - sentences
    oov = int(np.count_nonzero(ids == UNK))
    return {"sentences": sentences, "tokens": tokens, "oov": oov,
            "oov_rate": round(oov / tokens, 6) if tokens else 0.0}


def is_corpus_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory written by `rnnkit prepare` (it has a corpus manifest)."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text("utf-8")).get("format") == CORPUS_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Corpus:
    """A prepared corpus: vocabulary, tokenizer and the id arrays of its splits.

    `Corpus(dir)` reads a directory written by `rnnkit prepare` (the arrays are memory-mapped);
    `build_corpus` makes one in memory. `corpus["train"]` is the uint32 id array of a split:
    every sentence's ids followed by </s> (id 2).
    """

    def __init__(self, vocab, tokenizer: Tokenizer | None = None, splits=None, options=None,
                 manifest: dict | None = None):
        if isinstance(vocab, (str, os.PathLike)):
            loaded = Corpus.load(vocab)
            vocab, tokenizer, splits, manifest = (loaded.vocab, loaded.tokenizer, loaded.splits,
                                                  loaded.manifest)
        self.vocab: Vocab = vocab
        self.tokenizer: Tokenizer = tokenizer or Tokenizer()
        self.splits: dict[str, np.ndarray] = dict(splits or {})
        self.manifest = manifest if manifest is not None else self._manifest(options or {})

    def _manifest(self, options: dict) -> dict:
        return {
            "format": CORPUS_FORMAT, "format_version": CORPUS_VERSION,
            "created_by": f"rnnkit {__version__}",
            "tokenizer": self.tokenizer.to_dict(),
            "options": options,
            "vocab": {"file": "vocab.txt", "size": len(self.vocab), "sha256": self.vocab.sha256()},
            "splits": {name: {"file": f"{name}.npy", "dtype": "uint32", **_stats(ids)}
                       for name, ids in self.splits.items()},
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v):,}" for k, v in self.splits.items())
        return f"Corpus(vocab={len(self.vocab):,}, level={self.tokenizer.level!r}, {sizes})"

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(f"no split {name!r}; this corpus has {', '.join(self.splits)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.splits

    def encode(self, sentence: str) -> np.ndarray:
        """The ids of one sentence (without </s>), split the way the corpus was."""
        return self.vocab.encode(self.tokenizer.split(sentence))

    def decode(self, ids) -> str:
        """Text of a sequence of ids (OOV tokens read <unk>)."""
        return self.tokenizer.join(self.vocab.decode(np.asarray(ids).tolist()))

    def sentences(self, name: str) -> list[np.ndarray]:
        """The sentences of a split as id arrays, without their </s>."""
        ids = self[name]
        ends = np.flatnonzero(ids == EOS)
        starts = np.concatenate(([0], ends[:-1] + 1))
        return [ids[a:b] for a, b in zip(starts.tolist(), ends.tolist())]

    def text(self, name: str) -> Iterator[str]:
        """The sentences of a split as text (OOV tokens read <unk>)."""
        tokens = self.vocab.tokens
        join = self.tokenizer.join
        for ids in self.sentences(name):
            yield join([tokens[i] for i in ids.tolist()])

    def ids_in(self, name: str, vocab: Vocab) -> np.ndarray:
        """A split's ids in the numbering of another vocabulary `vocab` (a model's): tokens that
        vocabulary lacks become <unk>. The corpus's own array when the vocabularies are equal."""
        ids = np.asarray(self[name])
        if vocab.sha256() == self.vocab.sha256():
            return ids
        table = np.array([vocab.index.get(t, UNK) for t in self.vocab.tokens], np.int64)
        return table[ids]

    def write(self, out_dir: str | os.PathLike) -> dict:
        """Write the corpus directory atomically; return the manifest (with the checksums)."""
        out_dir = Path(out_dir)
        with atomic_directory(out_dir) as tmp:
            with open(tmp / "vocab.txt", "w", encoding="utf-8", newline="\n") as f:
                self.vocab.write(f)
            for name, ids in self.splits.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(ids, dtype=np.uint32))
                self.manifest["splits"][name]["sha256"] = _sha256(tmp / f"{name}.npy")
            # the manifest last: only a directory with a manifest is a corpus
            with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(self.manifest, f, ensure_ascii=False, indent=2)
                f.write("\n")
        return self.manifest

    def verify(self, path: str | os.PathLike) -> None:
        """Check every array file of the corpus directory `path` against its sha256."""
        for name, info in self.manifest["splits"].items():
            f = Path(path) / info["file"]
            if _sha256(f) != info.get("sha256"):
                raise InputError(f"{f}: checksum mismatch (the file was changed or damaged); "
                                 f"rerun `rnnkit prepare`")

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = False) -> "Corpus":
        """Read a corpus directory; with verify, check every array against its sha256."""
        path = Path(path)
        if not is_corpus_dir(path):
            hint = ""
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if json.loads((path / MANIFEST).read_text("utf-8")).get("format") == \
                        "rnnkit-parallel":
                    hint = ("; it is a parallel corpus (prepare --parallel): train a translation "
                            "model on it with --type seq2seq, or use its src/ or trg/ directory")
            raise InputError(f"{path}: not a corpus directory made by `rnnkit prepare` "
                             f"(no valid {MANIFEST}){hint}")
        manifest = json.loads((path / MANIFEST).read_text("utf-8"))
        if manifest.get("format_version") != CORPUS_VERSION:
            raise InputError(f"{path}: corpus format version {manifest.get('format_version')} is "
                             f"not supported by rnnkit {CORPUS_VERSION}; rerun `rnnkit prepare`")
        vocab = Vocab.read(path / manifest["vocab"]["file"])
        if vocab.sha256() != manifest["vocab"]["sha256"]:
            raise InputError(f"{path}: vocab.txt does not match the manifest; rerun `rnnkit prepare`")
        corpus = cls(vocab, Tokenizer.from_dict(manifest["tokenizer"]), {}, manifest=manifest)
        if verify:
            corpus.verify(path)
        for name, info in manifest["splits"].items():
            f = path / info["file"]
            try:
                ids = np.load(f, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise InputError(f"{f}: cannot read ({e}); rerun `rnnkit prepare`") from None
            if ids.dtype != np.uint32 or ids.ndim != 1:
                raise InputError(f"{f}: expected a 1-D uint32 array, got {ids.dtype} "
                                 f"{ids.shape}; rerun `rnnkit prepare`")
            corpus.splits[name] = ids
        return corpus


def heldout_sentences(data: str | os.PathLike) -> list[str]:
    """Held-out sentences as text: a prepared corpus's valid split (else its test split), or the
    non-empty lines of a text file (`-` reads stdin)."""
    p = Path(data)
    if str(data) != "-" and p.is_dir():
        corpus = Corpus.load(p)
        split = next((s for s in ("valid", "test") if s in corpus), None)
        if split is None:
            raise InputError(f"{p}: the corpus has no valid or test split to tune on; give a "
                             f"held-out text file")
        return list(corpus.text(split))
    return [t for _, t in read_lines(data) if t.strip()]
