"""The n-gram estimator on a Dask cluster (models/ngram/cluster.py) against the in-memory one:
bit-identical tables on a local cluster of 2 worker processes, started once for the module."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from rnnkit.errors import RnnkitError, TrainingError
from rnnkit.models.ngram import cluster
from rnnkit.models.ngram import estimate as est

V = 2000  # the test corpus's vocabulary
TABLES = ("word", "ctx", "suffix", "logp", "backoff")


def markov_ids(sentences: int = 3000, V: int = 2000, seed: int = 0) -> np.ndarray:
    """Sentences of a random sparse Markov chain over Zipf-distributed words (each word has a
    few likely successors; otherwise a word by frequency), so the higher orders repeat n-grams
    as text does and rare words keep the counts-of-counts the discounts need."""
    rng = np.random.default_rng(seed)
    succ = rng.integers(3, V, (V, 6))  # [V, 6] the successors of each word
    weights = np.array([0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    freq = 1.0 / np.arange(1, V - 2)  # [V-3] Zipf
    freq /= freq.sum()
    out = []
    for _ in range(sentences):
        w = int(rng.choice(V - 3, p=freq)) + 3
        for _ in range(int(rng.integers(2, 25))):
            out.append(w)
            w = (int(succ[w, rng.choice(6, p=weights)]) if rng.random() < 0.6
                 else int(rng.choice(V - 3, p=freq)) + 3)
        out.append(2)  # </s>
    return np.array(out, np.uint32)


@pytest.fixture
def client(dask_client):
    return dask_client


@pytest.fixture(scope="module")
def ids():
    return markov_ids()


def assert_same(ref: est.NgramTables, got: est.NgramTables):
    assert got.order == ref.order and got.vocab_size == ref.vocab_size
    for name in TABLES:
        for k in range(ref.order):
            a, b = getattr(ref, name)[k], getattr(got, name)[k]
            if a is None:
                assert b is None
                continue
            assert a.dtype == b.dtype, (name, k + 1)
            assert np.array_equal(a, b), f"{name} of order {k + 1} differs"


@pytest.mark.parametrize("order,prune,smoothing", [(3, [0, 1], "mkn"), (4, [0, 0, 1], "kn"),
                                                   (4, [0, 1, 2], "wb"), (2, [0, 3], "mkn"),
                                                   (3, [0, 1], "addk"), (4, [0, 0, 2], "addk")])
def test_pruned_tables_are_bit_identical_to_in_memory(client, ids, order, prune, smoothing):
    ref, rs = est.estimate(ids, V, order, smoothing, prune=prune)
    got, gs = cluster.estimate(client, ids, V, order, smoothing, prune=prune, partitions=3)
    assert_same(ref, got)
    assert gs["ngrams"] == rs["ngrams"] and gs["ngrams_before_pruning"] == \
        rs["ngrams_before_pruning"]
    assert gs["ngrams"][-1] < gs["ngrams_before_pruning"][-1]   # something was pruned


def test_progress_reports_every_stage_in_order_up_to_the_corpus_bytes(client, ids):
    calls = []
    cluster.estimate(client, ids, V, 4, "mkn", progress=lambda *a: calls.append(a))
    stages = [c[0] for c in calls]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == \
        list(cluster.STAGES)                                   # each stage once, in order
    for name in cluster.STAGES:
        done = [c[1] for c in calls if c[0] == name]
        assert done == sorted(done) and done[0] == 0 and done[-1] == 4 * len(ids)
    assert all(c[2] == 4 * len(ids) and c[3] is None for c in calls)
    assert sum(c[0] == "count" for c in calls) > 3           # chunk by chunk, not only the ends


@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_mkn_tables_are_bit_identical_to_in_memory(client, ids, order):
    ref, rs = est.estimate(ids, V, order, "mkn")
    got, gs = cluster.estimate(client, ids, V, order, "mkn")
    assert_same(ref, got)
    for key in ("sentences", "tokens", "ngrams", "counts_of_counts", "discounts"):
        assert gs[key] == rs[key], key
    assert gs["workers"] == 2 and gs["partitions"] == 4
    assert set(gs["stage_seconds"]) == {"count", "adjust", "probabilities", "assemble"}


@pytest.mark.parametrize("smoothing,partitions", [("kn", 1), ("wb", 3), ("mle", 7),
                                                  ("addk", 1), ("addk", 5)])
def test_other_smoothings_and_any_number_of_shards(client, ids, smoothing, partitions):
    ref, _ = est.estimate(ids, V, 3, smoothing)
    got, gs = cluster.estimate(client, ids, V, 3, smoothing, partitions=partitions)
    assert gs["partitions"] == partitions
    assert_same(ref, got)


@pytest.mark.parametrize("order", [1, 2, 5])
def test_add_k_with_another_k_is_bit_identical(client, ids, order):
    ref, _ = est.estimate(ids, V, order, "addk", add_k=0.5)
    got, _ = cluster.estimate(client, ids, V, order, "addk", add_k=0.5, partitions=3)
    assert_same(ref, got)


def test_lmplz_quirk_is_reproduced_and_can_be_turned_off(client, ids):
    """lmplz counts one unigram with its raw count: the last word of the last n-gram in suffix
    order, i.e. the word seen first last. Ending the corpus with a new word X after 5, 5, 6
    (raw 3, continuation 2) moves one unigram from n2 to n3; the cluster must find that n-gram
    across its chunks."""
    X = int(np.setdiff1d(np.arange(3, V), ids)[0])
    ids = np.concatenate([ids, np.array([5, X, 2, 5, X, 2, 6, X, 2], np.uint32)])
    ref_q, with_quirk = est.estimate(ids, V, 4, "mkn")
    ref, without = est.estimate(ids, V, 4, "mkn", lmplz_quirk=False)
    n2, n3 = without["counts_of_counts"][0][1:3]
    assert with_quirk["counts_of_counts"][0][1:3] == [n2 - 1, n3 + 1]
    got_q, gs_q = cluster.estimate(client, ids, V, 4, "mkn", partitions=3)
    assert gs_q["counts_of_counts"] == with_quirk["counts_of_counts"]
    assert_same(ref_q, got_q)
    got, gs = cluster.estimate(client, ids, V, 4, "mkn", lmplz_quirk=False, partitions=3)
    assert gs["counts_of_counts"] == without["counts_of_counts"]
    assert_same(ref, got)


def test_workers_read_a_shared_npy_file(client, ids, tmp_path):
    path = tmp_path / "train.npy"
    np.save(path, ids)
    ref, _ = est.estimate(ids, V, 3, "mkn")
    got, _ = cluster.estimate(client, None, V, 3, "mkn", ids_path=str(path))
    assert_same(ref, got)


def test_a_small_corpus_with_fallback_discounts(client):
    ids = markov_ids(sentences=40, V=30, seed=1)
    with pytest.raises(est.DiscountError, match="--discount-fallback"):
        cluster.estimate(client, ids, 30, 3, "mkn")
    ref, _ = est.estimate(ids, 30, 3, "mkn", discount_fallback=True)
    got, _ = cluster.estimate(client, ids, 30, 3, "mkn", discount_fallback=True)
    assert_same(ref, got)


def test_errors_from_the_driver_and_from_the_workers(client, ids):
    with pytest.raises(TrainingError, match="not available on a cluster"):
        cluster.estimate(client, ids, V, 3, "katz")
    with pytest.raises(TrainingError, match="--add-k must be a positive number"):
        cluster.estimate(client, ids, V, 3, "addk", add_k=0.0)
    bad = ids.copy()
    bad[5] = V
    with pytest.raises(TrainingError, match="outside the vocabulary of 2000"):
        cluster.estimate(client, bad, V, 3, "mkn")
    bad[5] = 1
    with pytest.raises(TrainingError, match="contain <s>"):
        cluster.estimate(client, bad, V, 3, "mkn")


def test_bad_scheduler_address_is_one_clear_error():
    pytest.importorskip("distributed", reason="rnnkit[cluster] is not installed")
    with pytest.raises(RnnkitError, match=r"could not reach the Dask scheduler at "
                                          r"'tcp://127.0.0.1:1' .*dask scheduler"):
        with cluster.connect("tcp://127.0.0.1:1", timeout=1):
            pass
    with pytest.raises(RnnkitError, match="missing port number"):
        with cluster.connect("no-port-here", timeout=1):
            pass


def test_missing_dask_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(RnnkitError, match=r"pip install 'rnnkit\[cluster\]'"):
        cluster.check_available()
