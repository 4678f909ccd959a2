"""The estimator under a memory budget (models/ngram/external.py): bit-identical to the in-memory
estimator for every budget, its temporary files always removed, a full disk one clear error."""
from __future__ import annotations

import errno

import numpy as np
import pytest
from markov import markov_corpus

from rnnkit import modelfile
from rnnkit.errors import OutputError, RnnkitError
from rnnkit.models.ngram import estimate as est
from rnnkit.models.ngram import external as ext
from rnnkit.text.prepare import Corpus

TINY = 2_000_000  # bytes: a quarter of it for the work (the interpreter holds more): ~11 runs


@pytest.fixture(scope="module")
def corpus():
    return markov_corpus()


def external_model(corpus, tmp_path, order, smoothing="mkn", memory=TINY, **kw):
    path = tmp_path / f"ext{order}.rnnkit"
    info = ext.train_to_file(corpus, path, order, smoothing, memory=memory,
                             temp_dir=tmp_path, discount_fallback=True, **kw)
    tensors, meta = modelfile.read(path)
    return est.NgramModel.from_tensors(tensors, meta), info


def assert_same_tables(a: est.NgramTables, b: est.NgramTables):
    assert a.order == b.order
    for name in ("word", "ctx", "suffix", "logp", "backoff"):
        for k in range(a.order):
            x, y = getattr(a, name)[k], getattr(b, name)[k]
            if x is None:
                assert y is None
                continue
            assert x.dtype == y.dtype or name in ("ctx", "suffix"), (name, k + 1)
            assert np.array_equal(x, y), f"{name} of order {k + 1} differs"


@pytest.mark.parametrize("order", [2, 3, 4, 5])
@pytest.mark.parametrize("prune", [None, [0, 1]])
def test_bit_identical_to_in_memory_under_a_tiny_budget(corpus, tmp_path, order, prune):
    ref = est.train(corpus, order, "mkn", prune=prune, discount_fallback=True)
    model, info = external_model(corpus, tmp_path, order, prune=prune)
    assert order == 2 or min(info["count_runs"]) >= 8  # the budget forced many spills
    assert_same_tables(ref.tables, model.tables)
    tr = ref.meta["training"]
    for key in ("counts_of_counts", "discounts", "ngrams", "ngrams_before_pruning", "tokens",
                "sentences"):
        assert info[key] == tr[key], key
    # the start arrays written for mapped loading are the ones the in-memory model derives
    for k in range(1, order):
        assert np.array_equal(model._starts()[k - 1], ref._starts()[k - 1])
    assert list(tmp_path.iterdir()) == [tmp_path / f"ext{order}.rnnkit"]  # no temporary left


@pytest.mark.parametrize("smoothing, prune", [("kn", None), ("wb", [0, 0, 1]), ("addk", [0, 1]),
                                              ("mle", None)])
def test_bit_identical_for_every_smoothing(corpus, tmp_path, smoothing, prune):
    ref = est.train(corpus, 3, smoothing, prune=prune, discount_fallback=True)
    model, _ = external_model(corpus, tmp_path, 3, smoothing, prune=prune)
    assert_same_tables(ref.tables, model.tables)


def test_the_budget_does_not_change_the_model(corpus, tmp_path):
    """One run per order (a budget larger than the corpus) and the smallest blocks give the same
    model; the textbook counts-of-counts (no lmplz quirk) too."""
    ref = est.train(corpus, 3, "mkn", discount_fallback=True, lmplz_quirk=False)
    big, info = external_model(corpus, tmp_path, 3, memory=1 << 30, lmplz_quirk=False)
    assert info["count_runs"] == [1, 1]
    assert_same_tables(ref.tables, big.tables)
    small, info = external_model(corpus, tmp_path, 3, memory=600_000, lmplz_quirk=False)
    assert min(info["count_runs"]) > 20
    assert_same_tables(ref.tables, small.tables)


def test_counting_threads_do_not_change_the_model(corpus, tmp_path):
    """Chunks are counted on several threads (each a share of the budget), written in order."""
    ref = est.train(corpus, 4, "mkn", discount_fallback=True)
    runs = {}
    for threads in (1, 3):
        model, info = external_model(corpus, tmp_path, 4, threads=threads)
        assert_same_tables(ref.tables, model.tables)
        runs[threads] = info["count_runs"]
    assert all(b > a for a, b in zip(runs[1], runs[3]))  # smaller chunks: a third of the budget


