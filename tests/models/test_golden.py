"""Golden checksums: three training steps of tiny translation and caption models with a fixed
seed must give the same tensors, bit for bit, as the code that first recorded them (a refactor
that changes a single float fails here). Recorded with the compiled kernels at 1 thread on their
generic path, whose products run on BLAS: OpenBLAS picks its kernels by CPU (Haswell and Zen
share one set, SkylakeX, Cooperlake and SapphireRapids another), and they round differently,
so there is one table per family of OpenBLAS kernels (another BLAS, or a family not recorded
here, skips with the reason). If a deliberate numerical change moves them, re-record every
family with `OPENBLAS_CORETYPE=<kernel> python tests/models/test_golden.py` and say why in the
commit."""
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


# the OpenBLAS kernels (threadpoolctl's `architecture`) whose results agree bit for bit here
# (OPENBLAS_CORETYPE=Prescott reports Katmai)
FAMILIES = {"Haswell": "avx2", "Zen": "avx2", "SkylakeX": "avx512", "Cooperlake": "avx512",
            "SapphireRapids": "avx512", "Sandybridge": "avx", "Katmai": "sse3"}
SEQ2SEQ_KEYS = [("none", False), ("dot", False), ("general", True), ("additive", True)]
CAPTION_KEYS = ["none", "general", "additive"]
FEEDING_KEYS = ["general", "additive"]   # input feeding, bidirectional
KEYS = ([("seq2seq", k) for k in SEQ2SEQ_KEYS] + [("feeding", k) for k in FEEDING_KEYS]
        + [("caption", k) for k in CAPTION_KEYS])
# family -> the digests of KEYS, in order
DIGESTS = {
    "avx2": ["afb016aa560cb24c", "8f506e7244f71150", "a0b1e07ac4d89732", "532cef9d826cb411",
             "82fd50f099bceefc", "e7cab5e63f105b4f",
             "fcc55374efd605aa", "d9c670b622f7f443", "7449c2c50e481098"],
    "avx512": ["ed03831bfd74fca1", "648f8b80563611e9", "200b2178402c709c", "b682af123701326b",
               "cd93f3b0bb677025", "af28f4c9694a0544",
               "fcc55374efd605aa", "f5a40372195cd63c", "b50ed52ca9d8c720"],
    "avx": ["f151f9d67a89ffb8", "7fb17786bec02b8b", "611d8a08df0c1397", "a48eacd9b283e583",
            "49b1bf27f294f1c5", "c8046059bba7269f",
            "e7f4ef7165c39490", "6a7ec52d4417372e", "beccc1b73bcc7963"],
    "sse3": ["7e64b332aed772f6", "77e54636bfe92d8d", "ad7bec53af5889f0", "8a52e351deafceda",
             "430f2de38af5d1c0", "7137abf9a0d5b80f",
             "95ff7e10c45dcd35", "c333193c068eb058", "e882cb49128585f7"],
}


def blas_architectures() -> set:
    """The kernel names of the BLAS libraries numpy and scipy run here (None for a BLAS that is
    not OpenBLAS)."""
    import scipy.linalg.blas  # noqa: F401  (loads scipy's BLAS, which the generic path uses)
    from threadpoolctl import threadpool_info

    return {lib.get("architecture") if lib.get("internal_api") == "openblas" else None
            for lib in threadpool_info() if lib.get("user_api") == "blas"}


def blas_family() -> str | None:
    """The family of the OpenBLAS kernels numpy and scipy run here, or None (another BLAS, a
    kernel not in FAMILIES, or the two libraries on different kernels)."""
    fams = {FAMILIES.get(arch) for arch in blas_architectures()}
    return fams.pop() if len(fams) == 1 else None


def expected(kind: str, key) -> str:
    fam = blas_family()
    if fam is None:
        pytest.skip("no checksums recorded for this BLAS (see the module docstring)")
    return DIGESTS[fam][KEYS.index((kind, key))]


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


@pytest.mark.parametrize("attention,bidirectional", SEQ2SEQ_KEYS)
def test_seq2seq_training_is_bit_identical(one_thread, attention, bidirectional):
    want = expected("seq2seq", (attention, bidirectional))
    assert seq2seq_digest(attention, bidirectional) == want


@pytest.mark.parametrize("attention", FEEDING_KEYS)
def test_seq2seq_input_feeding_training_is_bit_identical(one_thread, attention):
    assert seq2seq_digest(attention, True, feed=True) == expected("feeding", attention)


@pytest.mark.parametrize("attention", CAPTION_KEYS)
def test_caption_training_is_bit_identical(one_thread, attention):
    assert caption_digest(attention) == expected("caption", attention)


def test_the_blas_family_is_known_on_x86():
    """On x86-64 with the OpenBLAS that numpy and scipy ship, the checksums above do run."""
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("checksums are recorded for x86-64's OpenBLAS kernels only")
    assert blas_family() is not None, f"no checksums for BLAS kernels {blas_architectures()}"


if __name__ == "__main__":
    pin()
    print("OpenBLAS family:", blas_family())
    digests = ([seq2seq_digest(*key) for key in SEQ2SEQ_KEYS]
               + [seq2seq_digest(key, True, feed=True) for key in FEEDING_KEYS]
               + [caption_digest(key) for key in CAPTION_KEYS])
    print(digests)
