"""Golden checksums: three training steps of tiny translation and caption models with a fixed
seed must give the same tensors, bit for bit, as the code that first recorded them (a refactor
that changes a single float fails here). Recorded with the compiled kernels at 1 thread on their generic path; if a
deliberate numerical change moves them, re-record with `python tests/models/test_golden.py`
and say why in the commit."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from rnnkit.models.caption import CaptionArchitecture, CaptionModel, make_caption_batch
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqArchitecture, make_batch
from rnnkit.nn.backend import kernels
from rnnkit.nn.optim import Adam
from rnnkit.text.vocab import SPECIALS, Vocab

STEPS = 3


def _vocab(n: int) -> Vocab:
    return Vocab(list(SPECIALS) + [f"w{i}" for i in range(n - len(SPECIALS))])


def _pairs(rng, n, Vs, Vt):
    return ([rng.integers(3, Vs, rng.integers(1, 7)) for _ in range(n)],
            [rng.integers(3, Vt, rng.integers(1, 7)) for _ in range(n)])


def _train(model, batch_fn, rng):
    opt = Adam(model.flat.shape[0])
    losses = []
    for _ in range(STEPS):
        model.grad[...] = 0
        losses.append(model.forward_backward(batch_fn(), 0.25, rng))
        opt.step(model.flat, model.grad, 1e-2)
    return losses


def _digest(model, losses) -> str:
    h = hashlib.sha256(np.ascontiguousarray(model.flat, np.float32).tobytes())
    h.update(np.asarray(losses, np.float64).tobytes())
    return h.hexdigest()[:16]


SEQ2SEQ = {  # (attention, bidirectional) -> digest
    ("none", False): "9bdaa17f0f1ee2c3",
    ("dot", False): "5942462ed9bde6b8",
    ("general", True): "0a9dfa6a2d18ff29",
    ("additive", True): "82a6dc197d8ec891",
}
CAPTION = {"none": "548194c600c25bdf", "general": "bbf5d6e61860bd71",
           "additive": "425bca879dbfd695"}


FEEDING = {"general": "91cee2a6d4f48a81", "additive": "481e5836ea52c093"}  # input feeding, bi


def seq2seq_digest(attention: str, bidirectional: bool, feed: bool = False) -> str:
    rng = np.random.default_rng(12)
    arch = Seq2SeqArchitecture(11, 13, emb=6, hidden=5, enc_layers=2, dec_layers=2,
                               bidirectional=bidirectional, attention=attention, dropout=0.1,
                               input_feeding=feed)
    model = Seq2Seq(arch, _vocab(11), _vocab(13))
    model.init_uniform(rng, 0.3)
    src, trg = _pairs(rng, 4, 11, 13)
    losses = _train(model, lambda: make_batch(src, trg), rng)
    lp = model.pair_log_probs(src, trg)
    return _digest(model, losses + [float(np.concatenate(lp).sum())])


def caption_digest(attention: str) -> str:
    rng = np.random.default_rng(13)
    grid = attention != "none"
    arch = CaptionArchitecture(7, 12, emb=6, hidden=5, layers=2, dropout=0.1,
                               attention=attention)
    model = CaptionModel(arch, _vocab(12))
    model.init_uniform(rng, 0.3)
    feats = rng.normal(size=(4, 3, 7) if grid else (4, 7)).astype(np.float32)
    model.set_feature_stats(feats)
    caps = [rng.integers(3, 12, rng.integers(1, 7)) for _ in range(4)]
    losses = _train(model, lambda: make_caption_batch(feats, caps), rng)
    lp = model.caption_log_probs(feats, caps)
    return _digest(model, losses + [float(np.concatenate(lp).sum())])


def pin():
    """1 thread and the portable kernel path (every x86-64 CPU has it), so the checksums do not
    depend on the CPU's vector extensions; (numpy's BLAS, used by the attention, still may)."""
    K = kernels()
    before = K.get_num_threads(), K.get_isa()
    K.set_num_threads(1)
    K.set_isa("generic")
    return before


@pytest.fixture
def one_thread():
    n, isa = pin()
    yield
    kernels().set_num_threads(n)
    kernels().set_isa(isa)


@pytest.mark.parametrize("attention,bidirectional", sorted(SEQ2SEQ))
def test_seq2seq_training_is_bit_identical(one_thread, attention, bidirectional):
    assert seq2seq_digest(attention, bidirectional) == SEQ2SEQ[attention, bidirectional]


@pytest.mark.parametrize("attention", sorted(FEEDING))
def test_seq2seq_input_feeding_training_is_bit_identical(one_thread, attention):
    assert seq2seq_digest(attention, True, feed=True) == FEEDING[attention]


@pytest.mark.parametrize("attention", sorted(CAPTION))
def test_caption_training_is_bit_identical(one_thread, attention):
    assert caption_digest(attention) == CAPTION[attention]


if __name__ == "__main__":
    pin()
    for key in SEQ2SEQ:
        print(key, seq2seq_digest(*key))
    for key in FEEDING:
        print("input feeding", key, seq2seq_digest(key, True, feed=True))
    for key in CAPTION:
        print(key, caption_digest(key))
