"""The one language-model protocol that every model type implements.

Dimension letters: B batch (parallel sentences or streams), V vocabulary, T tokens.

A model type implements four methods:
  start(batch) -> state            the context after <s> for B sentences
  advance(state, ids) -> state     feed one token id per sentence (ids: [B] int)
  log_probs(state) -> [B, V]       log10 of the full next-token distribution (sums to 1 over V)
  token_log_probs(sentences) -> [per sentence: [T+1] log10]  fast path for scoring: the log10
                                   probability of each token z1..zT and </s> given <s> z<t
and, optionally, `matched_lengths(sentences)` (the n-gram length used per token; a recurrent
model sees the whole history, so its default is the position + 1).

Callers always use the state advance returns (`state = model.advance(state, ids)`) and never the
one they passed in: a model may update it in place (recurrent models do, to allocate nothing per
step) -- take `select_state(state, rows)` first to branch. Likewise the array log_probs returns
may be a buffer of the state that the next call overwrites (callers may modify it).

Everything else -- score, full_scores, perplexity (KenLM's names, log base 10) and generate -- is
written once, here and in sampling.py / scoring.py / rescore.py, never per model type.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from .vocab import BOS, EOS, UNK, Tokenizer, Vocab


def select_state(state, rows: np.ndarray):
    """The given rows (streams) of a batched protocol state, as a new state; rows may repeat.

    A state is an object with a `select(rows)` method, an array with the batch first, or a
    tuple/list of states (a mixture's), or None.
    """
    if state is None:
        return None
    if hasattr(state, "select"):
        return state.select(rows)
    if isinstance(state, np.ndarray):
        return state[rows]
    if isinstance(state, (tuple, list)):
        return type(state)(select_state(s, rows) for s in state)
    raise TypeError(f"cannot select rows of a {type(state).__name__} state")


class LanguageModel:
    """Base class: a vocabulary, a tokenizer and the protocol above."""

    model_type = "abstract"
    vocab: Vocab
    tokenizer: Tokenizer

    # --- the protocol --------------------------------------------------------------------------
    def start(self, batch: int):
        raise NotImplementedError

    def advance(self, state, ids: np.ndarray):
        raise NotImplementedError

    def log_probs(self, state) -> np.ndarray:
        raise NotImplementedError

    def token_log_probs(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        """Generic (slow) path through start/advance/log_probs; model types override it."""
        out = []
        for ids in sentences:
            state = self.start(1)
            lp = np.empty(len(ids) + 1)
            for t, w in enumerate(list(ids) + [EOS]):
                lp[t] = self.log_probs(state)[0, w]
                state = self.advance(state, np.array([w]))
            out.append(lp)
        return out

    def matched_lengths(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        return [np.arange(2, len(ids) + 3) for ids in sentences]

    # True for model types whose cost is one full next-token distribution per position (the
    # recurrent ones): scoring many sentences with common prefixes -- the candidates of an N-best
    # list -- is then cheaper through prefix_token_log_probs. An n-gram lookup is cheaper alone.
    share_prefixes = False

    def prefix_token_log_probs(self, sentences: list[np.ndarray], chunk: int = 512
                               ) -> list[np.ndarray]:
        """The same numbers as token_log_probs, computing each distinct prefix once.

        The sentences form a prefix tree (trie) walked breadth-first through start / advance /
        log_probs: depth d is one batch holding every distinct prefix of length d, so N-best
        candidates that differ only near their end share the states and output distributions
        of their common beginning (and duplicates cost nothing). Every sentence is still scored
        from <s> on its own: sharing a prefix's state is exact, not an approximation.
        """
        out: list[np.ndarray] = []
        for a in range(0, len(sentences), chunk):
            out.extend(self._trie_log_probs(sentences[a:a + chunk]))
        return out

    def _trie_log_probs(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        children: dict[tuple[int, int], int] = {}
        parent, token, depth, row = [-1], [-1], [0], [0]  # per trie node; row: index in its level
        levels: list[list[int]] = [[0]]                  # depth -> nodes (node 0: just <s>)
        asks: list[list[tuple[int, int, int]]] = [[]]    # depth -> (sentence, row, target)
        for i, ids in enumerate(sentences):
            node = 0
            for t, w in enumerate(list(np.asarray(ids).tolist()) + [EOS]):
                asks[t].append((i, row[node], w))
                if w == EOS and t == len(ids):
                    break
                nxt = children.get((node, w))
                if nxt is None:
                    nxt = children[(node, w)] = len(parent)
                    d = depth[node] + 1
                    if d == len(levels):
                        levels.append([])
                        asks.append([])
                    row.append(len(levels[d]))
                    levels[d].append(nxt)
                    parent.append(node)
                    token.append(w)
                    depth.append(d)
                node = nxt
        out = [np.empty(len(ids) + 1) for ids in sentences]
        state = self.start(1)
        for d, nodes in enumerate(levels):
            if d:
                prev = select_state(state, np.array([row[parent[n]] for n in nodes], np.intp))
                state = self.advance(prev, np.array([token[n] for n in nodes], np.int64))
            if not asks[d]:
                continue
            lp = self.log_probs(state)                       # [nodes at depth d, V]
            a = np.array(asks[d], dtype=np.int64)            # [asks, 3]
            vals = lp[a[:, 1], a[:, 2]]
            for (i, _, _), v in zip(asks[d], vals.tolist()):
                out[i][d] = v
        return out

    # --- text -> ids ---------------------------------------------------------------------------
    def encode(self, sentence: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a sentence split by the model's tokenizer, and the OOV mask."""
        tokens = self.tokenizer.split(sentence)
        ids = self.vocab.encode(tokens)
        # a literal <s> or </s> inside a sentence cannot be a boundary: it is an OOV (as in prepare)
        ids[(ids == BOS) | (ids == EOS)] = UNK
        # a literal <unk> in the text is an OOV too, as KenLM counts it
        oov = ids == UNK
        return ids, oov

    # --- KenLM's API, log10 --------------------------------------------------------------------
    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 P(sentence), including </s> when eos."""
        return float(sum(lp for lp, _, _ in self.full_scores(sentence, bos=bos, eos=eos)))

    def full_scores(self, sentence: str, bos: bool = True, eos: bool = True
                    ) -> Iterator[tuple[float, int, bool]]:
        """Per token (z1..zT, then </s> when eos): (log10 p, n-gram length used, is OOV)."""
        if not bos:
            raise NotImplementedError(f"{self.model_type} models score from <s> only (bos=True)")
        ids, oov = self.encode(sentence)
        lp = self.token_log_probs([ids])[0]
        lengths = self.matched_lengths([ids])[0]
        n = len(ids) + (1 if eos else 0)
        for t in range(n):
            yield float(lp[t]), int(lengths[t]), bool(oov[t]) if t < len(ids) else False

    def perplexity(self, sentences: Iterable[str]) -> float:
        """Corpus perplexity as KenLM's query defines it: 10^(-Σ log10 p / (tokens + sentences))."""
        total, count = 0.0, 0
        for s in sentences:
            ids, _ = self.encode(s)
            total += float(self.token_log_probs([ids])[0].sum())
            count += len(ids) + 1
        if count == 0:
            return math.nan
        return 10.0 ** (-total / count)

    def generate(self, num: int = 1, **options) -> list[str]:
        """Sample `num` sentences from <s> until </s>; options as sampling.sample."""
        from .sampling import sample

        return [self.tokenizer.join(self.vocab.decode(ids)) for ids in sample(self, num, **options)]
