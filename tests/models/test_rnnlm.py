"""The recurrent model: gradients of the whole model against finite differences (float64 numpy
reference), kernels against the reference, the LM protocol (sums to 1, steps = batched scoring,
score = sum(full_scores)), model files, PyTorch interchange, and the import-torch / plot /
diagnose commands with their error paths."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import rnnkit
from rnnkit import modelfile
from rnnkit.cli import app, main
from rnnkit.errors import InputError, ModelFileError, RnnkitError
from rnnkit.models.protocol import LanguageModel
from rnnkit.models.rnnlm import RNNLM, Architecture, load, views
from rnnkit.models.torch_import import from_torch_state, read_token_list
from rnnkit.nn import reference as ref
from rnnkit.nn.optim import SGD, clip_grad_norm
from rnnkit.text.vocab import BOS, EOS, SPECIALS, Tokenizer, Vocab
from fd import numeric_gradient
from packs import assert_packs_change_nothing, assert_top_log_probs_change_nothing

runner = CliRunner()
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat"]
VOCAB = Vocab(list(SPECIALS) + WORDS)
VARIANTS = [("lstm", False, 0.0), ("lstm-peephole", True, 0.3), ("lstm-nofg", False, 0.3),
            ("rnn", True, 0.0), ("lstm", True, 0.5)]
# the adaptive softmax over the 10 ids: head 0-3 + 2 cluster tokens, clusters [4, 7), [7, 10)
ADAPTIVE = dict(output="adaptive", cutoffs=(4, 7), div_value=2.0, head_bias=True)


def cli(capsys, *args):
    """Run the command line as the console script does: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    o = capsys.readouterr()
    return code, o.out, o.err


def make_model(model_type="lstm", tie=False, dropout=0.0, E=4, H=4, L=2, dtype=np.float32,
               backend=None, seed=0, scale=0.5, **output):
    arch = Architecture(model_type, len(VOCAB), E, H, L, tie_weights=tie, dropout=dropout,
                        **output)
    m = RNNLM(arch, VOCAB, backend=backend, dtype=dtype)
    m.init_uniform(np.random.default_rng(seed), scale)
    return m


def window(rng, T=3, B=2, V=len(VOCAB)):
    return (rng.integers(0, V, (T, B)).astype(np.int64), rng.integers(0, V, (T, B)).astype(np.int64))


# --- layout ------------------------------------------------------------------------------------
def test_flat_buffer_views_use_pytorch_names_and_shapes():
    m = make_model("lstm-peephole", E=3, H=5, L=2)
    V = len(VOCAB)
    want = {"encoder.weight": (V, 3), "rnn.weight_ih_l0": (20, 3), "rnn.weight_hh_l0": (20, 5),
            "rnn.bias_ih_l0": (20,), "rnn.bias_hh_l0": (20,), "rnn.weight_peep_l0": (3, 5),
            "rnn.weight_ih_l1": (20, 5), "rnn.weight_hh_l1": (20, 5), "rnn.bias_ih_l1": (20,),
            "rnn.bias_hh_l1": (20,), "rnn.weight_peep_l1": (3, 5), "decoder.weight": (V, 5),
            "decoder.bias": (V,)}
    assert {k: v.shape for k, v in m.p.items()} == want
    for v in m.p.values():  # every tensor is a view of the one flat buffer
        assert np.shares_memory(v, m.flat) and v.flags.c_contiguous
    m.flat[:] = 0
    m.p["rnn.weight_hh_l1"][2, 3] = 7
    assert np.count_nonzero(m.flat) == 1
    assert m.num_parameters == sum(int(np.prod(s)) for s in want.values())
    rnn = make_model("rnn", E=3, H=5, L=1)
    assert rnn.p["rnn.weight_ih_l0"].shape == (5, 3) and rnn.p["rnn.bias_hh_l0"].shape == (5,)


def test_tied_weights_share_one_tensor():
    m = make_model(tie=True)
    assert m.p["decoder.weight"] is m.p["encoder.weight"]
    assert "decoder.weight" not in dict(m.arch.tensor_shapes())
    assert set(m.state_dict()) >= {"encoder.weight", "decoder.weight"}
    with pytest.raises(RnnkitError, match="--tie-weights needs --emb equal to --hidden"):
        Architecture("lstm", 10, 4, 6, 1, tie_weights=True)


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type,tie,dropout,output", [v + ({},) for v in VARIANTS]
                         + [("lstm", False, 0.3, ADAPTIVE)])
