"""A stack of recurrent layers over views of a flat parameter buffer: the piece that a language
model, a translation encoder or decoder and a caption decoder all reuse.

Dimension letters: T time steps, B batch, E input size, H hidden size, L layers, G gate rows of a
layer (4H for an LSTM, H for the tanh RNN).

Cells:
  lstm           LSTM with forget gate, as PyTorch's nn.LSTM (gate order i, f, g, o)
  lstm-peephole  LSTM with diagonal peephole weights (Gers, Schraudolph & Schmidhuber 2002)
  lstm-nofg      the original memory block without a forget gate (Hochreiter & Schmidhuber 1997)
  rnn            tanh (Elman) RNN, as PyTorch's nn.RNN

Tensors, PyTorch's names under the stack's prefix (e.g. "rnn.", "encoder.rnn.") and suffix
("" or "_reverse" for the backward direction of a bidirectional encoder):
  weight_ih_l{k}    [G, E] for k = 0, [G, H] above
  weight_hh_l{k}    [G, H]
  bias_ih_l{k}      [G]
  bias_hh_l{k}      [G]
  weight_peep_l{k}  [3, H]  lstm-peephole only: rows i, f, o; PyTorch has no such tensor
A lstm-nofg stack keeps the forget-gate rows (unused, zero gradients) so its shapes stay PyTorch's.

The stack runs whole windows through the compiled window kernels (forward caches what backward
needs) and single steps through the step kernels (generation, beam search). Backward returns the
gradients with respect to the input and to the initial state (dh0, dc0), so a gradient can flow
into whatever produced them: an encoder's final state, an image projection, the previous window.
"""
from __future__ import annotations

import numpy as np

CELLS = ("lstm", "lstm-peephole", "lstm-nofg", "rnn")


def gate_rows(cell: str, hidden: int) -> int:
    """G: the rows of a layer's weight matrices."""
    return hidden if cell == "rnn" else 4 * hidden


def stack_shapes(cell: str, E: int, H: int, L: int, prefix: str = "rnn.", suffix: str = "",
                 first_layer: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of the stack's tensors, in buffer order. first_layer numbers the layers
    from k0 (a bidirectional encoder is one single-layer stack per layer and direction, so its
    names are nn.LSTM(bidirectional=True)'s: layer k's input is both directions of layer k-1)."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}: use one of {', '.join(CELLS)}")
    G = gate_rows(cell, H)
    shapes = []
    for k in range(first_layer, first_layer + L):
        shapes += [(f"{prefix}weight_ih_l{k}{suffix}", (G, E if k == first_layer else H)),
                   (f"{prefix}weight_hh_l{k}{suffix}", (G, H)),
                   (f"{prefix}bias_ih_l{k}{suffix}", (G,)),
                   (f"{prefix}bias_hh_l{k}{suffix}", (G,))]
        if cell == "lstm-peephole":
            shapes.append((f"{prefix}weight_peep_l{k}{suffix}", (3, H)))
    return shapes


# the most a run's token table may hold: 64 MB (a Multi30k decoder's 8,000 words take 32 MB
# whole; a large LM sampling for long would otherwise keep growing it)
TOKEN_TABLE_BYTES = 64 << 20


class _TokenTable:
    """RecurrentStack.token_rows's table: rows [n, G] of the tokens fed so far, slot [V] each
    token's row (-1: not yet); whole: every token's row, in token order."""

    def __init__(self, V: int, G: int):
        self.slot = np.full(V, -1, np.int64)
        self.rows = np.empty((min(V, 64), G), np.float32)
        self.n = 0
        self.whole = False

    def add(self, tokens: np.ndarray, rows: np.ndarray) -> None:
        n = self.n + len(tokens)
        if n > len(self.rows):   # doubled (at most V rows)
            grown = np.empty((min(len(self.slot), max(n, 2 * len(self.rows))),
                              self.rows.shape[1]), np.float32)
            grown[:self.n] = self.rows[:self.n]
            self.rows = grown
        self.rows[self.n:n] = rows
        self.slot[tokens] = np.arange(self.n, n)
        self.n = n


