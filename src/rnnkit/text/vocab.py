"""Tokenisation and vocabulary: how text becomes token ids, the same way everywhere.

A Tokenizer (level, Unicode normalisation, lowercasing) travels inside every corpus manifest and
model file, so a sentence is always split the way the training data was.
The vocabulary has the specials <unk>, <s>, </s> at the fixed ids 0, 1, 2.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import FormatError, InputError

UNK, BOS, EOS = 0, 1, 2
SPECIALS = ("<unk>", "<s>", "</s>")
SPACE = "\u2581"  # '▁', the explicit space token of character-level text
LEVELS = ("word", "char", "subword")
NORMALIZATIONS = ("nfc", "nfkc", "none")


@dataclass(frozen=True)
class Tokenizer:
    """Splits a line of text into tokens. Word level splits on Unicode whitespace; character level
    yields every Unicode character (a Korean syllable stays whole) with spaces as `▁`; subword
    level yields the pieces of a SentencePiece model (subword.py), a word's first piece starting
    with `▁`. `subword_model` is that model, serialized (bytes), for level "subword" only."""

    level: str = "word"
    normalize: str = "nfc"
    lowercase: bool = False
    subword_model: bytes | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.level not in LEVELS:
            raise InputError(f"unknown level {self.level!r}: use one of {', '.join(LEVELS)}")
        if self.normalize not in NORMALIZATIONS:
            raise InputError(
                f"unknown normalisation {self.normalize!r}: use one of {', '.join(NORMALIZATIONS)}")
        if (self.level == "subword") != (self.subword_model is not None):
            raise InputError("a subword tokenizer needs its SentencePiece model (and only a "
                             "subword tokenizer has one); prepare the data with --level subword "
                             "--vocab-size N")
        sp = None
        if self.subword_model is not None:
            from .subword import load_processor  # sentencepiece loads only when used
            sp = load_processor(self.subword_model)
        object.__setattr__(self, "_sp", sp)  # frozen dataclass: a cache, not a field

    def clean(self, line: str) -> str:
        """Normalise, then lowercase (that order, everywhere)."""
        if self.normalize != "none" and not line.isascii():  # ASCII is already NFC and NFKC
            line = unicodedata.normalize(self.normalize.upper(), line)
        return line.lower() if self.lowercase else line

    def split(self, line: str) -> list[str]:
        line = self.clean(line)
        if self.level == "word":
            return line.split()
        if self.level == "subword":
            line = " ".join(line.split())  # any Unicode whitespace is one space, as in training
            return self._sp.encode(line, out_type=str) if line else []
        return list(SPACE.join(line.split()))

    def split_lines(self, text: str) -> Iterator[list[str]]:
        """The tokens of each line of a block of text whose lines are separated by "\\n":
        the same as `map(self.split, text.split("\\n"))`, but much faster on large blocks
        (the cleaning runs once per block when it can: lowercasing never crosses a line end,
        and ASCII text needs no normalisation)."""
        if self.normalize == "none" or text.isascii():
            lines = (text.lower() if self.lowercase else text).split("\n")
        else:
            clean = self.clean
            lines = [clean(line) for line in text.split("\n")]
        if self.level == "word":
            return map(str.split, lines)
        if self.level == "subword":
            lines = [" ".join(line.split()) for line in lines]
            return iter(self._sp.encode(lines, out_type=str))
        join = SPACE.join
        return (list(join(line.split())) for line in lines)

    def join(self, tokens) -> str:
        if self.level == "word":
            return " ".join(tokens)
        if self.level == "subword":  # SentencePiece's detokenisation: ▁ marks a word's start
            return "".join(tokens).replace(SPACE, " ").strip()
        return "".join(tokens).replace(SPACE, " ")

    def to_dict(self) -> dict:
        d = {"level": self.level, "normalize": self.normalize, "lowercase": self.lowercase}
        if self.subword_model is not None:
            d["subword_model"] = base64.b64encode(self.subword_model).decode("ascii")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        model = d.get("subword_model")
        if model is not None:
            try:
                model = base64.b64decode(model, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise FormatError("the tokenizer's subword_model is not valid base64") from None
        return cls(level=d.get("level", "word"), normalize=d.get("normalize", "nfc"),
                   lowercase=bool(d.get("lowercase", False)), subword_model=model)


class Vocab:
    """Tokens by id, with counts. `index` maps a token to its id."""

    def __init__(self, tokens: list[str], counts=None):
        if list(tokens[:3]) != list(SPECIALS):
            raise FormatError(
                f"a vocabulary must start with {', '.join(SPECIALS)} (ids 0, 1, 2); "
                f"it starts with {', '.join(tokens[:3])}")
        self.tokens = list(tokens)
        self.counts = np.zeros(len(tokens), np.int64) if counts is None else np.asarray(counts, np.int64)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            seen = set()
            dup = next(t for t in self.tokens if t in seen or seen.add(t))
            raise FormatError(f"the vocabulary lists {dup!r} twice")

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens) -> np.ndarray:
        """Token ids (uint32); tokens not in the vocabulary become <unk>."""
        get = self.index.get
        return np.fromiter((get(t, UNK) for t in tokens), dtype=np.uint32, count=len(tokens))

    def decode(self, ids) -> list[str]:
        return [self.tokens[i] for i in ids]

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()

    def write(self, f) -> None:
        """`token<TAB>count` per line; the id is the line number from 0."""
        for t, c in zip(self.tokens, self.counts.tolist()):
            f.write(f"{t}\t{c}\n")

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Vocab":
        """Read a vocab.txt written by `write` (or a plain list of tokens, one per line)."""
        tokens, counts = [], []
        try:
            with open(path, encoding="utf-8", newline="\n") as f:
                for number, line in enumerate(f, 1):
                    line = line.rstrip("\n")
                    if not line:
                        raise FormatError(f"{path}:{number}: empty line in a vocabulary file")
                    token, _, count = line.partition("\t")
                    if token.split() != [token]:
                        raise FormatError(f"{path}:{number}: a token may not be empty or hold "
                                          f"spaces, got {token!r}")
                    try:
                        c = int(count) if count else 0
                    except ValueError:
                        raise FormatError(
                            f"{path}:{number}: expected 'token<TAB>count', got {line!r}") from None
                    if not 0 <= c < 2**63:
                        raise FormatError(f"{path}:{number}: count {count} out of range (a "
                                          f"non-negative 64-bit integer)")
                    counts.append(c)
                    tokens.append(token)
        except FileNotFoundError:
            raise InputError(f"{path}: no such vocabulary file") from None
        except IsADirectoryError:
            raise InputError(f"{path}: is a directory, expected a vocab.txt file") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: invalid UTF-8 at byte {e.start} of a line; is this a "
                             f"vocab.txt written by `rnnkit prepare`?") from None
        except OSError as e:
            raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
        if not tokens:
            raise FormatError(f"{path}: the vocabulary file is empty")
        try:
            return cls(tokens, counts)
        except FormatError as e:
            raise FormatError(f"{path}: {e}") from None
