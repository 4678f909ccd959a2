"""Rescoring: scores worked by hand on a tiny table model, ranking, batching, word error rate,
weight tuning, and the rescore / tune-interp / tune-rescore commands and their old alias
tune-weights (with a stand-in model, and with models trained on the bundled samples in
test_rescore_trained.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tinylm import TableLM, sentence_log10
from typer.testing import CliRunner

from rnnkit.cli import app, main
from rnnkit.errors import FormatError, RnnkitError
from rnnkit.models.mixture import Mixture
from rnnkit.rescoring.nbest import NBestReader, parse_text
from rnnkit.rescoring.rescore import (
    DevSet,
    Weights,
    build_devset,
    edit_distance,
    read_references,
    rescore,
    score_texts,
    tune,
    units,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "nbest"
WORDS = sorted({w for f in EXAMPLES.glob("*.t*") for line in f.read_text().splitlines()
                for w in line.split() if not w.startswith(("(", "-", "utt", "NBest"))
                and not w[0].isdigit()})
runner = CliRunner()


@pytest.fixture
def lm():
    return TableLM(WORDS, seed=11)


@pytest.fixture
def fake_models(monkeypatch):
    """`load_model(path)` gives a table model seeded by the file name, so the commands run
    without a trained model."""
    made = {}

    def load_model(path, **_):
        name = Path(path).name
        if name not in made:
            made[name] = TableLM(WORDS, seed=sum(map(ord, name)))
        return made[name]

    monkeypatch.setattr("rnnkit.loader.load", load_model)
    monkeypatch.setattr("rnnkit.cli.rescore.load", load_model)  # imported by name there
    return made


# --- scoring and ranking -------------------------------------------------------------------------
def test_scores_are_the_models_log10(lm):
    texts = ["the weather is nice today", "자세히 보아야 예쁘다", ""]
    got, tokens, oov, comps = score_texts(lm, texts)
    want = [sentence_log10(lm, t.split()) for t in texts]
    assert got == pytest.approx(want, abs=1e-12)
    assert tokens.tolist() == [5, 3, 0] and oov.tolist() == [0, 0, 0] and comps is None


def test_each_candidate_is_scored_alone_from_bos(lm):
    texts = ["weather the is nice today", "the weather is nice", "the whether is nice today"]
    together, *_ = score_texts(lm, texts)
    alone = [score_texts(lm, [t])[0][0] for t in texts]
    reversed_, *_ = score_texts(lm, texts[::-1])
    assert together.tolist() == alone == reversed_[::-1].tolist()


def test_ranking_by_the_combined_score(lm):
    [g] = parse_text("u\ta b\t-1.5\nu\tthe weather\t-2.0\nu\tthe\t-9\n", "tsv")
    w = Weights(lm=2.0, acoustic=0.5, word_penalty=-0.25)
    [r] = list(rescore(lm, [g], w))
    for i, c in enumerate(g.candidates):
        want = 2.0 * sentence_log10(lm, c.text.split()) + 0.5 * c.score - 0.25 * len(c.text.split())
        assert r.total[i] == pytest.approx(want, abs=1e-12)
    assert r.order.tolist() == np.argsort(-r.total, kind="stable").tolist()
    assert r.total[r.best] == r.total.max()
    d = r.to_json()
    assert [c["rank"] for c in d["candidates"]] == [1, 2, 3]
    assert d["candidates"][0]["index"] == r.best and d["best"] == g.candidates[r.best].text
    assert d["candidates"][0]["acoustic"] == g.candidates[r.best].score


def test_ties_keep_file_order(lm):
    [g] = parse_text("same words\nsame words\nsame words\n", "groups")
    [r] = list(rescore(lm, [g]))
    assert r.order.tolist() == [0, 1, 2]


def test_groups_are_batched_and_streamed(lm):
    groups = list(NBestReader(EXAMPLES / "tsv.tsv"))
    lm.calls.clear()
    out = list(rescore(lm, groups, batch=1000))
    assert lm.calls == [6]  # both groups in one call
    lm.calls.clear()
    again = list(rescore(lm, groups, batch=1))
    assert lm.calls == [3, 3]  # one group per call at least
    for a, b in zip(out, again):
        assert a.total.tolist() == b.total.tolist()


def test_mixture_components_in_json():
    a, b = TableLM(WORDS, seed=1), TableLM(WORDS, seed=2)
    m = Mixture([a, b], [0.5, 0.5])
    [g] = parse_text("the weather is nice today\nthe whether is nice today\n")
    [r] = list(rescore(m, [g]))
    d = r.to_json()
    for c in d["candidates"]:
        text = c["text"].split()
        assert c["models_log10"] == pytest.approx([sentence_log10(a, text),
                                                   sentence_log10(b, text)], abs=1e-12)


# --- word error rate and tuning ------------------------------------------------------------------
@pytest.mark.parametrize("hyp,ref,d", [
    ("a b c", "a b c", 0), ("a x c", "a b c", 1), ("a c", "a b c", 1), ("a b c d", "a b c", 1),
    ("", "a b", 2), ("a b", "", 2), ("c b a", "a b c", 2), ("자세를 모아야 예쁘다", "자세히 보아야 예쁘다", 2),
])
def test_edit_distance(hyp, ref, d):
    assert edit_distance(hyp.split(), ref.split()) == d


def test_character_units():
    assert units("자세를 모아야", "char") == list("자세를모아야")
    assert edit_distance(units("자세를 모아야 예쁘다", "char"), units("자세히 보아야 예쁘다", "char")) == 2


def _dev(rng, groups=40, size=6):
    """A development list where the acoustic score alone is noisy and the LM alone is biased
    towards short candidates: the best WER needs both and a word penalty."""
    offsets, lm, ac, words, errors = [0], [], [], [], []
    for _ in range(groups):
        e = rng.integers(0, 4, size)
        e[rng.integers(size)] = 0
        n = rng.integers(4, 9, size)
        ac.append(-2.0 * e + rng.normal(0, 1.5, size))
        lm.append(-1.0 * e - 0.8 * n + rng.normal(0, 1.5, size))
        words.append(n)
        errors.append(e)
        offsets.append(offsets[-1] + size)
    return DevSet(np.array(offsets), np.concatenate(lm), np.concatenate(ac),
                  np.concatenate(words).astype(float), np.concatenate(errors),
                  np.full(groups, 8))


def test_winners_match_a_plain_loop():
    rng = np.random.default_rng(0)
    dev = _dev(rng)
    settings = rng.normal(size=(7, 3))
    win = dev.winners(settings[:, 0], settings[:, 1], settings[:, 2])
    for s, (lw, aw, wp) in enumerate(settings):
        for g in range(len(dev.offsets) - 1):
            a, b = dev.offsets[g], dev.offsets[g + 1]
            total = lw * dev.lm[a:b] + aw * dev.acoustic[a:b] + wp * dev.words[a:b]
            assert win[s, g] == a + int(np.argmax(total))


@pytest.mark.parametrize("method", ["grid", "simplex"])
def test_tuning_lowers_wer(method):
    dev = _dev(np.random.default_rng(1))
    res = tune(dev, Weights(1.0, 1.0, 0.0), method=method)
    before, after = res["before"]["wer"], res["after"]["wer"]
    assert before == pytest.approx(dev.wer(Weights(1.0, 1.0, 0.0)))
    assert res["oracle_wer"] <= after <= before
    assert after == pytest.approx(dev.wer(res["weights"]))
    if method == "grid":
        assert after < before
        assert res["after"]["word_penalty"] > 0  # undoes the LM's bias to short candidates


def test_build_devset_and_references(lm, tmp_path):
    groups = list(NBestReader(EXAMPLES / "tsv.tsv"))
    ref = tmp_path / "ref"
    ref.write_text("utt02 자세히 보아야 예쁘다\nutt01\tthe weather is nice today\n")
    refs = read_references(ref, groups)
    assert refs == ["the weather is nice today", "자세히 보아야 예쁘다"]
    dev = build_devset(lm, groups, refs)
    assert dev.errors.tolist() == [0, 1, 2, 0, 2, 1]
    assert dev.ref_len.tolist() == [5, 3]
    assert dev.oracle() == 0.0
    plain = tmp_path / "plain"
    plain.write_text("the weather is nice today\n자세히 보아야 예쁘다\n")
    assert read_references(plain, groups) == refs
    plain.write_text("the weather is nice today\n")
    with pytest.raises(FormatError, match=r"1 reference line\(s\) for 2 group\(s\)"):
        read_references(plain, groups)
    ref.write_text("utt01 a\nutt01 b\n")
    with pytest.raises(FormatError, match=r"ref:2: a second reference for 'utt01'"):
        read_references(ref, groups)
    # another list's references (ids that match none of these groups) are not taken in order
    ref.write_text("en-01 the weather is nice today\nen-02 자세히 보아야 예쁘다\n")
    with pytest.raises(FormatError, match=r"start with ids \('en-01', ...\) that are not all"):
        read_references(ref, groups)


def test_bad_tuning_options():
    dev = _dev(np.random.default_rng(2), groups=3)
    with pytest.raises(RnnkitError, match="unknown --method"):
        tune(dev, method="powell")


# --- the commands (stand-in models) --------------------------------------------------------------
EXAMPLE_FILES = ["groups.txt", "tsv.tsv", "kaldi.txt", "kaldi", "srilm-nbest1.txt",
                 "srilm-nbest2.txt", "srilm-native.txt", "moses.txt"]


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_rescore_command_on_every_example(fake_models, name):
    path = str(EXAMPLES / name)
    res = runner.invoke(app, ["rescore", "lm.rnnkit", path, "--json"])
    assert res.exit_code == 0, res.output
    docs = [json.loads(x) for x in res.stdout.splitlines()]
    groups, summary = docs[:-1], docs[-1]["summary"]
    assert len(groups) == 2 and summary["groups"] == 2
    assert summary["candidates"] == sum(len(g["candidates"]) for g in groups)
    original = list(NBestReader(path))
    assert [g["group"] for g in groups] == [g.id for g in original]
    lm = fake_models["lm.rnnkit"]
    for g, o in zip(groups, original):
        for c in g["candidates"]:
            oc = o.candidates[c["index"]]
            assert c["id"] == oc.id and c["text"] == oc.text
            assert c["lm_log10"] == pytest.approx(sentence_log10(lm, oc.text.split()), abs=1e-9)
            assert c["score"] == pytest.approx(c["lm_log10"] + (oc.score or 0.0), abs=1e-9)

    best = runner.invoke(app, ["rescore", "lm.rnnkit", path, "--best-only"])
    assert best.exit_code == 0, best.output
    lines = best.stdout.splitlines()
    assert len(lines) == 2
    for line, g in zip(lines, groups):
        if name in ("tsv.tsv", "kaldi.txt", "kaldi"):
            assert line == f"{g['group']}\t{g['best']}"
        elif name.startswith("srilm-nbest"):
            assert line.split(")", 1)[1].split()[0] == g["best"].split()[0]
        else:
            assert g["best"] in line

    table = runner.invoke(app, ["rescore", "lm.rnnkit", path])
    assert table.exit_code == 0 and "★" in table.stdout and "group" in table.stdout


def test_rescore_stdin_and_mixture(fake_models):
    text = (EXAMPLES / "moses.txt").read_text()
    res = runner.invoke(app, ["rescore", "a.rnnkit", "b.rnnkit", "-", "--weights", "0.3,0.7",
                              "--json", "--lm-weight", "2", "--word-penalty", "-0.5",
                              "--share-prefixes"], input=text)
    assert res.exit_code == 0, res.output
    docs = [json.loads(x) for x in res.stdout.splitlines()]
    a, b = fake_models["a.rnnkit"], fake_models["b.rnnkit"]
    assert docs[0]["models"] == ["a.rnnkit", "b.rnnkit"]
    for c in docs[0]["candidates"]:
        words = c["text"].split()
        pa, pb = sentence_log10(a, words), sentence_log10(b, words)
        assert c["models_log10"] == pytest.approx([pa, pb], abs=1e-9)
        assert c["score"] == pytest.approx(2 * c["lm_log10"] + c["acoustic"] - 0.5 * len(words))
    assert docs[-1]["summary"]["format"] == "moses"


@pytest.fixture
def tuning_files(tmp_path):
    held = tmp_path / "held.txt"
    held.write_text("the weather is nice today\n자세히 보아야 예쁘다\nthe weather is nice\n")
    ref = tmp_path / "ref"
    ref.write_text("utt01 the weather is nice today\nutt02 자세히 보아야 예쁘다\n")
    return held, ref


def test_tune_interp_command(fake_models, tuning_files):
    held, _ = tuning_files
    res = runner.invoke(app, ["tune-interp", "a.rnnkit", "b.rnnkit", "--data", str(held),
                              "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert sum(d["weights"]) == pytest.approx(1) and d["models"] == ["a.rnnkit", "b.rnnkit"]
    assert d["perplexity"] <= min(d["model_perplexities"]) + 1e-9
    human = runner.invoke(app, ["tune-interp", "a.rnnkit", "b.rnnkit", "--data", str(held)])
    assert human.exit_code == 0 and "--weights" in human.stdout
    assert "interpolation weights (EM" in human.stdout


def test_tune_rescore_command(fake_models, tuning_files):
    _, ref = tuning_files
    res = runner.invoke(app, ["tune-rescore", "a.rnnkit", "--nbest", str(EXAMPLES / "kaldi.txt"),
                              "--reference", str(ref), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["after"]["wer"] <= d["before"]["wer"] and d["oracle_wer"] == 0.0
    human = runner.invoke(app, ["tune-rescore", "a.rnnkit", "--nbest", str(EXAMPLES / "tsv.tsv"),
                                "--reference", str(ref), "--unit", "char", "--method", "simplex"])
    assert human.exit_code == 0 and "CER" in human.stdout and "--lm-weight" in human.stdout
    assert "(simplex)" in human.stdout


def test_tune_weights_is_an_alias_of_both(fake_models, tuning_files):
    """The older command dispatches on --data / --nbest and prints what the new ones print."""
    held, ref = tuning_files
    for old, new in [
        (["tune-weights", "a.rnnkit", "b.rnnkit", "--data", str(held)],
         ["tune-interp", "a.rnnkit", "b.rnnkit", "--data", str(held)]),
        (["tune-weights", "a.rnnkit", "--nbest", str(EXAMPLES / "kaldi.txt"), "--reference",
          str(ref), "--json"],
         ["tune-rescore", "a.rnnkit", "--nbest", str(EXAMPLES / "kaldi.txt"), "--reference",
          str(ref), "--json"]),
        (["tune-weights", "a.rnnkit", "--nbest", str(EXAMPLES / "tsv.tsv"), "--reference",
          str(ref), "--unit", "char", "--word-penalty", "0.5"],
         ["tune-rescore", "a.rnnkit", "--nbest", str(EXAMPLES / "tsv.tsv"), "--reference",
          str(ref), "--unit", "char", "--word-penalty", "0.5"]),
    ]:
        a, b = runner.invoke(app, old), runner.invoke(app, new)
        assert a.exit_code == b.exit_code == 0, a.output
        assert a.stdout == b.stdout


# --- bad input through the command: one `error:` line naming the line, exit code 2 ---------------
def _run_main(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.mark.parametrize("content,pattern", [
    (b"a\nb\n\n\nc\n", r"^error: .*nb:4: a group with no candidates"),
    (b"u\ta\t-1\nu\tb\toops\n", r"^error: .*nb:2: malformed score column 'oops'"),
    (b"0 ||| a ||| f= 1 ||| -1\nu\tb\t-2\n", r"^error: .*nb:2: expected Moses'"),
    (b"u\ta\t-1\nu\t\xc3\x28\t-2\n", r"^error: .*nb:2: invalid UTF-8"),
    (b"NBestList1.0\nNBestList1.0\n(-3) a\n", r"^error: .*nb:1: a group with no candidates"),
])
def test_bad_nbest_exit_2(fake_models, tmp_path, capsys, content, pattern):
    p = tmp_path / "nb"
    p.write_bytes(content)
    code, err = _run_main(capsys, ["rescore", "lm.rnnkit", str(p)])
    assert code == 2
    assert len(err.splitlines()) == 1
    assert __import__("re").search(pattern, err), err


@pytest.mark.parametrize("args,pattern", [
    (["rescore", str(EXAMPLES / "tsv.tsv")], "give one or more MODEL files and then"),
    (["rescore", "a", "b", str(EXAMPLES / "tsv.tsv"), "--weights", "0.5"], "1 weight"),
    (["rescore", "a", "b", str(EXAMPLES / "tsv.tsv"), "--weights", "0.5,0.6"], "sum to 1"),
    (["rescore", "a", "b", str(EXAMPLES / "tsv.tsv"), "--combine", "max"], "unknown --combine"),
    (["rescore", "a", str(EXAMPLES / "tsv.tsv"), "--format", "xml"], "unknown --format"),
    (["rescore", "a", str(EXAMPLES / "kaldi"), "--format", "tsv"], "is a directory"),
    (["rescore", "a", "/no/such/file"], "no such file"),
    (["tune-interp", "a", "b"], "--data HELDOUT is required"),
    (["tune-interp", "a", "--data", str(EXAMPLES / "groups.txt")], "two or more models"),
    (["tune-rescore", "a", "--reference", str(EXAMPLES / "tsv.tsv")], "--nbest FILE is required"),
    (["tune-rescore", "a", "--nbest", str(EXAMPLES / "tsv.tsv")], "needs --reference"),
    (["tune-rescore", "a", "--nbest", str(EXAMPLES / "tsv.tsv"), "--reference",
      str(EXAMPLES / "tsv.tsv"), "--method", "random"], "unknown --method 'random'"),
    (["tune-weights", "a"], "give either --data"),
    (["tune-weights", "a", "--data", "x", "--nbest", "y"], "give either --data"),
    (["tune-weights", "a", "--data", str(EXAMPLES / "groups.txt")], "two or more models"),
    (["tune-weights", "a", "--nbest", str(EXAMPLES / "tsv.tsv")], "needs --reference"),
    (["tune-weights", "a", "--nbest", str(EXAMPLES / "tsv.tsv"), "--reference",
      str(EXAMPLES / "tsv.tsv"), "--unit", "byte"], "unknown --unit"),
])
def test_bad_usage_exit_2(fake_models, capsys, args, pattern):
    code, err = _run_main(capsys, args)
    assert code == 2 and err.startswith("error: ") and pattern in err, err
    assert len(err.splitlines()) == 1


# --- prefix sharing (recurrent models score N-best candidates through a prefix tree) -------------
SENTS = ["the weather is nice today", "the weather is nice", "the whether is nice today", "",
         "the weather is nice today", "weather the is nice today", "자세히 보아야 예쁘다",
         "the </s> weather"]


def test_prefix_tree_gives_the_same_numbers_table(lm):
    ids = [lm.encode(s)[0] for s in SENTS]
    for a, b in zip(lm.token_log_probs(ids), lm.prefix_token_log_probs(ids, chunk=3)):
        assert a.tolist() == pytest.approx(b.tolist(), abs=1e-12)


def test_prefix_tree_gives_the_same_numbers_lstm():
    from rnnkit.models.rnnlm import RNNLM, Architecture
    from rnnkit.text.vocab import SPECIALS, Tokenizer, Vocab

    vocab = Vocab(list(SPECIALS) + WORDS)
    for kind in ("lstm", "rnn"):
        m = RNNLM(Architecture(kind, len(vocab), 8, 12, 2), vocab, Tokenizer())
        m.init_uniform(np.random.default_rng(3), 0.5)
        ids = [m.encode(s)[0] for s in SENTS]
        for a, b in zip(m.token_log_probs(ids), m.prefix_token_log_probs(ids)):
            assert a.tolist() == pytest.approx(b.tolist(), abs=2e-5)
        shared = score_texts(m, SENTS, share=True)[0]
        plain = score_texts(m, SENTS)[0]
        assert shared == pytest.approx(plain, abs=1e-4)
        mix = Mixture([m, TableLM(WORDS, seed=4)], [0.5, 0.5])
        assert score_texts(mix, SENTS, True)[0] == pytest.approx(score_texts(mix, SENTS)[0],
                                                                 abs=1e-4)


# --- models trained on the bundled samples, on the bundled rescoring test set --------------------


def _test_set(lang, trained):
    groups = list(NBestReader(trained.DATA / f"{lang}.tsv"))
    refs = read_references(trained.DATA / f"{lang}.ref", groups)
    return groups, refs


def _accuracy(model, groups, refs, weights):
    return sum(r.group.candidates[r.best].text == ref
               for r, ref in zip(rescore(model, groups, weights), refs)) / len(groups)


@pytest.mark.parametrize("lang,kind", [("en", "3gram"), ("en", "lstm"), ("ko", "char5gram")])
def test_trained_model_ranks_the_well_formed_candidate_first(lang, kind, trained):
    """The lecture's worked example: P(자세히 보아야 예쁘다) > P(자세를 모아야 예쁘다).

    A language model alone prefers a candidate with a word dropped (one factor fewer), so the
    word penalty is tuned on the first half of the groups (as `rnnkit tune-rescore`
    does) and the ranking judged on the second half, and on all groups.
    """
    path = {"3gram": lambda: trained.ngram_path(lang),
            "lstm": lambda: trained.lstm_path(lang),
            "char5gram": lambda: trained.ngram_path(lang, 5, "char")}[kind]()
    model = trained.load(path)
    groups, refs = _test_set(lang, trained)
    assert len(groups) == 60
    sample = set(trained.corpus(lang).text("train"))
    assert not sample & set(refs)  # the well-formed candidates are new sentences
    dev = build_devset(model, groups[:30], refs[:30])
    res = tune(dev, Weights(1.0, 1.0, 0.0))
    w = res["weights"]
    assert w.word_penalty > 0  # a bonus per word: the LM alone favours dropped words
    assert _accuracy(model, groups[30:], refs[30:], w) >= 0.9
    assert _accuracy(model, groups, refs, w) >= 0.9
    # without the penalty: the well-formed candidate still beats the same-length variants
    wins = total = 0
    for r, ref in zip(rescore(model, groups), refs):
        i = [c.text for c in r.group.candidates].index(ref)
        for j in range(len(r.lm)):
            if j != i and r.words[j] == r.words[i]:
                total += 1
                wins += r.lm[i] > r.lm[j]
    assert wins / total >= 0.9


def test_the_lectures_example(trained):
    model = trained.load(trained.ngram_path("ko", 5, "char"))
    assert model.score("자세히 보아야 예쁘다 .") > model.score("자세를 모아야 예쁘다 .")
    word = trained.load(trained.ngram_path("ko"))
    assert word.score("자세히 보아야 예쁘다 .") > word.score("자세를 모아야 예쁘다 .")


def test_rescore_subprocess_with_a_mixture_of_trained_models(tmp_path, trained):
    import subprocess
    import sys

    tri, lstm = trained.ngram_path("en"), trained.lstm_path("en")
    p = subprocess.run([sys.executable, "-m", "rnnkit", "rescore", str(tri), str(lstm),
                        str(trained.DATA / "en.tsv"), "--weights", "0.3,0.7", "--word-penalty",
                        "2.5", "--best-only"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    groups, refs = _test_set("en", trained)
    assert [x.split("\t")[0] for x in lines] == [g.id for g in groups]
    assert sum(x.split("\t")[1] == ref for x, ref in zip(lines, refs)) >= 54
    assert "60 groups, 278 candidates" in " ".join(p.stderr.split())

    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"g\tgood\t-1\ng\t\xff\t-2\n")
    p = subprocess.run([sys.executable, "-m", "rnnkit", "rescore", str(tri), str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith(f"error: {bad}:2: invalid UTF-8")
