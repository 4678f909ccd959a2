"""`rnnkit train --type ngram --memory SIZE [--temp-dir DIR]` and the size parser."""
from __future__ import annotations

import json

import numpy as np
import pytest
from markov import markov_corpus

from rnnkit import load
from rnnkit.cli import main
from rnnkit.cli._common import format_size, parse_size
from rnnkit.errors import RnnkitError
from rnnkit.models.ngram import external


@pytest.mark.parametrize("text, value", [("500M", 500 << 20), ("2G", 2 << 30), ("1.5G", 3 << 29),
                                         ("800k", 800 << 10), ("64MB", 64 << 20),
                                         ("2GiB", 2 << 30), ("4096", 4096), (" 1T ", 1 << 40)])
def test_sizes_parse_in_binary_units(text, value):
    assert parse_size("--memory", text) == value


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "0", "nan", "inf", "1.5.2G", "2 G B"])
def test_bad_sizes_are_one_clear_error(text):
    with pytest.raises(RnnkitError, match=r"--memory .*expected a positive size such as 500M"):
        parse_size("--memory", text)


def test_format_size():
    assert [format_size(n) for n in (512, 1536, 200 << 20, 3 << 30)] == \
        ["512 B", "1.5 KB", "200.0 MB", "3.0 GB"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mem") / "corp"
    markov_corpus(sentences=1500).write(d)
    return d


def run(capsys, args):
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_train_with_memory_writes_the_in_memory_model(corpus_dir, tmp_path, capsys):
    base = ["train", str(corpus_dir), "--type", "ngram", "--order", "4", "--discount-fallback",
            "--json", "--out"]
    code, out, err = run(capsys, base + [str(tmp_path / "a.rnnkit")])
    assert code == 0, err
    temp = tmp_path / "temp"
    temp.mkdir()
    code, out2, err = run(capsys, base + [str(tmp_path / "b.rnnkit"), "--memory", "1.5M",
                                          "--temp-dir", str(temp)])
    assert code == 0, err
    s1, s2 = json.loads(out), json.loads(out2)
    assert s1["ngrams"] == s2["ngrams"] and s1["discounts"] == s2["discounts"]
    assert set(s2["stage_seconds"]) >= {"count", "adjust", "interpolate", "write"}
    assert s2["memory"] == 3 << 19 and s2["temp_peak_bytes"] > 0 and min(s2["count_runs"]) > 1
    assert s1["estimator"] == "in memory" and s2["estimator"] == "external"
    assert s1["peak_rss_bytes"] > 10 << 20 and s2["peak_rss_bytes"] > 10 << 20
    assert list(temp.iterdir()) == []
    a, b = load(tmp_path / "a.rnnkit"), load(tmp_path / "b.rnnkit")
    for name in ("word", "ctx", "suffix", "logp", "backoff"):
        for k in range(1, 4):
            assert np.array_equal(getattr(a.tables, name)[k], getattr(b.tables, name)[k])
    assert a.perplexity(["w5 w7 w9", "w3"]) == b.perplexity(["w5 w7 w9", "w3"])


@pytest.mark.parametrize("extra, message", [
    (["--memory", "2X"], "error: --memory '2X': expected a positive size"),
    (["--memory", "1G", "--type", "lstm"], "error: --memory and --temp-dir go with --type ngram"),
    (["--memory", "1G", "--temp-dir", "no/such/dir"], "error: --temp-dir no/such/dir: no such"),
])
def test_bad_memory_options_exit_2(corpus_dir, tmp_path, capsys, extra, message):
    args = ["train", str(corpus_dir), "--out", str(tmp_path / "m.rnnkit"), "--type", "ngram",
            "--discount-fallback"]
    code, _, err = run(capsys, [a for a in args if not (a == "ngram" and "lstm" in extra)] + extra)
    assert code == 2 and err.startswith(message), err
    assert not (tmp_path / "m.rnnkit").exists()


def test_a_large_corpus_uses_the_budget_by_default(corpus_dir, tmp_path, capsys, monkeypatch):
    assert external.auto_memory(external.AUTO_TOKENS) is None
    assert 0 < external.auto_memory(external.AUTO_TOKENS + 1) <= external.AUTO_MEMORY
    monkeypatch.setattr(external, "AUTO_TOKENS", 1000)  # the test corpus counts as large
    temp = tmp_path / "temp"
    temp.mkdir()
    code, out, err = run(capsys, ["train", str(corpus_dir), "--type", "ngram", "--order", "3",
                                  "--discount-fallback", "--json", "--temp-dir", str(temp),
                                  "--out", str(tmp_path / "m.rnnkit")])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["estimator"] == "external (auto: a large corpus)"
    assert summary["memory"] == external.auto_memory(10**9) and summary["temp_peak_bytes"] > 0
    assert list(temp.iterdir()) == []


def test_stage_progress_draws_a_bar_per_stage_on_a_terminal(monkeypatch):
    import io

    from rich.console import Console

    from rnnkit.cli import _common

    buf = io.StringIO()
    monkeypatch.setattr(_common, "err", Console(file=buf, force_terminal=True, width=120))
    with _common.stage_progress(external.STAGES) as advance:
        advance("count", 512, 1024, 3 << 20)
        advance("adjust", 10, 10, 5 << 20)
    text = buf.getvalue()
    assert "count" in text and "adjust" in text and "temp 5.0 MB" in text
    monkeypatch.setattr(_common, "err", Console(file=io.StringIO(), force_terminal=False))
    with _common.stage_progress(external.STAGES) as advance:  # not a terminal: a no-op
        assert advance("count", 1, 2, 3) is None


def test_prepare_and_train_a_text_file_under_a_budget(tmp_path, capsys):
    from rnnkit.text.prepare import sample_path

    src = str(sample_path("en"))
    for args in (["prepare", src, "--out", str(tmp_path / "a"), "--json"],
                 ["prepare", src, "--out", str(tmp_path / "b"), "--json", "--memory", "64K",
                  "--temp-dir", str(tmp_path)]):
        code, _, err = run(capsys, args)
        assert code == 0, err
    for name in ("train.npy", "vocab.txt", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # a text file as DATA with --memory is prepared by streaming, then estimated on disk
    temp = tmp_path / "temp"
    temp.mkdir()
    base = ["train", src, "--type", "ngram", "--order", "3", "--json", "--out"]
    code, out1, err = run(capsys, base + [str(tmp_path / "m1.rnnkit")])
    assert code == 0, err
    code, out2, err = run(capsys, base + [str(tmp_path / "m2.rnnkit"), "--memory", "2M",
                                          "--temp-dir", str(temp)])
    assert code == 0, err
    assert list(temp.iterdir()) == []
    assert json.loads(out1)["ngrams"] == json.loads(out2)["ngrams"]
    a, b = load(tmp_path / "m1.rnnkit"), load(tmp_path / "m2.rnnkit")
    assert a.vocab.tokens == b.vocab.tokens
    for k in range(3):
        assert np.array_equal(a.tables.logp[k], b.tables.logp[k])
        assert np.array_equal(a.tables.backoff[k], b.tables.backoff[k])


@pytest.mark.parametrize("extra, message", [
    (["--memory", "1G", "--level", "subword", "--vocab-size", "100"], "does not stream --level"),
    (["--temp-dir", "."], "--temp-dir goes with --memory"),
    (["--memory", "lots"], "--memory 'lots': expected a positive size"),
])
def test_prepare_memory_errors(tmp_path, capsys, extra, message):
    from rnnkit.text.prepare import sample_path

    code, _, err = run(capsys, ["prepare", str(sample_path("en")), "--out",
                                str(tmp_path / "x")] + extra)
    assert code == 2 and err.startswith("error: ") and message in err, err
