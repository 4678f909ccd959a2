"""The conditioning test: on held-out synthetic scenes the captioner describes what it sees.

Both models are trained here on the same captions of the same scenes; the image-blind language
model is the same network with every feature vector zero (so its first input is a constant).
Measured when the thresholds were set (800 training scenes, 12 epochs, 60 held-out scenes, seed
0): captioner BLEU-4 53.5, image-blind 6.8; colour and shape both right in 22 of 23 single-object
scenes (with 400 training scenes: 15-19 of 23, the colour always right, small circles and squares
confused)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL", reason="the scene corpus needs Pillow (pip install 'rnnkit[images]')")

from rnnkit.decoding.caption_metrics import bleu_scores
from rnnkit.errors import InputError
from rnnkit.text.captions import read_captions, write_features
from rnnkit.text.images import extract_features
from rnnkit.text.scenes import scene, write_scenes
from rnnkit.training.caption_task import (
    CaptionTrainOptions,
    load_caption_data,
    train_caption,
)
import rnnkit

OPTS = dict(emb=64, hidden=96, layers=1, epochs=12, batch=32, lr=0.005, seed=0)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    write_scenes(d / "train", 800, seed=0)
    write_scenes(d / "test", 60, seed=1)
    write_features(d / "train.safetensors", extract_features(d / "train" / "images"))
    return d


def test_the_captioner_describes_what_it_sees(scenes):
    d = scenes
    summary = train_caption(d / "train", d / "cap.rnnkit", CaptionTrainOptions(**OPTS),
                            features=d / "train.safetensors")
    assert summary["valid_perplexity"] < 2.2
    blind_data = load_caption_data(d / "train", d / "train.safetensors")
    blind_data.features.array[:] = 0.0
    train_caption(blind_data, d / "blind.rnnkit", CaptionTrainOptions(**OPTS))

    test = extract_features(d / "test" / "images")
    refs = read_captions(d / "test" / "captions.tsv")
    R = [refs[i] for i in test.ids]
    cap = rnnkit.load(d / "cap.rnnkit")
    blind = rnnkit.load(d / "blind.rnnkit")
    hyp = [h[0][0] for h in cap.caption(test.array)]
    hyp_blind = [h[0][0] for h in blind.caption(np.zeros_like(test.array))]
    b, bb = bleu_scores(hyp, R)["bleu4"], bleu_scores(hyp_blind, R)["bleu4"]
    print(f"BLEU-4 captioner {b:.1f}, image-blind {bb:.1f}")
    assert b > 30 and b > bb + 15, (b, bb)
    # single-object scenes: the colour and shape words are the scene's
    right = total = 0
    for k, image_id in enumerate(test.ids):
        sc = scene(1, int(image_id[6:12]))
        if sc.layout != "single":
            continue
        o = sc.objects[0]
        words = hyp[k].split()
        total += 1
        right += o.colour in words and o.shape in words
    print(f"single objects: colour and shape right in {right} of {total}")
    assert total >= 15 and right / total >= 0.8, (right, total)


def test_mismatched_features_and_captions_are_clear_errors(scenes, tmp_path):
    d = scenes
    small = extract_features(sorted((d / "train" / "images").iterdir())[:5])
    write_features(tmp_path / "five.safetensors", small)
    with pytest.raises(InputError, match="have no features in"):
        load_caption_data(d / "train", tmp_path / "five.safetensors")
    with pytest.raises(InputError, match="--features"):
        train_caption(d / "train", tmp_path / "m.rnnkit", CaptionTrainOptions(**OPTS))


def test_resume_is_bit_identical(scenes, tmp_path):
    from rnnkit.training import TrainingInterrupted
    from rnnkit.training.loop import TrainEvents

    d = scenes
    kw = dict(emb=8, hidden=8, layers=1, batch=64, epochs=2, dropout=0.2, threads=1)
    train_caption(d / "train", tmp_path / "full.rnnkit", CaptionTrainOptions(**kw),
                  features=d / "train.safetensors")

    class StopAfter(TrainEvents):
        def __init__(self, n):
            self.n = n

        def window(self, done, windows, tokens, loss):
            self.n -= 1

        def should_stop(self):
            return self.n <= 0

    with pytest.raises(TrainingInterrupted):
        train_caption(d / "train", tmp_path / "cut.rnnkit", CaptionTrainOptions(**kw),
                      StopAfter(50), features=d / "train.safetensors")
    train_caption(d / "train", tmp_path / "cut.rnnkit", CaptionTrainOptions(**kw, resume=True),
                  features=d / "train.safetensors")
    a, b = rnnkit.load(tmp_path / "full.rnnkit"), rnnkit.load(tmp_path / "cut.rnnkit")
    np.testing.assert_array_equal(a.flat, b.flat)
    np.testing.assert_array_equal(a.feature_std, b.feature_std)


def test_a_grid_of_features_trains_the_attention_model_or_is_pooled(scenes, tmp_path):
    from rnnkit.text.captions import Features
    d = scenes
    caps = read_captions(d / "train" / "captions.tsv")
    ids = sorted(caps)[:40]
    grid = np.random.default_rng(0).normal(size=(40, 6, 8)).astype(np.float32)
    write_features(tmp_path / "grid.safetensors", Features(ids, grid))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "captions.tsv").write_text(
        "".join(f"{i}\t{c}\n" for i in ids for c in caps[i]))
    kw = dict(emb=8, hidden=8, layers=1, batch=16, epochs=1)
    s = train_caption(tmp_path / "c", tmp_path / "att.rnnkit",
                      CaptionTrainOptions(**kw, attention="additive"),
                      features=tmp_path / "grid.safetensors")
    m = rnnkit.load(tmp_path / "att.rnnkit")
    assert s["attention"] == "additive" and m.arch.attention == "additive"
    assert "decoder.attention.energy_layer.weight" in m.p
    assert len(m.caption(grid[:3], beam=2)) == 3
    train_caption(tmp_path / "c", tmp_path / "pooled.rnnkit",
                  CaptionTrainOptions(**kw, attention="none"),
                  features=tmp_path / "grid.safetensors")
    p = rnnkit.load(tmp_path / "pooled.rnnkit")
    assert p.arch.attention == "none" and p.arch.feature_size == 8
    assert p.caption(grid[:2]) == p.caption(grid[:2].mean(axis=1))
