"""Subword units: SentencePiece training (deterministic, on the training split only), the
subword Tokenizer (pieces, detokenisation, carried in to_dict/from_dict as base64), prepare
--level subword, a language model over subwords that scores and generates plain text, and the
errors."""
from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.errors import FormatError, InputError
from rnnkit.text.corpus import Corpus
from rnnkit.text.prepare import build_corpus, sample_path
from rnnkit.text.prepare import prepare as prepare_fn
from rnnkit.text.subword import train_sentencepiece
from rnnkit.text.vocab import SPACE, UNK, Tokenizer

runner = CliRunner()
KO = sample_path("ko")


def ko_lines(n=300):
    return KO.read_text("utf-8").splitlines()[:n]


@pytest.fixture(scope="module")
def ko_model() -> bytes:
    return train_sentencepiece(ko_lines(), 300)


def test_training_is_deterministic_and_the_model_type_matters(ko_model):
    assert train_sentencepiece(ko_lines(), 300) == ko_model
    bpe = train_sentencepiece(ko_lines(), 300, "bpe")
    assert bpe == train_sentencepiece(ko_lines(), 300, "bpe")
    assert bpe != ko_model


def test_pieces_and_detokenisation(ko_model):
    tok = Tokenizer(level="subword", subword_model=ko_model)
    for line in ko_lines(50):
        pieces = tok.split(line)
        assert pieces and pieces[0].startswith(SPACE)  # a word's first piece carries ▁
        assert tok.join(pieces) == " ".join(line.split())
    # fewer pieces than character-level tokens (spaces as ▁): frequent sequences became units
    text = " ".join(ko_lines(50))
    assert len(tok.split(text)) < len(Tokenizer(level="char").split(text))
    # whitespace of any kind is one space, and a blank line has no pieces
    assert tok.split("자세히\t보아야  예쁘다\r") == tok.split("자세히 보아야 예쁘다")
    assert tok.split("   ") == []
    lines = ["자세히 보아야 예쁘다", "", "오래 보아야"]
    assert list(tok.split_lines("\n".join(lines))) == [tok.split(x) for x in lines]


def test_the_model_travels_in_to_dict(ko_model):
    tok = Tokenizer(level="subword", lowercase=True, subword_model=ko_model)
    d = tok.to_dict()
    assert base64.b64decode(d["subword_model"]) == ko_model
    back = Tokenizer.from_dict(json.loads(json.dumps(d)))
    assert back == tok and back.split("자세히 보아야 예쁘다") == tok.split("자세히 보아야 예쁘다")
    assert "subword_model" not in Tokenizer().to_dict()  # word/char manifests are unchanged


def test_tokenizer_errors(ko_model):
    with pytest.raises(InputError, match="needs its SentencePiece model"):
        Tokenizer(level="subword")
    with pytest.raises(InputError, match="needs its SentencePiece model"):
        Tokenizer(level="word", subword_model=ko_model)
    with pytest.raises(FormatError, match="not valid base64"):
        Tokenizer.from_dict({"level": "subword", "subword_model": "@@not base64@@"})
    with pytest.raises(InputError, match="cannot be read"):
        Tokenizer(level="subword", subword_model=b"not a model")


