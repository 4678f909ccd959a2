"""Combining several language models into one: a Mixture is itself a LanguageModel.

Dimension letters: K models, B batch, V the mixture's vocabulary, N held-out tokens.

Two combinations, chosen with `combine`:

- "linear": interpolation of the per-token probabilities,
      P(w | h) = sum_k lambda_k P_k(w | h),   lambda_k >= 0, sum_k lambda_k = 1,
  the way Mikolov's RNNLM toolkit combines an RNN with an n-gram model (and SRILM's
  `ngram -mix-lm`). The weights that minimise held-out perplexity are found by EM (`em_weights`).
- "loglinear": a weighted sum of log probabilities,
      log10 S(w_1..w_T) = sum_k lambda_k log10 P_k(w_1..w_T),
  the way Kaldi's rescoring scripts combine an n-gram and a neural model's sentence scores. It is
  a score, not a probability (it is not renormalised), so its "perplexity" is only a figure of
  merit. Per token it is the same weighted sum, so the sentence score is the sum of the tokens'.

Vocabularies. The mixture's vocabulary is the union of the models' vocabularies (<unk>, <s>,
</s> first, then the first model's tokens in order, then each further model's new ones). A
token that one model lacks gets *that model's* <unk> probability, P_k(<unk> | h), while the
models that know it give their own probability; a token no model knows is <unk> for all. This is
what SRILM and the RNNLM toolkit do, and it means that a linear mixture of models with different
vocabularies is not normalised over the union vocabulary (a model's <unk> mass is counted for
every token it lacks); perplexities are comparable only between models of the same vocabulary.
With a single non-zero weight of 1 the mixture gives exactly the single model's numbers.

The models must split text the same way (word or character level). When their tokenizers
differ in normalisation or lowercasing, the mixture splits text without the transformations they
disagree on and each model applies its own to every token, so each model sees the tokens it
would see alone.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..errors import RnnkitError
from ..nn.output import LN10
from ..text.vocab import SPECIALS, UNK, Tokenizer, Vocab
from .protocol import LanguageModel

COMBINES = ("linear", "loglinear")


def parse_weights(text: str | None, count: int) -> list[float] | None:
    """`0.7,0.3` -> [0.7, 0.3]; None stays None (uniform)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        raise RnnkitError(f"--weights {text!r}: expected comma-separated numbers such as "
                          f"0.7,0.3") from None
    if len(weights) != count:
        raise RnnkitError(f"--weights {text!r} gives {len(weights)} weight(s) for {count} "
                          f"model(s): give one per model")
    return weights


def _union_tokenizer(models: Sequence[LanguageModel]) -> Tokenizer:
    toks = [m.tokenizer for m in models]
    levels = {t.level for t in toks}
    if len(levels) > 1:
        names = ", ".join(f"model {i + 1}: {t.level} level" for i, t in enumerate(toks))
        raise RnnkitError(f"cannot combine models that split text differently ({names}); "
                          f"combine models of the same level")
    norms = {t.normalize for t in toks}
    subword = None
    if toks[0].level == "subword":  # the same pieces only from the same SentencePiece model
        if len({t.subword_model for t in toks}) > 1:
            raise RnnkitError("cannot combine subword models with different SentencePiece "
                              "models (they split text into different pieces); combine models "
                              "trained on data prepared with the same subword model")
        subword = toks[0].subword_model
    return Tokenizer(level=toks[0].level, normalize=norms.pop() if len(norms) == 1 else "none",
                     lowercase=all(t.lowercase for t in toks), subword_model=subword)


