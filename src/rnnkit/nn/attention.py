"""Global attention over a set of encoder states (Luong et al. 2015; Bahdanau et al. 2015), over
views of a flat parameter buffer: the piece the translation decoder and the caption decoder's
attention over a feature grid share.

Dimension letters: T decoder steps (the queries of one call), S attended positions (source
words, or grid cells), B batch, H decoder hidden size, D encoder state size, A size of the
additive score's hidden layer.

For decoder states h_t and encoder states s_1 .. s_S (only the real ones, by a mask):
  a_t = softmax_s(score(h_t, s_s)),  c_t = sum_s a_ts s_s,  h~_t = tanh(W_c [c_t; h_t] + b_c)
(Luong eq. 5); the scores: dot h_t . s_s (needs D = H); general h_t . W_k s_s (Luong eq. 8);
additive v . tanh(W_q h_t + W_k s_s) (Bahdanau et al. 2015, eq. 6). The keys W_k s_s (or s_s)
depend on the encoder states only, so they are computed once per source (keys()).

Tensors, under the model's prefix (e.g. "decoder."), Joey NMT's names:
  attention.key_layer.weight     [H, D] general, [A, D] additive
  attention.query_layer.weight   [A, H] additive
  attention.energy_layer.weight  [1, A] additive
  att_vector.weight, .bias       [H, D + H], [H]
"""
from __future__ import annotations

import numpy as np

from . import reference
from .backend import kernels

ATTENTIONS = ("none", "dot", "general", "additive")
NEG = reference.PAD_SCORE  # the score of a padding position: exp() makes it exactly 0


def attention_shapes(kind: str, D: int, H: int, A: int, prefix: str = "decoder."
                     ) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of the attention's tensors in buffer order (none: no tensors)."""
    shapes = []
    if kind == "general":
        shapes.append((f"{prefix}attention.key_layer.weight", (H, D)))
    elif kind == "additive":
        shapes += [(f"{prefix}attention.key_layer.weight", (A, D)),
                   (f"{prefix}attention.query_layer.weight", (A, H)),
                   (f"{prefix}attention.energy_layer.weight", (1, A))]
    if kind != "none":
        shapes += [(f"{prefix}att_vector.weight", (H, D + H)), (f"{prefix}att_vector.bias", (H,))]
    return shapes


def length_mask(lengths: np.ndarray, S: int) -> np.ndarray:
    """[B, S] True on each row's first lengths[b] positions (the real ones)."""
    return np.arange(S)[None, :] < np.asarray(lengths)[:, None]


