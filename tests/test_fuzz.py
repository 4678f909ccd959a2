"""Fuzzing the parsers (issue 15): ARPA, every N-best format, model-file metadata and vocabulary
files, fed hypothesis-made inputs built from real files and hostile pieces (nan, inf, 1e999,
huge counts, stray headers, bad UTF-8). Each must give a result or an RnnkitError -- through the
command line, exit code 0 or 2 with no traceback -- never another exception.

Bounded for CI: 200 examples per parser, about 10 s in all on a quiet 2-core machine (a few
times that on a busy one); RNNKIT_FUZZ_EXAMPLES scales it (e.g. 5000 for a longer local run).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import RnnkitError
from rnnkit.models.ngram.arpa import read_arpa
from rnnkit.models.torch_import import read_token_list
from rnnkit.rescoring.nbest import FORMATS, parse_text
from rnnkit.text.vocab import Vocab

EXAMPLES = int(os.environ.get("RNNKIT_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
ARPA = (Path(__file__).parent / "fixtures" / "hand.arpa").read_text()
NBEST = Path(__file__).resolve().parents[1] / "examples" / "nbest"

HOSTILE = ["nan", "inf", "-inf", "1e999", "-1e999", "0", "-0", "3.5", "-99", "99999999999999999999",
           "\\data\\", "\\end\\", "\\1-grams:", "\\2-grams:", "ngram 1=0", "ngram 1=99999999",
           "ngram 3=1", "<s>", "</s>", "<unk>", "|||", "\t", " ", "", "utt-1", "utt", "a", "b",
           "NBestList1.0", "NBestList2.0", "(", ")", "(-10)", "st:", "\u00e9", "\ufffd", "\x00"]


def lines_of(text: str) -> st.SearchStrategy[list[str]]:
    """A real file's lines with some replaced, removed, duplicated or spliced with hostile tokens."""
    base = text.split("\n")
    piece = st.sampled_from(HOSTILE)
    line = st.one_of(st.sampled_from(base), st.lists(piece, max_size=5).map(" ".join),
                     st.lists(piece, max_size=5).map("\t".join), st.text(max_size=20))

    @st.composite
    def mutate(draw):
        out = list(base)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["replace", "delete", "insert", "token"]))
            i = draw(st.integers(0, max(len(out) - 1, 0)))
            if op == "replace" and out:
                out[i] = draw(line)
            elif op == "delete" and out:
                del out[i]
            elif op == "insert":
                out.insert(i, draw(line))
            elif out:
                words = out[i].split("\t")
                j = draw(st.integers(0, len(words) - 1))
                words[j] = draw(piece)
                out[i] = "\t".join(words)
        return out
    return mutate()


def write(path: Path, lines: list[str], raw: bytes = b"") -> Path:
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw)
    return path


def ok_or_rnnkit_error(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except RnnkitError as e:
        assert str(e)  # a message, naming something


@FUZZ
@given(lines=lines_of(ARPA), tail=st.sampled_from([b"", b"\n", b"\xff\xfe", b"\x1f\x8b"]))
def test_arpa_reader(tmp_path, lines, tail):
    ok_or_rnnkit_error(read_arpa, write(tmp_path / "f.arpa", lines, tail))


@pytest.mark.parametrize("name", sorted(p.name for p in NBEST.iterdir() if p.is_file()))
def test_nbest_readers(tmp_path, name):
    text = (NBEST / name).read_text()

    @FUZZ
    @given(lines=lines_of(text), fmt=st.sampled_from(["auto", *[f for f in FORMATS
                                                                 if f != "kaldi"]]))
    def check(lines, fmt):
        ok_or_rnnkit_error(parse_text, "\n".join(lines), fmt, name)

    check()


@FUZZ
@given(lines=lines_of("<unk>\t0\n<s>\t5\n</s>\t5\nthe\t3\ncat\t1\n"))
def test_vocabulary_readers(tmp_path, lines):
    path = write(tmp_path / "vocab.txt", lines)
    ok_or_rnnkit_error(Vocab.read, path)
    ok_or_rnnkit_error(read_token_list, path)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20)
                    | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                        max_size=4),
                    max_leaves=12)


def _paths(meta: dict, prefix=()):
    for k, v in meta.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A tiny n-gram and recurrent model: their tensors and metadata documents."""
    from rnnkit.models.ngram.estimate import train as train_ngram
    from rnnkit.text.prepare import build_corpus
    from rnnkit.training import train as train_recurrent
    d = tmp_path_factory.mktemp("fuzz")
    corpus = build_corpus(None, sample="en")
    train_ngram(corpus, 2, discount_fallback=True).save(d / "ngram.rnnkit")
    train_recurrent(corpus, d / "lstm.rnnkit", emb=4, hidden=4, layers=1, epochs=1, batch=4,
                    seed=0, threads=1)
    out = {}
    for kind in ("ngram", "lstm"):
        from safetensors.numpy import load_file
        from rnnkit.modelfile import META_KEY, read_header
        tensors = load_file(str(d / f"{kind}.rnnkit"))
        meta = json.loads(read_header(d / f"{kind}.rnnkit")["__metadata__"][META_KEY])
        out[kind] = (tensors, meta)
    return out


@pytest.mark.parametrize("kind", ["ngram", "lstm"])
def test_model_file_metadata(tmp_path, model_files, kind):
    tensors, meta = model_files[kind]
    paths = sorted(_paths(meta))

    @FUZZ
    @given(edits=st.lists(st.tuples(st.sampled_from(paths), JSON | st.just("<delete>")),
                          min_size=1, max_size=3))
    def check(edits):
        doc = json.loads(json.dumps(meta))
        for path, value in edits:
            node = doc
            for k in path[:-1]:
                node = node.get(k) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                continue
            if value == "<delete>":
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        f = tmp_path / "m.rnnkit"
        save_file(tensors, str(f), metadata={"rnnkit": json.dumps(doc)})
        ok_or_rnnkit_error(rnnkit.load, f)

    check()


@pytest.mark.parametrize("kind", ["ngram", "lstm"])
def test_model_file_bytes_through_the_cli(tmp_path, model_files, kind, capsys):
    tensors, meta = model_files[kind]
    f = tmp_path / "m.rnnkit"
    save_file(tensors, str(f), metadata={"rnnkit": json.dumps(meta)})
    data = f.read_bytes()

    @settings(max_examples=max(EXAMPLES // 3, 5), deadline=None, derandomize=True)
    @given(cuts=st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                         min_size=1, max_size=4), truncate=st.integers(0, len(data)))
    def check(cuts, truncate):
        b = bytearray(data[:max(truncate, 8)])
        for i, v in cuts:
            if i < len(b):
                b[i] = v
        g = tmp_path / "bad.rnnkit"
        g.write_bytes(bytes(b))
        code = main(["score", str(g), os.devnull])
        err = capsys.readouterr().err
        assert code in (0, 2), err
        assert "Traceback" not in err

    check()


def test_fuzz_sizes_are_bounded():
    assert 5 <= EXAMPLES <= 10_000
    assert np.isfinite(EXAMPLES)
