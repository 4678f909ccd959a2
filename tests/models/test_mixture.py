"""Mixtures of language models: the combination math worked by hand on tiny table models, the
union vocabulary, exact reproduction of single models, and EM weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
from tinylm import TableLM, sentence_log10

from rnnkit.errors import RnnkitError
from rnnkit.models.mixture import Mixture, em_weights, parse_weights, tune_linear
from rnnkit.text.vocab import Tokenizer

A_WORDS = "the cat sat on mat".split()
B_WORDS = "the dog sat on rug mat".split()
HELDOUT = ["the cat sat on the mat", "the dog sat on the rug", "the cat sat on the rug",
           "a dog sat", "the mat sat on the cat", "on the rug the dog sat"]


@pytest.fixture
def ab():
    return TableLM(A_WORDS, seed=1), TableLM(B_WORDS, seed=2)


def test_union_vocabulary_and_maps(ab):
    a, b = ab
    m = Mixture([a, b], [0.5, 0.5])
    assert m.vocab.tokens == ["<unk>", "<s>", "</s>", "the", "cat", "sat", "on", "mat", "dog", "rug"]
    # model a lacks dog and rug: its <unk> (id 0); b lacks cat
    assert m.maps[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 0]
    assert m.maps[1].tolist() == [0, 1, 2, 3, 0, 5, 6, 8, 4, 7]


def test_linear_worked_by_hand(ab):
    a, b = ab
    m = Mixture([a, b], [0.3, 0.7])
    s = "the cat sat on the rug"
    # P(w|h) = 0.3 Pa(w|h) + 0.7 Pb(w|h); a token a model lacks gets that model's <unk>
    pa = [a.table[1, 3], a.table[3, 4], a.table[4, 5], a.table[5, 6], a.table[6, 3],
          a.table[3, 0], a.table[0, 2]]
    pb = [b.table[1, 3], b.table[3, 0], b.table[0, 5], b.table[5, 6], b.table[6, 3],
          b.table[3, 7], b.table[7, 2]]
    want = [math.log10(0.3 * x + 0.7 * y) for x, y in zip(pa, pb)]
    got = [lp for lp, _, _ in m.full_scores(s)]
    assert got == pytest.approx(want, abs=1e-12)
    assert m.score(s) == pytest.approx(sum(want), abs=1e-12)
    oov = [o for _, _, o in m.full_scores("the cat sat on a rug")]
    assert oov == [False, False, False, False, True, False, False]


def test_loglinear_is_weighted_sum_of_sentence_scores(ab):
    a, b = ab
    m = Mixture([a, b], [0.4, 0.9], combine="loglinear")
    for s in HELDOUT:
        assert m.score(s) == pytest.approx(0.4 * a.score(s) + 0.9 * b.score(s), abs=1e-12)


@pytest.mark.parametrize("combine", ["linear", "loglinear"])
def test_single_model_weights_reproduce_it_exactly(ab, combine):
    a, b = ab
    for w, single in (([1.0, 0.0], a), ([0.0, 1.0], b)):
        m = Mixture([a, b], w, combine)
        for s in HELDOUT:
            assert m.score(s) == single.score(s)  # exactly, not approximately
            # (the OOV flags are the mixture's: a token is OOV when no model knows it)
            assert [x[:2] for x in m.full_scores(s)] == [x[:2] for x in single.full_scores(s)]
        assert m.perplexity(HELDOUT) == single.perplexity(HELDOUT)
    assert sentence_log10(a, "the cat sat".split()) == pytest.approx(a.score("the cat sat"))


def test_step_path_equals_fast_path(ab):
    a, b = ab
    for combine in ("linear", "loglinear"):
        m = Mixture([a, b], [0.25, 0.75], combine)
        ids, _ = m.encode("the dog sat on the cat")
        fast = m.token_log_probs([ids])[0]
        state = m.start(1)
        for t, w in enumerate(ids.tolist() + [2]):
            assert m.log_probs(state)[0, w] == pytest.approx(fast[t], abs=1e-12)
            state = m.advance(state, np.array([w]))


def test_same_vocabulary_linear_sums_to_one():
    a, b = TableLM(A_WORDS, seed=3), TableLM(A_WORDS, seed=4)
    m = Mixture([a, b], [0.6, 0.4])
    state = m.advance(m.start(3), np.array([3, 4, 5]))
    assert (10 ** m.log_probs(state)).sum(axis=1) == pytest.approx([1, 1, 1], abs=1e-12)


def test_different_vocabularies_are_not_normalised_as_documented(ab):
    a, b = ab
    m = Mixture([a, b], [0.5, 0.5])
    total = (10 ** m.log_probs(m.start(1))).sum()
    # each model's <unk> mass is counted again for every union token it lacks
    want = 1 + 0.5 * 2 * a.table[1, 0] + 0.5 * 1 * b.table[1, 0]
    assert total == pytest.approx(want, abs=1e-12)


def test_models_with_different_lowercasing_see_their_own_tokens():
    lower = TableLM(A_WORDS, seed=5, tokenizer=Tokenizer(lowercase=True))
    cased = TableLM(["The", "Cat"] + A_WORDS, seed=6)
    s = "The Cat sat on THE mat"
    assert Mixture([lower, cased], [1, 0]).score(s) == lower.score(s)
    assert Mixture([lower, cased], [0, 1]).score(s) == cased.score(s)
    m = Mixture([lower, cased], [0.5, 0.5])
    assert m.score(s) == pytest.approx(
        sum(math.log10(0.5 * 10 ** x + 0.5 * 10 ** y) for (x, _, _), (y, _, _)
            in zip(lower.full_scores(s), cased.full_scores(s))), abs=1e-12)


def test_em_matches_a_fine_grid():
    rng = np.random.default_rng(0)
    lp = np.log10(rng.random((2, 400)) * 0.5 + 0.01)
    w, history = em_weights(lp)
    assert np.all(np.diff(history) >= -1e-9)  # EM never lowers the likelihood
    grid = np.linspace(0, 1, 100001)
    ll = np.log10(np.outer(grid, 10 ** lp[0]) + np.outer(1 - grid, 10 ** lp[1])).sum(axis=1)
    assert w[0] == pytest.approx(grid[np.argmax(ll)], abs=2e-4)
    assert history[-1] == pytest.approx(ll.max(), abs=1e-6)


def test_tuned_weights_beat_both_models(ab):
    a, b = ab
    res = tune_linear([a, b], HELDOUT)
    assert sum(res["weights"]) == pytest.approx(1)
    assert res["perplexity"] <= min(res["model_perplexities"]) + 1e-9
    assert res["model_perplexities"] == pytest.approx([a.perplexity(HELDOUT),
                                                       b.perplexity(HELDOUT)], rel=1e-12)
    m = Mixture([a, b], res["weights"])
    assert m.perplexity(HELDOUT) == pytest.approx(res["perplexity"], rel=1e-9)
    assert res["sentences"] == len(HELDOUT)
    assert res["tokens"] == sum(len(s.split()) for s in HELDOUT)


def test_three_models_em():
    ms = [TableLM(A_WORDS, seed=s) for s in (7, 8, 9)]
    res = tune_linear(ms, HELDOUT * 3, batch=4)
    assert len(res["weights"]) == 3 and min(res["weights"]) >= 0
    assert res["perplexity"] <= min(res["model_perplexities"]) + 1e-9


@pytest.mark.parametrize("weights,combine,pattern", [
    ([0.7, 0.2], "linear", r"must sum to 1, got 0.7 \+ 0.2 = 0.9"),
    ([1.2, -0.2], "linear", r"must be >= 0"),
    ([0.5], "linear", r"1 weight\(s\) for 2 model\(s\)"),
    ([0.0, 0.0], "loglinear", r"every weight is 0"),
    ([0.5, 0.5], "product", r"unknown --combine 'product'"),
    ([math.nan, 1], "loglinear", r"finite"),
])
def test_bad_weights(ab, weights, combine, pattern):
    with pytest.raises(RnnkitError, match=pattern):
        Mixture(list(ab), weights, combine)


def test_parse_weights():
    assert parse_weights("0.7, 0.3", 2) == [0.7, 0.3]
    assert parse_weights(None, 2) is None
    with pytest.raises(RnnkitError, match="3 weight"):
        parse_weights("0.2,0.3,0.5", 2)
    with pytest.raises(RnnkitError, match="comma-separated numbers"):
        parse_weights("0.7;0.3", 2)


def test_levels_must_match():
    word = TableLM(A_WORDS)
    char = TableLM(list("abc"), tokenizer=Tokenizer(level="char"))
    with pytest.raises(RnnkitError, match="split text differently"):
        Mixture([word, char])


# --- trained models with different vocabularies --------------------------------------------------
def test_trained_ngram_and_lstm_interpolate(trained):
    from rnnkit.models.ngram.estimate import train
    from rnnkit.text.prepare import build_corpus

    lstm = trained.load(trained.lstm_path("en"))
    # an n-gram model on a third of the sample: a smaller vocabulary than the LSTM's
    small = train(build_corpus(None, sample="en", split="0.33,0.33,0.34"), 3,
                  discount_fallback=True)
    assert len(small.vocab) < len(lstm.vocab)
    held = list(trained.corpus("en").text("valid")) + \
        [line.split(" ", 1)[1] for line in (trained.DATA / "en.ref").read_text().splitlines()]
    for w, single in (([1, 0], small), ([0, 1], lstm)):
        m = Mixture([small, lstm], w)
        assert [m.score(s) for s in held] == [single.score(s) for s in held]
    res = tune_linear([small, lstm], held)
    assert res["perplexity"] <= min(res["model_perplexities"])
    assert 0 < res["weights"][0] < 1
    mix = Mixture([small, lstm], res["weights"])
    assert mix.perplexity(held) == pytest.approx(res["perplexity"], rel=1e-6)
    assert len(mix.vocab) == len(lstm.vocab)  # the union (the small vocabulary is a subset)
    loglin = Mixture([small, lstm], [0.5, 0.5], "loglinear")
    s = held[0]
    assert loglin.score(s) == pytest.approx(0.5 * small.score(s) + 0.5 * lstm.score(s), abs=1e-9)


def test_score_command_with_several_models(tmp_path, capsys, trained):
    import json

    from typer.testing import CliRunner

    from rnnkit.cli import app, main

    tri, lstm = str(trained.ngram_path("en")), str(trained.lstm_path("en"))
    text = tmp_path / "s.txt"
    text.write_text("The children were happy yesterday .\nTom eats some soup in a small cafe .\n")
    run = CliRunner().invoke

    def summary(args, **kw):
        res = run(app, ["score", *args, "--json"], **kw)
        assert res.exit_code == 0, res.output
        docs = [json.loads(x) for x in res.stdout.splitlines()]
        return docs[:-1], docs[-1]

    alone, s_alone = summary([tri, str(text)])
    first, s_first = summary([tri, lstm, str(text), "--weights", "1,0"])
    assert [d["log10_prob"] for d in first] == [d["log10_prob"] for d in alone]
    assert s_first["perplexity"] == s_alone["perplexity"]
    assert "linear mixture of" in s_first["model"]
    # the last path is the input unless it is a model: with two models and no file, stdin
    mixed, s_mixed = summary([tri, lstm, "--weights", "0.3,0.7"], input=text.read_text())
    tri_m, lstm_m = trained.load(tri), trained.load(lstm)
    m = Mixture([tri_m, lstm_m], [0.3, 0.7])
    for d in mixed:
        assert d["log10_prob"] == pytest.approx(m.score(d["text"]), abs=1e-5)  # float32 LSTM
    loglin, _ = summary([tri, lstm, str(text), "--combine", "loglinear"])
    for d in loglin:
        want = 0.5 * tri_m.score(d["text"]) + 0.5 * lstm_m.score(d["text"])
        assert d["log10_prob"] == pytest.approx(want, abs=1e-5)
    res = run(app, ["score", tri, lstm, str(text), "--per-token"])
    assert res.exit_code == 0 and "children[" in res.stdout

    assert main(["score", tri, lstm, str(text), "--weights", "0.5"]) == 2
    assert capsys.readouterr().err.startswith("error: --weights '0.5' gives 1 weight(s)")
    assert main(["score", tri, lstm, str(text), "--combine", "max"]) == 2
    assert "unknown --combine 'max'" in capsys.readouterr().err
