"""Tokenizer (word and character level, normalisation, lowercasing; the block splitter equals the
line splitter) and Vocab (specials, encode/decode, vocab.txt round trip and its errors)."""
from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.errors import FormatError, InputError
from rnnkit.text.vocab import BOS, EOS, SPACE, SPECIALS, UNK, Tokenizer, Vocab


def test_specials_have_fixed_ids():
    assert (UNK, BOS, EOS) == (0, 1, 2)
    assert SPECIALS == ("<unk>", "<s>", "</s>")


def test_word_level_splits_on_unicode_whitespace():
    t = Tokenizer()
    assert t.split("  the cat\tsat\u3000on\u00a0the mat \r") == ["the", "cat", "sat", "on", "the",
                                                                  "mat"]
    assert t.split("할머니가 시장에서 사과를 산다 .") == ["할머니가", "시장에서", "사과를", "산다", "."]
    assert t.split("   ") == []


def test_char_level_keeps_korean_syllables_and_marks_spaces():
    t = Tokenizer(level="char")
    assert t.split("자세히 보아야  예쁘다") == ["자", "세", "히", SPACE, "보", "아", "야", SPACE,
                                               "예", "쁘", "다"]
    assert t.split(" a b ") == ["a", SPACE, "b"]  # outer spaces dropped, runs of spaces are one
    assert t.join(t.split("자세히 보아야 예쁘다")) == "자세히 보아야 예쁘다"


def test_nfc_composes_decomposed_hangul():
    decomposed = unicodedata.normalize("NFD", "한국어")  # 3 + 3 + 2 jamo
    assert len(decomposed) == 8
    assert Tokenizer(level="char").split(decomposed) == ["한", "국", "어"]
    assert len(Tokenizer(level="char", normalize="none").split(decomposed)) == 8


def test_nfkc_and_lowercase():
    assert Tokenizer(normalize="nfkc").split("ｆｕｌｌ width") == ["full", "width"]
    assert Tokenizer(normalize="nfc").split("ｆｕｌｌ") == ["ｆｕｌｌ"]
    assert Tokenizer(lowercase=True).split("The CAT <UNK>") == ["the", "cat", "<unk>"]


def test_bad_tokenizer_options():
    with pytest.raises(InputError, match="unknown level 'byte'"):
        Tokenizer(level="byte")
    with pytest.raises(InputError, match="unknown normalisation 'nfd'"):
        Tokenizer(normalize="nfd")


def test_tokenizer_dict_round_trip():
    t = Tokenizer(level="char", normalize="nfkc", lowercase=True)
    assert Tokenizer.from_dict(t.to_dict()) == t


# characters chosen to break a block-at-once shortcut if it were wrong: line ends, \r, the
# separators str.split treats as whitespace, final sigma, dotted I, combining marks, jamo
PIECES = list("ab Σσς İI\u0307\u0301e\r\x1c\x85\u2028\u3000\u00a0\n") + [
    "\u1112\u1161\u11ab", "한", "ＡＢ", "ﬁ", "<unk>"]
TRICKY = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TRICKY, level=st.sampled_from(["word", "char"]),
       normalize=st.sampled_from(["nfc", "nfkc", "none"]), lowercase=st.booleans())
def test_split_lines_equals_split_per_line(text, level, normalize, lowercase):
    t = Tokenizer(level=level, normalize=normalize, lowercase=lowercase)
    assert list(t.split_lines(text)) == [t.split(line) for line in text.split("\n")]


def test_vocab_encode_decode():
    v = Vocab(list(SPECIALS) + ["the", "cat"], [3, 2, 2, 4, 1])
    ids = v.encode(["the", "dog", "cat", "<unk>"])
    assert ids.dtype == np.uint32
    assert ids.tolist() == [3, UNK, 4, UNK]
    assert v.decode([3, 4, 2]) == ["the", "cat", "</s>"]
    assert "cat" in v and "dog" not in v and len(v) == 5


def test_vocab_must_start_with_specials_and_be_unique():
    with pytest.raises(FormatError, match="must start with <unk>, <s>, </s>"):
        Vocab(["the", "<unk>", "<s>", "</s>"])
    with pytest.raises(FormatError, match="lists 'the' twice"):
        Vocab(list(SPECIALS) + ["the", "cat", "the"])


def test_vocab_file_round_trip(tmp_path):
    v = Vocab(list(SPECIALS) + ["사과를", "▁", "x"], [5, 2, 2, 3, 2, 1])
    p = tmp_path / "vocab.txt"
    with open(p, "w", encoding="utf-8") as f:
        v.write(f)
    assert p.read_text("utf-8").splitlines()[:4] == ["<unk>\t5", "<s>\t2", "</s>\t2", "사과를\t3"]
    back = Vocab.read(p)
    assert back.tokens == v.tokens and back.counts.tolist() == v.counts.tolist()
    assert back.sha256() == v.sha256()


@pytest.mark.parametrize("content,error,pattern", [
    ("<unk>\t1\n<s>\t1\n</s>\t1\n\nthe\t2\n", FormatError, r"vocab.txt:4: empty line"),
    ("<unk>\t1\n<s>\t1\n</s>\t1\nthe cat\t2\n", FormatError, r"vocab.txt:4: a token may not"),
    ("<unk>\t1\n<s>\t1\n</s>\t1\nthe\tmany\n", FormatError, r"vocab.txt:4: expected 'token<TAB>"),
    ("the\t1\n<unk>\t1\n<s>\t1\n</s>\t1\n", FormatError, r"vocab.txt: a vocabulary must start"),
    ("", FormatError, r"vocab.txt: the vocabulary file is empty"),
])
def test_vocab_file_errors(tmp_path, content, error, pattern):
    p = tmp_path / "vocab.txt"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(error, match=pattern):
        Vocab.read(p)


def test_vocab_file_unreadable(tmp_path):
    with pytest.raises(InputError, match="no such vocabulary file"):
        Vocab.read(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="is a directory"):
        Vocab.read(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"<unk>\t1\n<s>\t1\n</s>\t1\ncaf\xe9\t1\n")
    with pytest.raises(InputError, match="invalid UTF-8"):
        Vocab.read(bad)


def test_vocab_counts_out_of_range_are_format_errors(tmp_path):
    # found by tests/test_fuzz.py: a count past int64 was an OverflowError (exit 1)
    p = tmp_path / "vocab.txt"
    for count in ("99999999999999999999", "-1"):
        p.write_text(f"<unk>\t0\n<s>\t1\n</s>\t1\nthe\t{count}\n")
        with pytest.raises(FormatError, match=f"vocab.txt:4: count {count} out of range"):
            Vocab.read(p)
