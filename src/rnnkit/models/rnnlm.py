"""The recurrent language model: embedding -> RecurrentStack -> output layer (nn/).

Dimension letters (every shape comment uses them):
  T time steps of a window, B batch (parallel streams or sentences), E embedding size,
  H hidden size, G gate rows of a layer (4H for an LSTM, H for the tanh RNN), V vocabulary,
  L layers, P parameters (the length of the flat buffer), N rows of the output layer (T*B).

Cells (`model_type`), see nn/recurrent.py: lstm, lstm-peephole, lstm-nofg, rnn.

All parameters live in ONE flat float32 buffer (nn/params.py); every tensor is a view into it,
so an optimizer update or the gradient norm is a single pass over one array, and a checkpoint is
one tensor. Tensor names and shapes are PyTorch's word-language-model ones (STYLE.md):

  encoder.weight        [V, E]
  rnn.weight_ih_l{k}    [G, E] for k = 0, [G, H] above     (gate order i, f, g, o)
  rnn.weight_hh_l{k}    [G, H]
  rnn.bias_ih_l{k}      [G]
  rnn.bias_hh_l{k}      [G]
  rnn.weight_peep_l{k}  [3, H]  lstm-peephole only (rows i, f, o); PyTorch has no such tensor
  decoder.weight        [V, H]  (with tied weights it is encoder.weight, saved under both names)
  decoder.bias          [V]

or, with the adaptive softmax (output = "adaptive"; PyTorch's AdaptiveLogSoftmaxWithLoss names,
C0 = cutoffs[0] head words, K clusters, D_i = H // div_value^(i+1), S_i words of cluster i):
  decoder.head.weight        [C0 + K, H]
  decoder.head.bias          [C0 + K]   only with head_bias
  decoder.tail.{i}.0.weight  [D_i, H]
  decoder.tail.{i}.1.weight  [S_i, D_i]

or, with the class-factored softmax (output = "classes"; K classes, class i = ids
[cutoffs[i], cutoffs[i+1]), cutoffs[0] = 0):
  decoder.head.weight        [K, H]
  decoder.tail.{i}.weight    [S_i, H]

so a model file loads into a PyTorch `nn.LSTM` / `nn.RNN` language model with `load_state_dict`.
(These flat names are the word-LM's only; models with a real encoder and decoder nest theirs,
e.g. `encoder.rnn.weight_ih_l0_reverse`.)

Training samples are x = (<s>, z1 .. zT) and y = (z1 .. zT, </s>); in a training stream the input
after a sentence's </s> is the next sentence's <s>, with the hidden state carried across.
The loss of a window is the cross-entropy (natural log) summed over the window's time steps and
averaged over the batch (Zaremba et al. 2014: their learning rate 1.0 assumes it).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .. import modelfile
from ..errors import ModelFileError, RnnkitError
from ..nn.backend import held_threads, kernels
from ..nn.output import (
    LOG10E,
    AdaptiveSoftmax,
    ClassSoftmax,
    FullSoftmax,
    adaptive_softmax_shapes,
    check_class_starts,
    check_cutoffs,
    class_softmax_shapes,
    full_softmax_shapes,
)
from ..nn.optim import SparseRows
from ..nn.params import FlatParameters, ParamLayout
from ..nn.recurrent import CELLS, RecurrentStack, gate_rows, stack_shapes
from ..text.vocab import BOS, EOS, SPECIALS, UNK, Tokenizer, Vocab
from .protocol import LanguageModel, advance_ids

MODEL_TYPES = CELLS
OUTPUTS = ("full", "adaptive", "classes")  # the output layers (nn/output.py)
SCORE_POSITIONS = 1 << 15  # at most this many padded positions [T x B] per scoring batch
SCORE_WINDOW = 256    # steps per window kernel call when scoring long sentences


@dataclass(frozen=True)
class Architecture:
    """What fixes the shapes of the tensors (and the cell's equations)."""

    model_type: str
    vocab_size: int
    emb: int
    hidden: int
    layers: int
    tie_weights: bool = False
    dropout: float = 0.0  # on the non-recurrent connections, while training only
    output: str = "full"             # "full", "adaptive" or "classes" (files without it: full)
    cutoffs: tuple[int, ...] = ()    # adaptive: the head's size and the clusters' starts;
    #                                  classes: each class's first id (0 first)
    div_value: float = 4.0           # adaptive only: D_i = H // div_value^(i+1)
    head_bias: bool = False          # adaptive only: a bias on the head (PyTorch's default: no)

    def __post_init__(self):
        object.__setattr__(self, "cutoffs", tuple(int(c) for c in self.cutoffs))
        if self.model_type not in MODEL_TYPES:
            raise RnnkitError(f"unknown recurrent model type {self.model_type!r}: use one of "
                              f"{', '.join(MODEL_TYPES)}")
        for name in ("vocab_size", "emb", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise RnnkitError(f"--{name.replace('_', '-')} must be at least 1, got "
                                  f"{getattr(self, name)}")
        if self.vocab_size < len(SPECIALS):
            raise RnnkitError(f"a vocabulary needs at least {len(SPECIALS)} tokens")
        if self.tie_weights and self.emb != self.hidden:
            raise RnnkitError(f"--tie-weights needs --emb equal to --hidden (got {self.emb} and "
                              f"{self.hidden}): the decoder reuses the [V, E] embedding as [V, H]")
        if not 0.0 <= self.dropout < 1.0:
            raise RnnkitError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.output not in OUTPUTS:
            raise RnnkitError(f"unknown output layer {self.output!r}: use one of "
                              f"{', '.join(OUTPUTS)}")
        if self.output == "adaptive":
            if self.tie_weights:
                raise RnnkitError("--tie-weights needs the full softmax (--output full): the "
                                  "adaptive softmax has no [V, H] matrix to share")
            try:
                check_cutoffs(self.vocab_size, self.hidden, self.cutoffs, self.div_value)
            except ValueError as e:
                raise RnnkitError(f"--cutoffs: {e}") from None
        elif self.output == "classes":
            if self.tie_weights:
                raise RnnkitError("--tie-weights needs the full softmax (--output full): the "
                                  "class softmax has no [V, H] matrix to share")
            try:
                check_class_starts(self.vocab_size, self.cutoffs)
            except ValueError as e:
                raise RnnkitError(f"the word classes: {e}") from None
        elif self.cutoffs:
            raise RnnkitError("--cutoffs applies to --output adaptive only")

    @property
    def lstm(self) -> bool:
        return self.model_type != "rnn"

    @property
    def peephole(self) -> bool:
        return self.model_type == "lstm-peephole"

    @property
    def forget_gate(self) -> bool:
        return self.model_type != "lstm-nofg"

    @property
    def gate_rows(self) -> int:
        return gate_rows(self.model_type, self.hidden)

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The parameters, in the order of the flat buffer, with PyTorch's names and shapes."""
        V, E, H = self.vocab_size, self.emb, self.hidden
        return ([("encoder.weight", (V, E))]
                + stack_shapes(self.model_type, E, H, self.layers, prefix="rnn.")
                + self.output_shapes())

    def output_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        V, H = self.vocab_size, self.hidden
        if self.output == "adaptive":
            return adaptive_softmax_shapes(V, H, self.cutoffs, self.div_value, self.head_bias,
                                           prefix="decoder.")
        if self.output == "classes":
            return class_softmax_shapes(V, H, self.cutoffs, prefix="decoder.")
        return full_softmax_shapes(V, H, prefix="decoder.", tied=self.tie_weights)

    def layout(self) -> ParamLayout:
        """The flat buffer's layout: name -> (offset, shape), and its length P."""
        return ParamLayout(self.tensor_shapes(),
                           aliases={"decoder.weight": "encoder.weight"} if self.tie_weights
                           else None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cutoffs"] = list(self.cutoffs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        return cls(model_type=d["model_type"], vocab_size=int(d["vocab_size"]), emb=int(d["emb"]),
                   hidden=int(d["hidden"]), layers=int(d["layers"]),
                   tie_weights=bool(d.get("tie_weights", False)),
                   dropout=float(d.get("dropout", 0.0)),
                   # files written before the adaptive softmax have no such fields: full softmax
                   output=str(d.get("output", "full")),
                   cutoffs=tuple(int(c) for c in d.get("cutoffs", ())),
                   div_value=float(d.get("div_value", 4.0)),
                   head_bias=bool(d.get("head_bias", False)))


def views(flat: np.ndarray, arch: Architecture) -> dict[str, np.ndarray]:
    """Views of the flat buffer [P] per tensor name (decoder.weight is encoder.weight when tied)."""
    return arch.layout().views(flat)


class RecurrentState:
    """The context of B streams: h [L, B, H] and, for an LSTM, c [L, B, H], plus the work buffers
    the single-step kernels use, so that advancing allocates nothing."""

    __slots__ = ("h", "c", "x", "work", "ids", "lp", "packs")

    def __init__(self, arch: Architecture, batch: int, dtype=np.float32):
        L, H = arch.layers, arch.hidden
        self.h = np.zeros((L, batch, H), dtype)                               # [L, B, H]
        self.c = np.zeros((L, batch, H), dtype) if arch.lstm else None        # [L, B, H]
        self.x = np.empty((batch, arch.emb), dtype)                           # [B, E]
        self.work = np.empty((batch, arch.gate_rows), dtype)                  # [B, G]
        self.ids = np.empty(batch, np.intp)                                   # [B]
        self.lp = None  # [B, V] log_probs' output, allocated on first use
        self.packs = {}  # the weights packed for this run (nn.recurrent.RecurrentStack.step)

    @property
    def batch(self) -> int:
        return self.h.shape[1]

    def copy(self) -> "RecurrentState":
        new = object.__new__(RecurrentState)
        new.h = self.h.copy()
        new.c = None if self.c is None else self.c.copy()
        new.x, new.work, new.ids = self.x.copy(), self.work.copy(), self.ids.copy()
        new.lp = None
        new.packs = self.packs
        return new

    def select(self, rows) -> "RecurrentState":
        """A new state holding only the given streams (e.g. the sentences still unfinished)."""
        rows = np.asarray(rows)
        new = object.__new__(RecurrentState)
        new.h = np.take(self.h, rows, axis=1)   # a fresh C-ordered copy (faster than [:, rows])
        new.c = None if self.c is None else np.take(self.c, rows, axis=1)
        n = new.h.shape[1]
        new.x = np.empty((n, self.x.shape[1]), self.x.dtype)
        new.work = np.empty((n, self.work.shape[1]), self.work.dtype)
        new.ids = np.empty(n, np.intp)
        new.lp = None
        new.packs = self.packs
        return new


class RNNLM(FlatParameters, LanguageModel):
    """A recurrent language model; implements the protocol of models/protocol.py (log10 there).

    `backend` is the module of kernels (rnnkit.nn._kernels by default; tests pass
    rnnkit.nn.reference, with dtype float64 for finite differences of the whole model).
    """

    share_prefixes = True  # one output distribution per position: N-best prefixes are shared

    def __init__(self, arch: Architecture, vocab: Vocab, tokenizer: Tokenizer | None = None,
                 flat: np.ndarray | None = None, meta: dict | None = None, backend=None,
                 dtype=np.float32):
        if len(vocab) != arch.vocab_size:
            raise RnnkitError(f"the vocabulary has {len(vocab)} tokens but the architecture "
                              f"says {arch.vocab_size}")
        self.arch = arch
        self.model_type = arch.model_type
        self.vocab = vocab
        self.tokenizer = tokenizer or Tokenizer()
        self.meta = dict(meta or {})
        self.layout = arch.layout()
        P = self.layout.size
        self.dtype = np.dtype(dtype)
        if flat is None:
            flat = np.zeros(P, self.dtype)
        if flat.shape != (P,) or flat.dtype != self.dtype or not flat.flags.c_contiguous:
            raise RnnkitError(f"the flat parameter buffer must be a contiguous [{P}] "
                              f"{self.dtype} array")
        self.flat = flat                      # [P] all parameters
        self.p = self.layout.views(self.flat)  # name -> view
        self._grad = None                     # [P] the gradient, allocated on first use
        self.g = None                         # name -> view of the gradient
        self.backend = kernels() if backend is None else backend
        self._build()
        self._eval_caches = [None] * arch.layers  # the stack's buffers for passes without grads
        self._sparse = False                  # set_sparse_grad
        self._emb_rows = None                 # the embedding rows the last window wrote

    def _build(self) -> None:
        """The recurrent stack and output layer over the parameter (and gradient) views."""
        a = self.arch
        self.stack = RecurrentStack(a.model_type, a.emb, a.hidden, a.layers, self.backend,
                                    self.p, self.g, prefix="rnn.")
        if a.output == "adaptive":
            self.output = AdaptiveSoftmax(a.vocab_size, a.hidden, a.cutoffs, self.backend, self.p,
                                          self.g, prefix="decoder.", div_value=a.div_value,
                                          head_bias=a.head_bias)
        elif a.output == "classes":
            self.output = ClassSoftmax(a.vocab_size, a.hidden, a.cutoffs, self.backend, self.p,
                                       self.g, prefix="decoder.")
        else:
            self.output = FullSoftmax(a.vocab_size, a.hidden, self.backend, self.p, self.g,
                                      prefix="decoder.", tied=a.tie_weights)

    # --- training: forward and backward over one window ----------------------------------------
    def zero_state(self, batch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(h [L, B, H], c [L, B, H] or None): the state before any input."""
        return self.stack.zero_state(batch, self.dtype)

    def forward_backward(self, x_ids: np.ndarray, y_ids: np.ndarray, h: np.ndarray,
                         c: np.ndarray | None, scale: float,
                         rng: np.random.Generator | None = None) -> float:
        """Loss and gradients of one truncated-BPTT window.

        x_ids, y_ids [T, B] inputs and targets; h, c [L, B, H] the state carried in, replaced in
        place by the state after the window (the gradient does not flow back into the previous
        window: truncated BPTT). Returns the cross-entropy summed over the T*B tokens (natural
        log); self.grad receives the gradient of scale * that sum. With rng, dropout is applied
        to the non-recurrent connections only -- the embedding output, between layers and
        below the decoder (Zaremba et al. 2014, section 3) -- never to h_{t-1} -> h_t.
        """
        a, K = self.arch, self.backend
        self.grad  # allocates the gradient buffer (and binds the layers to it) on first use
        T, B = x_ids.shape
        N = T * B
        drop = rng is not None and a.dropout > 0
        x = K.embedding_forward(x_ids, self.p["encoder.weight"])          # [T, B, E]
        # masks[k] multiplies layer k's input, masks[L] the top layer's output
        masks = None
        if drop:
            masks = [self._dropout_mask(rng, (T, B, a.emb if k == 0 else a.hidden))
                     for k in range(a.layers + 1)]
        top, hT, cT = self.stack.forward(x, h, c, masks=masks[:-1] if drop else None)
        if drop:
            top = top * masks[-1]
        loss = self.output.loss_forward(top.reshape(N, a.hidden), y_ids.reshape(N))
        dtop, dweight_tied = self.output.loss_backward(scale)              # [N, H]
        dtop = dtop.reshape(T, B, a.hidden)
        if drop:
            dtop = dtop * masks[-1]
        dx, _, _ = self.stack.backward(dtop, masks=masks[:-1] if drop else None)  # truncated BPTT
        gemb = self.g["encoder.weight"]
        if self._sparse and self._emb_rows is not None:
            gemb[self._emb_rows] = 0   # the rest of the block is still zero
            K.embedding_backward(dx, x_ids, a.vocab_size, out=gemb, accumulate=True)
        else:
            K.embedding_backward(dx, x_ids, a.vocab_size, out=gemb)
        if self._sparse:
            self._emb_rows = np.unique(x_ids)
        if dweight_tied is not None:
            gemb += dweight_tied
        h[...] = hT
        if c is not None:
            c[...] = cT
        return float(loss)

    def set_sparse_grad(self, on: bool) -> None:
        """With `on`, forward_backward keeps the embedding's gradient zero outside the rows of
        the window's ids, and clears only those rows the next time; grad_rows() names them, so
        that clipping and SGD skip the rest of the [V, E] block (nn/optim.py). Only for a caller
        that changes the gradient between windows by scaling it at most (the trainer on one
        process: an MPI allreduce adds the other ranks' rows). Tied weights stay dense."""
        self._sparse = bool(on) and not self.arch.tie_weights
        self._emb_rows = None

    def grad_rows(self) -> tuple[SparseRows, ...]:
        """The gradient's row-sparse blocks after forward_backward (none unless set_sparse_grad
        is on)."""
        if not self._sparse or self._emb_rows is None:
            return ()
        start, (V, E) = self.layout.offsets["encoder.weight"]
        return (SparseRows(start, V, E, self._emb_rows),)

    def forward_loss(self, x_ids: np.ndarray, y_ids: np.ndarray, h: np.ndarray,
                     c: np.ndarray | None) -> float:
        """The summed cross-entropy (natural log) of a window, no dropout, no gradients; h and c
        [L, B, H] are replaced in place by the state after the window."""
        T, B = x_ids.shape
        top = self._stack_forward(x_ids, h, c, self._eval_caches)
        return float(self.output.loss_forward(top.reshape(T * B, self.arch.hidden),
                                              y_ids.reshape(T * B)))

    def _stack_forward(self, x_ids: np.ndarray, h: np.ndarray, c: np.ndarray | None,
                       caches: list) -> np.ndarray:
        """Embedding and every layer over x_ids [T, B], no dropout: the last layer's h
        [T, B, H]; h and c [L, B, H] are replaced in place by the state after the window and
        caches[k] by layer k's kernel cache (reused across calls)."""
        x = self.backend.embedding_forward(x_ids, self.p["encoder.weight"])
        top, h[...], cT = self.stack.forward(x, h, c, caches=caches)
        if c is not None:
            c[...] = cT
        return top

    def top_hidden(self, x_ids: np.ndarray, h: np.ndarray | None = None,
                   c: np.ndarray | None = None, window: int | None = None) -> np.ndarray:
        """The last layer's h [T, B, H] over the inputs x_ids [T, B], from the zero state or
        (h, c) [L, B, H] (left unchanged). Long inputs run in windows of `window` steps with the
        state carried (the same numbers; the kernels' buffers stay small)."""
        a = self.arch
        T, B = x_ids.shape
        window = window or SCORE_WINDOW
        if h is None:
            h, c = self.zero_state(B)
        h = h.copy()
        c = None if c is None else c.copy()
        out = np.empty((T, B, a.hidden), self.dtype)  # [T, B, H]
        caches = [None] * a.layers
        for s in range(0, T, window):
            out[s:s + window] = self._stack_forward(np.ascontiguousarray(x_ids[s:s + window]),
                                                    h, c, caches)
        return out

    # --- the LanguageModel protocol (log10) ----------------------------------------------------
    def start(self, batch: int) -> RecurrentState:
        """The state of `batch` streams after <s>."""
        state = RecurrentState(self.arch, batch, self.dtype)
        state.ids[:] = BOS
        return self.step(state)

    def advance(self, state: RecurrentState, ids: np.ndarray) -> RecurrentState:
        """Feed one token per stream. The state is updated IN PLACE and returned (the step
        kernels write h and c where they are; use state.copy() to branch)."""
        state.ids[:] = advance_ids(ids, state.batch, self.arch.vocab_size)
        return self.step(state)

    def step(self, state: RecurrentState) -> RecurrentState:
        """Feed state.ids (one token per stream, already checked) through every layer, in place."""
        self.stack.step_tokens(self.p["encoder.weight"], state.ids, state.x, state.h, state.c,
                               state.work, state.packs)
        return state

    def log_probs(self, state: RecurrentState) -> np.ndarray:
        """log10 P(next token) [B, V] for every stream.

        The array is the state's own buffer (no allocation per step): the next log_probs call on
        the same state overwrites it; copy it to keep it.
        """
        return self.output.log_probs(state.h[-1], out=self._lp_buffer(state), scale=LOG10E,
                                     packs=state.packs)

    def top_log_probs(self, state: RecurrentState, k: int):
        """The min(k, V) most probable next tokens of each stream, best first, and their log10
        probabilities: (ids [B, k] int64, values [B, k]), those of log_probs bit for bit, without
        writing the [B, V] array (state.lp is its scratch). decoding/beam.py's first cut."""
        return self.output.top_log_probs(state.h[-1], k, scale=LOG10E, packs=state.packs,
                                         work=self._lp_buffer(state))

    def _lp_buffer(self, state: RecurrentState) -> np.ndarray:
        """The state's [B, V] buffer of log_probs (the logits of top_log_probs), made once."""
        if state.lp is None:
            state.lp = np.empty((state.batch, self.arch.vocab_size), self.dtype)
        return state.lp

    @held_threads
    def token_log_probs(self, sentences: list[np.ndarray], max_batch: int = 64
                        ) -> list[np.ndarray]:
        """log10 p of z1..zT and </s> for each sentence, from <s> (zero state before it).

        Sentences are sorted by length and run in batches of up to max_batch through the
        window kernels (padded at the end, which cannot change earlier positions); the output
        layer then runs only on the real positions (packed).
        """
        a = self.arch
        n = len(sentences)
        out: list[np.ndarray | None] = [None] * n
        lengths = np.array([len(s) for s in sentences], np.int64)
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < n:
            T = int(lengths[order[start]]) + 1
            # at most max_batch sentences, and at most SCORE_POSITIONS padded positions
            B = max(1, min(max_batch, SCORE_POSITIONS // T, n - start))
            idx = order[start:start + B]
            start += B
            x_ids = np.full((T, B), UNK, np.int64)   # [T, B] <s> z1 .. zT, padded
            y_ids = np.full((B, T), UNK, np.int64)   # [B, T] z1 .. zT </s>, padded
            valid = np.zeros((B, T), bool)           # [B, T] real positions
            x_ids[0] = BOS
            for b, i in enumerate(idx.tolist()):
                s = np.asarray(sentences[i], np.int64)
                m = len(s)
                if m and (s.min() < 0 or s.max() >= a.vocab_size):
                    raise RnnkitError(f"token ids must be in [0, {a.vocab_size})")
                x_ids[1:m + 1, b] = s
                y_ids[b, :m] = s
                y_ids[b, m] = EOS
                valid[b, :m + 1] = True
            top = self.top_hidden(x_ids)                                  # [T, B, H]
            rows = np.ascontiguousarray(top.transpose(1, 0, 2)[valid])    # [R, H] by sentence
            lp = self.output.target_log_probs(rows, y_ids[valid])         # [R] natural log
            lp *= LOG10E
            ends = np.cumsum(lengths[idx] + 1)
            for b, i in enumerate(idx.tolist()):
                out[i] = lp[ends[b] - lengths[i] - 1:ends[b]]
        return out

    # --- files ---------------------------------------------------------------------------------
    def metadata(self) -> dict:
        meta = dict(self.meta)
        meta.update({
            "model_type": self.model_type,
            "architecture": self.arch.to_dict(),
            "vocab": {"size": len(self.vocab), "sha256": self.vocab.sha256(),
                      "tokens": self.vocab.tokens, "counts": self.vocab.counts.tolist()},
            "tokenizer": self.tokenizer.to_dict(),
            "tensors": {
                "names": "PyTorch word-language-model names: encoder.weight [V, E], "
                         "rnn.weight_ih_l{k} [G, E|H], rnn.weight_hh_l{k} [G, H], "
                         "rnn.bias_ih_l{k} [G], rnn.bias_hh_l{k} [G], decoder.weight [V, H], "
                         "decoder.bias [V]; G = 4H for LSTMs (gate order i, f, g, o), H for rnn",
                "adaptive": "with output adaptive, instead of decoder.weight and decoder.bias: "
                            "decoder.head.weight [C0 + K, H] (decoder.head.bias [C0 + K] with "
                            "head_bias), decoder.tail.{i}.0.weight [H // div_value^(i+1), H], "
                            "decoder.tail.{i}.1.weight [cluster size, H // div_value^(i+1)] "
                            "(PyTorch's AdaptiveLogSoftmaxWithLoss; C0 = cutoffs[0])",
                "classes": "with output classes, instead of decoder.weight and decoder.bias: "
                           "decoder.head.weight [K, H] (one row per class), "
                           "decoder.tail.{i}.weight [class size, H]; class i holds ids "
                           "cutoffs[i] .. cutoffs[i+1] - 1 (Mikolov et al. 2011)",
                "peephole": "rnn.weight_peep_l{k} [3, H]: diagonal peephole weights of the "
                            "input, forget and output gates (rows i, f, o; Gers et al. 2002)",
            },
        })
        return meta



# --- loading -------------------------------------------------------------------------------------
def _check_tensors(path, tensors: dict[str, np.ndarray], arch: Architecture) -> None:
    for name, shape in arch.tensor_shapes():
        if name not in tensors:
            raise ModelFileError(f"{path}: tensor {name} is missing (damaged file, or another "
                                 f"architecture)")
        t = tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise ModelFileError(f"{path}: tensor {name} has shape {list(t.shape)}, the "
                                 f"architecture needs {list(shape)}")


def from_file_parts(path, tensors: dict[str, np.ndarray], meta: dict, backend=None) -> RNNLM:
    """An RNNLM from the tensors and metadata of an rnnkit model file."""
    try:
        arch = Architecture.from_dict(meta["architecture"])
        vmeta = meta["vocab"]
        vocab = Vocab(vmeta["tokens"], vmeta.get("counts"))
        tokenizer = Tokenizer.from_dict(meta.get("tokenizer", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: incomplete recurrent-model metadata ({e})") from None
    except RnnkitError as e:
        raise ModelFileError(f"{path}: {e}") from None
    if len(vocab) != arch.vocab_size:
        raise ModelFileError(f"{path}: the vocabulary has {len(vocab)} tokens but the "
                             f"architecture {arch.vocab_size}")
    _check_tensors(path, tensors, arch)
    model = RNNLM(arch, vocab, tokenizer, meta=meta, backend=backend)
    for name, _ in arch.tensor_shapes():
        t = tensors[name]
        if not np.all(np.isfinite(t)):
            raise ModelFileError(f"{path}: tensor {name} holds NaN or infinite values")
        model.p[name][...] = t
    return model


def load(path: str | os.PathLike, backend=None) -> RNNLM:
    """Load an rnnkit recurrent model file."""
    tensors, meta = modelfile.read(path)
    if meta.get("model_type") not in MODEL_TYPES:
        raise ModelFileError(f"{path}: a {meta.get('model_type')!r} model, not a recurrent one")
    return from_file_parts(path, tensors, meta, backend=backend)
