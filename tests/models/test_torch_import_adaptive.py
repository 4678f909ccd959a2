"""import-torch for adaptive-softmax language models (PyTorch's AdaptiveLogSoftmaxWithLoss named
`decoder`), and the other direction: an rnnkit --output adaptive file loads into PyTorch's module
with load_state_dict(strict=True).

Without torch: a hand-made state dict saved as safetensors, its log-probabilities computed here by
a few lines of numpy (an LSTM step and p(w) = p_head(cluster) p_cluster(w)), in the model's own
ids, against the imported model's in rnnkit's permuted ids. With torch (optional): the real
module both ways, to 1e-5.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from rnnkit.cli import main
from rnnkit.errors import ModelFileError
from rnnkit.models.rnnlm import RNNLM, Architecture, load
from rnnkit.models.torch_import import from_torch_state
from rnnkit.text.vocab import BOS, EOS, SPECIALS, Vocab

# PyTorch-style vocabulary sorted by frequency: <eos> and <unk> in the head, no <s>
TOKENS = ["the", "<eos>", "<unk>", "a", "of", "cat", "dog", "sat", "mat", "ran", "on"]
V, E, H = len(TOKENS), 3, 8
CUTOFFS = (5, 8)        # head: ids 0..4; cluster 0: 5..7; cluster 1: 8..10
DIV = 2.0               # D_0 = 8 // 2 = 4, D_1 = 8 // 4 = 2


def adaptive_state(seed=0, head_bias=False, cutoffs=CUTOFFS, dims=None, V=V):
    rng = np.random.default_rng(seed)
    dims = dims or [int(H // DIV ** (i + 1)) for i in range(len(cutoffs))]
    bounds = list(cutoffs) + [V]
    t = {"encoder.weight": rng.uniform(-1, 1, (V, E)),
         "rnn.weight_ih_l0": rng.uniform(-0.5, 0.5, (4 * H, E)),
         "rnn.weight_hh_l0": rng.uniform(-0.5, 0.5, (4 * H, H)),
         "rnn.bias_ih_l0": rng.uniform(-0.5, 0.5, 4 * H),
         "rnn.bias_hh_l0": rng.uniform(-0.5, 0.5, 4 * H),
         "decoder.head.weight": rng.uniform(-1, 1, (cutoffs[0] + len(cutoffs), H))}
    if head_bias:
        t["decoder.head.bias"] = rng.uniform(-1, 1, cutoffs[0] + len(cutoffs))
    for i, D in enumerate(dims):
        t[f"decoder.tail.{i}.0.weight"] = rng.uniform(-1, 1, (D, H))
        t[f"decoder.tail.{i}.1.weight"] = rng.uniform(-1, 1, (bounds[i + 1] - bounds[i], D))
    return {k: v.astype(np.float32) for k, v in t.items()}


def log_softmax(z):
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def numpy_log_probs(t, ids, cutoffs=CUTOFFS):
    """ln p(. | ids[:k+1]) [len(ids), V] in the state dict's ids, float64, written out here."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    f64 = {k: v.astype(np.float64) for k, v in t.items()}
    h, c = np.zeros(H), np.zeros(H)
    bounds = list(cutoffs) + [len(f64["encoder.weight"])]
    C0, K = cutoffs[0], len(cutoffs)
    out = []
    for w in ids:
        g = (f64["rnn.weight_ih_l0"] @ f64["encoder.weight"][w] + f64["rnn.bias_ih_l0"]
             + f64["rnn.weight_hh_l0"] @ h + f64["rnn.bias_hh_l0"])
        i, f, gg, o = sig(g[:H]), sig(g[H:2 * H]), np.tanh(g[2 * H:3 * H]), sig(g[3 * H:])
        c = f * c + i * gg
        h = o * np.tanh(c)
        head = log_softmax(f64["decoder.head.weight"] @ h + f64.get("decoder.head.bias", 0))
        lp = np.empty(bounds[-1])
        lp[:C0] = head[:C0]
        for k in range(K):
            p = f64[f"decoder.tail.{k}.0.weight"] @ h
            lp[bounds[k]:bounds[k + 1]] = head[C0 + k] + log_softmax(
                f64[f"decoder.tail.{k}.1.weight"] @ p)
        out.append(lp)
    return np.array(out)


def write_tokens(path, tokens):
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


