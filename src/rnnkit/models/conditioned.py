"""What a decoder conditioned on an input (a source sentence, an image) shares: the flat
parameter buffers, the decoding state and the steps of the language-model protocol, and the
loading of its tensors from a model file. models/seq2seq.py and models/caption.py build on it.

Dimension letters: B decoding streams, E embedding size, H hidden size, G gate rows of a layer,
L decoder layers, V target vocabulary.

A subclass sets `arch` and `layout`, calls _init_buffers, and in _build() creates `dec_stack`
(nn.recurrent.RecurrentStack under "decoder.rnn."), `output` (nn.output.FullSoftmax) and `attn`
(nn.attention.Attention, or None); its start() makes a state with new_state() and says what
conditions it; readout() gives what the output layer reads (log_probs, top_log_probs).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, RnnkitError
from ..nn.backend import kernels
from ..nn.output import LOG10E
from ..nn.params import FlatParameters
from ..nn.recurrent import gate_rows
from ..text.vocab import BOS
from .protocol import advance_ids


class DecoderState:
    """B decoding streams of a conditioned decoder: h, c [L, B, H] (c None without cells), the
    step's input x [B, E] and scratch work [B, G], the last fed ids [B], the last log_probs
    lp [B, V] (reused), the attention weights alpha [B, S] of the last log_probs (or None) and
    packs, the weights packed for this search (nn.recurrent.RecurrentStack.step; shared by
    every state selected from it). A subclass adds what conditions the streams and its own
    select()."""

    __slots__ = ("h", "c", "x", "work", "ids", "lp", "alpha", "packs")

    def _select_decoder(self, new: "DecoderState", rows: np.ndarray) -> "DecoderState":
        """Fill `new` with the decoder's state of the streams `rows` (copies), fresh buffers."""
        new.h = np.take(self.h, rows, axis=1)   # a fresh C-ordered copy (faster than [:, rows])
        new.c = None if self.c is None else np.take(self.c, rows, axis=1)
        n = len(rows)
        new.x = np.empty((n, self.x.shape[1]), self.x.dtype)
        new.work = np.empty((n, self.work.shape[1]), self.work.dtype)
        new.ids = np.empty(n, np.intp)
        new.lp = None
        new.packs = self.packs
        return new

    @property
    def batch(self) -> int:
        return self.h.shape[1]


class ConditionedDecoder(FlatParameters):
    """The protocol steps of a decoder conditioned on an input (see the module's docstring):
    advance(state, ids) and the step through the decoder stack; log_probs and top_log_probs
    of what the subclass's readout() gives. `target_vocab_size` is V."""

    def _init_buffers(self, flat, meta, backend, dtype) -> None:
        self.meta = dict(meta or {})
        self.dtype = np.dtype(dtype)
        if flat is None:
            flat = np.zeros(self.layout.size, self.dtype)
        if flat.shape != (self.layout.size,) or flat.dtype != self.dtype:
            raise RnnkitError(f"the flat parameter buffer must be a contiguous "
                              f"[{self.layout.size}] {self.dtype} array")
        self.flat = flat                        # [P]
        self.p = self.layout.views(flat)
        self._grad = None                       # [P]
        self.g = None
        self.backend = kernels() if backend is None else backend

    @property
    def target_vocab_size(self) -> int:
        raise NotImplementedError

    def new_state(self, cls, h: np.ndarray, c: np.ndarray | None) -> DecoderState:
        """A state of class `cls` for the decoder's state h, c [L, B, H], about to read <s>."""
        st = object.__new__(cls)
        B = h.shape[1]
        st.h, st.c = h, c
        st.x = np.empty((B, self.dec_stack.E), self.dtype)
        st.work = np.empty((B, gate_rows(self.dec_stack.cell, self.dec_stack.H)), self.dtype)
        st.ids = np.full(B, BOS, np.intp)
        st.lp, st.alpha = None, None
        st.packs = {}   # this search's packed weights, made on the first step that packs
        return st

    def advance(self, state: DecoderState, ids: np.ndarray) -> DecoderState:
        """Feed one target token per stream; the state is updated IN PLACE and returned."""
        state.ids[:] = advance_ids(ids, state.batch, self.target_vocab_size)
        return self._step(state)

    def _step(self, state: DecoderState) -> DecoderState:
        """The decoder reads the embedding of state.ids (RecurrentStack.step_tokens)."""
        self.dec_stack.step_tokens(self.p["decoder.embedding.weight"], state.ids, state.x,
                                   state.h, state.c, state.work, state.packs)
        state.alpha = None
        return state

    def readout(self, state: DecoderState) -> np.ndarray:
        """What the output layer reads for each stream [B, H] (the top state, or its attention
        vector; state.alpha then holds the attention used)."""
        raise NotImplementedError

    def log_probs(self, state: DecoderState) -> np.ndarray:
        """log10 P(next token) [B, V], into state.lp (reused while the number of streams
        stays: the next call overwrites it)."""
        top = self.readout(state)
        return self.output.log_probs(top, out=self._lp_buffer(state), scale=LOG10E,
                                     packs=state.packs)

    def top_log_probs(self, state: DecoderState, k: int):
        """The min(k, V) most probable next tokens of each stream, best first, and their log10
        probabilities: (ids [B, k] int64, values [B, k]), those of log_probs bit for bit, without
        writing the [B, V] array (state.lp is its scratch). decoding/beam.py's first cut."""
        top = self.readout(state)
        return self.output.top_log_probs(top, k, scale=LOG10E, packs=state.packs,
                                         work=self._lp_buffer(state))

    def _lp_buffer(self, state: DecoderState) -> np.ndarray:
        if state.lp is None or state.lp.shape[0] != state.batch:
            state.lp = np.empty((state.batch, self.target_vocab_size), self.dtype)
        return state.lp

    def load_tensors(self, path, tensors: dict[str, np.ndarray]) -> None:
        """Copy the architecture's tensors from a model file's `tensors` (ModelFileError when
        one is missing, of another shape, or not finite)."""
        for name, shape in self.arch.tensor_shapes():
            if name not in tensors:
                raise ModelFileError(f"{path}: tensor {name} is missing (damaged file)")
            t = tensors[name]
            if tuple(t.shape) != tuple(shape):
                raise ModelFileError(f"{path}: tensor {name} has shape {list(t.shape)}, the "
                                     f"architecture needs {list(shape)}")
            if not np.all(np.isfinite(t)):
                raise ModelFileError(f"{path}: tensor {name} holds NaN or infinite values")
            self.p[name][...] = t
