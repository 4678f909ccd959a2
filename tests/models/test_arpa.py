"""ARPA in and out: a hand-written file scored by hand, round trips, and strict errors.

tests/fixtures/hand.arpa (order 2, written by hand; <s> has SRILM's -99, b and <unk> no backoff):
    1-grams  </s> -1.0 | <s> -99 (bo -0.5) | a -0.5 (bo -0.25) | b -0.8 | <unk> -2.0
    2-grams  <s> a -0.2 | a b -0.3 | b </s> -0.4 | a </s> -0.6
"""
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import FormatError, ModelFileError
from rnnkit.loader import is_model_file
from rnnkit.models.ngram.arpa import read_arpa, write_arpa

FIX = Path(__file__).parents[1] / "fixtures"
HAND = FIX / "hand.arpa"
GOOD = HAND.read_text()


def run_main(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_scores(got, expected):
    got = list(got)
    assert [(n, o) for _, n, o in got] == [(n, o) for _, n, o in expected]
    assert [lp for lp, _, _ in got] == pytest.approx([lp for lp, _, _ in expected], abs=1e-6)


def test_hand_written_arpa_scored_by_hand():
    m = rnnkit.load(HAND)
    assert m.order == 2 and m.counts == [5, 4]
    assert m.vocab.tokens[:3] == ["<unk>", "<s>", "</s>"]
    # a b: p(a|<s>) p(b|a) p(</s>|b), all bigrams
    assert_scores(m.full_scores("a b"), [(-0.2, 2, False), (-0.3, 2, False), (-0.4, 2, False)])
    # b a: "<s> b" is missing -> b(<s>) + p(b); "b a" missing, b has no backoff -> p(a)
    assert m.score("b a") == pytest.approx(-0.5 - 0.8 - 0.5 - 0.6)
    assert [n for _, n, _ in m.full_scores("b a")] == [1, 1, 2]
    # an OOV is p(<unk>) plus the backoff of its context; the word after it backs off to 1-grams
    assert_scores(m.full_scores("a zebra"),
                  [(-0.2, 2, False), (-0.25 - 2.0, 1, True), (-1.0, 1, False)])
    # an empty sentence is <s> </s>
    assert m.score("") == pytest.approx(-0.5 - 1.0)
    # without <s>: the first word from the unigrams
    assert m.score("a b", bos=False) == pytest.approx(-0.5 - 0.3 - 0.4)
    assert m.score("a b", eos=False) == pytest.approx(-0.5)


def test_missing_unk_gets_minus_100(tmp_path):
    path = tmp_path / "nounk.arpa"
    path.write_text(GOOD.replace("ngram 1=5", "ngram 1=4").replace("-2.0\t<unk>\n", ""))
    m = rnnkit.load(path)
    assert m.score("zebra") == pytest.approx(-0.5 - 100.0 - 1.0)


def test_arpa_round_trip_is_exact(tmp_path):
    m = read_arpa(HAND)
    for name in ("out.arpa", "out.arpa.gz"):
        write_arpa(m, tmp_path / name)
        back = rnnkit.load(tmp_path / name)
        for s in ("a b", "b a", "a zebra", ""):
            assert back.score(s) == m.score(s)
        for k in (1, 2):
            np.testing.assert_array_equal(back.words_matrix(k), m.words_matrix(k))
            np.testing.assert_array_equal(back.tables.logp[k - 1], m.tables.logp[k - 1])
    text = (tmp_path / "out.arpa").read_text()
    assert text.startswith("\\data\\\nngram 1=5\nngram 2=4\n\n\\1-grams:\n"
                           "-2\t<unk>\t0\n-99\t<s>\t-0.5\n")
    assert text.endswith("\n\\end\\\n")
    assert gzip.open(tmp_path / "out.arpa.gz", "rt").read() == text


def test_shortest_float32_text(tmp_path):
    m = read_arpa(HAND)
    m.tables.logp[1][:] = np.array([-0.3295768, -1.2195138, -0.23949152, -1e-05], np.float32)
    write_arpa(m, tmp_path / "x.arpa")
    lines = (tmp_path / "x.arpa").read_text().split("\\2-grams:\n")[1].splitlines()
    assert [ln.split("\t")[0] for ln in lines[:4]] == ["-0.3295768", "-1.2195138", "-0.23949152",
                                                       "-1e-05"]


def _bad(tmp_path, text, name="bad.arpa"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("ngram 2=4", "ngram 2=5"),
     ":18: wrong count in \\data\\: 'ngram 2=5' but the 2-grams section has 4 lines"),
    (lambda s: s.replace("ngram 2=4", "ngram 2=3"),
     "wrong count in \\data\\: the 2-grams section has more than 'ngram 2=3' lines"),
    (lambda s: s.replace("-0.3\ta b", "-0.3x\ta b"),
     ":15: expected a log10 probability at the start of the line: '-0.3x\\ta b'"),
    (lambda s: s.replace("-0.3\ta b", "-0.3\ta zebra"),
     ":15: word 'zebra' is not among the 1-grams"),
    (lambda s: s.replace("-0.3\ta b", "-0.3\ta b\t-0.1"),
     ":15: a 2-gram of the highest order takes no backoff weight"),
    (lambda s: s.replace("-0.8\tb\n", "-0.8\tb\tx\n"), ":10: the backoff weight is not a number"),
    (lambda s: s.replace("-0.3\ta b", "-0.3\ta"), ":15: expected 2 words"),
    (lambda s: s.replace("-0.3\ta b", "-0.2\t<s> a"), ":15: duplicate 2-gram"),
    (lambda s: s.replace("\\end\\", ""), "expected \\end\\"),
    (lambda s: s.replace("ngram 2=4", "ngram 3=4"), "'ngram 3=' is out of order"),
    (lambda s: s.replace("-99\t<s>\t-0.5\n", "-99\t<x>\t-0.5\n"), "the 1-grams have no <s>"),
])
def test_malformed_arpa_names_the_line(tmp_path, capsys, edit, message):
    path = _bad(tmp_path, edit(GOOD))
    with pytest.raises(FormatError) as e:
        read_arpa(path)
    assert message in str(e.value)
    code, _, err = run_main(capsys, "score", path, FIX / "ngram_abc.txt")
    assert code == 2 and err.startswith(f"error: {path}") and message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_context_and_suffix_are_added_without_changing_scores(tmp_path):
    # a 3-gram "b a b" whose context "b a" is not among the 2-grams
    text = GOOD.replace("ngram 2=4", "ngram 2=4\nngram 3=1").replace(
        "-0.8\tb\n", "-0.8\tb\t-0.1\n").replace(
        "-0.3\ta b", "-0.3\ta b\t-0.05").replace(
        "\\end\\", "\\3-grams:\n-0.1\tb a b\n\n\\end\\")
    m = read_arpa(_bad(tmp_path, text))
    assert m.counts == [5, 5, 1]  # "b a" added
    # "b a" is scored by backing off: b(b) + p(a) = -0.1 - 0.5, as before it was added
    assert m.score("b a", bos=False, eos=False) == pytest.approx(-0.8 - 0.1 - 0.5)
    # the 3-gram is found after "b a"; after "c a" (c unknown) it backs off to "a b"
    assert list(m.full_scores("b a b", bos=False, eos=False))[2][:2] == pytest.approx((-0.1, 3))
    assert m.score("zebra a b", bos=False, eos=False) == pytest.approx(-2.0 - 0.5 - 0.3)
    # </s> after "a b": no 3-gram, so b(a b) + p(</s> | b)
    assert m.score("a b") == pytest.approx(-0.2 - 0.3 - 0.05 - 0.4)


