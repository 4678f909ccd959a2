"""The translation model against its PyTorch anchor (bench/torch_seq2seq.py), where torch is
installed: the same weights give the first batch's loss to 1e-5 and every gradient to 1e-4
(float32, the compiled kernels), for each attention and encoder direction; greedy decoding gives
the same tokens; the weights move both ways through safetensors files.

Optional: torch is never a dependency of rnnkit, so without it the module is skipped, saying so.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the anchor test is "
                            "optional (pip install torch to run it)")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import torch_seq2seq as ts  # noqa: E402  (bench/torch_seq2seq.py)

from rnnkit import modelfile  # noqa: E402
from rnnkit.decoding.beam import beam_search, greedy_search  # noqa: E402
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqArchitecture, from_file_parts, make_batch  # noqa: E402
from rnnkit.text.vocab import SPECIALS, Vocab  # noqa: E402

VS, VT = 23, 29
SRC = Vocab(list(SPECIALS) + [f"s{i}" for i in range(VS - 3)])
TRG = Vocab(list(SPECIALS) + [f"t{i}" for i in range(VT - 3)])
VARIANTS = [(att, bi) for att in ("none", "dot", "general", "additive") for bi in (False, True)
            if not (att == "dot" and bi)]


def make(attention, bi, layers=1, seed=0, scale=0.3, feed=False):
    arch = Seq2SeqArchitecture(VS, VT, 12, 10, layers, layers, "lstm", bi, attention,
                               attention_size=7, input_feeding=feed)
    m = Seq2Seq(arch, SRC, TRG)
    m.init_uniform(np.random.default_rng(seed), scale)
    t = ts.TorchSeq2Seq(arch.to_dict())
    ts.load_rnnkit_tensors(t, m.state_dict())
    return m, t


def pairs(seed, n=7):
    rng = np.random.default_rng(seed)
    return [(rng.integers(3, VS, rng.integers(1, 9)), rng.integers(3, VT, rng.integers(0, 8)))
            for _ in range(n)]


def assert_loss_and_gradients_equal(m, t, ps) -> float:
    """rnnkit's loss and every gradient on the pairs ps against the PyTorch model t's; returns
    PyTorch's loss."""
    batch = make_batch([s for s, _ in ps], [y for _, y in ps])
    loss = m.forward_backward(batch, 1.0)
    t.zero_grad()
    tloss = t(*ts.batch_tensors(batch))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-5)
    grads = {n: p.grad for n, p in t.named_parameters()}
    assert set(grads) == set(m.g)
    for name, g in m.g.items():
        ref = grads[name].numpy()
        # relative to the tensor's largest entry: a float32 sum of many terms near 0 has no
        # meaningful relative error of its own
        np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max() + 1e-9,
                                   err_msg=name)
    return tloss.item()


@pytest.mark.parametrize("attention,bi", VARIANTS)
@pytest.mark.parametrize("layers", [1, 2])
def test_loss_and_every_gradient_equal_pytorch(attention, bi, layers):
    m, t = make(attention, bi, layers)
    assert_loss_and_gradients_equal(m, t, pairs(1))


@pytest.mark.parametrize("attention,bi", [("dot", False), ("general", True), ("additive", True),
                                          ("additive", False)])
def test_input_feeding_loss_and_every_gradient_equal_pytorch(attention, bi):
    m, t = make(attention, bi, layers=2, seed=2, feed=True)
    ps = pairs(5)
    tloss = assert_loss_and_gradients_equal(m, t, ps)
    lp = np.concatenate(m.pair_log_probs([s for s, _ in ps], [y for _, y in ps]))
    assert lp.sum() * np.log(10) == pytest.approx(-tloss, rel=1e-5)


@pytest.mark.parametrize("attention,bi", [("dot", False), ("general", True), ("additive", True)])
def test_input_feeding_greedy_decoding_gives_the_same_tokens(attention, bi):
    m, t = make(attention, bi, layers=2, seed=4, scale=0.6, feed=True)
    srcs = [s for s, _ in pairs(2, 9)]
    ours = [h.tokens for h in greedy_search(m, srcs, max_len=12)]
    b = make_batch(srcs, None)
    theirs = t.greedy(torch.from_numpy(b.src), torch.from_numpy(b.src_len), max_len=12)
    assert ours == theirs
    assert any(len(x) > 2 for x in ours)


@pytest.mark.parametrize("attention,bi", [("none", True), ("general", True), ("additive", False),
                                          ("dot", False)])
def test_greedy_decoding_gives_the_same_tokens(attention, bi):
    m, t = make(attention, bi, layers=2, seed=4, scale=0.6)
    srcs = [s for s, _ in pairs(2, 9)]
    ours = [h.tokens for h in greedy_search(m, srcs, max_len=12)]
    b = make_batch(srcs, None)
    theirs = t.greedy(torch.from_numpy(b.src), torch.from_numpy(b.src_len), max_len=12)
    assert ours == theirs
    assert any(len(x) > 2 for x in ours)  # the comparison covers real sequences, not only </s>


@pytest.mark.parametrize("feed", [False, True])
def test_anchor_beam_search_of_one_is_greedy_and_finds_rnnkits_best_at_five(feed):
    m, t = make("general", True, seed=5, scale=0.8, feed=feed)
    srcs = [s for s, _ in pairs(3, 8)]
    b = make_batch(srcs, None)
    src, src_len = torch.from_numpy(b.src), torch.from_numpy(b.src_len)
    assert t.beam_search(src, src_len, beam=1, max_len=10, alpha=0.0) == t.greedy(src, src_len, 10)
    # both searches stop a sentence at different moments, so they may differ; most agree
    ours = [h[0].tokens for h in beam_search(m, srcs, 5, 10, 1, 1.0)]
    theirs = t.beam_search(src, src_len, beam=5, max_len=10, alpha=1.0)
    assert sum(a == b for a, b in zip(ours, theirs)) >= len(srcs) // 2


def test_weights_move_both_ways_through_safetensors(tmp_path):
    m, _ = make("additive", True, layers=2, seed=6)
    m.save(tmp_path / "m.rnnkit")
    t = ts.load_rnnkit_file(tmp_path / "m.rnnkit")          # rnnkit file -> PyTorch
    for name, v in m.state_dict().items():
        np.testing.assert_array_equal(t.state_dict()[name].numpy(), v)
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(0.5)
    ts.save_safetensors(t, tmp_path / "t.safetensors")      # PyTorch -> rnnkit
    _, meta = modelfile.read(tmp_path / "m.rnnkit")
    back = from_file_parts(tmp_path / "t.safetensors", modelfile.load_tensors(
        tmp_path / "t.safetensors"), meta)
    np.testing.assert_array_equal(back.flat, m.flat * np.float32(0.5))
