"""`rnnkit translate` and `rnnkit score --source` on a small trained translation model, through
the command line (in process, and once as a real subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.text.vocab import SPECIALS, Tokenizer, Vocab
from rnnkit.training.seq2seq_task import train_seq2seq

WORDS = "a b c d e f".split()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    vocab = Vocab(list(SPECIALS) + WORDS)
    pairs = []
    for _ in range(400):
        s = rng.integers(3, len(vocab), rng.integers(2, 6)).astype(np.uint32)
        pairs.append((s, s[::-1].copy()))
    side = SimpleNamespace(vocab=vocab, tokenizer=Tokenizer())
    corpus = SimpleNamespace(src=side, trg=side, pairs=lambda split: pairs if split == "train"
                             else pairs[:20], manifest=None)
    path = tmp_path_factory.mktemp("tr") / "rev.rnnkit"
    train_seq2seq(corpus, path, emb=24, hidden=32, attention="general", bidirectional=True,
                  batch=16, epochs=10, lr=0.01, threads=1)
    return path


def run(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    o = capsys.readouterr()
    return code, o.out, o.err


def test_translate_greedy_beam_json_nbest(model_path, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("a b c\nd e f a\nb e\n")
    code, out, _ = run(capsys, "translate", model_path, src, "--beam", "1")
    assert code == 0 and out.splitlines() == ["c b a", "a f e d", "e b"]
    code, out4, _ = run(capsys, "translate", model_path, src, "--beam", "4")
    assert code == 0 and out4 == out
    code, out, _ = run(capsys, "translate", model_path, src, "--json")
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in recs] == [1, 2, 3] and recs[0]["translation"] == "c b a"
    assert all(r["log10_prob"] < 0 for r in recs)
    code, out, _ = run(capsys, "translate", model_path, src, "--beam", "3", "--n-best", "3")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 9 and [r[0] for r in rows[:3]] == ["1", "1", "1"]
    assert rows[0][1] == "c b a"


def test_python_api_and_score_given_sources(model_path, tmp_path, capsys):
    model = rnnkit.load(model_path)
    assert model.translate(["a b c", "f c"], beam=2) == ["c b a", "c f"]
    good, bad = model.score("a b c", "c b a"), model.score("a b c", "a b c")
    assert good > bad
    src, trg = tmp_path / "s.txt", tmp_path / "t.txt"
    src.write_text("a b c\na b c\n")
    trg.write_text("c b a\na b c\n")
    code, out, _ = run(capsys, "score", model_path, trg, "--source", src, "--json")
    assert code == 0
    recs = [json.loads(line) for line in out.splitlines()]
    assert recs[0]["log10_prob"] == pytest.approx(good, abs=1e-4)
    assert recs[1]["log10_prob"] == pytest.approx(bad, abs=1e-4)
    trg.write_text("c b a\n")
    code, _, err = run(capsys, "score", model_path, trg, "--source", src)
    assert code == 2 and "same number of lines" in err


def test_errors_are_one_line_exit_2(model_path, tmp_path, capsys):
    lm = tmp_path / "lm.txt"
    lm.write_text("a b\n")
    code, _, err = run(capsys, "translate", tmp_path / "missing.rnnkit", lm)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "translate", model_path, lm, "--beam", "2", "--n-best", "3")
    assert code == 2 and "--n-best" in err
    r = subprocess.run([sys.executable, "-m", "rnnkit", "translate", str(model_path), "-",
                        "--beam", "2"], input="e d\n", capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "d e\n"


def test_sentence_commands_refuse_a_translation_model(model_path, tmp_path, capsys):
    """score without --source, mixtures, generate, rescore and the tune commands need a
    language model: a translation model is one error line naming what to use, exit 2."""
    text, nbest = tmp_path / "t.txt", tmp_path / "nb.tsv"
    text.write_text("a b\n")
    nbest.write_text("1\ta b\n1\tb a\n")
    for args in (["score", model_path, text], ["score", model_path, model_path, text],
                 ["generate", model_path], ["rescore", model_path, nbest],
                 ["tune-interp", model_path, model_path, "--data", text],
                 ["tune-rescore", model_path, "--nbest", nbest, "--reference", text]):
        code, out, err = run(capsys, *args)
        assert code == 2 and out == "", args
        assert err.startswith(f"error: {model_path}: a translation model") and \
            len(err.strip().splitlines()) == 1 and "--source" in err, (args, err)


def test_ref_scores_the_translations_and_max_length_caps_them(model_path, tmp_path, capsys):
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("a b c d\ne f\n")
    ref.write_text("d c b a\nf e\n")
    code, out, err = run(capsys, "translate", model_path, src, "--ref", ref)
    assert code == 0 and out == "d c b a\nf e\n"
    assert "BLEU" in err and "100.00" in err and "nrefs:1|" in err
    code, out, _ = run(capsys, "translate", model_path, src, "--ref", ref, "--json")
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["translation"] for r in recs[:2]] == ["d c b a", "f e"]
    assert recs[2]["summary"]["bleu"]["score"] == pytest.approx(100.0)
    code, out, _ = run(capsys, "translate", model_path, src, "--max-length", "2", "--json")
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["translation"] for r in recs] == ["d c", "f e"]
    assert [r["complete"] for r in recs] == [False, False]  # stopped by the limit, not </s>
    short = tmp_path / "short.txt"
    short.write_text("d c b a\n")
    code, out, err = run(capsys, "translate", model_path, src, "--ref", short)
    assert code == 2 and out == "" and "--ref must be aligned" in err
    code, _, err = run(capsys, "translate", model_path, src, "--max-length", "0")
    assert code == 2 and "--max-length" in err


def test_attention_spans_each_source_alone_and_one_string_translates(model_path):
    from rnnkit.decoding.translate import TranslateOptions, translate_lines
    m = rnnkit.load(model_path)
    results = translate_lines(m, ["a b c d e", "f e"], TranslateOptions(keep_attention=True))
    for r in results:  # decoded in one batch, padded to the longer source
        assert r.best.attention.shape == (len(r.best.tokens) + 1, len(r.source_tokens) + 1)
        np.testing.assert_allclose(r.best.attention.sum(1), 1.0, rtol=1e-5)
    assert m.translate("a b c") == "c b a" and m.translate(["a b c"]) == ["c b a"]


def test_attention_plot(model_path, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the attention plot needs the plot extra")
    src = tmp_path / "src.txt"
    src.write_text("a b c d\n")
    png = tmp_path / "att.png"
    code, out, _ = run(capsys, "translate", model_path, src, "--plot-attention", png)
    assert code == 0 and out == "d c b a\n"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what the plot needs is checked before anything is translated
    code, out, err = run(capsys, "translate", model_path, src, "--plot-attention", src)
    assert code == 2 and out == "" and err.startswith("error:")


def test_attention_plot_labels_use_a_font_that_has_their_characters():
    pytest.importorskip("matplotlib", reason="the attention plot needs the plot extra")
    from matplotlib import font_manager, ft2font

    from rnnkit.report.plots import _font_covering
    assert _font_covering(["a", "b", "</s>"]) == (None, "")
    family, note = _font_covering(["자세히", "see"])
    if family is None:  # no Korean font installed here: said once, naming a character
        assert any(f"'{c}'" in note for c in "자세히") and "Noto Sans CJK" in note
    else:
        path = font_manager.findfont(font_manager.FontProperties(family=family))
        assert {ord(c) for c in "자세히see"} <= ft2font.FT2Font(path).get_charmap().keys()


def test_init_from_continues_from_the_model(model_path, tmp_path):
    rng = np.random.default_rng(3)
    vocab = Vocab(list(SPECIALS) + WORDS)
    pairs = [(s, s[::-1].copy()) for s in
             (rng.integers(3, len(vocab), 4).astype(np.uint32) for _ in range(40))]
    side = SimpleNamespace(vocab=vocab, tokenizer=Tokenizer())
    corpus = SimpleNamespace(src=side, trg=side, pairs=lambda split: pairs, manifest=None)
    out = tmp_path / "ft.rnnkit"
    train_seq2seq(corpus, out, emb=24, hidden=32, attention="general", bidirectional=True,
                  batch=16, epochs=0, init_from=str(model_path), threads=1)
    np.testing.assert_array_equal(rnnkit.load(out).flat, rnnkit.load(model_path).flat)
    # the architecture is the model's, whatever the size options say (as for language models)
    train_seq2seq(corpus, out, emb=16, hidden=8, attention="none", bidirectional=False,
                  epochs=0, init_from=str(model_path), threads=1)
    assert rnnkit.load(out).arch == rnnkit.load(model_path).arch
    np.testing.assert_array_equal(rnnkit.load(out).flat, rnnkit.load(model_path).flat)
    other = Vocab(list(SPECIALS) + WORDS[::-1])
    side = SimpleNamespace(vocab=other, tokenizer=Tokenizer())
    corpus = SimpleNamespace(src=side, trg=side, pairs=lambda split: pairs, manifest=None)
    with pytest.raises(rnnkit.errors.RnnkitError, match="vocabularies differ"):
        train_seq2seq(corpus, out, epochs=0, init_from=str(model_path), threads=1)
