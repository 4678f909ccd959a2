"""Small models trained once per test session on the bundled sample corpora (a few seconds in
all), shared by the rescoring and mixture tests."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="rnnkit-trained."))
atexit.register(shutil.rmtree, _TMP, True)
DATA = Path(__file__).resolve().parents[1] / "src" / "rnnkit" / "data" / "rescore"


@lru_cache(maxsize=None)
def corpus(lang: str, level: str = "word"):
    from rnnkit.text.prepare import build_corpus

    return build_corpus(None, sample=lang, level=level)  # train/valid/test 0.9/0.05/0.05


@lru_cache(maxsize=None)
def ngram_path(lang: str, order: int = 3, level: str = "word") -> Path:
    from rnnkit.models.ngram.estimate import train

    path = _TMP / f"{lang}-{level}-{order}gram.rnnkit"
    train(corpus(lang, level), order, discount_fallback=True).save(path)
    return path


@lru_cache(maxsize=None)
def lstm_path(lang: str) -> Path:
    from rnnkit.training.train import train

    path = _TMP / f"{lang}-lstm.rnnkit"
    train(corpus(lang), path, emb=64, hidden=64, layers=1, epochs=20, batch=10, seed=0,
          threads=1)
    return path


def load(path: Path):
    import rnnkit

    return rnnkit.load(path)