class RecurrentStack:
    """L recurrent layers of one cell type; layer k's input is layer k-1's output h.

    `params` (and `grads`, for training) are the model's name -> view dicts; the stack picks its
    own tensors by the names of stack_shapes(cell, E, H, L, prefix, suffix, first_layer).
    `backend` is the kernel module (rnnkit.nn._kernels, or rnnkit.nn.reference in tests).
    """

    def __init__(self, cell: str, E: int, H: int, L: int, backend, params: dict,
                 grads: dict | None = None, prefix: str = "rnn.", suffix: str = "",
                 first_layer: int = 0):
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}: use one of {', '.join(CELLS)}")
        self.cell, self.E, self.H, self.L = cell, E, H, L
        self.backend = backend
        self.lstm = cell != "rnn"
        self.peephole = cell == "lstm-peephole"
        self.forget_gate = cell != "lstm-nofg"
        self.G = gate_rows(cell, H)
        names = [f"{prefix}{{}}_l{k}{suffix}" for k in range(first_layer, first_layer + L)]
        # per layer: (w_ih, w_hh, b_ih, b_hh) and the peephole weights or None
        self._w = [tuple(params[n.format(t)] for t in ("weight_ih", "weight_hh", "bias_ih",
                                                       "bias_hh")) for n in names]
        self._peep = [params[n.format("weight_peep")] if self.peephole else None for n in names]
        self._dw = None if grads is None else [
            tuple(grads[n.format(t)] for t in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for n in names]
        self._dpeep = None if grads is None or not self.peephole else [
            grads[n.format("weight_peep")] for n in names]
        self.caches = [None] * L  # the window kernels' caches of the last forward, for backward

    # --- windows ---------------------------------------------------------------------------------
    def zero_state(self, batch: int, dtype=np.float32):
        """(h [L, B, H], c [L, B, H] or None): the state before any input."""
        h = np.zeros((self.L, batch, self.H), dtype)
        return h, (np.zeros((self.L, batch, self.H), dtype) if self.lstm else None)

    def layer_forward(self, k: int, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None,
                      cache=None, batch_sizes=None):
        """Layer k over a window: (h [T, B, H], hT [B, H], cT [B, H] or None, cache); with
        batch_sizes x and h hold the rows of sequences of different lengths (steps_of)."""
        K = self.backend
        if self.lstm:
            return K.lstm_forward(x, h0, c0, *self._w[k], w_peep=self._peep[k],
                                  forget_gate=self.forget_gate, cache=cache,
                                  batch_sizes=batch_sizes)
        hs, hT, cache = K.rnn_forward(x, h0, *self._w[k], cache=cache, batch_sizes=batch_sizes)
        return hs, hT, None, cache

    def forward(self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None, *,
                masks: list | None = None, caches: list | None = None, batch_sizes=None):
        """The stack over a window: (h_top [T, B, H], hT [L, B, H], cT [L, B, H] or None).

        x [T, B, E] the inputs; h0, c0 [L, B, H] the state before the window (left unchanged:
        the kernels may keep them in their caches for backward). masks[k] (optional, [T, B,
        E or H]) multiplies layer k's input -- dropout on the non-recurrent connections
        (Zaremba et al. 2014), never on h_{t-1} -> h_t. caches: the list of L kernel caches to
        reuse and fill; by default the stack's own, which backward reads (pass another list for
        passes without gradients). batch_sizes [T]: sequences of different lengths, longest
        first; x [N, E] and h_top [N, H] then hold their real positions only, step after step
        (reference.steps_of), and hT, cT each sequence's state after its last step.
        """
        caches = self.caches if caches is None else caches
        B = h0.shape[1]
        hT = np.empty((self.L, B, self.H), h0.dtype)
        cT = np.empty((self.L, B, self.H), h0.dtype) if self.lstm else None
        for k in range(self.L):
            if masks is not None:
                x = x * masks[k]
            x, hT[k], ck, caches[k] = self.layer_forward(k, x, h0[k],
                                                         None if c0 is None else c0[k], caches[k],
                                                         batch_sizes)
            if cT is not None:
                cT[k] = ck
        return x, hT, cT

    def backward(self, dh_top: np.ndarray, dhT: np.ndarray | None = None,
                 dcT: np.ndarray | None = None, *, masks: list | None = None,
                 caches: list | None = None, accumulate: bool = False, batch_sizes=None):
        """Back through the last forward (with the stack's own caches, or `caches`).

        dh_top [T, B, H] (with the forward's batch_sizes: [N, H]) the loss gradient of the top
        layer's outputs; dhT, dcT [L, B, H] that of the final state (None: zero, as truncated
        BPTT has it). Writes every weight gradient
        into the grads views (with accumulate, adds to them). Returns (dx [T, B, E],
        dh0 [L, B, H], dc0 [L, B, H] or None).
        """
        K, L, H = self.backend, self.L, self.H
        caches = self.caches if caches is None else caches
        B = dh_top.shape[1] if batch_sizes is None else int(batch_sizes[0])
        dtype = dh_top.dtype
        zeros = None
        if dhT is None or (self.lstm and dcT is None):
            zeros = np.zeros((B, H), dtype)
        dh0 = np.empty((L, B, H), dtype)
        dc0 = np.empty((L, B, H), dtype) if self.lstm else None
        dh = dh_top
        for k in reversed(range(L)):
            dhk = zeros if dhT is None else dhT[k]
            if self.lstm:
                dck = zeros if dcT is None else dcT[k]
                dx, dh0[k], dc0[k], dw_ih, dw_hh, db_ih, db_hh, dw_peep = K.lstm_backward(
                    dh, dhk, dck, caches[k])
                if self.peephole:
                    if accumulate:
                        self._dpeep[k] += dw_peep
                    else:
                        self._dpeep[k][...] = dw_peep
            else:
                dx, dh0[k], dw_ih, dw_hh, db_ih, db_hh = K.rnn_backward(dh, dhk, caches[k])
            g = self._dw[k]
            if accumulate:
                g[0][...] += dw_ih
                g[1][...] += dw_hh
                g[2][...] += db_ih
                g[3][...] += db_hh
            else:
                g[0][...] = dw_ih
                g[1][...] = dw_hh
                g[2][...] = db_ih
                g[3][...] = db_hh
            dh = dx * masks[k] if masks is not None else dx
        return dh, dh0, dc0

    # --- single steps with gradients (a decoder whose next input is its own output) ------------
    def step_forward(self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None, *,
                     masks: list | None = None):
        """One step x [B, E] through every layer, keeping what step_backward needs:
        (h_top [B, H], h [L, B, H], c [L, B, H] or None, caches). h0, c0 [L, B, H] are left
        unchanged (the caches keep them). masks[k] [1, B, E or H] as forward's.

        It is the window kernels' forward over a window of T = 1 (each step its own caches),
        the one-step cell of input feeding: the kernels and their numpy references are the
        window ones, checked by finite differences for every T."""
        caches = [None] * self.L
        top, h, c = self.forward(x[None], h0, c0, masks=masks, caches=caches)
        return top[0], h, c, caches

    def step_backward(self, dh_top: np.ndarray, dh: np.ndarray | None, dc: np.ndarray | None,
                      caches: list, *, masks: list | None = None):
        """Back through one step_forward: dh_top [B, H] the gradient of its top output, dh, dc
        [L, B, H] that of the state it made (from the later steps; None: zero). ADDS the weight
        gradients to the grads views (zero them before the last step's backward). Returns
        (dx [B, E], dh0 [L, B, H], dc0 [L, B, H] or None): the gradients of its input and of
        the state before it."""
        dx, dh0, dc0 = self.backward(dh_top[None], dh, dc, masks=masks, caches=caches,
                                     accumulate=True)
        return dx[0], dh0, dc0

    # --- single steps ----------------------------------------------------------------------------
    def step(self, x: np.ndarray, h: np.ndarray, c: np.ndarray | None, work: np.ndarray,
             packs: dict | None = None, table: np.ndarray | None = None) -> np.ndarray:
        """One input per stream, x [B, E], through every layer: h, c [L, B, H] are updated IN
        PLACE (work [B, G] is the kernels' scratch). Returns the top layer's h [B, H] (a view).

        packs: a dict that the caller keeps for one decoding run, while the weights do not
        change. A layer whose step runs on the packed GEMM (many streams) packs its weights
        into it on the first such step and reuses them (pack_weight), instead of packing them
        at every step; the results are the same bits.

        table: token_rows's table; x is then the streams' rows of it [B] (int64)."""
        K = self.backend
        for k in range(self.L):
            pk = self._packed(packs, k, x.shape[0]) if packs is not None else None
            t = table if k == 0 else None
            if self.lstm:
                K.lstm_step(x, h[k], c[k], *self._w[k], w_peep=self._peep[k],
                            forget_gate=self.forget_gate, gates=work, packed=pk, table=t)
            else:
                K.rnn_step(x, h[k], *self._w[k], work=work, packed=pk, table=t)
            x = h[k]
        return x

    def step_tokens(self, emb: np.ndarray, ids: np.ndarray, x: np.ndarray, h: np.ndarray,
                    c: np.ndarray | None, work: np.ndarray, packs: dict | None = None
                    ) -> np.ndarray:
        """step() on the embeddings emb[ids] [B, E] of one token per stream (ids [B]): looked
        up into x [B, E], or, where the step runs on the packed GEMM with packs, the first
        layer's input product read from the run's token table (token_rows; the same bits)."""
        tr = self.token_rows(emb, ids, packs)
        if tr is None:
            np.take(emb, ids, axis=0, out=x)
            return self.step(x, h, c, work, packs)
        return self.step(tr[1], h, c, work, packs, tr[0])

    def _packed(self, packs: dict, k: int, batch: int):
        """Layer k's weights packed into `packs` (made on the first step of `batch` streams
        that runs on the packed GEMM), or None while no step needs them."""
        pk = packs.get((id(self), k))
        if pk is None and self.backend.step_packs(batch, self.H if k else self.E, self.H,
                                                  4 if self.lstm else 1):
            w_ih, w_hh = self._w[k][:2]
            groups = 4 if self.lstm else 1   # weights packed per gate
            pk = packs[(id(self), k)] = (self.backend.pack_weight(w_ih, groups),
                                         self.backend.pack_weight(w_hh, groups))
        return pk

    def token_rows(self, emb: np.ndarray, ids: np.ndarray, packs: dict | None):
        """The first layer's input part x W_ih^T + b_ih + b_hh of the tokens `ids` [B] (rows of
        the embedding emb [V, E]), from a table that a decoding run fills as it goes: a token's
        row is computed the first time the run feeds it (input_table) and read after, so a
        search computes the product once per distinct token rather than once per stream and
        step (a vocabulary no larger than the streams is computed whole, in token order, on
        first use). Returns (table, rows [B] int64 into it) for step(table=...; x = rows), the
        same bits as a step given emb[ids]; or None when the step does not run on the packed
        GEMM (a few streams), there are no packs, or the tokens fed would take the table past
        TOKEN_TABLE_BYTES (the step then looks its embeddings up, the same bits)."""
        K, groups = self.backend, 4 if self.lstm else 1
        if packs is None or not K.step_packs(len(ids), self.E, self.H, groups):
            return None
        t = packs.get((id(self), "table"))
        if t is not None and t.whole:   # every token's row, in token order
            return t.rows, np.asarray(ids, np.int64)
        new = None
        whole = len(emb) <= len(ids) and len(emb) * self.G * 4 <= TOKEN_TABLE_BYTES
        if t is None or whole:
            t = packs[(id(self), "table")] = _TokenTable(len(emb), self.G)
            if whole:   # no more tokens than streams: all of them, in order
                new = np.arange(len(emb))
                t.whole = True
        if new is None:
            rows = t.slot[ids]
            if rows.min() >= 0:
                return t.rows[:t.n], rows
            new = np.unique(ids[rows < 0])   # tokens this run has not fed before
            if (t.n + len(new)) * self.G * 4 > TOKEN_TABLE_BYTES:
                return None   # a long run over a large vocabulary: the table stops growing
        w_ih, _, b_ih, b_hh = self._w[0]
        t.add(new, K.input_table(np.ascontiguousarray(emb[new]), w_ih, b_ih, b_hh, groups,
                                 self._packed(packs, 0, len(ids))[0]))
        return t.rows[:t.n], t.slot[ids]
