"""N-best formats: detection, parsing, ids, round trips, streaming and strict errors."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from rnnkit.errors import FormatError, InputError
from rnnkit.rescoring.nbest import (
    BYTELOG_PER_LOG10,
    NBestReader,
    best_line,
    candidate_line,
    detect,
    groups_to_text,
    parse_text,
    write_kaldi_dir,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "nbest"
EXPECTED = {
    "groups.txt": "groups", "tsv.tsv": "tsv", "kaldi.txt": "id", "kaldi": "kaldi",
    "srilm-nbest1.txt": "srilm", "srilm-nbest2.txt": "srilm", "srilm-native.txt": "srilm",
    "moses.txt": "moses",
}
KO_BEST = "자세히 보아야 예쁘다"


def read(path, fmt="auto"):
    r = NBestReader(path, fmt)
    groups = list(r)
    return r.format, groups


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detects_every_example(name):
    fmt, groups = read(EXAMPLES / name)
    assert fmt == EXPECTED[name]
    assert len(groups) == 2
    texts = [c.text for g in groups for c in g.candidates]
    assert KO_BEST in texts and "the weather is nice today" in texts
    assert all(len(g.candidates) >= 3 for g in groups)


def test_example_ids_and_scores():
    _, g = read(EXAMPLES / "tsv.tsv")
    assert [x.id for x in g] == ["utt01", "utt02"]
    assert g[1].candidates[0].score == -80.2 and g[1].candidates[0].text == KO_BEST

    _, g = read(EXAMPLES / "kaldi.txt")
    assert [x.id for x in g] == ["utt01", "utt02"]
    assert [c.id for c in g[1].candidates] == ["utt02-1", "utt02-2", "utt02-3"]
    assert all(c.score is None for c in g[1].candidates)

    _, g = read(EXAMPLES / "kaldi")
    assert g[1].candidates[1].score == pytest.approx(-184.7)  # -ac_cost
    assert g[1].candidates[1].extra["lm_cost"] == 21.7

    _, g = read(EXAMPLES / "moses.txt")
    assert [x.id for x in g] == ["0", "1"]
    c = g[1].candidates[0]
    assert (c.text, c.score) == (KO_BEST, -15.1)
    assert c.extra["features"].startswith("LM0= -9.31")

    _, g = read(EXAMPLES / "srilm-native.txt")
    c = g[1].candidates[2]
    assert (c.text, c.score, c.nwords, c.extra["lscore"]) == ("자세히 예쁘다", -81.1, 2, -8.6)

    _, g1 = read(EXAMPLES / "srilm-nbest1.txt")
    _, g2 = read(EXAMPLES / "srilm-nbest2.txt")
    for a, b in zip(g1, g2):
        assert [c.text for c in a.candidates] == [c.text for c in b.candidates]
        assert [c.score for c in a.candidates] == [c.score for c in b.candidates]
    # (-1803) bytelog = -1803 / (ln 10 * 10000.5 / 1024) log10, within rounding of -80.2
    assert g1[1].candidates[0].score == pytest.approx(-1803 / BYTELOG_PER_LOG10)
    assert g1[1].candidates[0].score == pytest.approx(-80.2, abs=0.5 / BYTELOG_PER_LOG10)
    assert g1[0].header == "NBestList1.0" and g2[0].header == "NBestList2.0"

    _, g = read(EXAMPLES / "groups.txt")
    assert [x.id for x in g] == ["1", "2"]
    assert g[0].candidates[1].text == "the whether is nice today"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip_keeps_ids_text_scores(name, tmp_path):
    fmt, groups = read(EXAMPLES / name)
    out = tmp_path / "again"
    if fmt == "kaldi":
        write_kaldi_dir(out, groups)
    else:
        out.write_text(groups_to_text(groups), encoding="utf-8")
    fmt2, again = read(out)
    assert fmt2 == fmt
    assert [g.id for g in again] == [g.id for g in groups]
    for a, b in zip(groups, again):
        assert [(c.id, c.text, c.words) for c in a.candidates] == \
            [(c.id, c.text, c.words) for c in b.candidates]
        for c, d in zip(a.candidates, b.candidates):
            assert (c.score is None) == (d.score is None)
            if c.score is not None:
                assert d.score == pytest.approx(c.score, rel=1e-5)
            assert c.extra.get("lm_cost") == d.extra.get("lm_cost")


def test_best_line_per_format():
    _, g = read(EXAMPLES / "tsv.tsv")
    assert best_line(g[1], g[1].candidates[0]) == f"utt02\t{KO_BEST}"
    _, g = read(EXAMPLES / "kaldi.txt")
    assert best_line(g[1], g[1].candidates[1]) == f"utt02\t{KO_BEST}"
    _, g = read(EXAMPLES / "groups.txt")
    assert best_line(g[1], g[1].candidates[0]) == KO_BEST
    _, g = read(EXAMPLES / "srilm-nbest1.txt")
    assert best_line(g[1], g[1].candidates[0]) == f"(-1803) {KO_BEST}"
    _, g = read(EXAMPLES / "srilm-native.txt")
    # the LM column carries rnnkit's score, as `ngram -rescore` writes it
    assert best_line(g[1], g[1].candidates[0], lm=-7.25) == f"-80.2 -7.25 3 {KO_BEST}"
    _, g = read(EXAMPLES / "moses.txt")
    line = best_line(g[1], g[1].candidates[0], lm=-7.25, total=-12.5)
    assert line == f"1 ||| {KO_BEST} ||| LM0= -9.31 TM0= -4.02 WordPenalty0= -3 rnnkit= -7.2500 ||| -12.5"
    assert candidate_line(g[1], g[1].candidates[0]) == \
        f"1 ||| {KO_BEST} ||| LM0= -9.31 TM0= -4.02 WordPenalty0= -3 ||| -15.1"


def test_detect_rules():
    assert detect(["NBestList1.0", "(-10) a b"]) == "srilm"
    assert detect(["-1.5 -2 2 a b", "-1.7 -3e1 1 a"]) == "srilm"
    assert detect(["0 ||| a b ||| f= 1 ||| -2"]) == "moses"
    assert detect(["u\ta b", "u\ta c"]) == "tsv"
    assert detect(["a b\t-3.5", "a c\t-2"]) == "groups"  # candidate<TAB>score: one group
    assert detect(["u-1 a b", "u-2 a c"]) == "id"
    assert detect(["a b", "", "c d"]) == "groups"
    assert detect(["just one sentence"]) == "groups"
    assert detect(["covid-19 cases rise", "covid-19 case rise"]) == "id"
    assert detect(["covid-19 cases rise", "cases rise"]) == "groups"
    assert detect(["u-1 a", "", "u-2 b"]) == "groups"
    with pytest.raises(FormatError, match="empty"):
        detect(["", "  "])


def test_id_format_forced_accepts_plain_ids():
    g = parse_text("7 a b\n7 a c\n8 d\n", "id")
    assert [(x.id, len(x.candidates)) for x in g] == [("7", 2), ("8", 1)]
    assert g[0].candidates[1].id == "7"


def test_nbest2_drops_subword_units_and_pauses():
    text = ("NBestList2.0\n"
            "(-100) -pau- ( st: 0.0 et: 0.1 g: 0 a: -1 ) hi ( st: 0.1 et: 0.5 g: -3 a: -5 ) "
            "h ( st: 0.1 et: 0.3 g: 0 a: -2 ) ay ( st: 0.3 et: 0.5 g: 0 a: -3 ) "
            "there ( st: 0.5 et: 0.9 g: -4 a: -6 )\n")
    [g] = parse_text(text)
    assert g.candidates[0].text == "hi there"
    assert g.candidates[0].score == pytest.approx(-100 / BYTELOG_PER_LOG10)


def test_empty_candidates_allowed_where_unambiguous():
    [g] = parse_text("u\t\t-3\nu\ta\t-2\n", "tsv")
    assert [c.text for c in g.candidates] == ["", "a"]
    assert g.candidates[0].words == 0


def test_trailing_blank_lines_are_fine():
    g = parse_text("a\nb\n\nc\n\n\n")
    assert [len(x.candidates) for x in g] == [2, 1]


def test_streaming_yields_groups_before_reading_the_rest(tmp_path):
    p = tmp_path / "big.tsv"
    with open(p, "w", encoding="utf-8") as f:
        for i in range(3000):
            for j in range(5):
                f.write(f"g{i}\tcandidate {j} of group {i}\t-{j}.5\n")
        f.write("broken line without tabs\n")
    it = iter(NBestReader(p))
    first = next(it)  # the whole file (15,000 lines) is not needed for the first group
    assert first.id == "g0" and len(first.candidates) == 5
    n = 1
    with pytest.raises(FormatError, match=r"big.tsv:15001: expected 2 or 3 tab-separated"):
        for _ in it:
            n += 1
    assert n == 2999  # the last group ends at the broken line, which raises


# --- bad input: one message naming the line ------------------------------------------------------
@pytest.mark.parametrize("text,fmt,pattern", [
    ("a\nb\n\n\nc\n", "auto", r"<text>:4: a group with no candidates"),
    ("\na\nb\n", "groups", r"<text>:1: a group with no candidates \(a blank line at the start"),
    ("NBestList1.0\nNBestList1.0\n(-1) a\n", "auto", r"<text>:1: a group with no candidates"),
    ("NBestList1.0\n(-1) a\nNBestList2.0\n", "auto", r"<text>:3: a group with no candidates"),
    ("-1 -2 1 a\n\n\n-1 -2 1 b\n", "srilm", r"<text>:3: a group with no candidates"),
    ("u\ta\t-1\nu\tb\tminus two\n", "auto", r"<text>:2: malformed score column 'minus two'"),
    ("u\ta\t-1\nu\tb\n", "auto", r"<text>:2: malformed score column: this line lacks"),
    ("a\t-1\nb\tnan\n", "groups", r"<text>:2: malformed score column 'nan'"),
    ("0 ||| a ||| f= 1 ||| x\n", "auto", r"<text>:1: malformed score \(fourth field\) 'x'"),
    ("-1 -2 x a\n", "srilm", r"<text>:1: malformed word count"),
    ("NBestList1.0\n(-1) a\n-1 -2 1 b\n", "auto", r"<text>:3: expected `\(score\) w1 w2"),
    ("0 ||| a ||| f= 1 ||| -1\nu\tb\t-2\n", "moses", r"<text>:2: expected Moses'"),
    ("u-1 a\n" * 200 + "plain sentence\n", "auto", r"<text>:201: expected `id-N candidate`"),
    ("u\ta\t-1\n" + "x-1 b\n", "auto", r"<text>:2: expected 2 or 3 tab-separated fields"),
    ("u\ta\nv\tb\nu\tc\n", "auto", r"<text>:3: group 'u' appears again"),
    ("u\ta\nx y z\n", "tsv", r"<text>:2: expected 2 or 3 tab-separated fields"),
    ("u\ta\n\nu\tb\n", "tsv", r"<text>:2: blank line in a TSV"),
])
def test_bad_input_names_the_line(text, fmt, pattern):
    with pytest.raises(FormatError, match=pattern):
        parse_text(text, fmt)


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes("u\tgood\t-1\n".encode() + b"u\tbad \xff\xfe\t-2\n")
    with pytest.raises(InputError, match=r"bad.txt:2: invalid UTF-8"):
        list(NBestReader(p))


def test_unknown_format_and_empty_file(tmp_path):
    with pytest.raises(FormatError, match="unknown N-best format 'nbest'"):
        NBestReader("x", "nbest")
    p = tmp_path / "empty.txt"
    p.write_text("\n\n")
    with pytest.raises(FormatError, match="empty"):
        list(NBestReader(p))


def test_kaldi_dir_key_mismatch(tmp_path):
    d = tmp_path / "nb"
    d.mkdir()
    (d / "text").write_text("u-1 a b\nu-2 a c\n")
    (d / "ac_cost").write_text("u-1 10.5\nu-3 11\n")
    with pytest.raises(FormatError, match=r"ac_cost:2: expected `u-2 cost`"):
        list(NBestReader(d))
    (d / "ac_cost").write_text("u-1 10.5\n")
    with pytest.raises(FormatError, match=r"ac_cost: ends before"):
        list(NBestReader(d))
    (d / "ac_cost").write_text("u-1 10.5\nu-2 eleven\n")
    with pytest.raises(FormatError, match=r"ac_cost:2: malformed cost"):
        list(NBestReader(d))
    with pytest.raises(InputError, match="only --format kaldi reads a directory"):
        list(NBestReader(d, "tsv"))


def test_bytelog_constant():
    # SRILM's scripts: bytelogscale = M_LN10 * 10000.5 / 1024
    assert BYTELOG_PER_LOG10 == pytest.approx(math.log(10) * 10000.5 / 1024)
    # a bytelog is log base 1.0001 divided by 1024: log10(p) = bytelog * 1024 * log10(1.0001)
    assert 1 / BYTELOG_PER_LOG10 == pytest.approx(1024 * math.log10(1.0001), rel=1e-4)


# --- detection decides once, from unambiguous evidence (issue 15) --------------------------------
@pytest.mark.parametrize("text,words", [
    # some lines id-prefixed, one not: contradictory, not silently one blank-line group
    ("utt1-1 the cat sat\nutt1-2 the cat sad\nutt2 the dog\n", ["cannot tell", "line 3",
                                                                "--format"]),
    # a score meant as a number decides the format, and the parser rejects it
    ("the cat\tnan\nthe dog\t-1\n", ["1:", "'nan'", "finite"]),
    ("the cat\t1e999\nthe dog\t-1\n", ["1:", "'1e999'", "finite"]),
    ("the cat\t-1\nthe dog\tinf\n", ["2:", "'inf'"]),
    # SRILM native with a non-integer word count is SRILM, and wrong
    ("-1 -2 3.5 the cat\n", ["1:", "word count", "'3.5'"]),
    ("-1 nan 3 the cat\n", ["1:", "LM score"]),
    ("1 ||| the cat ||| f= 1 ||| nan\n", ["1:"]),
])
def test_malformed_lines_are_errors_not_another_format(tmp_path, text, words):
    p = tmp_path / "n.txt"
    p.write_text(text)
    with pytest.raises(FormatError) as e:
        list(NBestReader(p))
    assert str(e.value).startswith(str(p))
    for w in words:
        assert w in str(e.value)


def test_explicit_format_reads_what_auto_refuses(tmp_path):
    p = tmp_path / "n.txt"
    p.write_text("utt1-1 the cat sat\nutt1-2 the cat sad\nutt2 the dog\n")
    groups = list(NBestReader(p, "id"))
    assert [g.id for g in groups] == ["utt1", "utt2"]
    assert [c.text for c in groups[0].candidates] == ["the cat sat", "the cat sad"]