def test_whole_model_gradient_matches_finite_differences(model_type, tie, dropout, output):
    """Embedding -> 2 layers -> dropout -> decoder, float64 reference kernels, every parameter."""
    m = make_model(model_type, tie, dropout, E=4, H=4, dtype=np.float64,
                   backend=ref, **output)
    rng = np.random.default_rng(1)
    x, y = window(rng)
    h0 = rng.standard_normal((2, 2, 4)) * 0.5
    c0 = rng.standard_normal((2, 2, 4)) * 0.5 if m.arch.lstm else None
    scale = 0.5

    def loss():
        h = h0.copy()
        c = None if c0 is None else c0.copy()
        return m.forward_backward(x, y, h, c, scale, np.random.default_rng(7) if dropout else None)

    loss()
    analytic = m.grad.copy()
    numeric = numeric_gradient(m.flat, loss, scale)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    if model_type == "lstm-nofg":  # the forget-gate rows are unused: zero gradient
        g = views(m.grad, m.arch)
        assert not g["rnn.weight_ih_l0"][4:8].any() and not g["rnn.bias_hh_l1"][4:8].any()


@pytest.mark.parametrize("model_type,tie,dropout,output", [v + ({},) for v in VARIANTS]
                         + [("lstm", False, 0.3, ADAPTIVE)])
def test_kernels_give_the_reference_loss_gradients_and_state(model_type, tie, dropout, output):
    mk = make_model(model_type, tie, dropout, E=6, H=5 if not tie else 6, seed=3, **output)
    mr = make_model(model_type, tie, dropout, E=6, H=5 if not tie else 6, seed=3,
                    backend=ref, **output)
    rng = np.random.default_rng(2)
    x, y = window(rng, T=7, B=3)
    outs = []
    for m in (mk, mr):
        h, c = m.zero_state(3)
        h += 0.3
        losses = [m.forward_backward(x, y, h, c, 1 / 3, np.random.default_rng(4))
                  for _ in range(2)]  # the second window starts from the carried state
        outs.append((losses, m.grad.copy(), h.copy(), None if c is None else c.copy()))
    (lk, gk, hk, ck), (lr, gr, hr, cr) = outs
    np.testing.assert_allclose(lk, lr, rtol=1e-5)
    np.testing.assert_allclose(gk, gr, rtol=1e-3, atol=1e-5 * np.abs(gr).max())
    np.testing.assert_allclose(hk, hr, atol=1e-5)
    if ck is not None:
        np.testing.assert_allclose(ck, cr, atol=1e-5)


@pytest.mark.parametrize("backend", [None, ref])
def test_sparse_embedding_gradient_equals_the_dense_one_and_names_its_rows(backend):
    """set_sparse_grad: over windows with different ids, the gradient is the dense one exactly,
    zero outside the rows grad_rows() names; clipping and SGD on those rows match the dense
    passes."""
    dense, sparse = (make_model(E=5, H=4, seed=9, backend=backend) for _ in range(2))
    sparse.set_sparse_grad(True)
    assert sparse.grad_rows() == ()               # nothing written yet
    rng = np.random.default_rng(5)
    states = [m.zero_state(3) for m in (dense, sparse)]
    opt = SGD(dense.flat.shape[0], dense.dtype)
    for w in range(4):
        x, y = window(rng, T=4, B=3)
        if w == 2:
            x[:] = x[0, 0]                        # a window that reads one row only
        for m, (h, c) in zip((dense, sparse), states):
            m.forward_backward(x, y, h, c, 1 / 3)
        np.testing.assert_array_equal(sparse.grad, dense.grad)
        (rows,) = sparse.grad_rows()
        np.testing.assert_array_equal(rows.rows, np.unique(x))
        start, shape = sparse.layout.offsets["encoder.weight"]
        assert (rows.start, rows.count, rows.width) == (start, *shape)
        outside = np.delete(views(sparse.grad, sparse.arch)["encoder.weight"], rows.rows, 0)
        assert not outside.any()
        nd = clip_grad_norm(dense.grad, 0.05)
        ns = clip_grad_norm(sparse.grad, 0.05, sparse.grad_rows())
        assert ns == pytest.approx(nd, rel=1e-6) and nd > 0.05   # clipped
        opt.step(dense.flat, dense.grad, 0.5)
        opt.step(sparse.flat, sparse.grad, 0.5, sparse.grad_rows())
        np.testing.assert_allclose(sparse.flat, dense.flat, rtol=1e-5, atol=1e-7)
        sparse.flat[...] = dense.flat    # the norms' summation orders differ in the last bits
    assert not np.array_equal(dense.flat, make_model(E=5, H=4, seed=9).flat)