@pytest.mark.parametrize("head_bias", [False, True])
def test_hand_made_adaptive_state_imports_exactly(tmp_path, head_bias):
    t = adaptive_state(head_bias=head_bias)
    save_file(t, str(tmp_path / "s.safetensors"))
    m = from_torch_state(tmp_path / "s.safetensors", write_tokens(tmp_path / "v.txt", TOKENS))
    a = m.arch
    # <s> was missing: one more head word, so every cutoff moves by one
    assert (a.output, a.cutoffs, a.div_value) == ("adaptive", (6, 9), DIV)
    assert a.head_bias  # made to give the missing <s> its e^-30
    assert m.vocab.tokens == list(SPECIALS) + ["the", "a", "of", "cat", "dog", "sat", "mat",
                                               "ran", "on"]
    sentence = ["the", "cat", "sat", "on", "a", "mat"]
    want = numpy_log_probs(t, [TOKENS.index(w) for w in ["<eos>"] + sentence])  # [7, V]
    to_new = [m.vocab.tokens.index({"<eos>": "</s>"}.get(w, w)) for w in TOKENS]
    state = m.start(1)
    for k, w in enumerate(sentence + [None]):
        ours = m.log_probs(state)[0].astype(np.float64) / np.log10(np.e)   # natural log
        np.testing.assert_allclose(ours[to_new], want[k], atol=1e-5)
        assert ours[BOS] < -29            # <s>: about e^-30
        np.testing.assert_allclose(np.exp(ours).sum(), 1.0, atol=1e-5)
        if w is not None:
            m.advance(state, np.array([m.vocab.tokens.index(w)]))
    # the scoring path (packed, cluster by cluster) agrees with the step path
    ids = np.array([m.vocab.tokens.index(w) for w in sentence])
    lp = m.token_log_probs([ids])[0] / np.log10(np.e)
    targets = [TOKENS.index(w) for w in sentence] + [TOKENS.index("<eos>")]
    np.testing.assert_allclose(lp, want[np.arange(7), targets], atol=1e-5)


def test_the_command_imports_and_reports_the_inferred_output(tmp_path, capsys):
    t = adaptive_state(head_bias=True, seed=1)
    tokens = ["<s>"] + TOKENS   # every special present: nothing moves between clusters
    t["encoder.weight"] = np.vstack([t["encoder.weight"][:1], t["encoder.weight"]])
    t["decoder.head.weight"] = np.vstack([t["decoder.head.weight"][:1], t["decoder.head.weight"]])
    t["decoder.head.bias"] = np.concatenate([[0.5], t["decoder.head.bias"]]).astype(np.float32)
    save_file(t, str(tmp_path / "s.safetensors"))
    out = tmp_path / "imp.rnnkit"
    code = main(["import-torch", str(tmp_path / "s.safetensors"), "--vocab",
                 str(write_tokens(tmp_path / "v.txt", tokens)), "--out", str(out), "--json"])
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output"] == "adaptive" and info["cutoffs"] == [6, 9]
    assert info["div_value"] == DIV and info["head_bias"] is True
    m = load(out)
    # <s>, <unk>, </s> were ids 0, 3, 2: they are 1, 0, 2 now; the head bias moved with them
    np.testing.assert_array_equal(m.p["decoder.head.bias"][[0, 1, 2]], t["decoder.head.bias"][[3, 0, 2]])
    np.testing.assert_array_equal(m.p["decoder.tail.1.1.weight"], t["decoder.tail.1.1.weight"])


