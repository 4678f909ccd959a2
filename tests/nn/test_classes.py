"""The class-factored softmax (nn/output.py ClassSoftmax, Mikolov et al. 2011): frequency binning
by hand, the layer against a numpy specification written here (a softmax over the classes times
one over the words of the class), central finite differences of every parameter in float64, the
compiled kernels against the reference backend, and `train --output classes` end to end."""
import json

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.models.rnnlm import load
from rnnkit.nn import reference as ref
from rnnkit.nn.backend import kernels
from rnnkit.nn.output import (
    ClassSoftmax,
    check_class_starts,
    class_softmax_shapes,
    frequency_classes,
)
from rnnkit.nn.params import ParamLayout
from rnnkit.text.prepare import build_corpus
from fd import numgrad
from output_layers import assert_backends_agree

V, H, STARTS = 9, 5, [0, 2, 5]   # classes: ids 0-1, 2-4, 5-8


@pytest.mark.parametrize("counts,n,starts", [
    ([4, 3, 2, 1], 2, [0, 2]),            # mass .4 (not > .5), .7 (> .5): class 1 from id 2
    ([50, 20, 10, 10, 5, 5], 3, [0, 1, 2]),   # mass .5 > 1/3, then .7 > 2/3
    ([100, 0, 0, 0], 4, [0, 1, 2, 3]),    # every threshold passed at once: one word per class
    ([0, 0, 0, 100], 3, [0, 2, 3]),       # no mass yet: the last classes still get a word each
    ([7, 1, 1], 1, [0]),
])
def test_frequency_binning_by_hand(counts, n, starts):
    assert frequency_classes(counts, n) == starts


def test_binning_and_starts_refuse_what_cannot_be(tmp_path):
    with pytest.raises(ValueError, match="between 1 and the vocabulary size 3"):
        frequency_classes([1, 1, 1], 4)
    with pytest.raises(ValueError, match="begin at 0"):
        check_class_starts(9, [1, 4])
    with pytest.raises(ValueError, match="increase strictly"):
        check_class_starts(9, [0, 4, 4])


def test_shapes():
    assert class_softmax_shapes(V, H, STARTS) == [
        ("decoder.head.weight", (3, H)), ("decoder.tail.0.weight", (2, H)),
        ("decoder.tail.1.weight", (3, H)), ("decoder.tail.2.weight", (4, H))]


def layer(backend, dtype, rng, V=V, H=H, starts=STARTS, scale=0.5):
    layout = ParamLayout(class_softmax_shapes(V, H, starts))
    flat = (rng.standard_normal(layout.size) * scale).astype(dtype)
    flat[layout.padding_mask()] = 0
    grad = np.zeros_like(flat)
    p, g = layout.views(flat), layout.views(grad)
    return ClassSoftmax(V, H, starts, backend, p, g), p, g


def spec(p, h, starts=STARTS):
    """ln p(w | h) [N, V] = ln softmax(h C^T)[class(w)] + ln softmax(h W_c^T)[w]."""
    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    cls = log_softmax(h @ p["decoder.head.weight"].T)                      # [N, K]
    return np.concatenate([cls[:, i, None] + log_softmax(h @ p[f"decoder.tail.{i}.weight"].T)
                           for i in range(len(starts))], axis=1)


def test_layer_equals_the_specification_and_sums_to_one():
    rng = np.random.default_rng(0)
    out, p, _ = layer(ref, np.float64, rng)
    h = rng.standard_normal((6, H))
    t = np.array([0, 1, 2, 4, 5, 8])
    want = spec(p, h)
    np.testing.assert_allclose(np.exp(want).sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out.log_probs(h), want, rtol=1e-12)
    np.testing.assert_allclose(out.target_log_probs(h, t), want[np.arange(6), t], rtol=1e-12)
    assert out.loss_forward(h, t) == pytest.approx(-want[np.arange(6), t].sum(), rel=1e-12)


@pytest.mark.parametrize("targets", [[0, 3, 5, 8, 2, 1], [5, 6, 7, 8, 8, 6]])  # 2nd: classes 0, 1 idle
def test_every_gradient_matches_finite_differences(targets):
    rng = np.random.default_rng(1)
    out, p, g = layer(ref, np.float64, rng)
    h = rng.standard_normal((len(targets), H))
    t = np.array(targets)
    scale = 0.7

    def loss():
        return -scale * spec(p, h)[np.arange(len(t)), t].sum()

    out.loss_forward(h, t)
    dh, tied = out.loss_backward(scale)
    assert tied is None
    np.testing.assert_allclose(dh, numgrad(loss, h), atol=1e-7)
    for name, view in p.items():
        np.testing.assert_allclose(g[name], numgrad(loss, view), atol=1e-7, err_msg=name)


def test_compiled_kernels_equal_the_reference_backend():
    rng = np.random.default_rng(2)
    V2, H2 = 300, 32
    starts = frequency_classes(1.0 / np.arange(1, V2 + 1), 17)    # Zipf counts
    a, _, ga = layer(ref, np.float32, rng, V2, H2, starts)
    b, _, gb = layer(kernels(), np.float32, np.random.default_rng(2), V2, H2, starts)
    h = rng.standard_normal((40, H2)).astype(np.float32)
    t = rng.integers(0, V2, 40)
    assert_backends_agree(a, ga, b, gb, h, t)


WORDS = ["the", "the", "the", "a", "a", "cat", "dog", "sat", "ran", "on", "mat", "rug", "big"]


def test_train_output_classes_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, rng.integers(2, 8))) for _ in range(200)]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n")
    build_corpus([str(tmp_path / "text.txt")], split="0.8,0.1,0.1").write(tmp_path / "data")
    out = tmp_path / "cls.rnnkit"
    code = main(["train", str(tmp_path / "data"), "--emb", "8", "--hidden", "8", "--layers", "1",
                 "--bptt", "6", "--batch", "4", "--epochs", "3", "--threads", "1", "--output",
                 "classes", "--classes", "4", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == "classes 4"
    m = load(out)
    a = m.arch
    assert a.output == "classes" and len(a.cutoffs) == 4 and a.cutoffs[0] == 0
    # the classes are the binning of the training counts
    assert list(a.cutoffs) == frequency_classes(m.vocab.counts, 4)
    lp = m.log_probs(m.start(1))[0].astype(np.float64)
    assert abs((10 ** lp).sum() - 1) < 1e-5
    # better than the uniform distribution over the vocabulary after 3 epochs
    assert summary["valid_perplexity"] < len(m.vocab)
    code = main(["train", str(tmp_path / "data"), "--output", "classes", "--out",
                 str(tmp_path / "x.rnnkit")])
    err = capsys.readouterr().err
    assert code == 2 and "--output classes needs --classes N" in err