def test_tied_weights_keep_a_dense_gradient():
    m = make_model(tie=True)
    m.set_sparse_grad(True)
    x, y = window(np.random.default_rng(0))
    m.forward_backward(x, y, *m.zero_state(2), 0.5)
    assert m.grad_rows() == ()


def test_dropout_only_while_training_and_scaled():
    m = make_model(dropout=0.5)
    mask = m._dropout_mask(np.random.default_rng(0), (200, 50))
    assert set(np.unique(mask)) == {0.0, 2.0}  # inverted dropout: kept units scaled by 1/(1-p)
    assert abs((mask == 0).mean() - 0.5) < 0.02
    x, y = window(np.random.default_rng(0))
    h, c = m.zero_state(2)
    without = m.forward_backward(x, y, h, c, 1.0, None)
    assert without == pytest.approx(m.forward_loss(x, y, *m.zero_state(2)), rel=1e-6)


# --- the LM protocol -----------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ["lstm", "lstm-peephole", "lstm-nofg", "rnn"])
def test_probabilities_sum_to_one_at_several_positions(model_type):
    m = make_model(model_type, scale=1.0)
    state = m.start(3)
    for ids in ([3, 4, 5], [9, 3, 3], [6, 2, 7], [1, 8, 0]):
        lp = m.log_probs(state)
        assert lp.shape == (3, len(VOCAB))
        np.testing.assert_allclose((10.0 ** lp.astype(np.float64)).sum(1), 1.0, atol=1e-5)
        state = m.advance(state, np.array(ids))


@pytest.mark.parametrize("model_type", ["lstm", "lstm-peephole", "rnn"])
def test_batched_scoring_equals_token_by_token_steps(model_type):
    m = make_model(model_type, E=5, H=6, scale=0.8)
    rng = np.random.default_rng(5)
    sentences = [rng.integers(3, len(VOCAB), n).astype(np.uint32) for n in (4, 0, 9, 1, 4, 6)]
    fast = m.token_log_probs(sentences, max_batch=4)  # sorted, padded, two batches
    slow = LanguageModel.token_log_probs(m, sentences)  # start / log_probs / advance
    for f, s, sent in zip(fast, slow, sentences):
        assert len(f) == len(sent) + 1
        np.testing.assert_allclose(f, s, atol=2e-5)
    # the first token's distribution is the one after <s>
    assert fast[0][0] == pytest.approx(m.log_probs(m.start(1))[0, sentences[0][0]], abs=1e-5)


def test_long_sentences_are_scored_in_windows_and_small_batches(monkeypatch):
    import rnnkit.models.rnnlm as rl

    m = make_model("lstm-peephole", E=5, H=6, scale=0.8)
    rng = np.random.default_rng(6)
    sentences = [rng.integers(3, len(VOCAB), n).astype(np.uint32) for n in (40, 3, 17, 25)]
    want = LanguageModel.token_log_probs(m, sentences)
    monkeypatch.setattr(rl, "SCORE_WINDOW", 4)       # 41 steps in 11 windows, state carried
    monkeypatch.setattr(rl, "SCORE_POSITIONS", 50)   # batches of 1, 1, 2 sentences
    for got, w in zip(m.token_log_probs(sentences), want):
        np.testing.assert_allclose(got, w, atol=2e-5)


def test_full_scores_flags_and_perplexity():
    m = make_model(scale=1.0)
    m.tokenizer = Tokenizer()
    sents = ["the cat sat on the mat", "a dog ran", "the"]
    total, count = 0.0, 0
    for s in sents:
        full = list(m.full_scores(s))
        assert [oov for _, _, oov in full] == [w not in VOCAB for w in s.split()] + [False]
        assert [n for _, n, _ in full] == list(range(2, len(s.split()) + 3))
        total += m.score(s)
        count += len(s.split()) + 1
    assert m.perplexity(sents) == pytest.approx(10 ** (-total / count), rel=1e-9)


