"""N-best rescoring: re-rank a recogniser's or translator's candidate sentences with a language
model, and tune the weights of the combination on a development list with references.

Dimension letters: C candidates (of one group, or of a whole development list), G groups,
S weight settings tried at once, K models of a mixture.

For each candidate the combined score is

    total = lm_weight * log10 P_LM(candidate) + acoustic_weight * score + word_penalty * words

where `score` is the acoustic (or original decoder) score the N-best list carries (0 when it has
none) and `words` the candidate's number of words (SRILM's nwords column when present). The
candidate with the highest total wins; ties go to the earlier candidate in the file.

Every candidate is scored on its own from <s> (no recurrent state carries over from one
candidate to the next, a known trap of older tools); the candidates of a group -- and of
several consecutive groups, up to `batch` candidates -- are scored in one token_log_probs call
(or, with share=True, through their prefix tree).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError, RnnkitError
from ..models.mixture import Mixture
from ..models.protocol import LanguageModel
from ..text.textio import display_name, read_lines
from .nbest import Group

UNITS = ("word", "char")
METHODS = ("grid", "simplex")


@dataclass
class Weights:
    lm: float = 1.0
    acoustic: float = 1.0
    word_penalty: float = 0.0

    def total(self, lm, acoustic, words):
        return self.lm * lm + self.acoustic * acoustic + self.word_penalty * words

    def to_dict(self) -> dict:
        return {"lm_weight": self.lm, "acoustic_weight": self.acoustic,
                "word_penalty": self.word_penalty}


@dataclass
class Rescored:
    """One group after rescoring; arrays are in file order, `order` ranks them (best first)."""

    group: Group
    lm: np.ndarray               # [C] log10 P of each candidate (the model, or the mixture)
    components: np.ndarray | None  # [K, C] each model's log10 P when the model is a mixture
    acoustic: np.ndarray         # [C] the list's score (0 where there is none)
    words: np.ndarray            # [C]
    tokens: np.ndarray           # [C] tokens as the model splits them (without </s>)
    oov: np.ndarray              # [C]
    total: np.ndarray            # [C]
    order: np.ndarray            # [C] candidate indices, best first

    @property
    def best(self) -> int:
        return int(self.order[0])

    def to_json(self) -> dict:
        g = self.group
        cands = []
        for rank, i in enumerate(self.order.tolist(), 1):
            c = g.candidates[i]
            d = {"rank": rank, "index": i, "id": c.id, "text": c.text,
                 "lm_log10": float(self.lm[i]),
                 "acoustic": None if c.score is None else float(c.score),
                 "words": int(self.words[i]), "tokens": int(self.tokens[i]),
                 "oov": int(self.oov[i]), "score": float(self.total[i])}
            if self.components is not None:
                d["models_log10"] = [float(x) for x in self.components[:, i]]
            cands.append(d)
        return {"group": g.id, "format": g.format, "best": cands[0]["text"],
                "best_index": self.best, "candidates": cands}


def rank(total: np.ndarray) -> np.ndarray:
    """Indices by decreasing total; a stable sort, so ties keep file order."""
    return np.argsort(-np.asarray(total), kind="stable")


RECURRENT_TYPES = ("lstm", "lstm-peephole", "lstm-nofg", "rnn")


def shares_prefixes(model: LanguageModel) -> bool:
    """Whether candidates are cheaper to score through the prefix tree (lm.py)."""
    return bool(getattr(model, "share_prefixes", False)) or model.model_type in RECURRENT_TYPES


def candidate_log_probs(model: LanguageModel, sentences: list[np.ndarray]) -> list[np.ndarray]:
    """token_log_probs of N-best candidates: recurrent models compute each distinct prefix once
    (candidates mostly differ near their end), other models score each sentence directly."""
    if shares_prefixes(model):
        return model.prefix_token_log_probs(sentences)
    return model.token_log_probs(sentences)


def score_texts(model: LanguageModel, texts: list[str], share: bool = False):
    """log10 P of each sentence (with </s>), token and OOV counts, and per-model log10 for a
    mixture ([K, C], None otherwise), in one batched call. `share=True` scores models that
    declare `share_prefixes` through the prefix tree (the same numbers; see lm.py). It is off
    by default: with the current kernels the recurrent single-step path it needs is slower than
    the batched window path, although it computes about half the output rows on N-best lists."""
    scorer = candidate_log_probs if share else (lambda m, s: m.token_log_probs(s))
    encoded = [model.encode(t) for t in texts]
    ids = [e[0] for e in encoded]
    tokens = np.array([len(i) for i in ids], dtype=np.int64)
    oov = np.array([int(e[1].sum()) for e in encoded], dtype=np.int64)
    components = None
    if isinstance(model, Mixture):
        comps = model.component_log_probs(ids, scorer)
        per = model.combine_components(comps)
        components = np.array([[float(a.sum()) for a in c] if c is not None
                               else [math.nan] * len(ids) for c in comps])
    else:
        per = scorer(model, ids)
    lm = np.array([float(np.sum(p)) for p in per], dtype=np.float64)
    return lm, tokens, oov, components


def rescore(model: LanguageModel, groups: Iterable[Group], weights: Weights | None = None, *,
            batch: int = 256, on_candidates: Callable[[int], None] | None = None,
            share: bool = False) -> Iterator[Rescored]:
    """Re-rank every group; groups are read, scored and yielded in order, `batch` candidates at
    a time at most (a larger group is one batch), so memory stays bounded."""
    weights = weights or Weights()
    pending: list[Group] = []
    size = 0

    def flush():
        texts = [c.text for g in pending for c in g.candidates]
        lm, tokens, oov, comps = score_texts(model, texts, share)
        at = 0
        for g in pending:
            n = len(g.candidates)
            sl = slice(at, at + n)
            acoustic = np.array([0.0 if c.score is None else c.score for c in g.candidates])
            words = np.array([c.words for c in g.candidates], dtype=np.int64)
            total = weights.total(lm[sl], acoustic, words)
            yield Rescored(g, lm[sl], None if comps is None else comps[:, sl], acoustic, words,
                           tokens[sl], oov[sl], total, rank(total))
            at += n
        if on_candidates is not None:
            on_candidates(len(texts))

    for g in groups:
        pending.append(g)
        size += len(g.candidates)
        if size >= batch:
            yield from flush()
            pending, size = [], 0
    if pending:
        yield from flush()


# ------------------------------------------------------------------------------------------------
# word error rate and tuning on a development N-best list
# ------------------------------------------------------------------------------------------------
def units(text: str, unit: str = "word") -> list[str]:
    """Words, or characters without spaces (for character error rate, e.g. Korean)."""
    if unit == "char":
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def edit_distance(hyp: list[str], ref: list[str]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if not ref:
        return len(hyp)
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i] + [0] * len(ref)
        for j, r in enumerate(ref, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def read_references(path, groups: list[Group]) -> list[str]:
    """The reference of each group: lines `id<TAB or space>text` keyed by the groups' ids, or,
    when the first fields are not the ids, one reference per line in the order of the groups."""
    name = display_name(path)
    lines = [(n, t) for n, t in read_lines(path)]
    while lines and not lines[-1][1].strip():
        lines.pop()
    ids = {g.id for g in groups}
    keyed: dict[str, str] = {}
    is_keyed = bool(lines)
    for n, t in lines:
        parts = t.split(maxsplit=1)
        if not parts or parts[0] not in ids:
            is_keyed = False
            break
        if parts[0] in keyed:
            raise FormatError(f"{name}:{n}: a second reference for {parts[0]!r}")
        keyed[parts[0]] = parts[1] if len(parts) > 1 else ""
    if is_keyed:
        missing = [g.id for g in groups if g.id not in keyed]
        if missing:
            raise FormatError(f"{name}: no reference for group {missing[0]!r} (and "
                              f"{len(missing) - 1} more); every group needs one")
        return [keyed[g.id] for g in groups]
    firsts = [t.split(maxsplit=1)[0] if t.split() else "" for _, t in lines]
    if len(firsts) > 1 and len(set(firsts)) == len(firsts) and \
            all(any(c.isdigit() for c in f) for f in firsts):
        # every line starts with a distinct id-like field, none or only some of them the
        # N-best list's ids: another list's references, not sentences in order
        known = sorted(ids, key=str)[:2]
        raise FormatError(f"{name}: the lines start with ids ({firsts[0]!r}, ...) that are not "
                          f"all the N-best list's ({', '.join(map(repr, known))}, ...); give the "
                          f"references of this list")
    if len(lines) != len(groups):
        raise FormatError(
            f"{name}: {len(lines)} reference line(s) for {len(groups)} group(s); give one "
            f"reference per group, either in the order of the groups or as `id text` lines "
            f"with the N-best list's ids")
    return [t for _, t in lines]


@dataclass
class DevSet:
    """A development N-best list reduced to what tuning needs (all arrays [C] unless noted)."""

    offsets: np.ndarray   # [G+1] first candidate of each group
    lm: np.ndarray
    acoustic: np.ndarray
    words: np.ndarray
    errors: np.ndarray    # edit distance of each candidate to its group's reference
    ref_len: np.ndarray   # [G] reference lengths

    @property
    def has_acoustic(self) -> bool:
        return bool(np.any(self.acoustic != 0))

    def winners(self, lm_w: np.ndarray, ac_w: np.ndarray, wp: np.ndarray) -> np.ndarray:
        """[S, G] the winning candidate of each group for S weight settings (ties: first)."""
        c = len(self.lm)
        starts = self.offsets[:-1]
        total = (lm_w[:, None] * self.lm + ac_w[:, None] * self.acoustic
                 + wp[:, None] * self.words)                      # [S, C]
        best = np.maximum.reduceat(total, starts, axis=1)         # [S, G]
        gid = np.repeat(np.arange(len(starts)), np.diff(self.offsets))
        idx = np.where(total == best[:, gid], np.arange(c), c)    # [S, C]
        return np.minimum.reduceat(idx, starts, axis=1)           # [S, G]

    def error_counts(self, lm_w, ac_w, wp) -> np.ndarray:
        """[S] total edits of the winners for each setting, in chunks to bound memory."""
        lm_w, ac_w, wp = (np.atleast_1d(np.asarray(x, np.float64)) for x in (lm_w, ac_w, wp))
        s = len(lm_w)
        step = max(1, 4_000_000 // max(1, len(self.lm)))
        out = np.empty(s, np.int64)
        for a in range(0, s, step):
            w = self.winners(lm_w[a:a + step], ac_w[a:a + step], wp[a:a + step])
            out[a:a + step] = self.errors[w].sum(axis=1)
        return out

    def wer(self, w: Weights) -> float:
        return float(self.error_counts(w.lm, w.acoustic, w.word_penalty)[0]) / self.ref_total

    @property
    def ref_total(self) -> int:
        return max(1, int(self.ref_len.sum()))

    def oracle(self) -> float:
        return float(np.minimum.reduceat(self.errors, self.offsets[:-1]).sum()) / self.ref_total


def build_devset(model: LanguageModel, groups: Iterable[Group], references: list[str], *,
                 unit: str = "word", batch: int = 256,
                 on_candidates: Callable[[int], None] | None = None) -> DevSet:
    if unit not in UNITS:
        raise RnnkitError(f"unknown --unit {unit!r}: use word or char")
    offsets, lm, ac, words, errors, ref_len = [0], [], [], [], [], []
    for r, ref in zip(rescore(model, groups, batch=batch, on_candidates=on_candidates),
                      references):
        ref_u = units(ref, unit)
        ref_len.append(len(ref_u))
        offsets.append(offsets[-1] + len(r.lm))
        lm.append(r.lm)
        ac.append(r.acoustic)
        words.append(r.words)
        errors.append([edit_distance(units(c.text, unit), ref_u) for c in r.group.candidates])
    if len(offsets) == 1:
        raise RnnkitError("the development N-best list has no groups")
    return DevSet(np.array(offsets), np.concatenate(lm), np.concatenate(ac).astype(np.float64),
                  np.concatenate(words).astype(np.float64),
                  np.concatenate([np.asarray(e, np.int64) for e in errors]),
                  np.array(ref_len, np.int64))


def _per_word_scale(dev: DevSet, lm_w: float, ac_w: float) -> float:
    """The typical size of a candidate's total score per word: the natural unit of the penalty."""
    per = np.abs(lm_w * dev.lm + ac_w * dev.acoustic) / np.maximum(dev.words, 1)
    s = float(np.median(per)) if len(per) else 1.0
    return s if s > 0 else 1.0