def test_gzip_arpa_is_recognised_by_content(tmp_path):
    path = tmp_path / "model.bin"  # no .gz or .arpa in the name
    path.write_bytes(gzip.compress(GOOD.encode()))
    assert rnnkit.load(path).score("a b") == pytest.approx(-0.9)


def test_not_a_model(tmp_path, capsys):
    with pytest.raises(ModelFileError, match="not a model file"):
        rnnkit.load(FIX / "ngram_abc.txt")
    code, _, err = run_main(capsys, "score", FIX / "ngram_abc.txt", FIX / "ngram_abc.txt")
    assert code == 2 and err.startswith("error: ") and "not a model file" in err
    with pytest.raises(ModelFileError, match="no such model file"):
        rnnkit.load(tmp_path / "missing.arpa")
    truncated = tmp_path / "t.arpa.gz"
    truncated.write_bytes(gzip.compress(GOOD.encode())[:60])
    with pytest.raises(ModelFileError, match="cannot be decompressed .*truncated"):
        rnnkit.load(truncated)


def test_log_zero_is_written_as_minus_99(tmp_path):
    m = read_arpa(HAND)
    m.tables.backoff[0][3] = -math.inf
    write_arpa(m, tmp_path / "z.arpa")
    assert "-0.5\ta\t-99\n" in (tmp_path / "z.arpa").read_text()


def test_is_model_file_knows_models_by_content(tmp_path):
    assert is_model_file(HAND)
    assert not is_model_file(FIX / "ngram_abc.txt")  # sentences
    assert not is_model_file(FIX) and not is_model_file("-")
    assert not is_model_file(tmp_path / "missing.rnnkit")
    (tmp_path / "x.rnnkit").write_bytes(b"\xff\x00 not safetensors")
    assert not is_model_file(tmp_path / "x.rnnkit")


# --- values that promise a probability (issue 15) ------------------------------------------------
@pytest.mark.parametrize("old,new,line,words", [
    ("-0.5\ta\t-0.25", "0.5\ta\t-0.25", 9, ["log10 probability 0.5", "<= 0"]),
    ("-0.3\ta b", "inf\ta b", 15, ["log10 probability inf"]),
    ("-0.3\ta b", "nan\ta b", 15, ["log10 probability"]),
    ("-0.5\ta\t-0.25", "-0.5\ta\tinf", 9, ["log10 backoff inf", "finite"]),
    ("-0.5\ta\t-0.25", "-0.5\ta\tnan", 9, ["backoff"]),
])
def test_probabilities_above_one_are_rejected(tmp_path, old, new, line, words):
    assert old in GOOD
    p = tmp_path / "bad.arpa"
    p.write_text(GOOD.replace(old, new))
    with pytest.raises(FormatError) as e:
        read_arpa(p)
    assert str(e.value).startswith(f"{p}:{line}: ")
    for w in words:
        assert w in str(e.value)


def test_perplexity_beyond_float_range_is_inf_not_a_crash(tmp_path):
    from rnnkit.decoding.scoring import Summary, pow10
    assert pow10(2.0) == 100.0 and pow10(400.0) == math.inf
    s = Summary(sentences=1, tokens=1, log10_prob=-400.0)
    assert s.perplexity == math.inf
    assert Summary(sentences=0, tokens=0).perplexity != Summary().perplexity  # NaN, not a crash