def test_advance_updates_in_place_and_copy_branches():
    m = make_model()
    s = m.start(2)
    branch = s.copy()
    m.advance(s, np.array([3, 4]))
    assert not np.allclose(s.h, branch.h)
    np.testing.assert_array_equal(m.log_probs(branch), m.log_probs(m.start(2)))
    lp = m.log_probs(s)
    assert m.log_probs(s) is lp  # the state's buffer, reused: no allocation per step
    sub = s.select([1])
    np.testing.assert_allclose(m.log_probs(sub)[0], m.log_probs(s)[1], atol=1e-6)
    with pytest.raises(RnnkitError, match="token ids must be in"):
        m.advance(s, np.array([3, 99]))


# --- model files ---------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    m = make_model("lstm-peephole", tie=True, scale=1.0)
    m.tokenizer = Tokenizer(lowercase=True)
    path = tmp_path / "m.rnnkit"
    m.save(path, training={"note": "x"})
    back = load(path)
    np.testing.assert_array_equal(back.flat, m.flat)
    assert back.arch == m.arch and back.vocab.tokens == m.vocab.tokens
    assert back.tokenizer == m.tokenizer and back.meta["training"] == {"note": "x"}
    assert back.score("The Cat") == pytest.approx(m.score("the cat"), abs=1e-6)
    generic = rnnkit.load(path)  # the one loader of every model type
    assert isinstance(generic, RNNLM) and generic.model_type == "lstm-peephole"
    np.testing.assert_array_equal(generic.flat, m.flat)
    tensors, meta = modelfile.read(path)
    assert meta["model_type"] == "lstm-peephole" and "rnn.weight_peep_l0" in tensors
    np.testing.assert_array_equal(tensors["decoder.weight"], tensors["encoder.weight"])
    assert "peephole" in meta["tensors"]


def test_adaptive_model_round_trip_keeps_output_and_cutoffs(tmp_path):
    m = make_model("lstm", scale=1.0, **ADAPTIVE)
    path = tmp_path / "a.rnnkit"
    m.save(path)
    tensors, meta = modelfile.read(path)
    assert meta["architecture"]["output"] == "adaptive"
    assert meta["architecture"]["cutoffs"] == [4, 7] and meta["architecture"]["head_bias"]
    assert {k for k in tensors if k.startswith("decoder.")} == {
        "decoder.head.weight", "decoder.head.bias", "decoder.tail.0.0.weight",
        "decoder.tail.0.1.weight", "decoder.tail.1.0.weight", "decoder.tail.1.1.weight"}
    assert tensors["decoder.head.weight"].shape == (6, 4)
    assert tensors["decoder.tail.1.1.weight"].shape == (3, 1)   # 3 words, 4 // 2^2 units
    back = load(path)
    assert back.arch == m.arch and back.arch.cutoffs == (4, 7)
    assert back.score("the cat sat") == pytest.approx(m.score("the cat sat"), abs=1e-6)


@pytest.mark.parametrize("kw,msg", [
    (dict(output="adaptive", cutoffs=(4, 7), tie_weights=True), "needs the full softmax"),
    (dict(output="adaptive", cutoffs=(7, 4)), "strictly increasing"),
    (dict(output="adaptive", cutoffs=(4, 10)), "strictly increasing"),
    (dict(output="adaptive", cutoffs=()), "at least one cutoff"),
    (dict(cutoffs=(4,)), "adaptive only"),
    (dict(output="hierarchical"), "unknown output layer"),
])
def test_adaptive_architecture_errors(kw, msg):
    with pytest.raises(RnnkitError, match=msg):
        Architecture("lstm", 10, 4, 4, 1, **kw)


def test_load_errors(tmp_path):
    m = make_model()
    good = tmp_path / "m.rnnkit"
    m.save(good)
    data = good.read_bytes()
    cut = tmp_path / "cut.rnnkit"
    cut.write_bytes(data[:len(data) - 100])
    with pytest.raises(ModelFileError, match="damaged or truncated"):
        load(cut)
    tensors, meta = modelfile.read(good)
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
    from safetensors.numpy import save_file

    other = tmp_path / "v9.rnnkit"
    save_file(tensors, str(other),
              metadata={"rnnkit": json.dumps({"format": "rnnkit-model", "format_version": 9, **meta})})
    with pytest.raises(ModelFileError, match="format version 9 is not supported"):
        load(other)
    missing = dict(tensors)
    del missing["rnn.weight_hh_l1"]
    modelfile.save(tmp_path / "miss.rnnkit", missing, meta)
    with pytest.raises(ModelFileError, match="tensor rnn.weight_hh_l1 is missing"):
        load(tmp_path / "miss.rnnkit")
    wrong = dict(tensors, **{"decoder.bias": np.zeros(3, np.float32)})
    modelfile.save(tmp_path / "shape.rnnkit", wrong, meta)
    with pytest.raises(ModelFileError, match=r"decoder.bias has shape \[3\]"):
        load(tmp_path / "shape.rnnkit")


