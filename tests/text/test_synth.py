"""synth: the construction (the last word is a function of the first, across a filler of the
asked length that says nothing about it), determinism, the file it writes, bad options."""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from rnnkit.errors import InputError
from rnnkit.text.synth import SynthSpec, answer_of, parse_filler, sentences, write


def test_construction():
    spec = SynthSpec(sentences=3000, filler_min=5, filler_max=40, keys=10, filler_vocab=50, seed=1)
    keys, fillers = set(spec.key_words()), set(spec.filler_words())
    lengths = Counter()
    for s in sentences(spec):
        assert s[0] in keys
        assert s[-1] == answer_of(s[0])  # the dependency
        assert set(s[1:-1]) <= fillers
        lengths[len(s) - 2] += 1
    assert min(lengths) == 5 and max(lengths) == 40 and len(lengths) == 36  # every length drawn
    assert sorted(spec.key_words()) == [f"k{i}" for i in range(10)]
    assert spec.filler_words()[:2] == ["w00", "w01"] and answer_of("k07") == "a07"


def test_the_answer_depends_on_the_first_word_only():
    """Predict the answer from the first word, or from the two words before it (what a trigram
    model sees): the first is always right, the second no better than chance (1/K)."""
    spec = SynthSpec(sentences=20000, filler_min=5, filler_max=10, keys=4, filler_vocab=20, seed=2)
    data = list(sentences(spec))
    train, test = data[:10000], data[10000:]
    by_first, by_context = defaultdict(Counter), defaultdict(Counter)
    for s in train:
        by_first[s[0]][s[-1]] += 1
        by_context[tuple(s[-3:-1])][s[-1]] += 1
    hits_first = sum(by_first[s[0]].most_common(1)[0][0] == s[-1] for s in test)
    hits_context = sum(by_context[tuple(s[-3:-1])].most_common(1)[0][0] == s[-1]
                       for s in test if tuple(s[-3:-1]) in by_context)
    assert hits_first == len(test)
    assert hits_context / len(test) < 0.33  # chance is 0.25 (and the majority vote overfits)


def test_deterministic_and_prefix_stable():
    a = list(sentences(SynthSpec(sentences=3000, seed=5)))
    assert a == list(sentences(SynthSpec(sentences=3000, seed=5)))
    assert a != list(sentences(SynthSpec(sentences=3000, seed=6)))
    assert list(sentences(SynthSpec(sentences=10, seed=5))) == a[:10]
    assert list(sentences(SynthSpec(sentences=2000, seed=5))) == a[:2000]


def test_fixed_length_and_widths():
    spec = SynthSpec(sentences=50, filler_min=3, filler_max=3, keys=12, filler_vocab=5)
    assert all(len(s) == 5 for s in sentences(spec))
    assert spec.key_words()[:2] == ["k00", "k01"] and spec.answer_words()[-1] == "a11"
    assert parse_filler("3") == (3, 3) and parse_filler("5,40") == (5, 40)


def test_write(tmp_path):
    out = tmp_path / "synth.txt"
    summary = write(out, sentences=1500, filler_min=0, filler_max=2, keys=3, seed=9)
    lines = out.read_text("utf-8").splitlines()
    assert len(lines) == 1500 == summary["sentences"]
    assert summary["tokens"] == sum(len(line.split()) for line in lines)
    assert [line.split() for line in lines] == list(sentences(SynthSpec(
        sentences=1500, filler_min=0, filler_max=2, keys=3, seed=9)))
    assert summary["vocabulary"] == 2 * 3 + 50 and summary["format"] == "rnnkit-synth"
    write(out, sentences=5)  # replaces the file
    assert len(out.read_text("utf-8").splitlines()) == 5


@pytest.mark.parametrize("kwargs,pattern", [
    ({"sentences": 0}, r"--sentences 0: must be at least 1"),
    ({"filler_min": 5, "filler_max": 3}, r"--filler 5,3: needs 0 <= MIN <= MAX"),
    ({"filler_min": -1}, r"--filler -1,40"),
    ({"keys": 0}, r"--vocab 0: the number of key/answer pairs"),
    ({"filler_vocab": 0}, r"--filler-vocab 0"),
])
def test_bad_options(kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        SynthSpec(**kwargs)


@pytest.mark.parametrize("text", ["5-40", "a,b", "1,2,3", ""])
def test_bad_filler(text):
    with pytest.raises(InputError, match="expected MIN,MAX like 5,40"):
        parse_filler(text)
