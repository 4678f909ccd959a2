"""Optimizers and gradient clipping over ONE flat parameter buffer.

Dimension letter: P parameters (the length of the flat buffers rnnlm.py keeps).

Every operation is a pass over whole flat buffers (compiled passes for SGD, Adam and the norm's
sums, threaded like the layers; numpy in place for the rest), never a loop over tensors, and
allocates nothing after construction. No result depends on the thread count or the kernel path
(the norm's sums run in a fixed order: reference.sum_squares).

Row-sparse gradients. An embedding's gradient in one window is non-zero only in the rows of the
ids the window read (at most T*B of V rows: 700 of WikiText-2's 33,278 in Zaremba's set-up, where
the [V, E] embedding is most of the parameters). A model that keeps the rest of that block at
zero describes it with SparseRows; clipping and SGD then pass over the dense rest and those rows
only, with the same result (up to float summation order in the norm). Adam ignores the
description: its moments decay everywhere, so its step stays dense.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import RnnkitError

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 1.0, "adam": 1e-3}
NORM_BLOCK = 1 << 16  # floats per partial sum of squares in grad_norm (the kernels' block)


def _pass(name: str, x: np.ndarray):
    """The flat pass `name` for buffers like x: the compiled kernel for contiguous float32,
    else its specification in reference.py (other dtypes; the same arithmetic)."""
    if x.dtype == np.float32 and x.flags.c_contiguous:
        from .backend import kernels
        return getattr(kernels(), name)
    from . import reference
    return getattr(reference, name)


@dataclass(frozen=True)
class SparseRows:
    """The [count, width] block of a flat buffer at offset `start` (an embedding's weight) in
    which only `rows` (sorted, unique) may be non-zero in the gradient."""
    start: int
    count: int
    width: int
    rows: np.ndarray

    @property
    def end(self) -> int:
        return self.start + self.count * self.width

    def block(self, flat: np.ndarray) -> np.ndarray:
        """The block of `flat` as [count, width] (a view)."""
        return flat[self.start:self.end].reshape(self.count, self.width)


def _dense_parts(flat: np.ndarray, sparse: Sequence[SparseRows]) -> list[np.ndarray]:
    """The views of `flat` outside the sparse blocks (which must not overlap)."""
    parts, at = [], 0
    for s in sorted(sparse, key=lambda s: s.start):
        parts.append(flat[at:s.start])
        at = s.end
    parts.append(flat[at:])
    return [p for p in parts if p.shape[0]]


def _sum_squares(x: np.ndarray) -> float:
    """The sum of the squares of x [n] in float64: the kernels' sum_squares (blocks of
    NORM_BLOCK, 32 double lanes each, the same bits on every path and thread count) for float32,
    reference.sum_squares, its specification, for other dtypes."""
    return _pass("sum_squares", x)(x)


def grad_norm(grads: np.ndarray, sparse: Sequence[SparseRows] = ()) -> float:
    """The Euclidean norm of the flat gradient [P]: squares summed in float64 (_sum_squares).
    (One float32 dot over the whole buffer was off by 2.6e-4 at 33M parameters -- a WikiText-2
    model -- enough to change the clipping factor against PyTorch's and make early training
    drift apart.) With `sparse`, the blocks it names are read in their listed rows only."""
    if not sparse:
        return math.sqrt(_sum_squares(grads))
    total = sum(_sum_squares(p) for p in _dense_parts(grads, sparse))
    total += sum(_sum_squares(s.block(grads)[s.rows].reshape(-1)) for s in sparse)
    return math.sqrt(total)


def clip_grad_norm(grads: np.ndarray, max_norm: float | None,
                   sparse: Sequence[SparseRows] = ()) -> float:
    """Scale grads [P] in place so that their global norm is at most max_norm (Pascanu et al.
    2013; Zaremba et al. clip the global norm at 5). Returns the norm before clipping; a NaN or
    infinite norm is returned as is and the gradient left alone (the caller stops). `sparse`
    as in grad_norm."""
    norm = grad_norm(grads, sparse)
    if max_norm and math.isfinite(norm) and norm > max_norm:
        factor = grads.dtype.type(max_norm / (norm + 1e-6))
        if not sparse:
            grads *= factor
        else:
            for p in _dense_parts(grads, sparse):
                p *= factor
            for s in sparse:
                s.block(grads)[s.rows] *= factor
    return norm


class SGD:
    """params -= lr * grads: one compiled pass over the flat buffer (the kernels' sgd_step;
    reference.sgd_step for other dtypes), with `sparse` over the dense parts, and the listed
    rows of the sparse blocks (numpy, the same arithmetic)."""

    name = "sgd"

    def __init__(self, size: int, dtype=np.float32):
        self.size = size

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float,
             sparse: Sequence[SparseRows] = ()) -> None:
        step = _pass("sgd_step", params)
        if not sparse:
            step(params, grads, lr)
            return
        for p, g in zip(_dense_parts(params, sparse), _dense_parts(grads, sparse)):
            step(p, g, lr)
        for s in sparse:
            w, g = s.block(params), s.block(grads)
            w[s.rows] -= params.dtype.type(lr) * g[s.rows]

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {}

    def state_meta(self) -> dict:
        return {"name": self.name}

    def load_state(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        pass


class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1, with the bias corrections folded into the step size
    as in section 2): m, v are flat buffers like the parameters. One compiled pass over the
    four buffers per step (the kernels' adam_step; reference.adam_step is its specification and
    serves other dtypes)."""

    name = "adam"

    def __init__(self, size: int, dtype=np.float32, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(size, dtype)        # [P] first moment
        self.v = np.zeros(size, dtype)        # [P] second moment
        self.t = 0

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float,
             sparse: Sequence[SparseRows] = ()) -> None:
        """One dense step (`sparse` is ignored: the moments decay in every row)."""
        b1, b2 = self.beta1, self.beta2
        self.t += 1
        step = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        eps_hat = self.eps * math.sqrt(1.0 - b2 ** self.t)  # so that eps means Algorithm 1's eps
        _pass("adam_step", params)(params, grads, self.m, self.v, b1, b2, step, eps_hat)

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {"adam.m": self.m, "adam.v": self.v}

    def state_meta(self) -> dict:
        return {"name": self.name, "t": self.t, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps}

    def load_state(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        self.m[...] = tensors["adam.m"]
        self.v[...] = tensors["adam.v"]
        self.t = int(meta["t"])
        self.beta1, self.beta2, self.eps = meta["beta1"], meta["beta2"], meta["eps"]


def make_optimizer(name: str, size: int, dtype=np.float32):
    if name == "sgd":
        return SGD(size, dtype)
    if name == "adam":
        return Adam(size, dtype)
    raise RnnkitError(f"unknown --optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
