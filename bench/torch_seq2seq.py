"""The PyTorch anchor of rnnkit's translation model (models/seq2seq.py): the same architecture,
module by module, so that its state_dict names ARE rnnkit's tensor names and a model file moves
between the two with safetensors and no renaming.

Dimension letters: S source positions, T target positions, B batch, K beam, E embedding, H hidden
size (per direction), D encoder output size (2H bidirectional, else H), A additive attention size,
V target vocabulary.

  encoder.embedding   nn.Embedding(Vs, E)
  encoder.rnn         nn.LSTM(E, H, L, bidirectional=...) over PACKED sources, so the backward
                      direction reads each sentence reversed within its own length (as rnnkit's)
  decoder.embedding   nn.Embedding(Vt, E)
  decoder.bridge      nn.Linear(D, H): h0 = tanh(bridge(f)) in every decoder layer, c0 = 0, f =
                      the top layer's final state ([forward; backward] when bidirectional)
  decoder.rnn         nn.LSTM(E, H, L); with input feeding nn.LSTM(E + H, H, L) run one step
                      at a time on [embedding; h~ of the previous step] (Luong et al. 2015, 3.3)
  decoder.attention   key_layer nn.Linear(D, H or A, bias=False) (general, additive),
                      query_layer nn.Linear(H, A, bias=False), energy_layer nn.Linear(A, 1,
                      bias=False) (additive); dot has no tensors
  decoder.att_vector  nn.Linear(D + H, H): h~ = tanh(W_c [c; h] + b_c) (Luong eq. 5)
  decoder.output      nn.Linear(H, Vt) on h~ (on h without attention)

Only the `lstm` cell, untied output and no dropout are mirrored: what the benchmarks use.

Decoding: `greedy` (argmax until </s>, as rnnkit's beam of 1; with input feeding too) and
`beam_search` (without input feeding), a standard batched beam search (Joey NMT's shape: B*K
rows, top-K of the K*V continuations per sentence, finished rows carried with </s> at no cost,
a sentence leaves the batch once its best beam has ended; ranked at the end by
score / ((5 + n) / 6) ** alpha, Wu et al. 2016 eq. 14).

Not a dependency of rnnkit: imported by bench/bench_seq2seq.py and the optional test
tests/models/test_seq2seq_torch.py.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BOS, EOS = 1, 2   # rnnkit.text.vocab's ids
NEG = -1e30       # a padding position's score, as rnnkit's


class Encoder(nn.Module):
    def __init__(self, V, E, H, L, bidirectional):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.rnn = nn.LSTM(E, H, L, bidirectional=bidirectional)
        self.bidirectional = bidirectional

    def forward(self, src, src_len):
        """src [S, B], src_len [B] -> (enc [S, B, D], final [B, D])."""
        S = src.shape[0]
        x = self.embedding(src)                                             # [S, B, E]
        packed = nn.utils.rnn.pack_padded_sequence(x, src_len.cpu(), enforce_sorted=False)
        out, (hn, _) = self.rnn(packed)
        enc, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=S)      # [S, B, D]
        final = torch.cat([hn[-2], hn[-1]], 1) if self.bidirectional else hn[-1]
        return enc, final


class Attention(nn.Module):
    def __init__(self, kind, H, D, A):
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.key_layer = nn.Linear(D, H, bias=False)
        elif kind == "additive":
            self.key_layer = nn.Linear(D, A, bias=False)
            self.query_layer = nn.Linear(H, A, bias=False)
            self.energy_layer = nn.Linear(A, 1, bias=False)

    def keys(self, enc):
        """[S, B, H or A]: computed once per source batch."""
        return enc if self.kind == "dot" else self.key_layer(enc)

    def forward(self, top, enc, keys, mask):
        """top [T, B, H], enc [S, B, D], keys, mask [B, S] -> (ctx [T, B, D], alpha [B, T, S])."""
        if self.kind == "additive":
            q = self.query_layer(top)                                       # [T, B, A]
            e = torch.tanh(q[:, None] + keys[None])                         # [T, S, B, A]
            scores = self.energy_layer(e)[..., 0].permute(2, 0, 1)          # [B, T, S]
        else:
            scores = torch.bmm(top.transpose(0, 1), keys.permute(1, 2, 0))  # [B, T, S]
        scores = scores.masked_fill(~mask[:, None, :], NEG)
        alpha = torch.softmax(scores, dim=-1)
        ctx = torch.bmm(alpha, enc.transpose(0, 1)).transpose(0, 1)         # [T, B, D]
        return ctx, alpha


class Decoder(nn.Module):
    def __init__(self, V, E, H, L, D, attention, A, input_feeding=False):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.bridge = nn.Linear(D, H)
        self.rnn = nn.LSTM(E + H if input_feeding else E, H, L)
        self.input_feeding = input_feeding
        self.kind = attention
        if attention != "none":
            self.attention = Attention(attention, H, D, A)   # dot: no tensors
            self.att_vector = nn.Linear(D + H, H)
        self.output = nn.Linear(H, V)
        self.L = L

    def init_state(self, final):
        h0 = torch.tanh(self.bridge(final))                                 # [B, H]
        h = h0[None].expand(self.L, -1, -1).contiguous()
        return h, torch.zeros_like(h)

    def readout(self, top, enc, keys, mask):
        """What the output layer reads [T, B, H] (and the attention [B, T, S] or None)."""
        if self.kind == "none":
            return top, None
        ctx, alpha = self.attention(top, enc, keys, mask)
        return torch.tanh(self.att_vector(torch.cat([ctx, top], 2))), alpha

    def feed(self, emb, enc, keys, mask, h, c, att):
        """Input feeding over emb [T, B, E] one step at a time from state (h, c) and the last
        h~ att [B, H]: (h~ [T, B, H], h, c)."""
        outs = []
        for t in range(emb.shape[0]):
            top, (h, c) = self.rnn(torch.cat([emb[t], att], 1)[None], (h, c))
            out, _ = self.readout(top, enc, keys, mask)
            att = out[0]
            outs.append(att)
        return torch.stack(outs), h, c


class TorchSeq2Seq(nn.Module):
    """rnnkit's Seq2Seq in PyTorch; `arch` is a Seq2SeqArchitecture.to_dict()."""

    def __init__(self, arch: dict):
        super().__init__()
        if arch.get("cell", "lstm") != "lstm" or arch.get("tie_target") or arch.get("dropout"):
            raise ValueError("the anchor mirrors the lstm cell, untied output, no dropout")
        E, H = arch["emb"], arch["hidden"]
        bi = arch["bidirectional"]
        D = 2 * H if bi else H
        A = arch.get("attention_size") or H
        self.arch = dict(arch)
        self.encoder = Encoder(arch["src_vocab_size"], E, H, arch["enc_layers"], bi)
        self.decoder = Decoder(arch["trg_vocab_size"], E, H, arch["dec_layers"], D,
                               arch["attention"], A, arch.get("input_feeding", False))

    # --- training --------------------------------------------------------------------------------
    def forward(self, src, src_len, trg_in, trg_out, valid):
        """The cross-entropy (natural log) summed over the real target positions."""
        enc, final = self.encoder(src, src_len)
        S = src.shape[0]
        mask = torch.arange(S)[None, :] < src_len[:, None]                  # [B, S]
        h, c = self.decoder.init_state(final)
        keys = None if self.decoder.kind == "none" else self.decoder.attention.keys(enc)
        if self.decoder.input_feeding:
            att = torch.zeros_like(h[0])
            out, _, _ = self.decoder.feed(self.decoder.embedding(trg_in), enc, keys, mask, h, c,
                                          att)
        else:
            top, _ = self.decoder.rnn(self.decoder.embedding(trg_in), (h, c))   # [T, B, H]
            out, _ = self.decoder.readout(top, enc, keys, mask)
        logits = self.decoder.output(out[valid])                            # [N, V]
        return F.cross_entropy(logits, trg_out[valid], reduction="sum")

    # --- decoding --------------------------------------------------------------------------------
    def _start(self, src, src_len):
        enc, final = self.encoder(src, src_len)
        mask = torch.arange(src.shape[0])[None, :] < src_len[:, None]
        keys = None if self.decoder.kind == "none" else self.decoder.attention.keys(enc)
        h, c = self.decoder.init_state(final)
        return enc, keys, mask, h, c

    def _step(self, ids, enc, keys, mask, h, c, att=None):
        """One target token per row: (log p [rows, V], h, c, h~ [rows, H]); with input feeding,
        att is the last step's h~ (zeros at the first step)."""
        emb = self.decoder.embedding(ids)[None]
        if att is not None:
            emb = torch.cat([emb, att[None]], 2)
        top, (h, c) = self.decoder.rnn(emb, (h, c))
        out, _ = self.decoder.readout(top, enc, keys, mask)
        return F.log_softmax(self.decoder.output(out[0]), dim=-1), h, c, out[0]

    @torch.no_grad()
    def greedy(self, src, src_len, max_len: int = 100) -> list[list[int]]:
        """The argmax token at every step until </s> (or max_len tokens), per sentence."""
        enc, keys, mask, h, c = self._start(src, src_len)
        B = src.shape[1]
        ids = torch.full((B,), BOS, dtype=torch.long)
        out = [[] for _ in range(B)]
        alive = np.ones(B, bool)
        feeding = self.decoder.input_feeding
        att = torch.zeros_like(h[0]) if feeding else None                     # h~_0
        for _ in range(max_len):
            lp, h, c, out_t = self._step(ids, enc, keys, mask, h, c, att)
            att = out_t if feeding else None
            ids = lp.argmax(-1)
            for b, w in enumerate(ids.tolist()):
                if alive[b]:
                    if w == EOS:
                        alive[b] = False
                    else:
                        out[b].append(w)
            if not alive.any():
                break
        return out

    @torch.no_grad()
    def beam_search(self, src, src_len, beam: int = 5, max_len: int = 100,
                    alpha: float = 1.0) -> list[list[int]]:
        """The best hypothesis per sentence of a standard batched beam search (with input
        feeding, each row also carries its last h~)."""
        K = beam
        enc, keys, mask, h, c = self._start(src, src_len)
        B = src.shape[1]
        rep = torch.arange(B).repeat_interleave(K)                          # [B*K]
        enc, mask, h, c = enc[:, rep], mask[rep], h[:, rep], c[:, rep]
        keys = None if keys is None else keys[:, rep]
        att = torch.zeros_like(h[0]) if self.decoder.input_feeding else None   # h~_0 [B*K, H]
        sent = torch.arange(B)                       # the sentence of each active group
        scores = torch.full((B, K), -float("inf"))
        scores[:, 0] = 0.0
        ids = torch.full((B * K,), BOS, dtype=torch.long)
        hist = torch.zeros((B * K, 0), dtype=torch.long)
        ended = torch.zeros(B * K, dtype=torch.bool)
        length = torch.zeros(B * K)
        results: list[list[int] | None] = [None] * B
        for t in range(max_len):
            lp, h, c, out_t = self._step(ids, enc, keys, mask, h, c, att)   # [n*K, V]
            V = lp.shape[1]
            lp[ended] = -float("inf")
            lp[ended, EOS] = 0.0                     # an ended row continues at no cost
            n = len(sent)
            top_s, top_i = (scores.reshape(-1, 1) + lp).reshape(n, K * V).topk(K, dim=1)
            parent = (top_i // V + torch.arange(n)[:, None] * K).reshape(-1)
            tok = (top_i % V).reshape(-1)
            was = ended[parent]
            ended = was | (tok == EOS)
            length = length[parent] + (~was).float()
            hist = torch.cat([hist[parent], tok[:, None]], 1)
            scores = top_s
            h, c = h[:, parent], c[:, parent]
            att = None if att is None else out_t[parent]
            done = ended.reshape(n, K)[:, 0] | (t + 1 >= max_len)          # best beam ended
            if done.any():
                norm = scores / ((5.0 + length.reshape(n, K)) / 6.0) ** alpha
                norm = norm.masked_fill(~ended.reshape(n, K) & ~done[:, None], -float("inf"))
                for g in done.nonzero()[:, 0].tolist():
                    j = int(norm[g].argmax())
                    seq = hist[g * K + j].tolist()
                    results[int(sent[g])] = [w for w in seq if w != EOS]
                keep = (~done).nonzero()[:, 0]
                if len(keep) == 0:
                    break
                rows = (keep[:, None] * K + torch.arange(K)).reshape(-1)
                sent, scores = sent[keep], scores[keep]
                enc, mask, h, c = enc[:, rows], mask[rows], h[:, rows], c[:, rows]
                keys = None if keys is None else keys[:, rows]
                att = None if att is None else att[rows]
                hist, ended, length, tok = hist[rows], ended[rows], length[rows], tok[rows]
            ids = tok
        return results


# --- weights both ways, through safetensors ------------------------------------------------------
def load_rnnkit_tensors(model: TorchSeq2Seq, tensors: dict[str, np.ndarray]) -> None:
    """Copy rnnkit tensors (name -> array, e.g. modelfile.read(path)[0] or Seq2Seq.state_dict())
    into the PyTorch model; every name must match, both ways."""
    state = {n: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for n, v in tensors.items()}
    model.load_state_dict(state, strict=True)


def load_rnnkit_file(path) -> TorchSeq2Seq:
    """A PyTorch model from an rnnkit translation-model file (safetensors)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["rnnkit"])   # modelfile.META_KEY
    tensors = load_file(str(path))
    model = TorchSeq2Seq(meta["architecture"])
    model.load_state_dict(tensors, strict=True)
    return model


def save_safetensors(model: TorchSeq2Seq, path) -> None:
    """The PyTorch model's tensors under rnnkit's names (read them with rnnkit's
    models.seq2seq.from_file_parts and the metadata of an rnnkit model of the same shape)."""
    from safetensors.torch import save_file

    save_file({n: t.detach().contiguous() for n, t in model.state_dict().items()}, str(path))


def batch_tensors(batch) -> tuple:
    """An rnnkit PairBatch as the tensors TorchSeq2Seq.forward takes."""
    return (torch.from_numpy(batch.src), torch.from_numpy(batch.src_len),
            torch.from_numpy(batch.trg_in), torch.from_numpy(batch.trg_out),
            torch.from_numpy(batch.valid))