# --- PyTorch interchange -------------------------------------------------------------------------
def write_token_list(path, tokens):
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


def test_import_maps_specials_by_token(tmp_path):
    """A PyTorch-style vocabulary (<eos>, no <s>) without torch: rows are permuted by token."""
    V, E, H = 5, 3, 3
    rng = np.random.default_rng(0)
    tokens = ["the", "<unk>", "<eos>", "cat", "sat"]
    sd = {"encoder.weight": rng.standard_normal((V, E)), "decoder.weight": rng.standard_normal((V, H)),
          "decoder.bias": rng.standard_normal(V), "rnn.weight_ih_l0": rng.standard_normal((4 * H, E)),
          "rnn.weight_hh_l0": rng.standard_normal((4 * H, H)), "rnn.bias_ih_l0": rng.standard_normal(4 * H),
          "rnn.bias_hh_l0": rng.standard_normal(4 * H)}
    from safetensors.numpy import save_file

    save_file({k: v.astype(np.float32) for k, v in sd.items()}, str(tmp_path / "s.safetensors"))
    m = from_torch_state(tmp_path / "s.safetensors", write_token_list(tmp_path / "v.txt", tokens))
    assert m.vocab.tokens == ["<unk>", "<s>", "</s>", "the", "cat", "sat"]
    np.testing.assert_array_equal(m.p["encoder.weight"][1], m.p["encoder.weight"][2])  # <s> reads as <eos>
    np.testing.assert_allclose(m.p["encoder.weight"][2], sd["encoder.weight"][2], rtol=1e-6)
    np.testing.assert_allclose(m.p["decoder.weight"][4], sd["decoder.weight"][3], rtol=1e-6)
    assert m.p["decoder.bias"][1] == -30.0
    assert 10 ** m.log_probs(m.start(1))[0, 1] < 1e-12
    direct = rnnkit.load(tmp_path / "s.safetensors", vocab=tmp_path / "v.txt")
    np.testing.assert_array_equal(direct.flat, m.flat)
    with pytest.raises(ModelFileError, match="without rnnkit metadata.*import-torch"):
        rnnkit.load(tmp_path / "s.safetensors")
    with pytest.raises(InputError, match="4 tokens, but encoder.weight .* has 5 rows"):
        from_torch_state(tmp_path / "s.safetensors", write_token_list(tmp_path / "w.txt", tokens[:4]))


