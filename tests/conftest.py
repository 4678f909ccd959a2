"""Shared fixtures.

`trained`: small models trained once per test session on the sample corpora shipped with rnnkit
(a few seconds in all), in a session temporary directory that pytest removes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import rnnkit
from rnnkit.models.ngram.estimate import train as train_ngram
from rnnkit.text.prepare import build_corpus
from rnnkit.training import train as train_recurrent

ROOT = Path(__file__).resolve().parents[1]


class Trained:
    """Models and corpora made on first request and kept for the session."""

    DATA = ROOT / "src" / "rnnkit" / "data" / "rescore"  # the N-best lists and references

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._made: dict = {}

    def _once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def corpus(self, lang: str, level: str = "word"):
        """The sample corpus, split 0.9 / 0.05 / 0.05."""
        return self._once(("corpus", lang, level),
                          lambda: build_corpus(None, sample=lang, level=level))

    def ngram_path(self, lang: str, order: int = 3, level: str = "word") -> Path:
        def make():
            path = self.tmp / f"{lang}-{level}-{order}gram.rnnkit"
            train_ngram(self.corpus(lang, level), order, discount_fallback=True).save(path)
            return path
        return self._once(("ngram", lang, order, level), make)

    def lstm_path(self, lang: str) -> Path:
        def make():
            path = self.tmp / f"{lang}-lstm.rnnkit"
            train_recurrent(self.corpus(lang), path, emb=64, hidden=64, layers=1, epochs=20,
                            batch=10, seed=0, threads=1)
            return path
        return self._once(("lstm", lang), make)

    @staticmethod
    def load(path: Path):
        return rnnkit.load(path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    return Trained(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def dask_client():
    """A client of a local Dask cluster (2 single-threaded worker processes), one per test
    module (a second or two to start) rather than per session: a cluster left running keeps
    threads busy in this process, whose allocations would land in other tests' tracemalloc
    windows (test_kernels' allocation checks). Skips when rnnkit[cluster] is not installed."""
    distributed = pytest.importorskip("distributed", reason="rnnkit[cluster] (dask) is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)   # both registered before a test counts them
            yield client
