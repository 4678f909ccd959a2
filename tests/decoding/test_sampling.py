"""Sampling over the LM protocol: filters, seeds, prompts, and a model that is not an n-gram."""
import math
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.decoding.sampling import draw, filter_logits, sample, sample_sentences
from rnnkit.errors import InputError
from rnnkit.models.ngram import estimate as ngram
from rnnkit.models.protocol import LanguageModel
from rnnkit.text.prepare import build_corpus
from rnnkit.text.vocab import EOS, Tokenizer, Vocab

FIX = Path(__file__).parents[1] / "fixtures"


class Coin(LanguageModel):
    """A model that is not an n-gram (its state is the number of tokens so far): after <s> it
    says a with 0.6, b 0.3, c 0.1; after one token </s>. Only start/advance/log_probs exist."""

    model_type = "coin"

    def __init__(self):
        self.vocab = Vocab(["<unk>", "<s>", "</s>", "a", "b", "c"])
        self.tokenizer = Tokenizer()

    def start(self, batch):
        return np.zeros(batch, np.int64)

    def advance(self, state, ids):
        return state + 1

    def log_probs(self, state):
        out = np.full((len(state), 6), -np.inf)
        first = state == 0
        out[first, 3:] = np.log10([0.6, 0.3, 0.1])
        out[~first, EOS] = 0.0
        return out


@pytest.fixture(scope="module")
def tri():
    return ngram.train(build_corpus([str(FIX / "ngram_small.txt")], split="1,0,0"), 3,
                       discount_fallback=True)


def test_frequencies_follow_the_model_and_the_temperature():
    coin = Coin()
    first = [s[0] for s in sample(coin, 3000, seed=0)]
    freq = np.bincount(first, minlength=6)[3:] / 3000
    np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.03)
    # temperature 2: p^(1/2), renormalised
    hot = np.sqrt([0.6, 0.3, 0.1])
    hot /= hot.sum()
    first = [s[0] for s in sample(coin, 3000, seed=1, temperature=2.0)]
    np.testing.assert_allclose(np.bincount(first, minlength=6)[3:] / 3000, hot, atol=0.03)


def test_top_k_and_top_p_and_greedy():
    coin = Coin()
    assert {int(s[0]) for s in sample(coin, 200, seed=0, top_k=2)} == {3, 4}
    assert {int(s[0]) for s in sample(coin, 200, seed=0, top_p=0.8)} == {3, 4}  # 0.6 < 0.8
    assert {int(s[0]) for s in sample(coin, 200, seed=0, top_p=0.6)} == {3}
    assert {int(s[0]) for s in sample(coin, 50, seed=0, temperature=0)} == {3}
    logits = np.log(np.array([[0.2, 0.5, 0.3]]))
    assert np.isfinite(filter_logits(logits.copy(), top_k=2)).tolist() == [[False, True, True]]
    assert np.isfinite(filter_logits(logits.copy(), top_p=0.7)).tolist() == [[False, True, True]]
    assert np.isfinite(filter_logits(logits.copy(), top_p=0.5)).tolist() == [[False, True, False]]
    greedy = draw(np.log10([[0.2, 0.5, 0.3]]), np.random.default_rng(0), temperature=0)
    assert greedy.tolist() == [1]


def test_sentences_end_at_eos_or_max_len():
    coin = Coin()
    s = sample_sentences(coin, 5, seed=3)
    assert all(x.complete and len(x.ids) == 1 for x in s)
    assert all(x.log10_prob == pytest.approx(math.log10([0.6, 0.3, 0.1][x.ids[0] - 3])) for x in s)
    cut = sample_sentences(coin, 2, seed=3, max_len=1)
    assert all(not x.complete and len(x.ids) == 1 for x in cut)


def test_seed_reproducible_and_log10_prob_is_the_score(tri):
    a = tri.generate(8, seed=11)
    assert a == tri.generate(8, seed=11)
    assert a != tri.generate(8, seed=12)
    complete = [s for s in sample_sentences(tri, 20, seed=5) if s.complete]
    assert len(complete) >= 10  # the check below must see sentences, not pass on none
    for s in complete:
        text = tri.tokenizer.join(tri.vocab.decode(s.ids.tolist()))
        assert s.log10_prob == pytest.approx(tri.score(text), abs=1e-4)


def test_greedy_follows_the_argmax(tri):
    (s,) = sample(tri, 1, temperature=0, max_len=30)
    state = tri.start(1)
    for w in list(s) + [EOS]:
        lp = tri.log_probs(state)[0]
        assert lp[w] == lp.max()
        state = tri.advance(state, np.array([w]))


def test_prompt_starts_every_sentence(tri):
    for text in tri.generate(5, seed=2, prompt="the dog"):
        assert text.startswith("the dog")
    batch = sample(tri, 70, seed=1, top_k=3)  # more than one internal batch of 64
    assert len(batch) == 70


@pytest.mark.parametrize("kw, message", [
    ({"num": 0}, "--num"), ({"max_len": 0}, "--max-len"), ({"temperature": -1}, "--temperature"),
    ({"top_k": 0}, "--top-k"), ({"top_p": 0.0}, "--top-p"), ({"top_p": 1.5}, "--top-p"),
])
def test_bad_options(tri, kw, message):
    num = kw.pop("num", 1)
    with pytest.raises(InputError, match=message):
        sample(tri, num, **kw)


def test_cli_generate(tmp_path, capsys):
    import json

    model = tmp_path / "m.rnnkit"
    assert main(["train", str(FIX / "ngram_small.txt"), "--type", "ngram", "--order", "2",
                 "--out", str(model), "--discount-fallback", "--json"]) == 0
    capsys.readouterr()
    assert main(["generate", str(model), "--num", "4", "--seed", "3", "--json",
                 "--prompt", "the", "--top-p", "0.9", "--max-len", "20"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 and all(r["text"].startswith("the") for r in rows)
    assert set(rows[0]) == {"text", "tokens", "log10_prob", "complete", "prompt_tokens"}
    # log10_prob is the continuation's, given <s> and the prompt: the sentence's score
    # without the prompt's own token
    import rnnkit
    lm = rnnkit.load(model)
    for r in rows:
        assert r["prompt_tokens"] == 1 and r["tokens"] == len(r["text"].split())
        if r["complete"]:
            per_token = [lp for lp, _, _ in lm.full_scores(r["text"], bos=True, eos=True)]
            assert r["log10_prob"] == pytest.approx(sum(per_token[1:]), abs=1e-4)
    assert main(["generate", str(model), "--top-p", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --top-p must be in (0, 1]")
