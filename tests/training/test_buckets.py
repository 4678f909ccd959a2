import numpy as np

from rnnkit.training.buckets import epoch_order, length_buckets, sorted_chunks


def test_length_buckets_sort_by_the_first_key_then_the_second_stably():
    trg = [3, 1, 3, 2, 1, 3]
    src = [5, 2, 4, 9, 2, 4]
    # by trg: 1 (idx 1, 4: src 2, 2 -> keep order), 2 (idx 3), 3 (idx 2, 5 src 4; idx 0 src 5)
    got = length_buckets(4, trg, src)
    assert [b.tolist() for b in got] == [[1, 4, 3, 2], [5, 0]]


def test_one_key_is_a_stable_argsort():
    lengths = np.array([2, 0, 2, 1, 0])
    got = np.concatenate(length_buckets(2, lengths))
    assert got.tolist() == [1, 4, 3, 0, 2]
    assert got.tolist() == np.argsort(lengths, kind="stable").tolist()


def test_epoch_order_is_a_permutation_fixed_by_seed_stream_and_epoch():
    a = epoch_order(7, 2, 1, 10)
    assert sorted(a.tolist()) == list(range(10))
    assert a.tolist() == epoch_order(7, 2, 1, 10).tolist()
    assert a.tolist() != epoch_order(7, 3, 1, 10).tolist()
    assert a.tolist() != epoch_order(7, 2, 2, 10).tolist()


def test_sorted_chunks():
    assert sorted_chunks([3, 1, 2, 1, 5], 2) == [[1, 3], [2, 0], [4]]