def test_ordered_map_keeps_the_order_and_bounds_the_work_in_flight():
    import threading
    import time

    live, most, lock = [0], [0], threading.Lock()

    def work(i):
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
        time.sleep(0.002 * (i % 3))
        with lock:
            live[0] -= 1
        return i * i

    assert list(ext._ordered_map(work, iter(range(20)), 3)) == [i * i for i in range(20)]
    assert most[0] <= 3
    assert list(ext._ordered_map(work, iter(range(5)), 1)) == [0, 1, 4, 9, 16]


def test_a_prepared_corpus_is_read_from_disk_in_chunks(corpus, tmp_path):
    """A prepared corpus's ids are a memory map: the estimator reads them in chunks with file
    reads, never the whole array, and gets the same model (the quirk n-gram included)."""
    corpus.write(tmp_path / "corp")
    loaded = Corpus.load(tmp_path / "corp")
    assert isinstance(loaded["train"], np.memmap)
    read = ext._id_source(loaded["train"])
    assert np.array_equal(read(10, 20), np.asarray(corpus["train"][10:20]))
    part = loaded["train"][100:]  # a slice keeps its parent's offset: read by slicing instead
    assert isinstance(part, np.memmap)
    assert np.array_equal(ext._id_source(part)(10, 20), np.asarray(corpus["train"][110:120]))
    ref = est.train(loaded, 4, "mkn", discount_fallback=True)
    out = tmp_path / "out"
    out.mkdir()
    model, _ = external_model(loaded, out, 4)
    assert_same_tables(ref.tables, model.tables)


def test_chunks_hold_whole_sentences():
    ids = np.array([5, 6, 2, 7, 2, 8, 9, 9, 9, 9, 2, 4], np.uint32)  # no final </s>
    chunks = list(ext._chunks(ids, 4))
    assert [a for a, _ in chunks] == [0, 3, 5]  # a sentence longer than 4 ids: read on to </s>
    assert [list(c) for _, c in chunks] == [[5, 6, 2], [7, 2], [8, 9, 9, 9, 9, 2, 4]]


def test_merge_of_runs_sums_counts_and_maps_every_element(tmp_path):
    spill = ext._Spill(tmp_path)
    V = 10
    runs = []
    for keys in ([3, 15, 27, 41], [15, 16, 41, 99], [0, 99]):
        run = (spill.array("k", np.int64), spill.array("c", np.int64), spill.array("s", np.int32))
        run[0].append(np.array(keys))
        run[1].append(np.ones(len(keys)))
        run[2].append(np.array(keys) % 7)
        runs.append(tuple(a.done() for a in run))
    table = ext._Table(spill, 2)
    maps = [spill.array("m", np.int64) for _ in runs]
    ext._merge_runs(runs, 3, V, table, maps)  # blocks of one row per run: many merge steps
    keys = table.ctx.read() * V + table.word.read()
    assert keys.tolist() == [0, 3, 15, 16, 27, 41, 99]
    assert table.raw.read().tolist() == [1, 1, 2, 1, 1, 2, 2]
    assert table.suffix.read().tolist() == [0, 3, 1, 2, 6, 6, 1]
    assert [m.read().tolist() for m in maps] == [[1, 2, 4, 5], [2, 3, 5, 6], [0, 6]]
    spill.remove()
    assert not spill.dir.exists()


def _leftovers(tmp_path, model):
    assert not model.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary directory, no partial model


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_temporary_files_are_removed_on_error_and_interrupt(corpus, tmp_path, monkeypatch,
                                                            failure):
    seen = []

    def fail(*a, **k):  # fails in the interpolation stage, after count and adjust have spilled
        seen.append(len(list(tmp_path.glob("rnnkit-ngram-*/*"))))
        raise failure

    monkeypatch.setattr(est, "interpolate_order", fail)
    model = tmp_path.parent / f"{tmp_path.name}-model.rnnkit"
    with pytest.raises(type(failure)):
        ext.train_to_file(corpus, model, 3, memory=TINY, temp_dir=tmp_path,
                          discount_fallback=True)
    assert seen and seen[0] > 5  # the stage had temporary files to remove
    _leftovers(tmp_path, model)


