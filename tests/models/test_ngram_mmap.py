"""Memory-mapped n-gram models: the same scores as a model read in full, arrays that are views
of the file, no ctx array needed, files of format version 1 still read, and a damaged mapped
file gives an error, never a crash."""
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from rnnkit import modelfile
from rnnkit.errors import ModelFileError
from rnnkit.loader import load
from rnnkit.models.ngram import estimate as ngram
from rnnkit.text.prepare import build_corpus

FIX = Path(__file__).parents[1] / "fixtures"
SMALL = FIX / "ngram_small.txt"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    lm = ngram.train(build_corpus([str(SMALL)], split="1,0,0"), 4, discount_fallback=True)
    path = tmp_path_factory.mktemp("mmap") / "four.rnnkit"
    lm.save(path)
    return lm, path


def lines():
    return SMALL.read_text(encoding="utf-8").splitlines()[:200] + ["an unseen zyzzyva line"]


def rewrite_tensor(src, dst, name, fill):
    """A copy of model file src with tensor `name` overwritten in place by `fill`."""
    data = bytearray(Path(src).read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    info = json.loads(data[8:8 + n])[name]
    a, b = info["data_offsets"]
    arr = np.frombuffer(data, np.uint8, b - a, 8 + n + a).view(
        {"I32": np.int32, "I64": np.int64, "F32": np.float32}[info["dtype"]]).copy()
    fill(arr)
    data[8 + n + a:8 + n + b] = arr.tobytes()
    Path(dst).write_bytes(bytes(data))


def test_mapped_scores_equal_the_read_model(saved):
    lm, path = saved
    mapped = load(path, mmap=True)
    read = load(path)
    assert isinstance(mapped.tables.logp[2].base, np.memmap) or \
        isinstance(mapped.tables.logp[2], np.memmap)
    assert not mapped.tables.word[3].flags.writeable
    text = lines()
    for a, b in zip(read.token_log_probs([read.encode(s)[0] for s in text]),
                    mapped.token_log_probs([mapped.encode(s)[0] for s in text])):
        np.testing.assert_array_equal(a, b)
    assert mapped.perplexity(text) == read.perplexity(text) == lm.perplexity(text)
    s = mapped.advance(mapped.start(2), np.array([3, 4]))
    np.testing.assert_array_equal(mapped.log_probs(s), read.log_probs(read.advance(read.start(2),
                                                                                 np.array([3, 4]))))


def test_files_hold_no_ctx_and_no_top_order_backoff(saved):
    # format version 2: the start arrays (int32 here) hold the context ranges, the top order's
    # backoffs are 0; a model read in full derives the same ctx arrays and zeros
    lm, path = saved
    tensors, meta = modelfile.read(path)
    assert meta["format_version"] == 2
    assert not any(k.endswith(".ctx") for k in tensors)
    assert "ngram.4.backoff" not in tensors and "ngram.3.backoff" in tensors
    assert all(tensors[f"ngram.{k}.start"].dtype == np.int32 for k in (1, 2, 3))
    for model in (load(path), load(path, mmap=True)):
        for k in range(1, 4):
            np.testing.assert_array_equal(model.tables.ctx[k], lm.tables.ctx[k])
        np.testing.assert_array_equal(model.tables.backoff[3], lm.tables.backoff[3])
        assert not lm.tables.backoff[3].any()
        np.testing.assert_array_equal(model.words_matrix(4), lm.words_matrix(4))


def version_1_file(lm, path, starts=True):
    """lm written as rnnkit wrote n-gram models before format version 2 (ctx arrays, int64
    start arrays, a backoff array at the top order; the oldest files without start arrays)."""
    t = lm.tables
    tensors = {}
    for k in range(1, lm.order + 1):
        tensors[f"ngram.{k}.word"] = t.word[k - 1]
        tensors[f"ngram.{k}.logp"] = t.logp[k - 1]
        tensors[f"ngram.{k}.backoff"] = t.backoff[k - 1]
        if k >= 2:
            tensors[f"ngram.{k}.ctx"] = t.ctx[k - 1]
            tensors[f"ngram.{k}.suffix"] = t.suffix[k - 1]
        if k < lm.order and starts:
            tensors[f"ngram.{k}.start"] = lm._starts()[k - 1].astype(np.int64)
    meta = {**lm.meta, "model_type": "ngram", "order": lm.order, "vocab": lm.vocab.tokens,
            "tokenizer": lm.tokenizer.to_dict(), "format_version": 1}
    modelfile.save(path, tensors, meta)


@pytest.mark.parametrize("starts", [True, False])
def test_version_1_files_still_load_and_map(saved, tmp_path, starts):
    lm, path = saved
    old = tmp_path / "v1.rnnkit"
    version_1_file(lm, old, starts)
    assert modelfile.read(old)[1]["format_version"] == 1
    assert old.stat().st_size > path.stat().st_size
    for model in (load(old), load(old, mmap=True)):
        assert model.perplexity(lines()) == lm.perplexity(lines())
        np.testing.assert_array_equal(model.words_matrix(4), lm.words_matrix(4))


def test_a_mapped_version_1_file_reads_no_ctx_array(saved, tmp_path):
    # the 4-gram context array overwritten: a mapped model never reads it (it follows the
    # stored start arrays) and scores the same
    lm, _ = saved
    old, bad = tmp_path / "v1.rnnkit", tmp_path / "zero-ctx.rnnkit"
    version_1_file(lm, old)
    rewrite_tensor(old, bad, "ngram.4.ctx", lambda a: a.fill(7))
    mapped = load(bad, mmap=True)
    assert mapped.perplexity(lines()) == lm.perplexity(lines())


def test_a_damaged_mapped_file_is_an_error_not_a_crash(saved, tmp_path):
    lm, path = saved
    bad = tmp_path / "bad-suffix.rnnkit"
    rewrite_tensor(path, bad, "ngram.4.suffix", lambda a: a.fill(10**9))
    with pytest.raises(ModelFileError, match="damaged"):
        load(bad)  # read in full: the load checks every array
    mapped = load(bad, mmap=True)
    with pytest.raises(ModelFileError, match="damaged.*without mmap"):
        mapped.perplexity(lines())
    bad2 = tmp_path / "bad-start.rnnkit"
    rewrite_tensor(path, bad2, "ngram.2.start", lambda a: a.__setitem__(slice(1, -1), -5))
    mapped = load(bad2, mmap=True)
    with pytest.raises(ModelFileError, match="damaged"):
        mapped.log_probs(mapped.advance(mapped.start(1), np.array([3])))
    with pytest.raises(ModelFileError, match="damaged"):
        mapped.generate(3, seed=0)
    with pytest.raises(ModelFileError, match="damaged"):
        mapped.words_matrix(3)  # the ctx arrays derived from the start arrays
    with pytest.raises(ModelFileError, match="damaged"):
        load(bad2)  # read in full: the start arrays are checked


def test_a_truncated_mapped_file_is_refused(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.rnnkit"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="outside the file"):
        load(cut, mmap=True)


def test_the_cli_maps_with_mmap(saved, tmp_path, capsys):
    from rnnkit.cli import main

    _, path = saved
    text = tmp_path / "in.txt"
    text.write_text("\n".join(lines()) + "\n", encoding="utf-8")
    assert main(["score", str(path), str(text), "--json"]) == 0
    read = capsys.readouterr().out.splitlines()[-1]
    assert main(["score", str(path), str(text), "--json", "--mmap"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == read
    assert main(["generate", str(path), "--num", "3", "--seed", "4"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", str(path), "--num", "3", "--seed", "4", "--mmap"]) == 0
    assert capsys.readouterr().out == first
    bad = tmp_path / "bad.rnnkit"
    rewrite_tensor(path, bad, "ngram.4.suffix", lambda a: a.fill(10**9))
    assert main(["score", str(bad), str(text), "--mmap"]) == 2
    assert "damaged" in capsys.readouterr().err
