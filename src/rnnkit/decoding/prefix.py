"""Scoring many sentences with common prefixes (the candidates of an N-best list) through the
language-model protocol, computing each distinct prefix once.

Dimension letters: B the prefixes of one depth, V vocabulary.
"""
from __future__ import annotations

import numpy as np

from ..text.vocab import EOS
from .state import select_state


def prefix_log_probs(model, sentences: list[np.ndarray], chunk: int = 512
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
        out.extend(_trie_log_probs(model, sentences[a:a + chunk]))
    return out


def _trie_log_probs(model, sentences: list[np.ndarray]) -> list[np.ndarray]:
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
    state = model.start(1)
    for d, nodes in enumerate(levels):
        if d:
            prev = select_state(state, np.array([row[parent[n]] for n in nodes], np.intp))
            state = model.advance(prev, np.array([token[n] for n in nodes], np.int64))
        if not asks[d]:
            continue
        lp = model.log_probs(state)                       # [nodes at depth d, V]
        a = np.array(asks[d], dtype=np.int64)            # [asks, 3]
        vals = lp[a[:, 1], a[:, 2]]
        for (i, _, _), v in zip(asks[d], vals.tolist()):
            out[i][d] = v
    return out