class TestTorch:
    @pytest.fixture(autouse=True)
    def _torch(self):
        self.torch = pytest.importorskip("torch")
        self.torch.manual_seed(0)

    def torch_lm(self, V, E, H, L, cell="LSTM", tie=False):
        torch = self.torch

        class LM(torch.nn.Module):
            """PyTorch's word_language_model RNNModel, without dropout."""

            def __init__(self):
                super().__init__()
                self.encoder = torch.nn.Embedding(V, E)
                self.rnn = getattr(torch.nn, cell)(E, H, L)
                self.decoder = torch.nn.Linear(H, V)
                if tie:
                    self.decoder.weight = self.encoder.weight

            def forward(self, ids):  # ids [T, B] -> log-probabilities (natural) [T, B, V]
                out, _ = self.rnn(self.encoder(ids))
                return torch.log_softmax(self.decoder(out), dim=-1)

        return LM().eval()

    def torch_log10(self, lm, sentence_ids, start_id):
        torch = self.torch
        ids = torch.tensor([start_id] + list(sentence_ids), dtype=torch.long)[:, None]
        with torch.no_grad():
            lp = lm(ids)[:, 0].double().numpy() / math.log(10)
        return lp

    @pytest.mark.parametrize("model_type,tie", [("lstm", False), ("lstm", True), ("rnn", False)])
    def test_rnnkit_model_loads_into_pytorch(self, tmp_path, model_type, tie):
        from safetensors.torch import load_file

        m = make_model(model_type, tie=tie, E=6, H=6, scale=0.6)
        m.save(tmp_path / "m.rnnkit")
        lm = self.torch_lm(len(VOCAB), 6, 6, 2, "LSTM" if model_type == "lstm" else "RNN", tie)
        lm.load_state_dict(load_file(str(tmp_path / "m.rnnkit")))
        sent = np.array([3, 4, 5, 9, 3], np.uint32)
        ours = m.token_log_probs([sent])[0]
        theirs = self.torch_log10(lm, sent, BOS)
        targets = list(sent) + [EOS]
        np.testing.assert_allclose(ours, theirs[np.arange(len(targets)), targets], atol=1e-4)
        # the full distribution too, along the way
        state = m.start(1)
        for t, w in enumerate(sent):
            np.testing.assert_allclose(m.log_probs(state)[0], theirs[t], atol=1e-4)
            m.advance(state, np.array([w]))

    @pytest.mark.parametrize("cell", ["LSTM", "RNN"])
    def test_pytorch_model_imports_into_rnnkit(self, tmp_path, cell):
        from safetensors.torch import save_file

        tokens = ["<unk>", "<eos>", "the", "cat", "sat", "on", "mat"]  # no <s>, as PyTorch's example
        lm = self.torch_lm(len(tokens), 5, 7, 2, cell)
        with self.torch.no_grad():
            for p in lm.parameters():
                p.uniform_(-0.5, 0.5)
        state = tmp_path / "state.safetensors"
        save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(state))
        vocab = write_token_list(tmp_path / "vocab.txt", tokens)
        m = from_torch_state(state, vocab)
        assert m.model_type == ("lstm" if cell == "LSTM" else "rnn")
        assert m.vocab.tokens[:3] == list(SPECIALS) and m.vocab.tokens[3:] == tokens[2:]
        sent_words = ["the", "cat", "sat", "on", "the", "mat"]
        theirs = self.torch_log10(lm, [tokens.index(w) for w in sent_words], tokens.index("<eos>"))
        ours = list(m.full_scores(" ".join(sent_words)))
        want = [tokens.index(w) for w in sent_words] + [tokens.index("<eos>")]
        np.testing.assert_allclose([lp for lp, _, _ in ours],
                                   theirs[np.arange(len(want)), want], atol=1e-4)
        # the command does the same and writes an rnnkit model file
        r = runner.invoke(app, ["import-torch", str(state), "--vocab", str(vocab), "--out",
                                str(tmp_path / "imp.rnnkit"), "--json"])
        assert r.exit_code == 0, r.output
        info = json.loads(r.stdout)
        assert info["layers"] == 2 and info["hidden"] == 7 and info["vocab_mapping"]["bos"] is None
        back = load(tmp_path / "imp.rnnkit")
        np.testing.assert_array_equal(back.flat, m.flat)


def test_import_torch_errors(tmp_path, capsys):
    from safetensors.numpy import save_file

    save_file({"encoder.weight": np.zeros((4, 2), np.float32),
               "rnn.weight_ih_l0": np.zeros((6, 2), np.float32),
               "rnn.weight_hh_l0": np.zeros((6, 2), np.float32),
               "decoder.weight": np.zeros((4, 2), np.float32)}, str(tmp_path / "gru.safetensors"))
    vocab = write_token_list(tmp_path / "v.txt", ["<unk>", "<s>", "</s>", "a"])
    out = tmp_path / "x.rnnkit"
    code, _, err = cli(capsys, "import-torch", tmp_path / "gru.safetensors", "--vocab", vocab,
                       "--out", out)
    assert code == 2 and err.startswith("error:") and "a GRU" in err
    assert len(err.strip().splitlines()) == 1
    save_file({"weight": np.zeros(3, np.float32)}, str(tmp_path / "other.safetensors"))
    code, _, err = cli(capsys, "import-torch", tmp_path / "other.safetensors", "--vocab", vocab,
                       "--out", out)
    assert code == 2 and "not a PyTorch word-language-model state dict" in err
    m = make_model()
    m.save(tmp_path / "m.rnnkit")
    code, _, err = cli(capsys, "import-torch", tmp_path / "m.rnnkit", "--vocab", vocab, "--out", out)
    assert code == 2 and "4 tokens, but encoder.weight" in err  # the vocabulary does not match
    code, _, err = cli(capsys, "import-torch", tmp_path / "nothing.safetensors", "--vocab", vocab,
                       "--out", out)
    assert code == 2 and "no such model file" in err
    data = (tmp_path / "m.rnnkit").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-50])
    code, _, err = cli(capsys, "import-torch", tmp_path / "cut.safetensors", "--vocab", vocab,
                       "--out", out)
    assert code == 2 and "damaged or truncated" in err
    assert not out.exists()
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(RnnkitError, match="lists 'a' twice"):
        read_token_list(tmp_path / "dup.txt")