class Mixture(LanguageModel):
    """K language models combined linearly or log-linearly (see the module docstring)."""

    model_type = "mixture"

    def __init__(self, models: Sequence[LanguageModel], weights: Sequence[float] | None = None,
                 combine: str = "linear"):
        if combine not in COMBINES:
            raise RnnkitError(f"unknown --combine {combine!r}: use linear or loglinear")
        if not models:
            raise RnnkitError("a mixture needs at least one model")
        k = len(models)
        w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (k,):
            raise RnnkitError(f"{len(w)} weight(s) for {k} model(s): give one per model")
        if not np.all(np.isfinite(w)):
            raise RnnkitError(f"the weights must be finite numbers, got {w.tolist()}")
        if combine == "linear":
            if np.any(w < 0):
                raise RnnkitError(f"linear interpolation weights must be >= 0, got {w.tolist()}")
            if abs(w.sum() - 1.0) > 1e-6:
                raise RnnkitError(f"linear interpolation weights must sum to 1, got "
                                  f"{' + '.join(f'{x:g}' for x in w)} = {w.sum():g}")
        self.models = list(models)
        self.weights = w
        self.combine = combine
        self.active = [i for i in range(k) if w[i] != 0.0]
        if not self.active:
            raise RnnkitError("every weight is 0: at least one model needs a non-zero weight")
        self.tokenizer = _union_tokenizer(self.models)
        self._own = [m.tokenizer != self.tokenizer for m in self.models]
        tokens = list(SPECIALS)
        seen = set(tokens)
        for m in self.models:
            for t in m.vocab.tokens:
                if t not in seen:
                    seen.add(t)
                    tokens.append(t)
        self.vocab = Vocab(tokens)
        # maps[k][union id] = model k's id of that token (its <unk> when it lacks it)   [V]
        self.maps = [self._map(m, own, tokens) for m, own in zip(self.models, self._own)]

    @staticmethod
    def _map(model: LanguageModel, own: bool, tokens: list[str]) -> np.ndarray:
        get = model.vocab.index.get
        if own:
            clean = model.tokenizer.clean
            ids = [get(t, UNK) if i < 3 else get(clean(t), UNK) for i, t in enumerate(tokens)]
        else:
            ids = [get(t, UNK) for t in tokens]
        return np.asarray(ids, dtype=np.int64)

    def encode(self, sentence: str):
        """Union ids and OOV mask. A token absent from the union but known to a model once that
        model applies its own normalisation/lowercasing is added to the union vocabulary."""
        tokens = self.tokenizer.split(sentence)
        if any(self._own):
            for t in tokens:
                if t not in self.vocab.index:
                    self._extend(t)
        ids = self.vocab.encode(tokens)
        return ids, np.array([i == UNK for i in ids.tolist()], dtype=bool)

    def _extend(self, token: str) -> None:
        own = [m.vocab.index.get(m.tokenizer.clean(token), UNK) if o else UNK
               for m, o in zip(self.models, self._own)]
        if all(i == UNK for i in own):
            return
        self.vocab.index[token] = len(self.vocab.tokens)
        self.vocab.tokens.append(token)
        self.vocab.counts = np.append(self.vocab.counts, 0)
        self.maps = [np.append(m, i) for m, i in zip(self.maps, own)]

    # --- the protocol --------------------------------------------------------------------------
    def start(self, batch: int):
        return tuple(self.models[k].start(batch) if k in self.active else None
                     for k in range(len(self.models)))

    def advance(self, state, ids: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        return tuple(self.models[k].advance(s, self.maps[k][ids]) if s is not None else None
                     for k, s in enumerate(state))

    def log_probs(self, state) -> np.ndarray:
        """[B, V] log10 over the union vocabulary (see the module docstring on normalisation)."""
        parts = [self.models[k].log_probs(state[k])[:, self.maps[k]] for k in self.active]
        return self._combine(parts)

    def component_log_probs(self, sentences: list[np.ndarray], scorer=None
                            ) -> list[list[np.ndarray] | None]:
        """Per model (None for a model of weight 0), the per-sentence per-token log10 arrays.
        `scorer(model, sentences)` replaces model.token_log_probs (rescoring shares prefixes)."""
        out: list[list[np.ndarray] | None] = [None] * len(self.models)
        for k in self.active:
            mapped = [self.maps[k][np.asarray(ids, dtype=np.int64)] for ids in sentences]
            m = self.models[k]
            out[k] = m.token_log_probs(mapped) if scorer is None else scorer(m, mapped)
        return out

    def combine_components(self, comps: list[list[np.ndarray] | None]) -> list[np.ndarray]:
        n = len(comps[self.active[0]])
        return [self._combine([comps[k][i] for k in self.active]) for i in range(n)]

    def token_log_probs(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        return self.combine_components(self.component_log_probs(sentences))

    def matched_lengths(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        per = [self.models[k].matched_lengths(
            [self.maps[k][np.asarray(ids, dtype=np.int64)] for ids in sentences])
            for k in self.active]
        return [np.maximum.reduce([p[i] for p in per]) for i in range(len(sentences))]

    def _combine(self, parts: list[np.ndarray]) -> np.ndarray:
        w = self.weights[self.active]
        if len(parts) == 1 and w[0] == 1.0:
            return parts[0]  # exactly the single model's numbers
        stack = np.stack([np.asarray(p, dtype=np.float64) for p in parts])  # [K', ...]
        if self.combine == "loglinear":
            return np.tensordot(w, stack, axes=1)
        # log10 sum_k lambda_k 10^lp_k, in natural-log space for logaddexp
        lnw = np.log(w).reshape((-1,) + (1,) * (stack.ndim - 1))
        return np.logaddexp.reduce(stack * LN10 + lnw, axis=0) / LN10

    def describe(self) -> list[dict]:
        return [{"model": getattr(m, "path", None) or m.model_type, "type": m.model_type,
                 "weight": float(w)} for m, w in zip(self.models, self.weights)]


# ------------------------------------------------------------------------------------------------
# EM for the linear weights
# ------------------------------------------------------------------------------------------------
def em_weights(lp: np.ndarray, init: Sequence[float] | None = None, max_iter: int = 500,
               tol: float = 1e-9) -> tuple[np.ndarray, list[float]]:
    """Linear weights maximising sum_t log sum_k lambda_k p_k(t) for per-token log10
    probabilities `lp` [K, N] (held-out text).

    EM (Dempster et al. 1977; Jelinek & Mercer's deleted interpolation): the E step gives each
    token's posterior r_kt = lambda_k p_kt / sum_j lambda_j p_jt, the M step lambda_k = mean_t r_kt.
    The likelihood is concave in lambda and never decreases, so EM converges to the optimum.
    Returns the weights and the log10 likelihood after each iteration.
    """
    lp = np.asarray(lp, dtype=np.float64)
    k, n = lp.shape
    if n == 0:
        raise RnnkitError("no held-out tokens to tune the weights on")
    lam = np.full(k, 1.0 / k) if init is None else np.asarray(init, np.float64)
    ln = lp * LN10  # [K, N]
    history: list[float] = []
    prev = -math.inf
    for _ in range(max_iter):
        with np.errstate(divide="ignore"):
            a = ln + np.log(lam)[:, None]  # [K, N]
        total = np.logaddexp.reduce(a, axis=0)  # [N]
        ll = float(total.sum()) / LN10
        history.append(ll)
        if ll - prev <= tol * max(1.0, abs(ll)):
            break
        prev = ll
        lam = np.exp(a - total).mean(axis=1)
        lam /= lam.sum()
    else:  # out of iterations: the likelihood of the weights returned
        with np.errstate(divide="ignore"):
            history.append(float(np.logaddexp.reduce(ln + np.log(lam)[:, None], axis=0).sum())
                           / LN10)
    return lam, history


def tune_linear(models: Sequence[LanguageModel], sentences: Iterable[str], *,
                batch: int = 128, progress: Callable[[int], None] | None = None) -> dict:
    """EM weights of a linear mixture on held-out sentences, with every model's perplexity and
    the mixture's (KenLM's definition: tokens + </s> in the denominator)."""
    mix = Mixture(models, combine="linear")
    cols: list[list[np.ndarray]] = [[] for _ in models]
    sents = 0
    chunk: list[np.ndarray] = []

    def flush():
        comps = mix.component_log_probs(chunk)
        for k in range(len(models)):
            cols[k].extend(comps[k])
        if progress is not None:
            progress(len(chunk))
        chunk.clear()

    for s in sentences:
        ids, _ = mix.encode(s)
        chunk.append(ids)
        sents += 1
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    if sents == 0:
        raise RnnkitError("the held-out text has no sentences")
    lp = np.stack([np.concatenate(c) for c in cols])  # [K, N]
    n = lp.shape[1]
    weights, history = em_weights(lp)
    corner_ppl = [float(10.0 ** (-lp[k].sum() / n)) for k in range(len(models))]
    ppl = float(10.0 ** (-history[-1] / n))
    # EM is monotone and the objective concave; guard against stopping short of a corner anyway
    best = int(np.argmin(corner_ppl))
    if corner_ppl[best] < ppl:
        weights = np.eye(len(models))[best]
        ppl = corner_ppl[best]
    return {"weights": [float(x) for x in weights], "perplexity": ppl,
            "model_perplexities": corner_ppl, "sentences": sents, "tokens": n - sents,
            "iterations": len(history)}