@pytest.mark.parametrize("change,words", [
    # a special in a tail cluster cannot be moved to the head without changing the model
    (lambda t, tok: tok.__setitem__(slice(None), ["the", "a", "of", "cat", "dog", "<eos>",
                                                  "<unk>", "sat", "mat", "ran", "on"]),
     ["'<eos>'", "tail cluster", "head"]),
    (lambda t, tok: t.__setitem__("decoder.tail.1.1.weight", np.zeros((4, 2), np.float32)),
     ["covers 12 words", "11 rows"]),
    (lambda t, tok: t.__setitem__("decoder.tail.0.1.weight", np.zeros((3, 3), np.float32)),
     ["decoder.tail.0.1.weight", "[3, 3]", "[S_0, 4]"]),
    (lambda t, tok: t.pop("decoder.tail.1.0.weight"), ["decoder.tail.1.0.weight", "missing"]),
    (lambda t, tok: t.__setitem__("decoder.head.weight", np.zeros((2, H), np.float32)),
     ["no row is left"]),
    # D_0 = 3 needs div in (2, 2.67], D_1 = 3 needs div in (1.41, 1.63]: no single div_value
    (lambda t, tok: (t.__setitem__("decoder.tail.0.0.weight", np.zeros((3, H), np.float32)),
                     t.__setitem__("decoder.tail.0.1.weight", np.zeros((3, 3), np.float32)),
                     t.__setitem__("decoder.tail.1.0.weight", np.zeros((3, H), np.float32)),
                     t.__setitem__("decoder.tail.1.1.weight", np.zeros((3, 3), np.float32))),
     ["sizes 3, 3", "div_value"]),
    (lambda t, tok: t.__setitem__("decoder.weight", np.zeros((V, H), np.float32)),
     ["unexpected tensor", "decoder.weight"]),
])
def test_adaptive_shapes_that_do_not_fit_are_one_clear_error(tmp_path, capsys, change, words):
    t, tokens = adaptive_state(), list(TOKENS)
    change(t, tokens)
    path = tmp_path / "s.safetensors"
    save_file(t, str(path))
    vocab = write_tokens(tmp_path / "v.txt", tokens)
    with pytest.raises(ModelFileError) as e:
        from_torch_state(path, vocab)
    for w in words:
        assert w in str(e.value)
    out = tmp_path / "x.rnnkit"
    assert main(["import-torch", str(path), "--vocab", str(vocab), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("dims,div", [([4, 2], 2.0), ([2], 4.0), ([2, 1], 2.7), ([5, 3], 1.5),
                                      ([8], 1.0), ([4, 2, 1], 2.0)])
def test_div_value_is_read_off_the_projection_sizes(dims, div):
    from rnnkit.models.torch_import import _div_value

    d = _div_value("s", H, dims)
    assert d == div
    assert [int(H // d ** (i + 1)) for i in range(len(dims))] == dims


# --- with PyTorch --------------------------------------------------------------------------------
class TestTorch:
    @pytest.fixture(autouse=True)
    def _torch(self):
        self.torch = pytest.importorskip("torch", reason="PyTorch is not installed: the "
                                         "interchange test is optional")
        self.torch.manual_seed(0)

    def torch_lm(self, V, E, H, L, cutoffs, div_value, head_bias):
        torch = self.torch

        class LM(torch.nn.Module):
            """A word LM with PyTorch's adaptive softmax as its decoder."""

            def __init__(self):
                super().__init__()
                self.encoder = torch.nn.Embedding(V, E)
                self.rnn = torch.nn.LSTM(E, H, L)
                self.decoder = torch.nn.AdaptiveLogSoftmaxWithLoss(
                    H, V, list(cutoffs), div_value=div_value, head_bias=head_bias)

            def forward(self, ids):  # ids [T] -> natural log-probabilities [T, V]
                out, _ = self.rnn(self.encoder(ids[:, None]))
                return self.decoder.log_prob(out[:, 0])

        return LM().eval()

    @pytest.mark.parametrize("head_bias", [False, True])
    def test_pytorch_adaptive_model_imports_into_rnnkit(self, tmp_path, head_bias):
        from safetensors.torch import save_file as torch_save

        tokens = ["<eos>", "the", "<unk>", "a", "of"] + [f"w{i}" for i in range(25)]
        lm = self.torch_lm(len(tokens), 6, 12, 2, (6, 14, 22), 2.0, head_bias)
        with self.torch.no_grad():
            for p in lm.parameters():
                p.uniform_(-0.5, 0.5)
        state = tmp_path / "state.safetensors"
        torch_save({k: v.contiguous() for k, v in lm.state_dict().items()}, str(state))
        out = tmp_path / "imp.rnnkit"
        assert main(["import-torch", str(state), "--vocab",
                     str(write_tokens(tmp_path / "v.txt", tokens)), "--out", str(out)]) == 0
        m = load(out)
        assert m.arch.cutoffs == (7, 15, 23) and m.arch.div_value == 2.0
        words = ["the", "w3", "of", "w20", "a", "w11", "<unk>"]
        with self.torch.no_grad():
            theirs = lm(self.torch.tensor([tokens.index(w) for w in ["<eos>"] + words])).double()
        to_new = [m.vocab.tokens.index({"<eos>": "</s>"}.get(w, w)) for w in tokens]
        state_ = m.start(1)
        for k, w in enumerate(words):
            ours = m.log_probs(state_)[0].astype(np.float64) / np.log10(np.e)
            np.testing.assert_allclose(ours[to_new], theirs[k].numpy(), atol=1e-5)
            m.advance(state_, np.array([m.vocab.tokens.index(w)]))

    @pytest.mark.parametrize("head_bias", [False, True])
    def test_rnnkit_adaptive_file_loads_into_pytorch_strictly(self, tmp_path, head_bias):
        from safetensors.torch import load_file

        Vw = 40
        arch = Architecture("lstm", Vw, 6, 12, 2, output="adaptive", cutoffs=(10, 25),
                            div_value=3.0, head_bias=head_bias)
        m = RNNLM(arch, Vocab(list(SPECIALS) + [f"w{i}" for i in range(Vw - 3)]))
        m.init_uniform(np.random.default_rng(3), 0.5)
        m.save(tmp_path / "m.rnnkit")
        lm = self.torch_lm(Vw, 6, 12, 2, arch.cutoffs, arch.div_value, head_bias)
        lm.load_state_dict(load_file(str(tmp_path / "m.rnnkit")), strict=True)
        sent = [5, 30, 3, 12, 39, 7]
        with self.torch.no_grad():
            theirs = lm(self.torch.tensor([BOS] + sent)).double().numpy()      # [7, V]
        state = m.start(1)
        for k, w in enumerate(sent + [None]):
            ours = m.log_probs(state)[0].astype(np.float64) / np.log10(np.e)
            np.testing.assert_allclose(ours, theirs[k], atol=1e-5)
            if w is not None:
                m.advance(state, np.array([w]))
        ours = m.token_log_probs([np.array(sent)])[0] / np.log10(np.e)
        np.testing.assert_allclose(ours, theirs[np.arange(7), sent + [EOS]], atol=1e-5)