@pytest.mark.parametrize("where", ["temp", "model"])
def test_a_full_disk_is_one_clear_error_and_no_model(corpus, tmp_path, monkeypatch, where):
    real = ext._write

    def full(f, arr):
        if (where == "model") == isinstance(f.name, int):  # atomic_write's file is an fd
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, arr)

    monkeypatch.setattr(ext, "_write", full)
    out = tmp_path / "out"
    out.mkdir()
    model = out / "m.rnnkit"
    with pytest.raises(RnnkitError, match="no space left on the d") as e:
        ext.train_to_file(corpus, model, 3, memory=TINY, temp_dir=tmp_path,
                          discount_fallback=True)
    if where == "temp":
        assert isinstance(e.value, ext.SpillFullError)
        assert "point --temp-dir at a larger disk" in str(e.value)
    else:  # the model file's own writer: atomic_write's one message for a full disk
        assert isinstance(e.value, OutputError) and "nothing was written" in str(e.value)
    assert list(out.iterdir()) == []  # no model, no partial file
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_progress_reports_every_stage_in_order_with_the_temporary_disk(corpus, tmp_path):
    calls = []
    ext.train_to_file(corpus, tmp_path / "m.rnnkit", 3, memory=TINY, temp_dir=tmp_path,
                      discount_fallback=True, progress=lambda *a: calls.append(a))
    stages = list(dict.fromkeys(c[0] for c in calls))
    assert stages == ["count", "adjust", "interpolate", "prune", "write"] or \
        stages == ["count", "adjust", "interpolate", "write"]
    assert all(0 <= done <= total for _, done, total, _ in calls)
    assert max(temp for *_, temp in calls) > 100_000
    last = [c for c in calls if c[0] == "write"][-1]
    assert last[1] == last[2]  # the write ends at 100 %


def test_bad_options_are_training_errors(corpus, tmp_path):
    with pytest.raises(RnnkitError, match="--temp-dir .*no such directory"):
        ext.train_to_file(corpus, tmp_path / "m", 3, memory=TINY, temp_dir=tmp_path / "nope")
    with pytest.raises(RnnkitError, match="--prune"):
        ext.train_to_file(corpus, tmp_path / "m", 3, memory=TINY, prune=[1])
    with pytest.raises(RnnkitError, match="--memory must be positive"):
        ext.train_to_file(corpus, tmp_path / "m", 3, memory=0)


def test_context_blocks_hold_whole_contexts_and_cover_every_context(tmp_path):
    spill = ext._Spill(tmp_path)
    ctx = spill.array("ctx", np.int32)
    ctx.append(np.array([0, 0, 0, 0, 0, 0, 2, 2, 3, 5]))
    blocks = list(ext._context_blocks(ctx.done(), 7, 2))
    # context 0 is longer than a block: taken whole; 1, 4 and 6 have no rows but are covered
    # (the last block runs to the end of the table and of the contexts)
    assert blocks == [(0, 6, 0, 2), (6, 8, 2, 3), (8, 10, 3, 7)]
    empty = spill.array("empty", np.int32).done()
    assert list(ext._context_blocks(empty, 3, 2)) == [(0, 0, 0, 3)]
    spill.remove()


def test_gather_and_bincount_in_ranges_match_numpy(tmp_path):
    rng = np.random.default_rng(1)
    spill = ext._Spill(tmp_path)
    budget = ext._Budget(1 << 20)
    budget.rows, budget.piece = 300, 128  # many blocks and many source ranges
    src = rng.random(1000)
    idx = rng.integers(0, 1000, 5000)
    s, i = spill.array("src", np.float64), spill.array("idx", np.int32)
    s.append(src)
    i.append(idx)
    out = ext._gather(s.done(), i.done(), spill.array("out", np.float64), budget)
    assert np.array_equal(out.read(), src[idx])
    counts = ext._bincount(i, 1200, budget, spill.array("cnt", np.int64))
    assert np.array_equal(counts.read(), np.bincount(idx, minlength=1200))
    spill.remove()
