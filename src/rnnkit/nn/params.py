"""One flat float buffer for all the parameters of a model, and named views into it (as llm.c).

Dimension letters: P the buffer's length (every tensor padded to a multiple of ALIGN floats).

A model lists its tensors once -- (name, shape) pairs in buffer order, PyTorch's names -- and a
ParamLayout turns them into offsets. Parameters and gradients are then two buffers of the same
layout: an optimizer update, the gradient norm or clipping is one pass over one array, an
all-reduce is one call, and a checkpoint is one tensor. Sub-modules (a recurrent stack, an
output layer) receive the views of their own tensors, by the names they declared.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .. import modelfile

ALIGN = 16  # tensors start at multiples of 16 floats (64 bytes, one cache line) in the buffer


class ParamLayout:
    """name -> (offset, shape) in a flat buffer of length `size` (P).

    `aliases` maps a name to another one whose storage it shares (tied weights: PyTorch's
    `decoder.weight` is `encoder.weight`); an alias has a view but no storage of its own.
    """

    def __init__(self, shapes: Iterable[tuple[str, tuple[int, ...]]],
                 aliases: dict[str, str] | None = None):
        self.offsets: dict[str, tuple[int, tuple[int, ...]]] = {}
        p = 0
        for name, shape in shapes:
            if name in self.offsets:
                raise ValueError(f"tensor {name} is listed twice")
            shape = tuple(int(s) for s in shape)
            self.offsets[name] = (p, shape)
            size = int(np.prod(shape))
            p += -(-size // ALIGN) * ALIGN
        self.size = p  # P
        self.aliases = dict(aliases or {})
        for alias, target in self.aliases.items():
            if target not in self.offsets:
                raise ValueError(f"alias {alias} points to {target}, which is not in the layout")

    @property
    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every stored tensor, in buffer order (aliases excluded)."""
        return [(name, shape) for name, (_, shape) in self.offsets.items()]

    @property
    def num_parameters(self) -> int:
        """Parameters without the alignment padding."""
        return sum(int(np.prod(shape)) for _, shape in self.shapes)

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """A view of `flat` [P] per tensor name, aliases included."""
        if flat.shape != (self.size,):
            raise ValueError(f"the flat buffer has shape {flat.shape}, the layout needs "
                             f"({self.size},)")
        out = {name: flat[off:off + int(np.prod(shape))].reshape(shape)
               for name, (off, shape) in self.offsets.items()}
        for alias, target in self.aliases.items():
            out[alias] = out[target]
        return out

    def padding_mask(self) -> np.ndarray:
        """[P] bool: True on the alignment padding between tensors."""
        pad = np.ones(self.size, bool)
        for off, shape in self.offsets.values():
            pad[off:off + int(np.prod(shape))] = False
        return pad


def scoped(views: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The views whose names start with `prefix`, with the prefix removed (a sub-module's own
    tensors, e.g. scoped(p, "rnn.")["weight_ih_l0"])."""
    return {name[len(prefix):]: v for name, v in views.items() if name.startswith(prefix)}


class FlatParameters:
    """What every model over one flat buffer offers alike. The model sets `layout`
    (ParamLayout), `flat` [P], `p` (its views), `dtype`, `arch.dropout`, `meta`, `_grad = None`,
    `g = None`, `metadata()` (the file's JSON document) and `_build()`, which (re)creates its
    layers over `p` and `g`."""

    @property
    def num_parameters(self) -> int:
        return self.layout.num_parameters

    def init_uniform(self, rng: np.random.Generator, scale: float) -> None:
        """Every parameter uniform in [-scale, scale] (Zaremba et al. 2014), in one pass."""
        self.flat[:] = rng.uniform(-scale, scale, self.flat.shape[0])
        self.flat[self.layout.padding_mask()] = 0

    @property
    def grad(self) -> np.ndarray:
        """The flat gradient buffer [P], laid out as the parameters; allocated on first use,
        when the layers are rebuilt to write into it."""
        if self._grad is None:
            self._grad = np.zeros_like(self.flat)
            self.g = self.layout.views(self._grad)
            self._build()
        return self._grad

    def state_dict(self) -> dict[str, np.ndarray]:
        """PyTorch-named tensors (copies); a tied weight is included under both names, as
        PyTorch does."""
        return {name: np.array(v) for name, v in self.p.items()}

    def file_tensors(self) -> dict[str, np.ndarray]:
        """The tensors of the model file: the parameters by name, as float32."""
        return {name: np.asarray(v, np.float32) for name, v in self.p.items()}

    def save(self, path, **extra_meta) -> None:
        """Write the model file (safetensors + the model's metadata() + extra_meta), atomically;
        extra_meta is also kept in the model's own meta."""
        meta = self.metadata()
        meta.update(extra_meta)
        self.meta.update(extra_meta)
        modelfile.save(path, self.file_tensors(), meta)

    def _dropout_mask(self, rng: np.random.Generator, shape) -> np.ndarray:
        # inverted dropout: kept units are scaled by 1/(1-p), so inference needs no rescaling
        p = self.arch.dropout
        mask = (rng.random(shape, dtype=np.float32) >= p).astype(self.dtype)
        mask *= 1.0 / (1.0 - p)
        return mask
