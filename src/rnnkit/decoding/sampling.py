"""Sampling sentences from any language model (the lecture's Algorithm 8-1), batched.

Dimension letters: B samples drawn together, V vocabulary.

Written once over the protocol of lm.py -- start(B), advance(state, ids), log_probs(state) -- so
n-gram and recurrent models sample through the same code. From <s> (and an optional prompt), each
step draws z_t ~ p(. | <s> z_<t) reshaped by the temperature, top-k and top-p (nucleus) filters,
until </s> or max_len tokens.

A model may offer an exact fast path for plain sampling (temperature 1, no filters):
`sample_ids(num, max_len, prompt_ids, seed) -> (ids, offsets, log10 p, complete)` or None when it
does not apply. The n-gram model's draws each token in O(explicit successors) instead of
computing the full distribution; the same seed gives the same text, though not the text the
generic path draws from that seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..nn.backend import held_threads
from ..nn.output import LN10
from ..text.vocab import BOS, EOS

MAX_BATCH = 64  # samples drawn together; bounds the [B, V] buffers


@dataclass
class Sample:
    ids: np.ndarray  # [T] the sentence's token ids (prompt included, </s> excluded)
    log10_prob: float  # log10 p under the model (temperature 1, no filters) of the sampled
    #                    tokens after the prompt, </s> included when complete
    complete: bool  # ended with </s> (False: stopped at max_len)
    prompt_tokens: int  # how many of ids came from the prompt


def check_options(num: int = 1, max_len: int = 100, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None) -> None:
    if num < 1:
        raise InputError(f"--num must be at least 1, got {num}")
    if max_len < 1:
        raise InputError(f"--max-len must be at least 1, got {max_len}")
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise InputError(f"--temperature must be a number >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1], got {top_p}")


def filter_logits(logits: np.ndarray, top_k: int | None = None, top_p: float | None = None
                  ) -> np.ndarray:
    """Set to -inf every entry outside the top k, then outside the nucleus of mass top_p
    (natural-log logits [B, V], modified in place and returned)."""
    B, V = logits.shape
    if top_k is not None and top_k < V:
        kth = np.partition(logits, V - top_k, axis=1)[:, V - top_k][:, None]  # [B, 1]
        logits[logits < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-logits, axis=1, kind="stable")  # [B, V] most likely first
        sorted_logits = np.take_along_axis(logits, order, axis=1)
        p = np.exp(sorted_logits - sorted_logits[:, :1])
        p /= p.sum(axis=1, keepdims=True)
        before = np.cumsum(p, axis=1) - p  # mass of the more likely tokens
        drop_sorted = before >= top_p  # keep the smallest prefix whose mass reaches top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=1)
        logits[drop] = -np.inf
    return logits


def draw(log10p: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
         top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """One token id per row of log10 probabilities [B, V]."""
    if temperature == 0:
        return np.argmax(log10p, axis=1)
    logits = log10p * (LN10 / temperature)  # [B, V] natural log, sharpened or flattened
    logits = filter_logits(logits, top_k, top_p)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    cum = np.cumsum(p, axis=1)  # [B, V]
    u = rng.random(len(p)) * cum[:, -1]
    ids = (cum < u[:, None]).sum(axis=1)
    return np.minimum(ids, p.shape[1] - 1)


def sample(model, num: int = 1, *, max_len: int = 100, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
           prompt: str | None = None) -> list[np.ndarray]:
    """`num` sentences as token-id arrays (prompt included, </s> excluded)."""
    return [s.ids for s in sample_sentences(model, num, max_len=max_len, temperature=temperature,
                                            top_k=top_k, top_p=top_p, seed=seed, prompt=prompt)]


@held_threads
def sample_sentences(model, num: int = 1, *, max_len: int = 100, temperature: float = 1.0,
                     top_k: int | None = None, top_p: float | None = None,
                     seed: int | None = None, prompt: str | None = None) -> list[Sample]:
    """`num` samples with their log10 probability; max_len counts the tokens after the prompt."""
    return list(iter_samples(model, num, max_len=max_len, temperature=temperature, top_k=top_k,
                             top_p=top_p, seed=seed, prompt=prompt))


def iter_samples(model, num: int = 1, *, max_len: int = 100, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 prompt: str | None = None):
    """The samples of `sample_sentences`, the same ones, yielded a batch at a time: memory stays
    bounded for any `num`, and a reader that stops early (`| head -1`) stops the work."""
    check_options(num, max_len, temperature, top_k, top_p)
    rng = np.random.default_rng(seed)
    prompt_ids = np.zeros(0, np.int64)
    if prompt:
        prompt_ids, _ = model.encode(prompt)
        prompt_ids = np.asarray(prompt_ids, np.int64)
    fast = getattr(model, "sample_ids", None)
    if fast is not None and temperature == 1.0 and top_k is None and top_p is None:
        # a model type's exact fast path (an n-gram model draws in O(explicit successors));
        # None when it does not apply to this model
        got = fast(num, max_len, prompt_ids, seed)
        if got is not None:
            ids, offsets, logp, complete = got
            for s in range(num):
                yield Sample(np.concatenate([prompt_ids, ids[offsets[s]:offsets[s + 1]]]),
                             float(logp[s]), bool(complete[s]), len(prompt_ids))
            return
    for first in range(0, num, MAX_BATCH):
        yield from _sample_batch(model, min(MAX_BATCH, num - first), prompt_ids, rng, max_len,
                                 temperature, top_k, top_p)


def _sample_batch(model, B, prompt_ids, rng, max_len, temperature, top_k, top_p) -> list[Sample]:
    state = model.start(B)
    for w in prompt_ids.tolist():
        state = model.advance(state, np.full(B, w, np.int64))
    tokens = np.zeros((B, max_len), np.int64)  # [B, T] sampled ids
    length = np.zeros(B, np.int64)  # [B] tokens sampled before </s>
    logp = np.zeros(B)  # [B] log10 p of the sampled tokens
    done = np.zeros(B, bool)  # [B] </s> drawn
    for t in range(max_len):
        lp = model.log_probs(state)  # [B, V] log10
        lp[:, BOS] = -np.inf  # <s> is context only
        ids = draw(lp, rng, temperature, top_k, top_p)  # [B]
        ids[done] = EOS
        logp += np.where(done, 0.0, lp[np.arange(B), ids])
        tokens[:, t] = ids
        newly = (ids == EOS) & ~done
        length[~done & ~newly] += 1
        done |= newly
        if done.all():
            break
        state = model.advance(state, ids)
    return [Sample(np.concatenate([prompt_ids, tokens[b, :length[b]]]), float(logp[b]),
                   bool(done[b]), len(prompt_ids)) for b in range(B)]
