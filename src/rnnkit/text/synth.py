"""`rnnkit synth`: a synthetic corpus with one long-range dependency.

The lecture's long-term-dependency example made testable: the last word of every sentence is
determined by its first word, across a filler that carries no information about it. A recurrent
model can learn to carry the first word to the end; an n-gram model, whose context is the last
n-1 words (all filler), cannot.

Construction, exactly:
- K key words `k00 .. k{K-1}` and K answer words `a00 .. a{K-1}` (`--vocab K`), F filler words
  `w00 .. w{F-1}` (`--filler-vocab F`); numbers are zero-padded to the width of K-1 or F-1.
- Each sentence is `k_i w_1 .. w_L a_i`: the key index i uniform over [0, K), the filler length
  L uniform over [MIN, MAX] inclusive (`--filler MIN,MAX`), every filler word uniform over the
  F filler words, all independent. So the sentence has L + 2 words, the answer is a function
  of the key (`answer_of`), and no filler word says anything about it: a model that does not
  see the key predicts the answer with probability at best 1/K.
- The random numbers come from numpy's PCG64 generator seeded with `--seed`, drawn in blocks of
  1024 sentences, so the output is the same for the same options and numpy version, and the
  first n sentences do not depend on how many more are asked for.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from .textio import atomic_write

FORMAT = "rnnkit-synth"
BLOCK = 1024  # sentences per block of random draws


@dataclass(frozen=True)
class SynthSpec:
    """The options of a synthetic corpus (see the module docstring for the construction)."""

    sentences: int = 10000
    filler_min: int = 5
    filler_max: int = 40
    keys: int = 10
    filler_vocab: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.sentences < 1:
            raise InputError(f"--sentences {self.sentences}: must be at least 1")
        if self.filler_min < 0 or self.filler_max < self.filler_min:
            raise InputError(f"--filler {self.filler_min},{self.filler_max}: needs "
                             f"0 <= MIN <= MAX, e.g. 5,40")
        if not 1 <= self.keys <= 100_000:
            raise InputError(f"--vocab {self.keys}: the number of key/answer pairs must be "
                             f"between 1 and 100000")
        if not 1 <= self.filler_vocab <= 1_000_000:
            raise InputError(f"--filler-vocab {self.filler_vocab}: must be between 1 and 1000000")

    def key_words(self) -> list[str]:
        width = len(str(self.keys - 1))
        return [f"k{i:0{width}d}" for i in range(self.keys)]

    def answer_words(self) -> list[str]:
        width = len(str(self.keys - 1))
        return [f"a{i:0{width}d}" for i in range(self.keys)]

    def filler_words(self) -> list[str]:
        width = len(str(self.filler_vocab - 1))
        return [f"w{i:0{width}d}" for i in range(self.filler_vocab)]


def parse_filler(text: str) -> tuple[int, int]:
    """`MIN,MAX` (or one number for a fixed length) -> (MIN, MAX)."""
    try:
        parts = [int(x) for x in str(text).split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise InputError(f"--filler {text!r}: expected MIN,MAX like 5,40 (or one number)")
    return parts[0], parts[1]


def answer_of(key: str) -> str:
    """The answer word that ends every sentence starting with `key`: k07 -> a07."""
    if not (key.startswith("k") and key[1:].isdigit()):
        raise ValueError(f"{key!r} is not a key word of a synthetic corpus")
    return "a" + key[1:]


def sentences(spec: SynthSpec) -> Iterator[list[str]]:
    """The sentences of the corpus, as lists of words."""
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    keys, answers, fillers = spec.key_words(), spec.answer_words(), spec.filler_words()
    for start in range(0, spec.sentences, BLOCK):
        key = rng.integers(0, spec.keys, BLOCK)  # [BLOCK]
        length = rng.integers(spec.filler_min, spec.filler_max + 1, BLOCK)  # [BLOCK]
        filler = rng.integers(0, spec.filler_vocab, int(length.sum())).tolist()  # [sum L]
        pos = 0
        for i, n in zip(key[:spec.sentences - start].tolist(),
                        length[:spec.sentences - start].tolist()):
            yield [keys[i], *[fillers[j] for j in filler[pos:pos + n]], answers[i]]
            pos += n


def write(out: str | os.PathLike, spec: SynthSpec | None = None,
          progress: Callable[[int], None] | None = None, **options) -> dict:
    """Write the corpus to `out` (one sentence per line; `-` is stdout), atomically.

    Options are those of SynthSpec (sentences, filler_min, filler_max, keys, filler_vocab,
    seed). Returns a summary: the options, the counts and the construction.
    `progress(n)` is called with the number of sentences written since the previous call.
    """
    spec = spec or SynthSpec(**options)
    tokens = 0
    with atomic_write(out) as f:
        lines = []
        for s in sentences(spec):
            lines.append(" ".join(s))
            tokens += len(s)
            if len(lines) == BLOCK:
                f.write("\n".join(lines) + "\n")
                lines.clear()
                if progress is not None:
                    progress(BLOCK)
        if lines:
            f.write("\n".join(lines) + "\n")
            if progress is not None:
                progress(len(lines))
    return {
        "format": FORMAT, "out": "-" if str(out) == "-" else os.fspath(out),
        **asdict(spec), "tokens": tokens,
        "vocabulary": 2 * spec.keys + spec.filler_vocab,
        "construction": "k_i w_1 .. w_L a_i: key i uniform over K, L uniform over "
                        "[filler_min, filler_max], fillers uniform over filler_vocab; "
                        "the answer a_i is a function of the key k_i",
    }
