"""BLEU and chrF through sacreBLEU: a corpus BLEU worked by hand, several references, casing,
the tokenizer, the per-epoch helper, and `rnnkit evaluate` (files, stdin, --json, every error
as one line and exit code 2, and one real process)."""
from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rnnkit.cli import app, main
from rnnkit.decoding.metrics import corpus_bleu, evaluate, read_parallel_text
from rnnkit.errors import InputError

runner = CliRunner()
HYP = ["the cat sat on the mat", "hello there"]
REF = ["the cat sat on a mat", "hello there"]
# by hand: 8 hypothesis tokens, 8 reference tokens (BP 1); clipped matches per order:
# 1-grams 5+2 of 8 (`the` twice, once in the reference), 2-grams 3+1 of 5+1, 3-grams 2 of 4,
# 4-grams 1 of 3; BLEU = (7/8 * 4/6 * 2/4 * 1/3) ** (1/4)
HAND = 100 * (7 / 8 * 4 / 6 * 2 / 4 * 1 / 3) ** 0.25


def test_corpus_bleu_by_hand():
    assert corpus_bleu(HYP, REF) == pytest.approx(HAND, abs=1e-9)
    assert HAND == pytest.approx(55.84, abs=0.01)
    r = evaluate(HYP, [REF])
    assert r["bleu"]["score"] == pytest.approx(HAND, abs=1e-9)
    assert r["bleu"]["precisions"] == pytest.approx([87.5, 400 / 6, 50.0, 100 / 3])
    assert (r["bleu"]["hyp_len"], r["bleu"]["ref_len"], r["bleu"]["bp"]) == (8, 8, 1.0)
    assert r["bleu"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert 0 < r["chrf"]["score"] < 100 and r["chrf"]["signature"].startswith("nrefs:1|")
    assert corpus_bleu(REF, REF) == pytest.approx(100.0)
    assert corpus_bleu([], []) == 0.0


def test_brevity_penalty_and_several_references():
    # a 5-token hypothesis against a 6-token reference: BP = exp(1 - 6/5)
    one = evaluate(["the cat sat on mat"], [["the cat sat on a mat"]], metrics=["bleu"])
    assert one["bleu"]["bp"] == pytest.approx(math.exp(1 - 6 / 5))
    # a second reference that contains the hypothesis exactly makes it perfect
    two = evaluate(["the cat sat on mat"], [["the cat sat on a mat"], ["the cat sat on mat"]])
    assert two["bleu"]["score"] == pytest.approx(100.0) and two["references"] == 2
    assert "nrefs:2" in two["bleu"]["signature"]


def test_lowercase_and_tokenize():
    assert corpus_bleu(["The Cat sat on the mat"], ["the cat sat on the mat"]) < 100
    assert corpus_bleu(["The Cat sat on the mat"], ["the cat sat on the mat"],
                       lowercase=True) == pytest.approx(100.0)
    # 13a splits the final period off; `none` does not, so "mat." differs from "mat"
    assert corpus_bleu(["a cat on the mat."], ["a cat on the mat ."]) == pytest.approx(100.0)
    assert corpus_bleu(["a cat on the mat."], ["a cat on the mat ."], tokenize="none") < 100
    assert "tok:none" in evaluate(HYP, REF, tokenize="none")["bleu"]["signature"]


@pytest.mark.parametrize("call, match", [
    (lambda: corpus_bleu(HYP, REF[:1]), "reference set 1 has 1 sentences, the hypotheses 2"),
    (lambda: corpus_bleu(HYP, REF, tokenize="mecab"), "unknown --tokenize 'mecab'"),
    (lambda: evaluate(HYP, REF, metrics=["ter"]), "unknown metric 'ter'"),
    (lambda: evaluate([], []), "no reference"),
    (lambda: evaluate([], [[]]), "no sentences to evaluate"),
])
def test_library_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_reading_files(tmp_path):
    (tmp_path / "h").write_text("\n".join(HYP) + "\n", encoding="utf-8")
    (tmp_path / "r.gz").write_bytes(gzip.compress(("\n".join(REF) + "\n").encode()))
    hyp, refs = read_parallel_text(tmp_path / "h", [tmp_path / "r.gz"])
    assert (hyp, refs) == (HYP, [REF])
    (tmp_path / "short").write_text("one line\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"short has 1 lines but .*h has 2"):
        read_parallel_text(tmp_path / "h", [tmp_path / "r.gz", tmp_path / "short"])
    with pytest.raises(InputError, match="given more than once"):
        read_parallel_text("-", ["-"])
    (tmp_path / "bad").write_bytes(b"ok\n\xff\n")
    with pytest.raises(InputError, match=r"bad:2: invalid UTF-8"):
        read_parallel_text(tmp_path / "h", [tmp_path / "bad"])


@pytest.fixture
def files(tmp_path):
    h, r = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    h.write_text("\n".join(HYP) + "\n", encoding="utf-8")
    r.write_text("\n".join(REF) + "\n", encoding="utf-8")
    return str(h), str(r)


def test_cli_table_and_json(files):
    r = runner.invoke(app, ["evaluate", *files], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "55.84" in r.stdout and "nrefs:1|case:mixed|eff:no|tok:13a" in r.stdout
    r = runner.invoke(app, ["evaluate", "-", files[1], "--json", "--lowercase",
                            "--metrics", "bleu"], input="\n".join(HYP) + "\n")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["bleu"]["score"] == pytest.approx(HAND) and "chrf" not in d
    assert "case:lc" in d["bleu"]["signature"]


@pytest.mark.parametrize("args, match", [
    (["{h}", "{short}"], "short.txt has 1 lines but {h} has 2"),
    (["{h}", "{r}", "--tokenize", "spm"], "unknown --tokenize 'spm'"),
    (["{h}", "{r}", "--metrics", "ter"], "--metrics 'ter': use bleu, chrf"),
    (["{h}", "{tmp}/missing.txt"], "missing.txt: no such file"),
])
def test_cli_errors(tmp_path, files, capsys, args, match):
    short = tmp_path / "short.txt"
    short.write_text("one\n", encoding="utf-8")
    subs = {"h": files[0], "r": files[1], "short": str(short), "tmp": str(tmp_path)}
    code = main(["evaluate", *[a.format(**subs) for a in args]])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and match.format(**subs) in captured.err


def test_cli_in_a_real_process(files):
    r = subprocess.run([sys.executable, "-m", "rnnkit", "evaluate", "-", files[1], "--json"],
                       input=("\n".join(HYP) + "\n").encode(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bleu"]["score"] == pytest.approx(HAND)


def test_force_silences_the_tokenized_text_warning(caplog):
    lines = [f"this is sentence number {i} ." for i in range(120)]  # 100+ lines ending in a tokenized period
    with caplog.at_level("WARNING"):
        evaluate(lines, lines, metrics=["bleu"])
    assert "detokenize" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluate(lines, lines, metrics=["bleu"], force=True)
        assert corpus_bleu(lines, lines) == pytest.approx(100.0)
    assert "detokenize" not in caplog.text