# --- plot and diagnose ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM trained for two epochs on a toy corpus (a second or so)."""
    from rnnkit.text.prepare import build_corpus
    from rnnkit.training import train

    d = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(300)]
    (d / "text.txt").write_text("\n".join(lines) + "\n")
    corpus = build_corpus([str(d / "text.txt")])
    corpus.write(d / "data")
    train(corpus, d / "m.rnnkit", emb=8, hidden=8, layers=2, epochs=2, bptt=10, batch=4,
          threads=1)
    return d


def test_plot(trained, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    for src in ("m.rnnkit", "m.rnnkit.metrics.jsonl"):
        out = tmp_path / (src + ".png")
        r = runner.invoke(app, ["plot", str(trained / src), "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["epochs"] == 2
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_errors(trained, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "epoch"}\nnot json\n')
    from rnnkit.training import load_records

    with pytest.raises(RnnkitError, match=f"{bad}:2: not a JSON line"):
        load_records(bad)
    code, _, err = cli(capsys, "plot", tmp_path / "missing.jsonl", "--out", tmp_path / "x.png")
    assert code == 2 and "no such file" in err
    # the training log beside the model is not overwritten by a figure
    log = trained / "m.rnnkit.metrics.jsonl"
    before = log.read_bytes()
    code, _, err = cli(capsys, "plot", trained / "m.rnnkit", "--out", log)
    assert code == 2 and "ending in .png" in err and log.read_bytes() == before
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    code, _, err = cli(capsys, "plot", trained / "m.rnnkit", "--out", tmp_path / "x.png")
    assert code == 2 and err.startswith("error: plotting needs matplotlib")
    assert "rnnkit[plot]" in err and not (tmp_path / "x.png").exists()


def test_diagnose(trained, capsys):
    r = runner.invoke(app, ["diagnose", str(trained / "m.rnnkit"), "--data", str(trained / "data"),
                            "--max-distance", "6", "--streams", "4", "--positions", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)["models"][0]
    g = np.array(res["grad_norm"])
    assert g.shape == (6, 2) and np.all(g > 0)
    assert res["distance"] == [1, 2, 3, 4, 5, 6]
    r = runner.invoke(app, ["diagnose", str(trained / "m.rnnkit"), "--data", str(trained / "data"),
                            "--max-distance", "3", "--streams", "2", "--positions", "1"])
    assert r.exit_code == 0 and "last / k=1" in r.stdout
    code, _, err = cli(capsys, "diagnose", trained / "m.rnnkit", "--data", trained / "data",
                       "--split", "nope")
    assert code == 2 and "no 'nope' split" in err


def test_diagnose_gradient_matches_finite_differences():
    """dL_t/dh_{t-k} of the diagnosis against a float64 finite difference through the reference."""
    from rnnkit.report.diagnose import gradient_by_distance

    m = make_model("lstm", E=4, H=4, L=1, dtype=np.float64, backend=ref, scale=1.0)
    ids = np.random.default_rng(3).integers(3, len(VOCAB), 60).astype(np.uint32)
    res = gradient_by_distance(m, ids, max_distance=3, streams=1, positions=1, warmup=2)
    t = res["positions"][0]
    from rnnkit.training.lm_task import batchify, lm_stream

    x, y = lm_stream(ids)
    xb, yb = batchify(x, 1), batchify(y, 1)
    k = 3
    # the state after input t-k, from zero at t0 = t - k - warmup
    state = m.start(1)
    state.h[:] = 0
    state.c[:] = 0
    for s in range(t - k - 2, t - k + 1):
        state.ids[:] = xb[s]
        m.step(state)
    h_at, c_at = state.h.copy(), state.c.copy()

    def loss(h):
        hh, cc = h.copy(), c_at.copy()
        top = m.top_hidden(np.ascontiguousarray(xb[t - k + 1:t + 1]), hh, cc)[-1]
        lp = ref.log_softmax(top, m.p["decoder.weight"], m.p["decoder.bias"])
        return -lp[0, yb[t, 0]]

    eps = 1e-6
    num = np.zeros(4)
    for j in range(4):
        hp, hm = h_at.copy(), h_at.copy()
        hp[0, 0, j] += eps
        hm[0, 0, j] -= eps
        num[j] = (loss(hp) - loss(hm)) / (2 * eps)
    assert res["grad_norm"][k - 1][0] == pytest.approx(np.linalg.norm(num), rel=1e-6)


def test_python_m_rnnkit_import_torch_help():
    r = subprocess.run([sys.executable, "-m", "rnnkit", "import-torch", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "rnnkit import-torch" in r.stdout


def test_score_and_generate_commands_on_a_recurrent_model(trained, tmp_path, capsys):
    text = tmp_path / "s.txt"
    text.write_text("the cat sat on the mat\ndog ran\n")
    code, stdout, err = cli(capsys, "score", trained / "m.rnnkit", text, "--json", "--per-token")
    assert code == 0, err
    rows = [json.loads(line) for line in stdout.splitlines()]
    model = load(trained / "m.rnnkit")
    for row, sentence in zip(rows, ["the cat sat on the mat", "dog ran"]):
        assert row["log10_prob"] == pytest.approx(model.score(sentence), abs=1e-4)
        per_token = row["per_token"]
        assert [t["token"] for t in per_token] == sentence.split() + ["</s>"]
        assert row["log10_prob"] == pytest.approx(sum(t["log10_prob"] for t in per_token),
                                                  abs=1e-9)
    code, stdout, err = cli(capsys, "generate", trained / "m.rnnkit", "--num", 5, "--seed", 3,
                            "--json", "--max-len", 12)
    assert code == 0, err
    samples = [json.loads(line) for line in stdout.splitlines()]
    assert len(samples) == 5
    for s in samples:  # each sample's probability is the model's own
        if s["complete"]:
            assert s["log10_prob"] == pytest.approx(model.score(s["text"]), abs=1e-3)
        assert all(w in WORDS for w in s["text"].split())
    again = cli(capsys, "generate", trained / "m.rnnkit", "--num", 5, "--seed", 3, "--json",
                "--max-len", 12)[1]
    assert again == stdout  # same seed, same sentences


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("streams", [4, 8, 16])
def test_many_streams_reuse_their_packed_weights_with_the_same_numbers(cell, streams):
    """From 8 streams on: packs, and the first layer's token table, filled with a row per
    token as the run first feeds it (every token at once when there are no more tokens than
    streams, 10 <= 16): the same bits as a state without packs, which looks its embeddings up
    and packs at every step. Fewer streams make neither."""
    from rnnkit.nn.backend import kernels

    m = make_model(cell, E=6, H=10, scale=0.8)
    a, b = m.start(streams), m.start(streams)
    assert_packs_change_nothing(m, a, b, len(VOCAB), np.random.default_rng(21))
    r = np.random.default_rng(21)   # the tokens the helper fed, after <s>
    fed = {BOS} | {int(i) for _ in range(3) for i in r.integers(3, len(VOCAB), streams)}
    table = a.packs.get((id(m.stack), "table"))
    if kernels().gemm_backend() == "packed" and streams >= 8:
        # 2 layers, the output layer and the table of the tokens fed, each row its own
        assert len(a.packs) == 4
        if streams >= len(VOCAB):
            fed = set(range(len(VOCAB)))
        assert table.n == len(fed) and sorted(np.flatnonzero(table.slot >= 0)) == sorted(fed)
        w_ih, _, b_ih, b_hh = m.stack._w[0]
        for tok in fed:
            np.testing.assert_allclose(table.rows[table.slot[tok]],
                                       m.p["encoder.weight"][tok] @ w_ih.T + b_ih + b_hh,
                                       rtol=1e-5, atol=1e-6)
    else:
        assert table is None
    assert a.copy().packs is a.packs and a.select(np.arange(4)).packs is a.packs


@pytest.mark.parametrize("output", [{}, ADAPTIVE])
def test_the_best_tokens_without_the_full_distribution_change_nothing(output):
    """top_log_probs gives log_probs' best entries bit for bit (the full softmax without writing
    [rows, V]; the adaptive one cut from its distribution), and a search the same sentences."""
    for dtype, backend in ((np.float32, None), (np.float64, ref)):
        m = make_model("lstm", E=6, H=10, scale=0.8, dtype=dtype, backend=backend, **output)
        st = m.start(12)
        m.advance(st, np.arange(12) % (len(VOCAB) - 3) + 3)
        assert_top_log_probs_change_nothing(m, st, [None] * 3)
