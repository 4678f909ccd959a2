"""Image captioning: an LSTM decoder conditioned on a CNN feature vector ("Show and Tell",
Vinyals et al. 2015; the lecture's section 8.5.3, figure 8-23, equations 8.50-8.51).

Dimension letters: B images, D image-feature size, T caption positions, E embedding size,
H hidden size, L layers, V vocabulary, N the real (not padding) target positions of a batch.

The image's feature vector f [D] (from a frozen CNN: rnnkit's demo extractor or any ONNX model)
is standardised per dimension with the training images' mean and standard deviation (fixed
buffers, as a BatchNorm's running statistics: a frozen CNN's units differ in scale by orders of
magnitude, and without this the demo extractor's captions ignored the image: held-out BLEU-4 17
instead of 45) and put into the word-embedding space by the one learned linear map of transfer
learning,
  z~_-1 = W_p (f - mu) / sigma + b_p   (eq. 8.50: the CNN's last layer, trained; the CNN frozen)
and read by the decoder LSTM as its first input; the caption follows as z~_t = E z_t with
z_0 = <s>: x = (z~_-1, E <s>, E z_1 .. E z_T), and the outputs after <s> .. z_T predict
y = (z_1 .. z_T, </s>). The output at the image position predicts nothing (as in Show and Tell).
Training minimises J = -sum_t log y~_t(z_t) (eq. 8.51), summed over the caption's tokens.
The decoder starts from zero state: the image reaches it only through its first input.

With a spatial grid of features f_1 .. f_R [R, D] (a CNN's last convolutional layer) and
--attention general | dot | additive: "Show, Attend and Tell" (Xu et al. 2015) in the form of the
translation model's Luong attention, reused as it is (nn/attention.py): the first input is the
projection of the grid's mean, and at every step the decoder state h_t attends over the R
cells, a_t = softmax_r(score(h_t, f_r)),
c_t = sum_r a_tr f_r, h~_t = tanh(W_c [c_t; h_t] + b_c), and the output layer reads h~_t.

Tensors, nested PyTorch-style names (nn.Linear, nn.Embedding, nn.LSTM):
  encoder.projection.weight, .bias  [E, D], [E]
  encoder.normalize.mean, .std      [D], [D]  buffers, not trained (set by set_feature_stats)
  decoder.embedding.weight          [V, E]
  decoder.rnn.weight_ih_l{k} ...    [G, E] for k = 0, [G, H] above; weight_hh, biases as nn.LSTM
  decoder.attention.key_layer.weight [H, D] general, [A, D] additive (A = H)
  decoder.attention.query_layer.weight, energy_layer.weight  [A, H], [1, A]  additive
  decoder.att_vector.weight, .bias  [H, D + H], [H]  (with attention)
  decoder.output.weight, .bias      [V, H], [V]  (tied: decoder.embedding.weight, E = H)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError, ModelFileError, RnnkitError
from ..nn.attention import ATTENTIONS, Attention, attention_shapes
from ..nn.backend import held_threads
from ..nn.output import LOG10E, FullSoftmax, full_softmax_shapes
from ..nn.params import ParamLayout
from ..nn.recurrent import CELLS, RecurrentStack, stack_shapes
from ..text.vocab import SPECIALS, Tokenizer, Vocab
from .conditioned import ConditionedDecoder, DecoderState
from .seq2seq import make_batch

MODEL_TYPE = "caption"
_NO_SOURCE = np.zeros(0, np.int64)


@dataclass(frozen=True)
class CaptionArchitecture:
    """What fixes the shapes of the tensors."""

    feature_size: int
    vocab_size: int
    emb: int = 256
    hidden: int = 256
    layers: int = 1
    cell: str = "lstm"
    tie_weights: bool = False   # decoder.output.weight is decoder.embedding.weight (E = H)
    dropout: float = 0.0        # on every layer's input and below the output layer
    attention: str = "none"     # over a spatial grid of features: dot, general or additive

    def __post_init__(self):
        if self.cell not in CELLS:
            raise RnnkitError(f"unknown --cell {self.cell!r}: use one of {', '.join(CELLS)}")
        for name in ("feature_size", "vocab_size", "emb", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise RnnkitError(f"{name.replace('_', ' ')} must be at least 1, got "
                                  f"{getattr(self, name)}")
        if self.vocab_size < len(SPECIALS):
            raise RnnkitError(f"a vocabulary needs at least {len(SPECIALS)} tokens")
        if self.tie_weights and self.emb != self.hidden:
            raise RnnkitError(f"--tie-weights needs --emb equal to --hidden (got {self.emb} and "
                              f"{self.hidden})")
        if not 0.0 <= self.dropout < 1.0:
            raise RnnkitError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.attention not in ATTENTIONS:
            raise RnnkitError(f"unknown --attention {self.attention!r}: use one of "
                              f"{', '.join(ATTENTIONS)}")
        if self.attention == "dot" and self.feature_size != self.hidden:
            raise RnnkitError(f"--attention dot compares decoder states with the features "
                              f"directly, so it needs --hidden {self.feature_size} (or use "
                              f"general or additive)")

    # what the translation model's attention reads from its architecture
    @property
    def enc_size(self) -> int:
        return self.feature_size

    @property
    def att_size(self) -> int:
        return self.hidden

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        E, D = self.emb, self.feature_size
        shapes = [("encoder.projection.weight", (E, D)), ("encoder.projection.bias", (E,)),
                  ("decoder.embedding.weight", (self.vocab_size, E))]
        shapes += stack_shapes(self.cell, E, self.hidden, self.layers, "decoder.rnn.")
        shapes += attention_shapes(self.attention, D, self.hidden, self.att_size)
        shapes += full_softmax_shapes(self.vocab_size, self.hidden, "decoder.output.",
                                      tied=self.tie_weights)
        return shapes

    def layout(self) -> ParamLayout:
        return ParamLayout(self.tensor_shapes(),
                           aliases={"decoder.output.weight": "decoder.embedding.weight"}
                           if self.tie_weights else None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CaptionArchitecture":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class CaptionBatch:
    """Images and their captions, padded time-major (padding: </s>, never a target)."""

    features: np.ndarray   # [B, D], or a grid [B, R, D] (attention)
    trg_in: np.ndarray     # [T, B] <s> z1 .. zT
    trg_out: np.ndarray    # [T, B] z1 .. zT </s>
    valid: np.ndarray      # [T, B] real target positions

    @property
    def tokens(self) -> int:
        return int(self.valid.sum())

    @property
    def size(self) -> int:
        return self.features.shape[0]


def make_caption_batch(features: np.ndarray, captions: list[np.ndarray]) -> CaptionBatch:
    """features [B, D] and B id arrays (without </s>) -> a CaptionBatch (the targets padded as
    the translation model's)."""
    pb = make_batch([_NO_SOURCE] * len(captions), [np.asarray(c) for c in captions])
    return CaptionBatch(np.asarray(features), pb.trg_in, pb.trg_out, pb.valid)


class CaptionState(DecoderState):
    """B decoding streams: the decoder's state after the image and the tokens fed so far."""

    __slots__ = ("enc", "keys", "mask")

    def select(self, rows) -> "CaptionState":
        rows = np.asarray(rows)
        new = self._select_decoder(object.__new__(CaptionState), rows)
        new.enc = None if self.enc is None else self.enc[:, rows]
        new.keys = None if self.keys is None else self.keys[:, rows]
        new.mask = None if self.mask is None else self.mask[rows]
        new.alpha = None
        return new


class CaptionModel(ConditionedDecoder):
    """A caption generator over ONE flat parameter buffer (nn/params.py).

    Training: forward_backward(batch, scale, rng). Decoding through the protocol, conditioned on
    images: start(batch, context=features [B, D]) -> state, advance(state, ids), log_probs(state)
    -> [B, V] log10, state.select(rows); decoding/beam.py searches with them. `backend` as the
    other models' (the reference in float64 for finite differences).
    """

    model_type = MODEL_TYPE

    def __init__(self, arch: CaptionArchitecture, vocab: Vocab, tokenizer: Tokenizer | None = None,
                 flat: np.ndarray | None = None, meta: dict | None = None, backend=None,
                 dtype=np.float32):
        if len(vocab) != arch.vocab_size:
            raise RnnkitError(f"the vocabulary has {len(vocab)} tokens but the architecture "
                              f"says {arch.vocab_size}")
        self.arch, self.vocab = arch, vocab
        self.tokenizer = tokenizer or Tokenizer()
        self.layout = arch.layout()
        self._init_buffers(flat, meta, backend, dtype)
        self.feature_mean = np.zeros(arch.feature_size, self.dtype)   # [D] mu
        self.feature_std = np.ones(arch.feature_size, self.dtype)     # [D] sigma
        self._build()

    def set_feature_stats(self, features: np.ndarray) -> None:
        """mu and sigma from training features [N, D] or [N, R, D] (a constant dimension keeps
        sigma 1)."""
        f = np.asarray(features, np.float64).reshape(-1, self.arch.feature_size)
        sd = f.std(axis=0)
        self.feature_mean[...] = f.mean(axis=0)
        self.feature_std[...] = np.where(sd > 1e-6, sd, 1.0)

    @property
    def target_vocab_size(self) -> int:
        return self.arch.vocab_size

    def _build(self) -> None:
        a, K = self.arch, self.backend
        self.dec_stack = RecurrentStack(a.cell, a.emb, a.hidden, a.layers, K, self.p, self.g,
                                        "decoder.rnn.")
        self.output = FullSoftmax(a.vocab_size, a.hidden, K, self.p, self.g, "decoder.output.",
                                  tied=a.tie_weights)
        self.attn = None if a.attention == "none" else Attention(
            a.attention, a.feature_size, a.hidden, self.p, self.g, self.dtype)

    # --- the image --------------------------------------------------------------------------------
    def check_features(self, features) -> np.ndarray:
        """features as a [B, D] (attention: [B, R, D]) array of the model's dtype; InputError on
        a wrong size or NaN."""
        f = np.asarray(features)
        D, grid = self.arch.feature_size, self.arch.attention != "none"
        if f.ndim == (2 if grid else 1):
            f = f[None]
        if f.ndim == 3 and not grid and f.shape[-1] == D:
            f = f.mean(axis=1)   # a grid for a model without attention: pooled, as in training
        if f.ndim != (3 if grid else 2) or f.shape[-1] != D:
            want = f"[images, R, {D}] grids" if grid else f"[images, {D}] vectors"
            raise InputError(f"image features of shape {list(f.shape)}: this model reads "
                             f"{want} (features from the same extractor as its training data)")
        if not np.all(np.isfinite(f)):
            raise InputError("image features hold NaN or infinite values")
        return np.ascontiguousarray(f, self.dtype)

    def normalize(self, features: np.ndarray) -> np.ndarray:
        """(f - mu) / sigma [B, D]."""
        return ((features - self.feature_mean) / self.feature_std).astype(self.dtype, copy=False)

    def project(self, features: np.ndarray) -> np.ndarray:
        """z~_-1 = W_p (f - mu) / sigma + b_p [B, E] (eq. 8.50); a grid's mean cell."""
        # on the kernels' product (numpy's single-threaded BLAS took 60 us of a 64-image search's
        # 1.7 ms at D = 704)
        out = self.backend.matmul(np.ascontiguousarray(self._vector(self.normalize(features))),
                                  self.p["encoder.projection.weight"], trans_b=True)
        out += self.p["encoder.projection.bias"]
        return out

    def _vector(self, normed: np.ndarray) -> np.ndarray:
        """The one vector [B, D] the projection reads: the grid's mean over its R cells."""
        return normed.mean(axis=1) if normed.ndim == 3 else normed

    def _grid(self, features: np.ndarray):
        """(enc [R, B, D] the normalised grid, time-major as the translation model's encoder
        states; keys; mask [B, R], every cell real), or Nones without attention."""
        if self.arch.attention == "none":
            return None, None, None
        enc = np.ascontiguousarray(self.normalize(features).transpose(1, 0, 2))
        return enc, self.attn.keys(enc), np.ones(enc.shape[1::-1], bool)

    # --- training ---------------------------------------------------------------------------------
    def forward_backward(self, batch: CaptionBatch, scale: float,
                         rng: np.random.Generator | None = None) -> float:
        """Cross-entropy (natural log, eq. 8.51) summed over the batch's real target tokens;
        self.grad receives the gradient of scale * that sum. With rng, dropout (training)."""
        loss, back = self._forward(batch, rng, grad=True)
        back(scale)
        return loss

    def forward_loss(self, batch: CaptionBatch) -> float:
        """The summed cross-entropy of the batch's captions, no dropout, no gradients."""
        return self._forward(batch, None, grad=False)[0]

    def _inputs(self, batch: CaptionBatch) -> np.ndarray:
        """x [T + 1, B, E]: the projected image, then the embedded <s> z1 .. zT."""
        f = self.check_features(batch.features)
        words = self.backend.embedding_forward(batch.trg_in, self.p["decoder.embedding.weight"])
        return np.concatenate([self.project(f)[None].astype(self.dtype, copy=False), words], 0)

    def _forward(self, batch: CaptionBatch, rng, grad: bool):
        a, K = self.arch, self.backend
        if grad:
            self.grad  # binds the layers to the gradient buffer on first use
        drop = rng is not None and a.dropout > 0
        x = self._inputs(batch)                                                  # [T+1, B, E]
        T1, B = x.shape[:2]
        h0, c0 = self.dec_stack.zero_state(B, self.dtype)
        masks = None
        if drop:  # Zaremba et al. 2014: dropout on the non-recurrent connections only
            masks = [self._dropout_mask(rng, (T1, B, a.emb if k == 0 else a.hidden))
                     for k in range(a.layers)]
        top, _, _ = self.dec_stack.forward(x, h0, c0, masks=masks,
                                       caches=None if grad else [None] * a.layers)
        out_in = top[1:]                                     # [T, B, H] the outputs after <s> ..
        enc, keys, mask = self._grid(self.check_features(batch.features))
        if enc is not None:
            out_in, alpha, saved = self.attn.forward(np.ascontiguousarray(out_in), enc, keys,
                                                     mask)
        out_mask = self._dropout_mask(rng, out_in.shape) if drop else None
        if drop:
            out_in = out_in * out_mask
        valid = batch.valid
        rows = np.ascontiguousarray(out_in[valid])                               # [N, H]
        loss = float(self.output.loss_forward(rows, np.ascontiguousarray(batch.trg_out[valid])))
        if not grad:
            return loss, None
        features = self.normalize(self.check_features(batch.features))          # [B, D]

        def backward(scale: float) -> None:
            g = self.g
            drows, dtied = self.output.loss_backward(scale)                      # [N, H]
            dout = np.zeros(out_in.shape, self.dtype)                            # [T, B, H]
            dout[valid] = drows
            if drop:
                dout *= out_mask
            if enc is not None:  # the frozen grid takes no gradient; the attention's weights do
                dout, _ = self.attn.backward(dout, np.ascontiguousarray(top[1:]), enc, keys,
                                             alpha, saved)
            dtop = np.zeros(top.shape, self.dtype)                               # [T+1, B, H]
            dtop[1:] = dout
            dx, _, _ = self.dec_stack.backward(dtop, masks=masks)                    # [T+1, B, E]
            K.embedding_backward(np.ascontiguousarray(dx[1:]), batch.trg_in, a.vocab_size,
                                 out=g["decoder.embedding.weight"])
            if dtied is not None:
                g["decoder.embedding.weight"] += dtied
            # the projection, the one trained layer of the image side (transfer learning)
            g["encoder.projection.weight"][...] = dx[0].T @ self._vector(features)
            g["encoder.projection.bias"][...] = dx[0].sum(axis=0)

        return loss, backward

    # --- scoring ----------------------------------------------------------------------------------
    @held_threads
    def caption_log_probs(self, features, captions: list[np.ndarray], max_batch: int = 64
                          ) -> list[np.ndarray]:
        """log10 p of z1 .. zT and </s> of each caption (id arrays without </s>) given its
        image's features [B, D] (teacher forcing)."""
        f = self.check_features(features)
        if len(f) != len(captions):
            raise InputError(f"{len(f)} feature vectors for {len(captions)} captions")
        out: list[np.ndarray | None] = [None] * len(captions)
        order = np.argsort([-len(c) for c in captions], kind="stable")
        for s in range(0, len(order), max_batch):
            idx = order[s:s + max_batch].tolist()
            caps = [np.asarray(captions[i]) for i in idx]
            for c in caps:
                self._check_ids(c)
            batch = make_caption_batch(f[idx], caps)
            top, _, _ = self.dec_stack.forward(self._inputs(batch), *self.dec_stack.zero_state(
                len(idx), self.dtype), caches=[None] * self.arch.layers)
            out_in = top[1:]
            enc, keys, mask = self._grid(f[idx])
            if enc is not None:
                out_in = self.attn.forward(np.ascontiguousarray(out_in), enc, keys, mask)[0]
            valid = batch.valid.T
            rows = np.ascontiguousarray(out_in.transpose(1, 0, 2)[valid])       # by caption
            lp = self.output.target_log_probs(rows, batch.trg_out.T[valid]) * LOG10E
            ends = np.cumsum([len(c) + 1 for c in caps])
            for b, i in enumerate(idx):
                out[i] = lp[ends[b] - len(caps[b]) - 1:ends[b]]
        return out

    def _check_ids(self, ids) -> None:
        ids = np.asarray(ids)
        V = self.arch.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise RnnkitError(f"token ids must be in [0, {V})")

    # --- decoding protocol (log10), conditioned on images -----------------------------------------
    def start(self, batch: int | None = None, context=None) -> CaptionState:
        """One stream per image (`context`: features [B, D]), after the image and <s>."""
        if context is None:
            raise RnnkitError("a caption model needs the images' features (context=...)")
        f = self.check_features(np.asarray(context))
        if batch is not None and batch != len(f):
            raise RnnkitError(f"start: {batch} streams for {len(f)} images")
        st = self.new_state(CaptionState, *self.dec_stack.zero_state(len(f), self.dtype))
        st.x[...] = self.project(f)                                              # [B, E]
        self.dec_stack.step(st.x, st.h, st.c, st.work, st.packs)                 # z~_-1
        st.enc, st.keys, st.mask = self._grid(f)
        return self._step(st)

    def readout(self, state: CaptionState) -> np.ndarray:
        """What the output layer reads [B, H]: the top state, or its attention vector over the
        image's grid (state.alpha [B, R] then holds the attention)."""
        top = np.ascontiguousarray(state.h[-1])                                  # [B, H]
        if state.enc is not None:
            att, alpha, _ = self.attn.forward(top[None], state.enc, state.keys, state.mask)
            state.alpha = alpha[:, 0]                                            # [B, R]
            top = np.ascontiguousarray(att[0])
        return top

    def caption(self, features, beam: int = 1, n_best: int = 1, max_len: int = 30,
                alpha: float = 0.6):
        """Captions of images (features [B, D] or [D]): a list of n_best lists of
        (text, log10 p), best first, by beam search (beam 1: greedy)."""
        from ..decoding.beam import beam_search
        f = self.check_features(features)
        hyps = beam_search(self, f, beam=beam, max_len=max_len, n_best=n_best, alpha=alpha)
        return [[(self.tokenizer.join(self.vocab.decode(h.tokens)), h.score) for h in hs]
                for hs in hyps]

    # --- files ------------------------------------------------------------------------------------
    @property
    def extractor(self) -> dict | None:
        """The record of the extractor of the training features (text/images.py), None in
        models older than it."""
        return self.meta.get("extractor")

    def metadata(self) -> dict:
        meta = dict(self.meta)
        meta.update({
            "model_type": MODEL_TYPE,
            "architecture": self.arch.to_dict(),
            "vocab": self.vocab.tokens, "counts": self.vocab.counts.tolist(),
            "tokenizer": self.tokenizer.to_dict(),
            "tensors": "PyTorch-style names: encoder.projection (nn.Linear), decoder.embedding, "
                       "decoder.rnn (nn.LSTM), decoder.output",
        })
        return meta

    def file_tensors(self) -> dict[str, np.ndarray]:
        """The parameters, and the feature statistics the model standardises with."""
        return {**super().file_tensors(),
                "encoder.normalize.mean": np.asarray(self.feature_mean, np.float32),
                "encoder.normalize.std": np.asarray(self.feature_std, np.float32)}


def from_file_parts(path, tensors: dict[str, np.ndarray], meta: dict, backend=None
                    ) -> CaptionModel:
    """A CaptionModel from the tensors and metadata of an rnnkit model file."""
    try:
        arch = CaptionArchitecture.from_dict(meta["architecture"])
        vocab = Vocab(meta["vocab"], meta.get("counts"))
        tok = Tokenizer.from_dict(meta.get("tokenizer", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: incomplete caption-model metadata ({e})") from None
    except RnnkitError as e:
        raise ModelFileError(f"{path}: {e}") from None
    model = CaptionModel(arch, vocab, tok, meta=meta, backend=backend)
    model.load_tensors(path, tensors)
    D = arch.feature_size
    for name, target in (("encoder.normalize.mean", model.feature_mean),
                         ("encoder.normalize.std", model.feature_std)):
        t = tensors.get(name)
        if t is not None:
            if t.shape != (D,) or not np.all(np.isfinite(t)):
                raise ModelFileError(f"{path}: tensor {name} must be [{D}] finite values")
            target[...] = t
    if np.any(model.feature_std <= 0):
        raise ModelFileError(f"{path}: encoder.normalize.std must be positive")
    return model
