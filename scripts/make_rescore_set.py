"""Write rnnkit's bundled rescoring test set: src/rnnkit/data/rescore/{en,ko}.tsv and .ref.

Each group holds one well-formed sentence from the grammar of the sample corpora
(scripts/make_samples.py) that is NOT in the samples, and corrupted variants of the kinds a
recogniser produces:
  swap   two neighbouring words exchanged (Korean: the predicate moved off the end),
  sound  a sound-alike: an English homophone (two/too, by/buy, morning/mourning, a/an), a
         Korean syllable with a similar consonant or vowel or the wrong particle
         (자세히 보아야 -> 자세를 모아야),
  drop   a word dropped (an English function word; the Korean predicate or object),
  sound2 a second sound-alike at another position.
The candidates of a group are shuffled; `{lang}.ref` holds `id text` of the well-formed one.
The N-best file is TSV (`group_id<TAB>candidate`).

Usage: python scripts/make_rescore_set.py [--groups 60] [--seed 7]
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_samples import en_sentence, ko_sentence  # noqa: E402

EN_SOUNDALIKE = {
    "two": "too", "to": "two", "too": "to", "there": "their", "their": "there", "by": "buy",
    "buy": "by", "buys": "bys", "red": "read", "read": "red", "week": "weak", "night": "knight",
    "our": "hour", "sun": "son", "flower": "flour", "flowers": "flours", "tea": "tee",
    "some": "sum", "eight": "ate", "new": "knew", "write": "right", "wrote": "rote", "one": "won",
    "see": "sea", "four": "for", "for": "four", "wait": "weight", "here": "hear", "a": "an",
    "an": "a", "is": "his", "his": "is", "are": "our", "will": "well", "were": "where",
    "meat": "meet", "rest": "wrest", "morning": "mourning", "made": "maid", "ate": "eight",
}
EN_DROP = {"the", "a", "an", "will", "is", "are", "was", "were", "to", "at", "in", "and", "some"}

# similar Korean sounds, by jamo index: initial consonants and vowels of a syllable
KO_INITIAL_GROUPS = [[0, 15, 1], [3, 16, 4], [7, 17, 8, 6], [12, 14, 13], [9, 10], [2, 5]]
KO_VOWEL_GROUPS = [[1, 5], [4, 8], [18, 13], [6, 12]]
KO_PARTICLES = {"을": "를", "를": "을", "이": "가", "가": "이", "은": "는", "는": "은",
                "과": "와", "와": "과", "히": "를"}


def _en_sound(words: list[str], r: random.Random, avoid: set[int]) -> tuple[list[str], int] | None:
    choices = []
    for i, w in enumerate(words[:-1]):
        lw = w.lower()
        if i in avoid:
            continue
        if lw in EN_SOUNDALIKE:
            choices.append((i, EN_SOUNDALIKE[lw]))
    if not choices:
        return None
    i, new = r.choice(choices)
    if words[i][0].isupper():
        new = new[0].upper() + new[1:]
    out = list(words)
    out[i] = new
    return out, i


def en_variants(s: str, r: random.Random) -> list[str] | None:
    w = s.split()
    body = len(w) - 1  # the final "." stays
    if body < 3:
        return None
    out = []
    i = r.randrange(body - 1)
    sw = list(w)
    sw[i], sw[i + 1] = sw[i + 1], sw[i]
    if i == 0:  # keep the capital on the first word, as a recogniser's text would
        sw[0], sw[1] = sw[0][0].upper() + sw[0][1:], sw[1][0].lower() + sw[1][1:]
    out.append(sw)
    first = _en_sound(w, r, set())
    if first is None:
        return None
    out.append(first[0])
    drops = [k for k in range(1, body) if w[k].lower() in EN_DROP]
    if not drops:
        return None
    k = r.choice(drops)
    out.append(w[:k] + w[k + 1:])
    second = _en_sound(w, r, {first[1]})
    if second is not None:
        out.append(second[0])
    return [" ".join(x) for x in out]


def _syllable(ch: str):
    code = ord(ch) - 0xAC00
    if not 0 <= code < 11172:
        return None
    return code // 588, (code % 588) // 28, code % 28


def _compose(i: int, v: int, f: int) -> str:
    return chr(0xAC00 + i * 588 + v * 28 + f)


def _ko_sound(words: list[str], r: random.Random, avoid: set[int]) -> tuple[list[str], int] | None:
    options = []
    for k, word in enumerate(words[:-1]):
        if k in avoid:
            continue
        for j, ch in enumerate(word):
            parts = _syllable(ch)
            if parts is None:
                continue
            init, vow, fin = parts
            if j == len(word) - 1 and ch in KO_PARTICLES and len(word) > 1:
                options.append((k, word[:j] + KO_PARTICLES[ch] + word[j + 1:]))
            for g in KO_INITIAL_GROUPS:
                if init in g:
                    for alt in g:
                        if alt != init:
                            options.append((k, word[:j] + _compose(alt, vow, fin) + word[j + 1:]))
            for g in KO_VOWEL_GROUPS:
                if vow in g:
                    for alt in g:
                        if alt != vow:
                            options.append((k, word[:j] + _compose(init, alt, fin) + word[j + 1:]))
    if not options:
        return None
    k, new = r.choice(options)
    out = list(words)
    out[k] = new
    return out, k


def ko_variants(s: str, r: random.Random) -> list[str] | None:
    w = s.split()
    body = len(w) - 1
    if body < 2:
        return None
    out = []
    sw = list(w)
    sw[body - 1], sw[body - 2] = sw[body - 2], sw[body - 1]  # the predicate off the end
    out.append(sw)
    first = _ko_sound(w, r, set())
    if first is None:
        return None
    out.append(first[0])
    objects = [k for k in range(body - 1) if w[k][-1] in "을를"]
    k = r.choice(objects) if objects and r.random() < 0.5 else body - 1
    out.append(w[:k] + w[k + 1:])
    second = _ko_sound(w, r, {first[1]})
    if second is not None:
        out.append(second[0])
    return [" ".join(x) for x in out]


def build(make, variants, sample: set[str], groups: int, seed: int, prefix: str):
    r = random.Random(seed)
    seen = set(sample)
    rows, refs = [], []
    tries = 0
    while len(refs) < groups:
        tries += 1
        if tries > 1000 * groups:
            raise SystemExit(f"only {len(refs)} groups")
        s = make(r)
        if s in seen:
            continue
        seen.add(s)
        v = variants(s, r)
        if v is None or len(set(v) | {s}) != len(v) + 1 or any(x in sample for x in v):
            continue
        gid = f"{prefix}{len(refs) + 1:02d}"
        cands = [s] + v
        r.shuffle(cands)
        rows += [f"{gid}\t{c}" for c in cands]
        refs.append(f"{gid} {s}")
    return rows, refs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "src/rnnkit/data/rescore"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ROOT / "src/rnnkit/data"
    for lang, make, variants in (("en", en_sentence, en_variants), ("ko", ko_sentence, ko_variants)):
        sample = set((data / f"sample-{lang}.txt").read_text(encoding="utf-8").splitlines())
        rows, refs = build(make, variants, sample, a.groups, a.seed, f"{lang}-")
        (out / f"{lang}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (out / f"{lang}.ref").write_text("\n".join(refs) + "\n", encoding="utf-8")
        print(f"{out / lang}.tsv: {len(refs)} groups, {len(rows)} candidates")


if __name__ == "__main__":
    main()