def _best_setting(errs: np.ndarray, pts: np.ndarray) -> int:
    """Among the settings with the fewest errors, the one nearest the plateau's centroid."""
    tied = np.flatnonzero(errs == errs.min())
    centre = pts[tied].mean(axis=0)
    return int(tied[np.argmin(((pts[tied] - centre) ** 2).sum(axis=1))])


def tune(dev: DevSet, init: Weights | None = None, method: str = "grid") -> dict:
    """lm-weight and word-penalty minimising WER on a development list; the acoustic weight
    stays fixed (only the ratios matter). Returns the weights and WER before and after.

    `grid`: a log-spaced grid of lm-weights (0.01 to 100 times the acoustic weight) by a grid
    of word penalties (-3 to 3 times the typical per-word score), then a finer grid around the
    best point. `simplex`: Nelder-Mead on (log lm-weight, word penalty) from the initial weights.
    Without acoustic scores the lm-weight only scales the total, so only the penalty is tuned.
    """
    if method not in METHODS:
        raise RnnkitError(f"unknown --method {method!r}: use grid or simplex")
    init = init or Weights()
    before = dev.wer(init)
    a = init.acoustic
    tune_lm = dev.has_acoustic and a != 0
    base_lm = init.lm if init.lm > 0 else 1.0
    if method == "grid":
        if tune_lm:
            lms = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 41) * abs(a)])
        else:
            lms = np.array([base_lm])
        qs = np.linspace(-3.0, 3.0, 49)
        pts, settings = [], []
        for lw in lms:
            scale = _per_word_scale(dev, lw, a)
            for q in qs:
                pts.append((math.log10(lw) if lw > 0 else -3.0, q))
                settings.append((lw, q * scale))
        pts_a = np.array(pts)
        st = np.array(settings)
        errs = dev.error_counts(st[:, 0], np.full(len(st), a), st[:, 1])
        b = _best_setting(errs, pts_a)
        lw, wp = st[b]
        # a finer grid around the best point
        if tune_lm and lw > 0:
            lms2 = lw * np.geomspace(1 / 1.3, 1.3, 11)
        else:
            lms2 = np.array([lw])
        scale = _per_word_scale(dev, lw, a)
        wps2 = wp + np.linspace(-0.125, 0.125, 21) * scale
        st2 = np.array([(x, y) for x in lms2 for y in wps2])
        pts2 = np.array([(math.log10(x) if x > 0 else -3.0, y / scale) for x, y in st2])
        errs2 = dev.error_counts(st2[:, 0], np.full(len(st2), a), st2[:, 1])
        if errs2.min() <= errs[b]:
            lw, wp = st2[_best_setting(errs2, pts2)]
        best = Weights(float(lw), a, float(wp))
    else:
        # imported here: scipy.optimize takes ~0.2 s to import, and only --method powell uses it
        from scipy.optimize import minimize

        scale = _per_word_scale(dev, base_lm, a)

        def f(x):
            lw = 10.0 ** x[0] if tune_lm else base_lm
            return float(dev.error_counts(lw, a, x[1] * scale)[0])

        x0 = np.array([math.log10(base_lm), init.word_penalty / scale])
        simplex = np.array([x0, x0 + [1.0, 0.0], x0 + [0.0, 1.0]])
        res = minimize(f, x0, method="Nelder-Mead",
                       options={"initial_simplex": simplex, "xatol": 1e-3, "fatol": 0.5,
                                "maxfev": 400})
        x = res.x if res.fun <= f(x0) else x0
        best = Weights(float(10.0 ** x[0]) if tune_lm else base_lm, a, float(x[1] * scale))
    after = dev.wer(best)
    if after > before:  # never worse than where we started
        best, after = init, before
    return {"before": {"wer": before, **init.to_dict()},
            "after": {"wer": after, **best.to_dict()},
            "oracle_wer": dev.oracle(), "groups": len(dev.offsets) - 1,
            "candidates": len(dev.lm), "reference_units": int(dev.ref_len.sum()),
            "method": method, "weights": best}
