"""Sequence-to-sequence translation: a recurrent encoder-decoder, with or without attention.

Dimension letters: S source positions, T target positions, B batch (sentence pairs), E embedding
size, H hidden size (per direction), D encoder output size (2H bidirectional, else H), A
attention size (additive), L layers, Vs / Vt the source / target vocabularies, N the real (not
padding) target positions of a batch.

The two designs of the lecture (figures 8-21 and 8-22):
  --attention none     the encoder's final state is the ONE feature vector the decoder starts
                       from (Sutskever et al. 2014): h0 = tanh(W_b f + b_b) in every decoder
                       layer, f = the last source position's top state (with a bidirectional
                       encoder: [forward at the last position; backward at the first]).
  --attention dot | general | additive
                       the decoder starts the same way and at every step t also attends to all
                       the encoder's states s_1 .. s_S (Luong et al. 2015, global attention):
                       a_t = softmax_s(score(h_t, s_s)) over the real source positions,
                       c_t = sum_s a_ts s_s,  h~_t = tanh(W_c [c_t; h_t] + b_c)  (Luong eq. 5),
                       and the output layer reads h~_t instead of h_t. The scores: dot
                       h_t . s_s (needs D = H); general h_t . W_k s_s (Luong eq. 8);
                       additive v . tanh(W_q h_t + W_k s_s) (Bahdanau et al. 2015, eq. 6).
With --input-feeding (Luong et al. 2015, section 3.3) the attentional vector of the previous step
is part of the decoder's input: x_t = [E z_t; h~_{t-1}] (h~_0 = 0), so the decoder knows what
it attended to before; its first layer reads E + H inputs, and it runs one step at a time in
training too (each step's attention before the next step's cell).
A bidirectional encoder (--bidirectional) reads the source both ways; each direction runs the
compiled window kernels, the backward one on every sentence reversed within its own length (so
padding never comes first). Every source sentence ends with </s>; targets are read as x =
(<s>, z1 .. zT) and predicted as y = (z1 .. zT, </s>), as the language models do.

Tensors, nested PyTorch-style names (nn.LSTM's within each `rnn`):
  encoder.embedding.weight            [Vs, E]
  encoder.rnn.weight_ih_l{k}[_reverse] [G, E] for k = 0, [G, D] above; weight_hh, biases as nn.LSTM
  decoder.embedding.weight            [Vt, E]
  decoder.bridge.weight, .bias        [H, D], [H]
  decoder.rnn.weight_ih_l{k} ...      [G, E] for k = 0 ([G, E + H] input feeding), [G, H] above
  decoder.attention.key_layer.weight  [H, D] general, [A, D] additive
  decoder.attention.query_layer.weight [A, H]  additive
  decoder.attention.energy_layer.weight [1, A] additive
  decoder.att_vector.weight, .bias    [H, D + H], [H]  (with attention)
  decoder.output.weight, .bias        [Vt, H], [Vt]  (tied: decoder.embedding.weight, E = H)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..decoding.translate import TranslateOptions, translate_lines
from ..errors import ModelFileError, RnnkitError
from ..nn.attention import ATTENTIONS, Attention, attention_shapes, length_mask
from ..nn.backend import held_threads
from ..nn.output import LOG10E, FullSoftmax, full_softmax_shapes
from ..nn.params import ParamLayout
from ..nn.recurrent import CELLS, RecurrentStack, stack_shapes
from ..text.vocab import BOS, EOS, SPECIALS, Tokenizer, Vocab
from .conditioned import ConditionedDecoder, DecoderState
from .protocol import LanguageModel

MODEL_TYPE = "seq2seq"


@dataclass(frozen=True)
class Seq2SeqArchitecture:
    """What fixes the shapes of the tensors."""

    src_vocab_size: int
    trg_vocab_size: int
    emb: int = 256
    hidden: int = 256
    enc_layers: int = 1
    dec_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    attention: str = "general"
    attention_size: int = 0     # A of the additive score (0: H)
    tie_target: bool = False    # decoder.output.weight is decoder.embedding.weight (E = H)
    dropout: float = 0.0        # on embeddings, between layers and below the output layer
    input_feeding: bool = False  # h~_{t-1} joins the decoder's input at step t (attention only)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise RnnkitError(f"unknown --cell {self.cell!r}: use one of {', '.join(CELLS)}")
        if self.attention not in ATTENTIONS:
            raise RnnkitError(f"unknown --attention {self.attention!r}: use one of "
                              f"{', '.join(ATTENTIONS)}")
        for name in ("src_vocab_size", "trg_vocab_size", "emb", "hidden", "enc_layers",
                     "dec_layers"):
            if int(getattr(self, name)) < 1:
                raise RnnkitError(f"--{name.replace('_', '-')} must be at least 1, got "
                                  f"{getattr(self, name)}")
        if min(self.src_vocab_size, self.trg_vocab_size) < len(SPECIALS):
            raise RnnkitError(f"a vocabulary needs at least {len(SPECIALS)} tokens")
        if self.attention == "dot" and self.enc_size != self.hidden:
            raise RnnkitError("--attention dot compares decoder and encoder states directly, so "
                              "it needs a unidirectional encoder (or use general or additive)")
        if self.tie_target and self.emb != self.hidden:
            raise RnnkitError(f"--tie-weights needs --emb equal to --hidden (got {self.emb} and "
                              f"{self.hidden})")
        if not 0.0 <= self.dropout < 1.0:
            raise RnnkitError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.input_feeding and self.attention == "none":
            raise RnnkitError("--input-feeding feeds the attentional vector back: it needs "
                              "--attention dot, general or additive")

    @property
    def dec_input_size(self) -> int:
        """The decoder's first layer's input: E, or E + H with input feeding."""
        return self.emb + (self.hidden if self.input_feeding else 0)

    @property
    def enc_size(self) -> int:
        """D: the encoder's output size."""
        return 2 * self.hidden if self.bidirectional else self.hidden

    @property
    def att_size(self) -> int:
        return self.attention_size or self.hidden

    @property
    def directions(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        E, H, D, A = self.emb, self.hidden, self.enc_size, self.att_size
        shapes = [("encoder.embedding.weight", (self.src_vocab_size, E))]
        for k in range(self.enc_layers):
            for suffix in self.directions:
                shapes += stack_shapes(self.cell, E if k == 0 else D, H, 1, "encoder.rnn.",
                                       suffix, first_layer=k)
        shapes += [("decoder.embedding.weight", (self.trg_vocab_size, E)),
                   ("decoder.bridge.weight", (H, D)), ("decoder.bridge.bias", (H,))]
        shapes += stack_shapes(self.cell, self.dec_input_size, H, self.dec_layers,
                               "decoder.rnn.")
        shapes += attention_shapes(self.attention, D, H, A)
        shapes += full_softmax_shapes(self.trg_vocab_size, H, "decoder.output.",
                                      tied=self.tie_target)
        return shapes

    def layout(self) -> ParamLayout:
        return ParamLayout(self.tensor_shapes(),
                           aliases={"decoder.output.weight": "decoder.embedding.weight"}
                           if self.tie_target else None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Seq2SeqArchitecture":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


# ------------------------------------------------------------------------------------------------
# batches
# ------------------------------------------------------------------------------------------------
@dataclass
class PairBatch:
    """Sentence pairs padded into time-major arrays (padding: </s>, never read as a token: it
    comes after each sentence's end, is masked in attention and is not a target)."""

    src: np.ndarray        # [S, B] source ids, each sentence followed by </s>
    src_len: np.ndarray    # [B] real source positions (</s> included)
    trg_in: np.ndarray     # [T, B] <s> z1 .. zT
    trg_out: np.ndarray    # [T, B] z1 .. zT </s>
    valid: np.ndarray      # [T, B] real target positions

    @property
    def tokens(self) -> int:
        return int(self.valid.sum())

    @property
    def size(self) -> int:
        return self.src.shape[1]


def make_batch(sources: list[np.ndarray], targets: list[np.ndarray] | None) -> PairBatch:
    """Pad B sources (and targets, if given) without their </s> into a PairBatch."""
    B = len(sources)
    src_len = np.array([len(s) + 1 for s in sources], np.int64)
    S = int(src_len.max())
    src = np.full((S, B), EOS, np.int64)
    for b, s in enumerate(sources):
        src[:len(s), b] = s
    if targets is None:
        z = np.zeros((1, B), np.int64)
        return PairBatch(src, src_len, z, z, np.zeros((1, B), bool))
    trg_len = np.array([len(t) + 1 for t in targets], np.int64)
    T = int(trg_len.max())
    trg_in = np.full((T, B), EOS, np.int64)
    trg_out = np.full((T, B), EOS, np.int64)
    trg_in[0] = BOS
    for b, t in enumerate(targets):
        trg_in[1:len(t) + 1, b] = t
        trg_out[:len(t), b] = t
    valid = np.arange(T)[:, None] < trg_len[None, :]
    return PairBatch(src, src_len, trg_in, trg_out, valid)


def source_steps(lengths: np.ndarray, S: int):
    """The real positions of padded sources [S, B] as the encoder's layers take them (sequences
    of different lengths, longest first, step after step; reference.steps_of): (batch_sizes
    [T], forward [N], reversed [N]), the last two flat positions t * B + b of the padded grid.
    Row i of step t is the t-th position of the i-th longest sentence, counted from its start
    (forward) or from its end (reversed): the backward direction reads each sentence reversed
    within its own length, and no work is spent on padding."""
    lengths = np.asarray(lengths, np.int64)
    B = lengths.shape[0]
    order = np.argsort(-lengths, kind="stable")
    lens = lengths[order]
    bs = (lens[None, :] > np.arange(int(lens[0]))[:, None]).sum(axis=1)          # [T]
    first = np.concatenate([[0], np.cumsum(bs)[:-1]])
    t = np.repeat(np.arange(bs.shape[0]), bs)                                    # [N] steps
    rank = np.arange(t.shape[0]) - np.repeat(first, bs)                          # [N] sentences
    cols = order[rank]
    if lens[0] > S:
        raise ValueError(f"a source length is above the {S} positions of the batch")
    return bs, t * B + cols, (lens[rank] - 1 - t) * B + cols


# ------------------------------------------------------------------------------------------------
# the decoding state
# ------------------------------------------------------------------------------------------------
class Seq2SeqState(DecoderState):
    """B decoding streams: the encoded sources and the decoder's state (see Seq2Seq.start).

    The encoder's outputs, keys and masks stay as start() made them, one per source sentence;
    `src` [B] says which sentence each stream reads, so branching (select) copies only the
    decoder's state, never the encoded sources."""

    __slots__ = ("enc", "keys", "mask", "src", "feed")

    def select(self, rows) -> "Seq2SeqState":
        rows = np.asarray(rows)
        new = self._select_decoder(object.__new__(Seq2SeqState), rows)
        new.enc, new.keys, new.mask = self.enc, self.keys, self.mask
        new.src = self.src[rows]
        new.alpha = None if self.alpha is None else self.alpha[rows]
        new.feed = None if self.feed is None else self.feed[rows]
        return new

    def groups(self) -> tuple[int, np.ndarray | None]:
        """(K, sentences [n / K]) when the streams come in runs of K consecutive ones per source
        sentence (beam search's layout), else (0, None)."""
        src, n = self.src, len(self.src)
        if n == 0:
            return 0, None
        K = int(np.argmax(src != src[0])) or n
        if n % K:
            return 0, None
        runs = src.reshape(-1, K)
        return (K, runs[:, 0].copy()) if (runs == runs[:, :1]).all() else (0, None)


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
class Seq2Seq(ConditionedDecoder):
    """An encoder-decoder translation model over ONE flat parameter buffer (nn/params.py).

    Training: forward_backward(batch, scale, rng). Decoding through the protocol of the language
    models, conditioned on sources: start(batch, context=sources) -> state, advance(state, ids),
    log_probs(state) -> [B, Vt] log10, select_state via state.select(rows); decoding/beam.py
    searches with them. `backend` as RNNLM's (the reference in float64 for finite differences).
    """

    model_type = MODEL_TYPE

    def __init__(self, arch: Seq2SeqArchitecture, src_vocab: Vocab, trg_vocab: Vocab,
                 src_tokenizer: Tokenizer | None = None, trg_tokenizer: Tokenizer | None = None,
                 flat: np.ndarray | None = None, meta: dict | None = None, backend=None,
                 dtype=np.float32):
        if len(src_vocab) != arch.src_vocab_size or len(trg_vocab) != arch.trg_vocab_size:
            raise RnnkitError(f"the vocabularies have {len(src_vocab)} and {len(trg_vocab)} "
                              f"tokens but the architecture says {arch.src_vocab_size} and "
                              f"{arch.trg_vocab_size}")
        self.arch = arch
        self.src_vocab, self.trg_vocab = src_vocab, trg_vocab
        self.src_tokenizer = src_tokenizer or Tokenizer()
        self.trg_tokenizer = trg_tokenizer or Tokenizer()
        self.layout = arch.layout()
        self._init_buffers(flat, meta, backend, dtype)
        self._build()

    # the target side is what the decoder's protocol speaks
    @property
    def vocab(self) -> Vocab:
        return self.trg_vocab

    @property
    def tokenizer(self) -> Tokenizer:
        return self.trg_tokenizer

    @property
    def target_vocab_size(self) -> int:
        return self.arch.trg_vocab_size

    def _build(self) -> None:
        a, K, p, g = self.arch, self.backend, self.p, self.g
        D = a.enc_size
        # one single-layer stack per encoder layer and direction
        self.enc_stacks = [[RecurrentStack(a.cell, a.emb if k == 0 else D, a.hidden, 1, K, p, g,
                                           "encoder.rnn.", suffix, first_layer=k)
                            for suffix in a.directions] for k in range(a.enc_layers)]
        self.dec_stack = RecurrentStack(a.cell, a.dec_input_size, a.hidden, a.dec_layers, K, p,
                                        g, "decoder.rnn.")
        self.output = FullSoftmax(a.trg_vocab_size, a.hidden, K, p, g, "decoder.output.",
                                  tied=a.tie_target)
        self.attn = None if a.attention == "none" else Attention(a.attention, D, a.hidden, p, g,
                                                                 self.dtype)

    # --- the encoder ---------------------------------------------------------------------------
    def encode(self, src: np.ndarray, src_len: np.ndarray, rng=None, cache: dict | None = None):
        """(enc [S, B, D], final [B, D]) of padded sources src [S, B] with lengths [B]; with
        `cache` (a dict) keeps what backward needs, with rng applies dropout. Each direction runs
        the real positions only (source_steps); enc is 0 at the padding, as PyTorch's
        pad_packed_sequence gives it."""
        a, K = self.arch, self.backend
        S, B = src.shape
        drop = rng is not None and a.dropout > 0
        bs, *rows = source_steps(src_len, S)                 # batch sizes; forward, reversed rows
        x = K.embedding_forward(src, self.p["encoder.embedding.weight"])  # [S, B, E]
        masks = []
        zero = np.zeros((1, B, a.hidden), self.dtype)
        for k, stacks in enumerate(self.enc_stacks):
            if drop:
                masks.append(self._dropout_mask(rng, x.shape))
                x = x * masks[-1]
            grid = x.reshape(S * B, x.shape[2])
            out = np.zeros((S * B, len(stacks) * a.hidden), self.dtype)     # [S*B, D]
            for j, (stack, r) in enumerate(zip(stacks, rows)):
                top, _, _ = stack.forward(grid[r], zero, zero if stack.lstm else None,
                                          caches=None if cache is not None else [None],
                                          batch_sizes=bs)
                out[r, j * a.hidden:(j + 1) * a.hidden] = top
            x = out.reshape(S, B, -1)                                            # [S, B, D]
        last = src_len - 1
        cols = np.arange(B)
        final = x[last, cols]                                            # [B, D]
        if a.bidirectional:
            final = np.concatenate([x[last, cols, :a.hidden], x[0, :, a.hidden:]], axis=1)
        if cache is not None:
            cache.update(steps=(bs, rows), enc_masks=masks, src=src, src_len=src_len)
        return x, np.ascontiguousarray(final)

    def _encoder_backward(self, denc: np.ndarray, dfinal: np.ndarray, cache: dict) -> None:
        """Back through the encoder from d enc [S, B, D] and d final [B, D]."""
        a, K = self.arch, self.backend
        (bs, rows), src_len = cache["steps"], cache["src_len"]
        S, B = denc.shape[:2]
        cols = np.arange(B)
        denc = denc.copy()
        denc[src_len - 1, cols, :a.hidden] += dfinal[:, :a.hidden]
        if a.bidirectional:
            denc[0, :, a.hidden:] += dfinal[:, a.hidden:]
        d = denc
        for k in reversed(range(a.enc_layers)):
            grid = d.reshape(S * B, -1)
            dx = None
            for j, (stack, r) in enumerate(zip(self.enc_stacks[k], rows)):
                dxi, _, _ = stack.backward(grid[r, j * a.hidden:(j + 1) * a.hidden],
                                           batch_sizes=bs)
                if dx is None:
                    dx = np.zeros((S * B, dxi.shape[1]), self.dtype)           # [S*B, E or D]
                dx[r] += dxi
            dx = dx.reshape(S, B, -1)
            if cache["enc_masks"]:
                dx = dx * cache["enc_masks"][k]
            d = dx
        K.embedding_backward(np.ascontiguousarray(d), cache["src"], a.src_vocab_size,
                             out=self.g["encoder.embedding.weight"])

    def _init_state(self, final: np.ndarray):
        """The decoder's (h0, c0) [L, B, H] from the encoder's final feature vector [B, D]."""
        a = self.arch
        h0 = np.tanh(final @ self.p["decoder.bridge.weight"].T + self.p["decoder.bridge.bias"])
        h = np.ascontiguousarray(np.broadcast_to(h0, (a.dec_layers,) + h0.shape)).astype(
            self.dtype, copy=False)
        c = np.zeros_like(h) if self.dec_stack.lstm else None
        return h0, h, c

    # --- training --------------------------------------------------------------------------------
    def forward_backward(self, batch: PairBatch, scale: float,
                         rng: np.random.Generator | None = None,
                         label_smoothing: float = 0.0) -> float:
        """Cross-entropy (natural log) summed over the batch's real target tokens; self.grad
        receives the gradient of scale * that sum (label-smoothed by `label_smoothing`, see
        FullSoftmax.loss_backward). With rng, dropout (training)."""
        loss, back = self._forward(batch, rng, grad=True)
        back(scale, label_smoothing)
        return loss

    def forward_loss(self, batch: PairBatch) -> float:
        """The summed cross-entropy of the batch's targets, no dropout, no gradients."""
        loss, _ = self._forward(batch, None, grad=False)
        return loss

    def _forward(self, batch: PairBatch, rng, grad: bool):
        a, K, p = self.arch, self.backend, self.p
        if grad:
            self.grad  # binds the layers to the gradient buffer on first use
        drop = rng is not None and a.dropout > 0
        cache: dict | None = {} if grad else None
        enc, final = self.encode(batch.src, batch.src_len, rng if drop else None, cache)
        S, B = batch.src.shape
        T = batch.trg_in.shape[0]
        mask = length_mask(batch.src_len, S)                                     # [B, S]
        h0, h, c = self._init_state(final)
        x = K.embedding_forward(batch.trg_in, p["decoder.embedding.weight"])     # [T, B, E]
        dmasks = None
        if drop:
            dmasks = [self._dropout_mask(rng, (T, B, a.dec_input_size if k == 0 else a.hidden))
                      for k in range(a.dec_layers)]
        keys = None if a.attention == "none" else self.attn.keys(enc)
        if a.input_feeding:  # one step at a time: step t reads h~_{t-1}
            out_in, steps = self._feed_forward(x, h, c, enc, keys, mask, dmasks)
        else:
            top, _, _ = self.dec_stack.forward(x, h, c, masks=dmasks,
                                               caches=None if grad else [None] * a.dec_layers)
            if a.attention != "none":
                out_in, alpha, saved = self.attn.forward(top, enc, keys, mask)
            else:
                out_in = top
        out_mask = self._dropout_mask(rng, out_in.shape) if drop else None
        if drop:
            out_in = out_in * out_mask
        valid = batch.valid
        rows = np.ascontiguousarray(out_in[valid])                               # [N, H]
        loss = float(self.output.loss_forward(rows, np.ascontiguousarray(batch.trg_out[valid])))
        if not grad:
            return loss, None

        def backward(scale: float, smoothing: float = 0.0) -> None:
            g = self.g
            drows, dtied = self.output.loss_backward(scale, smoothing)           # [N, H]
            dout = np.zeros(out_in.shape, self.dtype)
            dout[valid] = drows
            if drop:
                dout *= out_mask
            if a.input_feeding:
                dx, dh0, denc = self._feed_backward(dout, enc, keys, steps)
            else:
                if a.attention != "none":
                    dtop, denc = self.attn.backward(dout, top, enc, keys, alpha, saved)
                else:
                    dtop, denc = dout, np.zeros_like(enc)
                dx, dh0, _ = self.dec_stack.backward(np.ascontiguousarray(dtop), masks=dmasks)
            K.embedding_backward(dx, batch.trg_in, a.trg_vocab_size,
                                 out=g["decoder.embedding.weight"])
            if dtied is not None:
                g["decoder.embedding.weight"] += dtied
            # the bridge: h0 = tanh(W_b final + b_b) in every layer (c0 = 0 is a constant)
            dpre = dh0.sum(axis=0) * (1.0 - h0 * h0)                             # [B, H]
            g["decoder.bridge.weight"][...] = dpre.T @ final
            g["decoder.bridge.bias"][...] = dpre.sum(axis=0)
            dfinal = dpre @ p["decoder.bridge.weight"]                           # [B, D]
            self._encoder_backward(denc, dfinal, cache)

        return loss, backward

    def _feed_forward(self, x, h, c, enc, keys, mask, dmasks=None):
        """The decoder with input feeding, one step at a time: x [T, B, E] the embedded inputs,
        h, c [L, B, H] the initial state -> (h~ [T, B, H], what _feed_backward needs)."""
        T, B, E = x.shape
        H = self.arch.hidden
        out = np.empty((T, B, H), self.dtype)                                    # h~_1 .. h~_T
        feed = np.zeros((B, H), self.dtype)                                      # h~_0
        steps = []
        for t in range(T):
            xt = np.empty((B, E + H), self.dtype)   # [E z_t; h~_t-1], new: the caches keep it
            xt[:, :E] = x[t]
            xt[:, E:] = feed
            m = None if dmasks is None else [mk[t:t + 1] for mk in dmasks]
            top, h, c, caches = self.dec_stack.step_forward(xt, h, c, masks=m)
            att, alpha, saved = self.attn.forward(top[None], enc, keys, mask)
            out[t] = feed = att[0]
            steps.append((caches, m, top[None], alpha, saved))
        return out, steps

    def _feed_backward(self, dout, enc, keys, steps):
        """Back through _feed_forward from d h~ [T, B, H]: (dx [T, B, E], dh0 [L, B, H],
        d enc [S, B, D]); the decoder's and the attention's weight gradients are accumulated
        step by step (from zero), the gradient of h~_t reaching it both from the output layer
        and from the input of step t + 1."""
        a = self.arch
        for name, v in self.g.items():
            if name.startswith(("decoder.rnn.", "decoder.attention.", "decoder.att_vector.")):
                v[...] = 0
        T, B, H = dout.shape
        E = a.emb
        dx = np.empty((T, B, E), self.dtype)                                     # [T, B, E]
        denc = np.zeros(enc.shape, self.dtype)                                   # [S, B, D]
        dfeed = np.zeros((B, H), self.dtype)                # d h~_t from step t + 1's input
        dh = np.zeros((a.dec_layers, B, H), self.dtype)
        dc = np.zeros_like(dh) if self.dec_stack.lstm else None
        for t in reversed(range(T)):
            caches, m, top, alpha, saved = steps[t]
            datt = (dout[t] + dfeed)[None]
            dtop, de = self.attn.backward(datt, top, enc, keys, alpha, saved, accumulate=True)
            denc += de
            dxt, dh, dc = self.dec_stack.step_backward(np.ascontiguousarray(dtop[0]), dh, dc,
                                                       caches, masks=m)
            dx[t] = dxt[:, :E]
            dfeed = dxt[:, E:]
        return dx, dh, denc

    # --- scoring ---------------------------------------------------------------------------------
    @held_threads
    def pair_log_probs(self, sources: list[np.ndarray], targets: list[np.ndarray],
                       max_batch: int = 64) -> list[np.ndarray]:
        """log10 p of z1 .. zT and </s> of each target given its source (teacher forcing)."""
        out: list[np.ndarray | None] = [None] * len(sources)
        order = np.argsort([-len(t) for t in targets], kind="stable")
        for a in range(0, len(order), max_batch):
            idx = order[a:a + max_batch].tolist()
            batch = make_batch([np.asarray(sources[i]) for i in idx],
                               [np.asarray(targets[i]) for i in idx])
            for s, t in zip([sources[i] for i in idx], [targets[i] for i in idx]):
                self._check_ids(s, t)
            top = self._decoder_outputs(batch)                                   # [T, B, H]
            rows = np.ascontiguousarray(top.transpose(1, 0, 2)[batch.valid.T])  # by sentence
            lp = self.output.target_log_probs(rows, batch.trg_out.T[batch.valid.T]) * LOG10E
            ends = np.cumsum([len(targets[i]) + 1 for i in idx])
            for b, i in enumerate(idx):
                out[i] = lp[ends[b] - len(targets[i]) - 1:ends[b]]
        return out

    def _check_ids(self, src, trg=()) -> None:
        a = self.arch
        for ids, V, side in ((src, a.src_vocab_size, "source"), (trg, a.trg_vocab_size, "target")):
            ids = np.asarray(ids)
            if ids.size and (ids.min() < 0 or ids.max() >= V):
                raise RnnkitError(f"{side} token ids must be in [0, {V})")

    def _decoder_outputs(self, batch: PairBatch) -> np.ndarray:
        """What the output layer reads at every target position [T, B, H], no dropout."""
        a, K = self.arch, self.backend
        enc, final = self.encode(batch.src, batch.src_len)
        S = batch.src.shape[0]
        mask = length_mask(batch.src_len, S)
        _, h, c = self._init_state(final)
        x = K.embedding_forward(batch.trg_in, self.p["decoder.embedding.weight"])
        if a.input_feeding:
            return self._feed_forward(x, h, c, enc, self.attn.keys(enc), mask)[0]
        top, _, _ = self.dec_stack.forward(x, h, c, caches=[None] * a.dec_layers)
        if a.attention == "none":
            return top
        return self.attn.forward(top, enc, self.attn.keys(enc), mask)[0]

    # --- decoding protocol (log10), conditioned on the sources -----------------------------------
    def encode_sources(self, sources: list[np.ndarray]) -> PairBatch:
        for s in sources:
            self._check_ids(s)
        return make_batch([np.asarray(s) for s in sources], None)

    def start(self, batch: int | None = None, context: list[np.ndarray] | None = None
              ) -> Seq2SeqState:
        """The state of one stream per source sentence (`context`: id arrays without </s>)
        after <s>."""
        if context is None:
            raise RnnkitError("a translation model needs the source sentences (context=...)")
        if batch is not None and batch != len(context):
            raise RnnkitError(f"start: {batch} streams for {len(context)} sources")
        pb = self.encode_sources(context)
        enc, final = self.encode(pb.src, pb.src_len)
        _, h, c = self._init_state(final)
        st = self.new_state(Seq2SeqState, h, c)
        st.enc = enc
        st.keys = None if self.attn is None else self.attn.keys(enc)
        st.mask = length_mask(pb.src_len, pb.src.shape[0])
        st.src = np.arange(pb.size)
        st.feed = np.zeros((pb.size, self.arch.hidden), self.dtype) if self.arch.input_feeding \
            else None
        return self._step(st)

    def _step(self, state: Seq2SeqState) -> Seq2SeqState:
        if state.feed is None:
            return super()._step(state)
        # input feeding: the cell reads [E z; h~ of the last step], then attends at once (the
        # next step needs this step's h~)
        E = self.arch.emb
        state.x[:, :E] = self.p["decoder.embedding.weight"][state.ids]
        state.x[:, E:] = state.feed
        self.dec_stack.step(state.x, state.h, state.c, state.work, state.packs)
        src = state.src
        att, alpha, _ = self.attn.forward(state.h[-1][None], state.enc[:, src],
                                          state.keys[:, src], state.mask[src])
        state.feed = np.ascontiguousarray(att[0])                                # [B, H]
        state.alpha = alpha[:, 0]                                                # [B, S]
        return state

    def readout(self, state: Seq2SeqState) -> np.ndarray:
        """What the output layer reads [B, H]: the top state, or its attention vector
        (state.alpha [B, S] then holds the attention used)."""
        top = state.h[-1]                                                        # [B, H]
        if state.feed is not None:       # input feeding: the step has attended already
            return state.feed
        if self.arch.attention != "none":
            K, sent = state.groups()
            if K > 1 or (K == 1 and len(sent) == state.enc.shape[1]):
                # K streams per sentence: the K decoder states of a sentence are its "T"
                # positions of the training-time attention, over the shared encoder outputs
                n, H = top.shape
                enc, keys, mask = state.enc, state.keys, state.mask
                if not np.array_equal(sent, np.arange(enc.shape[1])):  # some have finished
                    enc, keys, mask = enc[:, sent], keys[:, sent], mask[sent]
                att, alpha, _ = self.attn.forward(
                    top.reshape(n // K, K, H).transpose(1, 0, 2), enc, keys, mask)
                state.alpha = alpha.reshape(n, -1)                               # [B, S]
                top = np.ascontiguousarray(att.transpose(1, 0, 2).reshape(n, H))
            else:
                src = state.src
                att, alpha, _ = self.attn.forward(top[None], state.enc[:, src],
                                                  state.keys[:, src], state.mask[src])
                state.alpha = alpha[:, 0]                                        # [B, S]
                top = np.ascontiguousarray(att[0])
        return top

    # --- the Python API ------------------------------------------------------------------------
    def translate(self, sentences: str | list[str], beam: int = 5, **options) -> str | list[str]:
        """Translations of plain-text sentences (options as decoding.translate.TranslateOptions:
        alpha, max_ratio, max_extra, max_length, batch, replace_unk); one sentence given as a
        string gives its translation as a string."""
        single = isinstance(sentences, str)
        lines = [sentences] if single else list(sentences)
        found = [r.best.text for r in translate_lines(self, lines,
                                                      TranslateOptions(beam=beam, **options))]
        return found[0] if single else found

    def score(self, source: str, target: str) -> float:
        """log10 p(target </s> | source)."""
        return float(sum(lp for lp, _, _ in self.full_scores(source, target)))

    def full_scores(self, source: str, target: str):
        """Per target token (its words, then </s>): (log10 p, 0, is OOV)."""
        src = self.src_vocab.encode(self.src_tokenizer.split(source))
        ids = self.trg_vocab.encode(self.trg_tokenizer.split(target))
        lp = self.pair_log_probs([src], [ids])[0]
        oov = (ids == 0).tolist() + [False]
        for t in range(len(lp)):
            yield float(lp[t]), 0, bool(oov[t])

    # --- files -----------------------------------------------------------------------------------
    def metadata(self) -> dict:
        meta = dict(self.meta)
        meta.update({
            "model_type": MODEL_TYPE,
            "architecture": self.arch.to_dict(),
            "source": {"vocab": self.src_vocab.tokens, "counts": self.src_vocab.counts.tolist(),
                       "tokenizer": self.src_tokenizer.to_dict()},
            "target": {"vocab": self.trg_vocab.tokens, "counts": self.trg_vocab.counts.tolist(),
                       "tokenizer": self.trg_tokenizer.to_dict()},
            "tensors": "PyTorch-style names: encoder.embedding, encoder.rnn (nn.LSTM, "
                       "bidirectional: _reverse), decoder.embedding, decoder.bridge, decoder.rnn, "
                       "decoder.attention.{key,query,energy}_layer, decoder.att_vector, "
                       "decoder.output",
        })
        return meta



def from_file_parts(path, tensors: dict[str, np.ndarray], meta: dict, backend=None) -> Seq2Seq:
    """A Seq2Seq model from the tensors and metadata of an rnnkit model file."""
    try:
        arch = Seq2SeqArchitecture.from_dict(meta["architecture"])
        src, trg = meta["source"], meta["target"]
        src_vocab, trg_vocab = Vocab(src["vocab"], src.get("counts")), Vocab(trg["vocab"],
                                                                             trg.get("counts"))
        src_tok = Tokenizer.from_dict(src.get("tokenizer", {}))
        trg_tok = Tokenizer.from_dict(trg.get("tokenizer", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: incomplete translation-model metadata ({e})") from None
    except RnnkitError as e:
        raise ModelFileError(f"{path}: {e}") from None
    model = Seq2Seq(arch, src_vocab, trg_vocab, src_tok, trg_tok, meta=meta, backend=backend)
    model.load_tensors(path, tensors)
    return model


# ------------------------------------------------------------------------------------------------
# the target side as a language model given its sources (scoring through decoding/scoring.py)
# ------------------------------------------------------------------------------------------------
class GivenSources(LanguageModel):
    """p(target | source) as a language model over the target text, for `rnnkit score --source`
    and rescoring: each call of token_log_probs takes the next sources, in order, for the
    sentences it is given (decoding.scoring.score_lines scores lines in their order)."""

    def __init__(self, model: Seq2Seq, sources: list[str]):
        self.model = model
        self.model_type = model.model_type
        self.vocab, self.tokenizer = model.trg_vocab, model.trg_tokenizer
        self._sources = [np.asarray(model.src_vocab.encode(model.src_tokenizer.split(s)),
                                    np.int64) for s in sources]
        self.used = 0

    def token_log_probs(self, sentences: list[np.ndarray]) -> list[np.ndarray]:
        n = len(sentences)
        if self.used + n > len(self._sources):
            raise RnnkitError(f"more target sentences than the {len(self._sources)} sources: "
                              f"the files must have the same number of lines")
        src = self._sources[self.used:self.used + n]
        self.used += n
        return self.model.pair_log_probs(src, [np.asarray(s, np.int64) for s in sentences])

    def start(self, batch: int):
        raise RnnkitError("a translation model's scores need sources: use token_log_probs")

    advance = log_probs = start
