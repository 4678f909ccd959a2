"""Optimizers and gradient clipping over ONE flat parameter buffer.

Dimension letter: P parameters (the length of the flat buffers rnnlm.py keeps).

Every operation is a pass over whole flat buffers (BLAS axpy/dot or numpy in place), never a
loop over tensors, and allocates nothing after construction. All results are deterministic for a
given thread count (element-wise passes do not depend on it at all).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import RnnkitError

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 1.0, "adam": 1e-3}


def _axpy(x: np.ndarray):
    """BLAS y += a*x for the dtype of x (y updated in place when it is contiguous)."""
    # imported here: scipy.linalg takes ~0.15 s to import, which every command would pay at
    # start-up (the CLI lists the optimizers); only training steps use it
    from scipy.linalg import blas

    return blas.get_blas_funcs("axpy", (x,))


NORM_BLOCK = 1 << 16  # floats per BLAS dot in grad_norm; the blocks are summed in float64


def grad_norm(grads: np.ndarray) -> float:
    """The Euclidean norm of the flat gradient [P]: BLAS dots over blocks, summed in float64.
    (One float32 dot over the whole buffer was off by 2.6e-4 at 33M parameters -- a WikiText-2
    model -- enough to change the clipping factor against PyTorch's and make early training
    drift apart.)"""
    return math.sqrt(sum(float(np.dot(b, b)) for b in
                         (grads[i:i + NORM_BLOCK] for i in range(0, grads.shape[0], NORM_BLOCK))))


def clip_grad_norm(grads: np.ndarray, max_norm: float | None) -> float:
    """Scale grads [P] in place so that their global norm is at most max_norm (Pascanu et al.
    2013; Zaremba et al. clip the global norm at 5). Returns the norm before clipping; a NaN or
    infinite norm is returned as is and the gradient left alone (the caller stops)."""
    norm = grad_norm(grads)
    if max_norm and math.isfinite(norm) and norm > max_norm:
        grads *= grads.dtype.type(max_norm / (norm + 1e-6))
    return norm


class SGD:
    """params -= lr * grads: one BLAS axpy over the flat buffer."""

    name = "sgd"

    def __init__(self, size: int, dtype=np.float32):
        self.size = size

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        _axpy(params)(grads, params, a=-lr)

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {}

    def state_meta(self) -> dict:
        return {"name": self.name}

    def load_state(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        pass


class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1, with the bias corrections folded into the step size
    as in section 2): m, v are flat buffers like the parameters."""

    name = "adam"

    def __init__(self, size: int, dtype=np.float32, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(size, dtype)        # [P] first moment
        self.v = np.zeros(size, dtype)        # [P] second moment
        self.scratch = np.empty(size, dtype)  # [P]
        self.t = 0

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        b1, b2, s, axpy = self.beta1, self.beta2, self.scratch, _axpy(params)
        self.t += 1
        self.m *= self.m.dtype.type(b1)
        axpy(grads, self.m, a=1.0 - b1)                     # m = b1 m + (1 - b1) g
        self.v *= self.v.dtype.type(b2)
        np.multiply(grads, grads, out=s)
        axpy(s, self.v, a=1.0 - b2)                         # v = b2 v + (1 - b2) g^2
        step = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        eps_hat = self.eps * math.sqrt(1.0 - b2 ** self.t)  # so that eps means Algorithm 1's eps
        np.sqrt(self.v, out=s)
        s += s.dtype.type(eps_hat)
        np.divide(self.m, s, out=s)
        axpy(s, params, a=-step)

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