def softmax_last(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _mm(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False):
    """op(a) op(b) of 2-D arrays: float32 on the kernels' product (threaded like the layers;
    numpy's BLAS is held to one thread while they run), other dtypes with numpy."""
    if a.dtype == np.float32 and b.dtype == np.float32:
        return kernels().matmul(np.ascontiguousarray(a), np.ascontiguousarray(b),
                                trans_a=trans_a, trans_b=trans_b)
    return (a.T if trans_a else a) @ (b.T if trans_b else b)


class Attention:
    """One attention mechanism (`kind`: dot, general or additive) over the views `params` (and
    `grads`, for training) of a model's flat buffers.

    keys(enc) once per source; forward(top, enc, keys, mask) -> (h~, alpha, saved) for any
    number T of decoder steps at once; backward(dh~, top, enc, keys, alpha, saved) -> (d top,
    d enc) writes the attention's weight gradients (overwrites them; accumulate=True adds, for
    a decoder that runs one step at a time).
    """

    def __init__(self, kind: str, D: int, H: int, params: dict, grads: dict | None = None,
                 dtype=np.float32, prefix: str = "decoder."):
        if kind not in ATTENTIONS or kind == "none":
            raise ValueError(f"unknown attention {kind!r}: use dot, general or additive")
        self.kind, self.D, self.H = kind, D, H
        self.dtype = np.dtype(dtype)
        self.p = {name[len(prefix):]: v for name, v in params.items() if name.startswith(prefix)}
        self.g = None if grads is None else {name[len(prefix):]: v for name, v in grads.items()
                                             if name.startswith(prefix)}

    def keys(self, enc: np.ndarray) -> np.ndarray:
        """What the score compares decoder states with [S, B, H or A], for enc [S, B, D]."""
        if self.kind == "dot":
            return enc
        S, B, D = enc.shape
        return _mm(enc.reshape(S * B, D), self.p["attention.key_layer.weight"],
                   trans_b=True).reshape(S, B, -1)

    def forward(self, top: np.ndarray, enc: np.ndarray, keys: np.ndarray, mask: np.ndarray):
        """Attention for decoder states top [T, B, H] over enc [S, B, D] (mask [B, S] real
        positions): (h~ [T, B, H], alpha [B, T, S], and what backward needs).

        Dot and general scores: scores, softmax and context in one compiled pass per sentence
        (kernels' attend; reference.attend, np.matmul on transposed views, is its specification
        and the float64 path); the additive score's tanh layer stays in numpy."""
        p = self.p
        T, B, H = top.shape
        S, D = enc.shape[0], enc.shape[2]
        cat = np.empty((T, B, D + H), self.dtype)                                # [T, B, D + H]
        e = None
        if self.kind == "additive":
            q = top @ p["attention.query_layer.weight"].T                        # [T, B, A]
            e = np.tanh(q[:, None] + keys[None])                                 # [T, S, B, A]
            scores = (e @ p["attention.energy_layer.weight"][0]).transpose(2, 0, 1)
            scores = np.where(mask[:, None, :], scores, NEG)
            alpha = softmax_last(scores).astype(self.dtype, copy=False)          # [B, T, S]
            np.matmul(alpha, enc.transpose(1, 0, 2), out=cat[..., :D].transpose(1, 0, 2))
        else:   # scores, softmax and c_t in one compiled pass (reference.attend for float64)
            alpha = np.empty((B, T, S), self.dtype)
            backend = kernels() if self.dtype == np.float32 else reference
            backend.attend(top, keys, enc, mask, alpha, cat)
        cat[..., D:] = top
        att = _mm(cat.reshape(T * B, D + H), p["att_vector.weight"], trans_b=True)
        att += p["att_vector.bias"]
        att = np.tanh(att, out=att).reshape(T, B, H)
        return att.astype(self.dtype, copy=False), alpha, (e, cat, att)

    def backward(self, datt, top, enc, keys, alpha, saved, accumulate: bool = False):
        """Gradients through the attention: (d top [T, B, H], d enc [S, B, D]); writes (or with
        accumulate, adds) the attention's weight gradients."""
        p, g = self.p, self.g
        e, cat, att = saved
        D, H = self.D, self.H

        def put(name, value):
            if accumulate:
                g[name] += value
            else:
                g[name][...] = value

        dpre = datt * (1.0 - att * att)                                          # [T, B, H]
        T, B = dpre.shape[:2]
        dpre2 = dpre.reshape(T * B, H)
        put("att_vector.weight", _mm(dpre2, cat.reshape(T * B, D + H), trans_a=True))
        put("att_vector.bias", dpre.sum(axis=(0, 1)))
        dcat = _mm(dpre2, p["att_vector.weight"]).reshape(T, B, D + H)           # [T, B, D + H]
        dctx, dtop = dcat[..., :D], dcat[..., D:].copy()
        dalpha = np.matmul(dctx.transpose(1, 0, 2), enc.transpose(1, 2, 0))      # [B, T, S]
        denc = np.empty(enc.shape, self.dtype)                                   # [S, B, D]
        np.matmul(alpha.transpose(0, 2, 1), dctx.transpose(1, 0, 2), out=denc.transpose(1, 0, 2))
        dscores = alpha * (dalpha - (dalpha * alpha).sum(axis=-1, keepdims=True))
        if self.kind == "additive":
            v = p["attention.energy_layer.weight"][0]                            # [A]
            ds = dscores.transpose(1, 2, 0)                                      # [T, S, B]
            if accumulate:
                g["attention.energy_layer.weight"][0] += np.einsum("tsb,tsba->a", ds, e)
            else:
                g["attention.energy_layer.weight"][0] = np.einsum("tsb,tsba->a", ds, e)
            de = ds[..., None] * v * (1.0 - e * e)                               # [T, S, B, A]
            dq, dkeys = de.sum(axis=1), de.sum(axis=0)                           # [T,B,A], [S,B,A]
            Wq = p["attention.query_layer.weight"]
            put("attention.query_layer.weight", dq.reshape(-1, dq.shape[-1]).T @ top.reshape(-1, H))
            dtop += dq @ Wq
        else:
            dscores = dscores.astype(self.dtype, copy=False)
            dtop += np.matmul(dscores, keys.transpose(1, 0, 2)).transpose(1, 0, 2)
            dkeys = np.empty(keys.shape, self.dtype)                             # [S, B, H]
            np.matmul(dscores.transpose(0, 2, 1), top.transpose(1, 0, 2),
                      out=dkeys.transpose(1, 0, 2))
        if self.kind == "dot":
            denc += dkeys
        else:
            Wk = p["attention.key_layer.weight"]
            dk2 = dkeys.reshape(-1, dkeys.shape[-1])
            put("attention.key_layer.weight", _mm(dk2, enc.reshape(-1, D), trans_a=True))
            denc += _mm(dk2, Wk).reshape(denc.shape)
        return dtop, denc