def test_prepare_subword_learns_from_the_training_text_only(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("\n".join(ko_lines(200)) + "\n", encoding="utf-8")
    valid = tmp_path / "valid.txt"
    valid.write_text("자세히 보아야 예쁘다 Q\n", encoding="utf-8")  # Q never occurs in training
    m = prepare_fn([str(train)], tmp_path / "d", level="subword", vocab_size=400, valid=valid)
    c = Corpus.load(tmp_path / "d")
    assert c.tokenizer.level == "subword" and m["options"]["vocab_size"] == 400
    pieces = c.tokenizer.split("자세히 보아야 예쁘다 Q")
    assert "Q" not in c.vocab and m["splits"]["valid"]["oov"] >= 1
    assert c.vocab.encode(pieces)[-1] == UNK
    assert len(c.vocab) <= 400
    assert next(c.text("train")) == " ".join(ko_lines(1)[0].split())
    # the same input and options give the same files
    m2 = prepare_fn([str(train)], tmp_path / "d2", level="subword", vocab_size=400, valid=valid)
    assert m2["tokenizer"] == m["tokenizer"]
    assert m2["splits"]["train"]["sha256"] == m["splits"]["train"]["sha256"]


def test_the_random_split_keeps_held_out_sentences_out_of_training(tmp_path):
    # 20 lines each with a character of its own: the subword model knows exactly the characters
    # of the lines the split keeps for training (character coverage 1)
    own = [chr(0x4E00 + k) for k in range(20)]
    lines = [f"common words here {i % 3}" for i in range(60)] + [f"word {c}{c} end" for c in own]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    c = build_corpus([str(path)], level="subword", vocab_size=60, split="0.6,0.2,0.2", seed=3)
    train = " ".join(c.text("train"))
    pieces = "".join(c.tokenizer._sp.id_to_piece(i) for i in range(c.tokenizer._sp.get_piece_size()))
    in_train = {ch for ch in own if ch in train}
    assert 0 < len(in_train) < len(own)
    for ch in own:
        assert (ch in pieces) == (ch in in_train)


@pytest.mark.parametrize("kw, match", [
    (dict(level="subword"), "needs --vocab-size"),
    (dict(level="subword", vocab_size=100), "--vocab-size 100: SentencePiece cannot train .*"
                                            "try a larger --vocab-size"),
    (dict(level="subword", vocab_size=4), "at least 8"),
    (dict(level="word", vocab_size=100), "needs --level subword"),
    (dict(level="subword", vocab_size=100, subword_model="wordpiece"), "unknown --subword-model"),
    (dict(level="subword", vocab_size=300, vocab=KO), "--vocab cannot be combined with --level "
                                                      "subword"),
])
def test_prepare_subword_errors(kw, match):
    with pytest.raises(InputError, match=match):
        build_corpus([str(KO)], **kw)


def test_subword_from_stdin_is_refused():
    with pytest.raises(InputError, match="give a file, not `-`"):
        build_corpus(["-"], level="subword", vocab_size=100)


def test_a_language_model_over_subwords_reads_and_writes_plain_text(tmp_path):
    d, model = tmp_path / "d", tmp_path / "lm.rnnkit"
    r = runner.invoke(app, ["prepare", str(KO), "--level", "subword", "--vocab-size", "300",
                            "--out", str(d)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", str(d), "--type", "lstm", "--out", str(model), "--epochs",
                            "1", "--hidden", "32", "--emb", "16"])
    assert r.exit_code == 0, r.output
    tok = Corpus.load(d).tokenizer
    r = runner.invoke(app, ["score", str(model), "-", "--json"], input="자세히 보아야 예쁘다\n")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["text"] == "자세히 보아야 예쁘다"
    assert rec["tokens"] == len(tok.split("자세히 보아야 예쁘다")) + 1  # the pieces and </s>
    r = runner.invoke(app, ["generate", str(model), "--num", "3", "--seed", "1", "--json"])
    assert r.exit_code == 0, r.output
    for line in r.stdout.splitlines():
        text = json.loads(line)["text"]
        assert SPACE not in text and text == text.strip()


def test_a_translation_model_carries_both_subword_models(tmp_path):
    import rnnkit
    from rnnkit.text.parallel import ParallelCorpus

    d, model = tmp_path / "ke", tmp_path / "ke.rnnkit"
    r = runner.invoke(app, ["prepare", "--sample", "ko-en", "--parallel", "--level", "subword",
                            "--vocab-size", "300", "--out", str(d)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", str(d), "--type", "seq2seq", "--out", str(model),
                            "--epochs", "1", "--emb", "16", "--hidden", "16", "--layers", "1"])
    assert r.exit_code == 0, r.output
    corpus, m = ParallelCorpus.load(d), rnnkit.load(model)
    assert m.src_tokenizer == corpus.src.tokenizer and m.trg_tokenizer == corpus.trg.tokenizer
    assert m.src_tokenizer != m.trg_tokenizer  # separate models by default
    r = runner.invoke(app, ["translate", str(model), "-"], input="자세히 보아야 예쁘다\n오래 보아야\n")
    assert r.exit_code == 0, r.output
    lines = r.stdout.split("\n")
    assert len(lines) == 3 and lines[2] == "" and SPACE not in r.stdout


def test_subword_models_mix_when_they_share_their_pieces(tmp_path):
    """A mixture scores per token, so subword models mix only over the same SentencePiece
    model: then weights 0.5 / 0.5 of a model and itself are the model; other pieces are refused
    in one line (they were refused for every subword mixture, with a wrong message)."""
    from rnnkit.errors import RnnkitError
    from rnnkit.models.mixture import Mixture
    from rnnkit.models.ngram.estimate import train
    text = tmp_path / "ko.txt"
    text.write_text("\n".join(ko_lines()) + "\n", encoding="utf-8")
    a = train(build_corpus([str(text)], level="subword", vocab_size=400), order=3)
    b = train(build_corpus([str(text)], level="subword", vocab_size=300), order=3)
    line = ko_lines(1)[0]
    mix = Mixture([a, a], [0.5, 0.5])
    assert mix.score(line, bos=True, eos=True) == pytest.approx(a.score(line, bos=True, eos=True),
                                                                abs=1e-9)
    with pytest.raises(RnnkitError, match="different SentencePiece models"):
        Mixture([a, b])
