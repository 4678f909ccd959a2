"""Beam search on a small trained caption model: for the same length penalty, the beam never
returns a caption the model scores below greedy's (beam 1), for beams 2, 3 and 5."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.decoding.beam import beam_search, length_penalty

pytest.importorskip("PIL", reason="the scene corpus needs Pillow (pip install 'rnnkit[images]')")


@pytest.fixture(scope="module")
def model_and_features(tmp_path_factory):
    import rnnkit
    from rnnkit.text.captions import write_features
    from rnnkit.text.images import extract_features
    from rnnkit.text.scenes import write_scenes
    from rnnkit.training.caption_task import train_caption
    d = tmp_path_factory.mktemp("beam")
    write_scenes(d / "train", 300, seed=0)
    write_scenes(d / "test", 40, seed=1)
    write_features(d / "f.safetensors", extract_features(d / "train" / "images"))
    train_caption(d / "train", d / "m.rnnkit", features=d / "f.safetensors", emb=32, hidden=48,
                  layers=1, epochs=6, batch=32, lr=0.005, seed=0, threads=1)
    m = rnnkit.load(d / "m.rnnkit")
    return m, m.check_features(extract_features(d / "test" / "images").array)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_never_scores_below_greedy(model_and_features, alpha):
    m, X = model_and_features
    greedy = [h[0] for h in beam_search(m, X, beam=1, max_len=30, alpha=alpha)]
    g = np.array([h.score / length_penalty(len(h.tokens) + 1, alpha) for h in greedy])
    for k in (2, 3, 5):
        best = np.array([h[0].normalized for h in beam_search(m, X, beam=k, max_len=30,
                                                              alpha=alpha)])
        worse = np.flatnonzero(best < g - 1e-6)   # float noise of batched rows
        assert not len(worse), (k, worse, best[worse], g[worse])
    if alpha == 0.0:   # then normalized is log10 p itself
        assert np.all(g == [h.score for h in greedy])
