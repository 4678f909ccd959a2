"""Per-sentence records and the corpus summary (KenLM query's figures), and `rnnkit score`."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.decoding.scoring import Summary, score_lines, score_text, split_perplexity
from rnnkit.models.ngram import estimate as ngram
from rnnkit.models.protocol import LanguageModel
from rnnkit.text.prepare import build_corpus

FIX = Path(__file__).parents[1] / "fixtures"
HAND = FIX / "hand.arpa"  # worked in test_arpa.py
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}


def run_main(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_records_and_summary_by_hand():
    m = rnnkit.load(HAND)
    summary = Summary()
    recs = list(score_lines(m, enumerate(["a b", "a zebra", ""], 1), summary=summary))
    assert [(r.tokens, r.oov) for r in recs] == [(3, 0), (3, 1), (1, 0)]
    assert [r.log10_prob for r in recs] == pytest.approx([-0.9, -3.45, -1.5])
    assert recs[1].oov_log10_prob == pytest.approx(-2.25)
    assert recs[0].ppl == pytest.approx(10 ** (0.9 / 3))
    total = -0.9 - 3.45 - 1.5
    assert summary.tokens == 7 and summary.oov == 1 and summary.sentences == 3
    assert summary.perplexity == pytest.approx(10 ** (-total / 7))
    assert summary.perplexity_excluding_oov == pytest.approx(10 ** (-(total + 2.25) / 6))
    assert set(recs[0].to_json()) == {"text", "log10_prob", "tokens", "oov", "ppl"}
    assert set(summary.to_json()) >= {"perplexity", "perplexity_excluding_oov", "sentences",
                                      "tokens", "oov"}


class StepOnly(LanguageModel):
    """The same model seen only through start/advance/log_probs (the generic, slow path)."""

    def __init__(self, inner):
        self.inner, self.vocab, self.tokenizer = inner, inner.vocab, inner.tokenizer
        self.model_type = "step-only"

    def start(self, batch):
        return self.inner.start(batch)

    def advance(self, state, ids):
        return self.inner.advance(state, ids)

    def log_probs(self, state):
        return self.inner.log_probs(state)


def test_generic_path_agrees_with_the_ngram_fast_path():
    m = ngram.train(build_corpus([str(FIX / "ngram_small.txt")], split="1,0,0"), 3,
                    discount_fallback=True)
    lines = ["the cat sat on the mat", "a zebra  saw\tthe dog", "", "the the the"]
    fast = list(score_lines(m, enumerate(lines, 1), per_token=True))
    slow = list(score_lines(StepOnly(m), enumerate(lines, 1)))
    for f, s in zip(fast, slow):
        assert (f.tokens, f.oov) == (s.tokens, s.oov)
        assert f.log10_prob == pytest.approx(s.log10_prob, abs=1e-4)
    assert [t[0] for t in fast[1].per_token] == ["a", "zebra", "saw", "the", "dog", "</s>"]
    assert fast[1].per_token[1][3] is True  # zebra is OOV


def test_split_perplexity_is_the_score_summary_of_the_same_sentences():
    corpus = build_corpus([str(FIX / "ngram_small.txt")], split="1,0,0")
    m = ngram.train(corpus, 3, discount_fallback=True)
    want = score_text(m, list(corpus.text("train"))).perplexity
    assert split_perplexity(m, corpus["train"]) == pytest.approx(want, rel=1e-4)
    assert split_perplexity(StepOnly(m), corpus["train"]) == pytest.approx(want, rel=1e-4)
    assert math.isnan(split_perplexity(m, np.zeros(0, np.uint32)))


def test_encoding_splits_like_str_split():
    m = rnnkit.load(HAND)
    lines = ["a\u3000b", "a\xa0 b\x0bb", "<s> a </s>", "<unk>"]
    ids, offsets, oov = m.encode_lines(lines)
    for i, line in enumerate(lines):
        expected, expected_oov = m.encode(line)
        assert ids[offsets[i]:offsets[i + 1]].tolist() == expected.tolist()
        assert oov[offsets[i]:offsets[i + 1]].tolist() == expected_oov.tolist()
    assert oov[offsets[2]:offsets[3]].tolist() == [True, False, True]  # literal <s>, </s>


def test_character_level_models_score_through_the_tokenizer():
    c = build_corpus([str(FIX / "ngram_small.txt")], split="1,0,0", level="char")
    m = ngram.train(c, 4, "wb")
    s = score_text(m, ["the cat", "a dog"])
    assert s.tokens == len("the cat") + len("a dog") + 2
    assert math.isfinite(s.perplexity) and s.oov == 0


def test_cli_score_table_json_and_per_token(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("a b\na zebra\n\n")
    code, out, _ = run_main(capsys, "score", HAND, text)
    assert code == 0
    assert "-0.9000" in out and "a zebra" in out
    code, out, _ = run_main(capsys, "score", HAND, text, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["tokens"] for r in rows[:3]] == [3, 3, 1] and rows[2]["text"] == ""
    assert rows[3]["tokens"] == 7 and rows[3]["oov"] == 1
    assert rows[3]["perplexity"] == pytest.approx(10 ** (5.85 / 7))
    code, out, _ = run_main(capsys, "score", HAND, text, "--per-token")
    assert "zebra[-2.25/1]" in out and "</s>[-1.00/1]" in out


def test_cli_invalid_utf8_names_line_and_byte(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a b\nb \xff a\n")
    code, out, err = run_main(capsys, "score", HAND, bad)
    assert code == 2
    assert err.startswith(f"error: {bad}:2: invalid UTF-8 at byte 6 of the file")
    assert len(err.strip().splitlines()) == 1


def test_python_m_rnnkit_score_reads_stdin():
    r = subprocess.run([sys.executable, "-m", "rnnkit", "score", str(HAND), "-", "--json"],
                       input=b"a b\n\n", capture_output=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert rows[0]["log10_prob"] == pytest.approx(-0.9)
    assert rows[1]["log10_prob"] == pytest.approx(-1.5)
    assert rows[-1]["sentences"] == 2


def test_many_sentences_in_batches():
    m = rnnkit.load(HAND)
    lines = ["a b", "b a"] * 5000  # more than one batch
    s = score_text(m, lines)
    assert s.sentences == 10000 and s.tokens == 30000
    assert s.log10_prob == pytest.approx(5000 * (-0.9 - 2.4))
    assert np.isclose(s.perplexity, 10 ** (5000 * 3.3 / 30000))
