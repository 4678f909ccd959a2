"""prepare and Corpus: vocabulary order worked by hand, <unk>, --min-count / --max-vocab / --vocab,
word and character levels on English and Korean, splits, ids -> text, the manifest and its
checksums, atomic output, inputs (gzip, several files, stdin) and the bad-input errors."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnkit
from rnnkit.errors import InputError
from rnnkit.text.corpus import heldout_sentences
from rnnkit.text.prepare import (
    MANIFEST,
    Corpus,
    build_corpus,
    is_corpus_dir,
    sample_path,
)
from rnnkit.text.prepare import prepare as prepare_fn
from rnnkit.text.vocab import EOS, SPACE, UNK

# b and a both occur 3 times, b first; c, d, e once each in that order; <unk> is the specials'
HAND = "b a c a\n\na b d\n<unk> e b\n"
HAND_IDS = [3, 4, 5, 4, EOS, 4, 3, 6, EOS, UNK, 7, 3, EOS]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def hand(tmp_path):
    return write(tmp_path / "hand.txt", HAND)


def test_vocabulary_order_and_specials_worked_by_hand(hand, tmp_path):
    m = prepare_fn(hand, tmp_path / "out", split="1,0,0")
    c = Corpus(tmp_path / "out")
    assert c.vocab.tokens == ["<unk>", "<s>", "</s>", "b", "a", "c", "d", "e"]
    assert c["train"].dtype == np.uint32
    assert c["train"].tolist() == HAND_IDS
    # the literal <unk> is an OOV token like any other; <s> counts the sentences
    assert (tmp_path / "out" / "vocab.txt").read_text("utf-8").splitlines() == [
        "<unk>\t1", "<s>\t3", "</s>\t3", "b\t3", "a\t3", "c\t1", "d\t1", "e\t1"]
    assert m["splits"]["train"] == {**m["splits"]["train"], "sentences": 3, "tokens": 10,
                                    "oov": 1, "oov_rate": 0.1}
    assert m["vocab"]["size"] == 8


def test_min_count_and_max_vocab(hand):
    c = build_corpus(hand, split="1,0,0", min_count=2)
    assert c.vocab.tokens == ["<unk>", "<s>", "</s>", "b", "a"]
    assert c["train"].tolist() == [3, 4, 0, 4, 2, 4, 3, 0, 2, 0, 0, 3, 2]
    assert c.vocab.counts.tolist() == [4, 3, 3, 3, 3]  # c, d, <unk>, e are now <unk>
    assert c.manifest["splits"]["train"]["oov"] == 4
    c = build_corpus(hand, split="1,0,0", max_vocab=4)
    assert c.vocab.tokens == ["<unk>", "<s>", "</s>", "b"]
    assert build_corpus(hand, split="1,0,0", max_vocab=100).vocab.tokens[3:] == list("bacde")


def test_literal_specials_inside_a_sentence_are_unk(tmp_path):
    c = build_corpus(write(tmp_path / "t.txt", "x <s> </s> <unk> x\n"), split="1,0,0")
    assert c["train"].tolist() == [3, UNK, UNK, UNK, 3, EOS]
    assert build_corpus(write(tmp_path / "u.txt", "A <UNK>\n"), split="1,0,0",
                        lowercase=True)["train"].tolist() == [3, UNK, EOS]


def test_reuse_a_vocabulary(hand, tmp_path):
    prepare_fn(hand, tmp_path / "first", split="1,0,0")
    other = write(tmp_path / "other.txt", "e e z a\n")
    c = build_corpus(other, vocab=tmp_path / "first" / "vocab.txt", split="1,0,0")
    assert c.vocab.tokens == ["<unk>", "<s>", "</s>", "b", "a", "c", "d", "e"]
    assert c["train"].tolist() == [7, 7, UNK, 4, EOS]
    assert c.vocab.counts.tolist() == [1, 1, 1, 0, 1, 0, 0, 2]  # the new corpus's counts
    with pytest.raises(InputError, match="cannot be combined with --min-count"):
        build_corpus(other, vocab=tmp_path / "first" / "vocab.txt", min_count=2)


def test_word_and_char_level_on_the_samples():
    en = build_corpus(sample="en", split="1,0,0")
    ko = build_corpus(sample="ko", split="1,0,0")
    lines = {lang: [s for s in sample_path(lang).read_text("utf-8").splitlines()]
             for lang in ("en", "ko")}
    assert list(en.text("train")) == lines["en"]  # ids -> text gives the input back
    assert list(ko.text("train")) == lines["ko"]
    kc = build_corpus(sample="ko", level="char", split="1,0,0")
    chars = kc.vocab.tokens[3:]
    assert all(len(t) == 1 for t in chars) and SPACE in chars
    hangul = [t for t in chars if "\uac00" <= t <= "\ud7a3"]
    assert len(hangul) > 100 and "예" in hangul  # whole syllables, not jamo
    assert not any("\u1100" <= t <= "\u11ff" for t in chars)
    assert list(kc.text("train")) == lines["ko"]
    assert kc.manifest["splits"]["train"]["tokens"] == sum(len(s) for s in lines["ko"])
    assert kc.decode(kc.encode("자세히 보아야 예쁘다")) == "자세히 보아야 예쁘다"


def test_sample_corpora_are_shipped_and_well_formed():
    for lang in ("en", "ko"):
        lines = sample_path(lang).read_text("utf-8").split("\n")
        assert lines[-1] == "" and all(lines[:-1])
        lines = lines[:-1]
        assert 300 <= len(lines) <= 2000 and len(set(lines)) == len(lines)
    ko = sample_path("ko").read_text("utf-8")
    assert "자세히 보아야 예쁘다" in ko
    words = ko.split()
    # 을 after a closed syllable, 를 after an open one (every token of the sample obeys it)
    final = [(ord(w[-2]) - 0xAC00) % 28 != 0 for w in words if len(w) > 1 and w[-1] in "을를"]
    assert len(final) > 200
    assert all(f == (w[-1] == "을") for f, w in zip(
        final, [w for w in words if len(w) > 1 and w[-1] in "을를"]))
    en = sample_path("en").read_text("utf-8").lower().split()
    pairs = list(zip(en, en[1:]))
    assert not [p for p in pairs if p[0] == "a" and p[1][0] in "aeiou"]
    assert not [p for p in pairs if p[0] == "an" and p[1][0] not in "aeiou"]


def test_splits_partition_the_sentences(tmp_path):
    lines = [f"b{i // 10} a{i % 10}" for i in range(100)]  # 100 sentences, every word 10 times
    p = write(tmp_path / "s.txt", "\n".join(lines) + "\n")
    c = build_corpus(p, split="0.8,0.1,0.1", seed=3)
    assert c.manifest["splits"]["valid"]["oov"] == 0  # (every word has a training occurrence)
    texts = {k: list(c.text(k)) for k in ("train", "valid", "test")}
    assert [len(v) for v in texts.values()] == [80, 10, 10]
    assert sorted(sum(texts.values(), [])) == sorted(lines)
    for v in texts.values():  # sentences keep their order
        assert v == sorted(v, key=lines.index)
    again = build_corpus(p, split="0.8,0.1,0.1", seed=3)
    assert all(np.array_equal(c[k], again[k]) for k in c.splits)
    other = build_corpus(p, split="0.8,0.1,0.1", seed=4)
    assert not np.array_equal(c["valid"], other["valid"])
    assert set(build_corpus(p, split=(0.9, 0.1, 0.0)).splits) == {"train", "valid"}


def test_valid_and_test_files(hand, tmp_path):
    v = write(tmp_path / "v.txt", "a z\n")
    t = write(tmp_path / "t.txt", "\nb\n\n")
    c = build_corpus(hand, valid=v, test=t)
    assert c["train"].tolist() == HAND_IDS
    assert c["valid"].tolist() == [4, UNK, EOS]  # z was never seen in training: <unk>
    assert c["test"].tolist() == [3, EOS]
    assert c.manifest["splits"]["valid"]["oov_rate"] == 0.5


def test_manifest_and_checksums(hand, tmp_path):
    out = tmp_path / "out"
    m = prepare_fn(hand, out, split="0.34,0.33,0.33")
    assert json.loads((out / MANIFEST).read_text("utf-8")) == m
    assert m["format"] == "rnnkit-corpus" and m["format_version"] == 1
    assert m["tokenizer"] == {"level": "word", "normalize": "nfc", "lowercase": False}
    assert sorted(os.listdir(out)) == ["manifest.json", "test.npy", "train.npy", "valid.npy",
                                       "vocab.txt"]
    for name, info in m["splits"].items():
        data = (out / info["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
        ids = np.load(out / info["file"])
        assert len(ids) == info["tokens"] + info["sentences"] and ids[-1] == EOS
    Corpus.load(out, verify=True)
    (out / "train.npy").write_bytes((out / "train.npy").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(InputError, match="train.npy: checksum mismatch"):
        Corpus.load(out, verify=True)


def test_python_api(hand, tmp_path):
    m = prepare_fn([str(hand)], tmp_path / "out", split="1,0,0")
    c = rnnkit.Corpus(tmp_path / "out")
    assert m == c.manifest and "train" in c and "valid" not in c
    assert c.sentences("train")[2].tolist() == [UNK, 7, 3]
    assert c.decode(c["train"][:4]) == "b a c a"
    assert "Corpus(vocab=8" in repr(c)


def test_inputs_gzip_several_files_and_stdin(hand, tmp_path, monkeypatch):
    gz = tmp_path / "more.txt"  # gzip recognised by its content, not its name
    gz.write_bytes(gzip.compress("c c c c\n".encode("utf-8")))
    c = build_corpus([hand, gz], split="1,0,0")
    assert c.vocab.tokens[3:] == ["c", "b", "a", "d", "e"]  # c: 5 times now
    assert c["train"].tolist()[-5:] == [3, 3, 3, 3, EOS]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(HAND.encode("utf-8"))))
    assert build_corpus("-", split="1,0,0")["train"].tolist() == HAND_IDS
    with pytest.raises(InputError, match="given more than once"):
        build_corpus(["-", "-"])


def test_sliced_steps_equal_whole_array(hand, monkeypatch):
    whole = build_corpus(sample="en", split="0.8,0.1,0.1", min_count=2)
    monkeypatch.setattr(sys.modules["rnnkit.text.prepare"], "CHUNK", 7)
    sliced = build_corpus(sample="en", split="0.8,0.1,0.1", min_count=2)
    assert whole.vocab.tokens == sliced.vocab.tokens
    assert whole.vocab.counts.tolist() == sliced.vocab.counts.tolist()
    assert all(np.array_equal(whole[k], sliced[k]) for k in whole.splits)


def test_output_is_atomic(hand, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare_fn(hand, out, split="1,0,0")
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_fn(write(tmp_path / "new.txt", "x y\n"), out, split="1,0,0")
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before  # the old corpus
    assert sorted(os.listdir(tmp_path)) == ["hand.txt", "new.txt", "out"]  # no leftovers
    with pytest.raises(KeyboardInterrupt):
        prepare_fn(hand, tmp_path / "fresh", split="1,0,0")
    assert not (tmp_path / "fresh").exists()


def test_output_directory_rules(hand, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not an rnnkit corpus directory.*--force"):
        prepare_fn(hand, mine)
    assert (mine / "notes.txt").exists()
    prepare_fn(hand, mine, force=True)
    assert is_corpus_dir(mine) and not (mine / "notes.txt").exists()
    prepare_fn(hand, mine, split="1,0,0")  # a corpus directory is replaced without --force
    assert set(Corpus(mine).splits) == {"train"}
    (tmp_path / "empty").mkdir()
    prepare_fn(hand, tmp_path / "empty")
    with pytest.raises(InputError, match="exists and is not a directory"):
        prepare_fn(hand, hand)
    inside = tmp_path / "data"
    inside.mkdir()
    src = write(inside / "text.txt", HAND)
    with pytest.raises(InputError, match="holds the input"):
        prepare_fn(src, inside, force=True)
    with pytest.raises(InputError, match="--out DIR is required"):
        prepare_fn(hand, None)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"split": "0.5,0.3,0.3"}, r"--split '0.5,0.3,0.3': the fractions must sum to 1, they sum "
                               r"to 1.1"),
    ({"split": "1.2,-0.1,-0.1"}, r"--split '1.2,-0.1,-0.1': a fraction is negative"),
    ({"split": "0.9,0.1"}, r"expected three fractions train,valid,test .*got 2"),
    ({"split": "a,b,c"}, r"--split 'a,b,c': expected three fractions"),
    ({"split": "nan,0,0"}, r"must be finite"),
    ({"split": "0,0.5,0.5"}, r"the training split gets no sentences"),
    ({"min_count": 0}, r"--min-count 0: must be at least 1"),
    ({"max_vocab": 3}, r"--max-vocab 3: must be at least 4"),
    ({"level": "byte"}, r"unknown level 'byte'"),
    ({"errors": "ignore"}, r"--errors 'ignore'"),
    ({"split": "0.8,0.1,0.1", "valid": "v.txt"}, r"cannot be combined with --valid"),
    ({"sample": "fr"}, r"unknown sample 'fr': use one of en, ko"),
])
def test_bad_options(hand, kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        build_corpus(None if "sample" in kwargs else hand, **kwargs)


def test_bad_inputs(tmp_path, hand):
    with pytest.raises(InputError, match="no such file"):
        build_corpus([hand, tmp_path / "missing.txt"])
    with pytest.raises(InputError, match="is a directory, expected a text file"):
        build_corpus(tmp_path)
    with pytest.raises(InputError, match=r"empty.txt: no sentences \(the input is empty"):
        build_corpus(write(tmp_path / "empty.txt", ""))
    with pytest.raises(InputError, match="no sentences"):
        build_corpus(write(tmp_path / "blank.txt", "\n  \n\t\n"))
    with pytest.raises(InputError, match=r"the --valid file is empty"):
        build_corpus(hand, valid=write(tmp_path / "v.txt", "\n"))
    with pytest.raises(InputError, match="no input"):
        build_corpus([])
    with pytest.raises(InputError, match="either input files or --sample"):
        build_corpus(hand, sample="en")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\nbad \xe9 line\n")
    with pytest.raises(InputError, match=r"bad.txt:2: invalid UTF-8 at byte 14 of the file"):
        build_corpus(bad)
    c = build_corpus(bad, errors="replace", split="1,0,0")
    assert list(c.text("train")) == ["good line", "bad \ufffd line"]


def test_too_few_sentences_for_the_split(tmp_path):
    p = write(tmp_path / "three.txt", "a\nb\nc\n")
    c = build_corpus(p)  # 3 sentences: one each
    assert [c.manifest["splits"][k]["sentences"] for k in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(InputError, match="leaves no sentence of the 2 for training"):
        build_corpus(write(tmp_path / "two.txt", "a\nb\n"), split="0.1,0.45,0.45")


def test_load_rejects_other_directories(tmp_path):
    with pytest.raises(InputError, match="not a corpus directory made by `rnnkit prepare`"):
        Corpus(tmp_path)


def test_heldout_sentences_from_a_corpus_or_a_text_file(tmp_path):
    build_corpus([str(write(tmp_path / "t.txt", HAND))], valid=str(write(
        tmp_path / "v.txt", "a b\nzz a\n"))).write(tmp_path / "c")
    assert heldout_sentences(tmp_path / "c") == ["a b", "<unk> a"]
    assert heldout_sentences(str(write(tmp_path / "h.txt", "x y\n\n  \nz\n"))) == ["x y", "z"]
    build_corpus([str(tmp_path / "t.txt")], split="1,0,0").write(tmp_path / "train-only")
    with pytest.raises(InputError, match="no valid or test split"):
        heldout_sentences(tmp_path / "train-only")


def test_ids_in_another_vocabulary(tmp_path):
    c = build_corpus([str(write(tmp_path / "t.txt", HAND))], split="1,0,0")
    other = build_corpus([str(write(tmp_path / "o.txt", "e a q\n"))], split="1,0,0").vocab
    assert np.array_equal(c.ids_in("train", c.vocab), c["train"])
    got = [other.tokens[i] for i in c.ids_in("train", other).tolist()]
    want = [t if t in other.index else "<unk>" for t in (c.vocab.tokens[i] for i in HAND_IDS)]
    assert got == want and "e" in got and "a" in got


def test_very_long_lines_are_tokenised_in_pieces_with_the_same_ids(tmp_path, monkeypatch):
    import rnnkit.text.prepare as prep
    from rnnkit.text.prepare import build_corpus

    text = tmp_path / "long.txt"
    words = ["alpha", "beta", "gamma", "Δelta", "ε"]
    lines = [" ".join(words[(i * 7 + j) % 5] for j in range(300 + i)) for i in range(4)]
    text.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    whole = build_corpus([text], split=(1.0, 0.0, 0.0))
    monkeypatch.setattr(prep, "LONG_LINE", 50)  # every block takes the long-line path
    monkeypatch.setattr(prep, "BLOCK", 16)  # pieces of ~16 characters, cut at spaces
    pieces = build_corpus([text], split=(1.0, 0.0, 0.0))
    assert whole.vocab.tokens == pieces.vocab.tokens
    assert np.array_equal(np.asarray(whole["train"]), np.asarray(pieces["train"]))
    assert int((np.asarray(pieces["train"]) == 2).sum()) == 4  # the blank line is skipped
