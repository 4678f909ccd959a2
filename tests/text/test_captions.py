"""Captioning data in: features from .safetensors, .npy (+ .ids) and neuraltalk's .mat (+ tasks.txt
or dataset.json), captions.tsv; every malformed input is an error that says what and where."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.errors import FormatError, InputError
from rnnkit.text.captions import (
    Features,
    check_aligned,
    read_captions,
    read_features,
    write_features,
)

ARR = np.arange(12, dtype=np.float32).reshape(3, 4)


def test_safetensors_round_trip_keeps_ids_and_rows(tmp_path):
    write_features(tmp_path / "f.safetensors", Features(["b.png", "a.png", "c.png"], ARR))
    f = read_features(tmp_path / "f.safetensors")
    assert f.ids == ["b.png", "a.png", "c.png"] and f.size == 4
    np.testing.assert_array_equal(f.rows(["c.png", "b.png"]), ARR[[2, 0]])
    with pytest.raises(InputError, match="no features for image id 'x.png'"):
        f.rows(["x.png"])


def test_npy_with_and_without_ids(tmp_path):
    np.save(tmp_path / "f.npy", ARR)
    assert read_features(tmp_path / "f.npy").ids == ["0", "1", "2"]
    (tmp_path / "f.ids").write_text("x\ny\nz\n")
    f = read_features(tmp_path / "f.npy")
    assert f.ids == ["x", "y", "z"]
    np.testing.assert_array_equal(f.array, ARR)
    (tmp_path / "f.ids").write_text("x\ny\n")
    with pytest.raises(InputError, match="3 feature rows but 2 image ids"):
        read_features(tmp_path / "f.npy")


def test_neuraltalk_mat_with_tasks_or_dataset_json(tmp_path):
    from scipy.io import savemat
    savemat(tmp_path / "vgg_feats.mat", {"feats": ARR.T})   # neuraltalk: one column per image
    f = read_features(tmp_path / "vgg_feats.mat")
    assert f.ids == ["0", "1", "2"]
    np.testing.assert_array_equal(f.array, ARR)
    (tmp_path / "tasks.txt").write_text("cat.jpg\ndog.jpg\nfrog.jpg\n")
    assert read_features(tmp_path / "vgg_feats.mat").ids == ["cat.jpg", "dog.jpg", "frog.jpg"]
    images = [{"filename": f"{n}.jpg", "imgid": i, "split": "train",
               "sentences": [{"raw": f"a {n}", "tokens": ["a", n]}, {"tokens": ["one", n]}]}
              for i, n in enumerate(["p", "q", "r"])]
    (tmp_path / "dataset.json").write_text(json.dumps({"images": images}))
    f = read_features(tmp_path / "vgg_feats.mat")
    assert f.ids == ["p.jpg", "q.jpg", "r.jpg"]
    caps = read_captions(tmp_path / "dataset.json")
    assert caps["q.jpg"] == ["a q", "one q"]
    check_aligned(f, caps)
    images.pop()
    (tmp_path / "dataset.json").write_text(json.dumps({"images": images}))
    with pytest.raises(InputError, match="3 feature columns but .*dataset.json lists 2"):
        read_features(tmp_path / "vgg_feats.mat")


def test_nan_duplicate_ids_and_bad_shapes(tmp_path):
    bad = ARR.copy()
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="image '1' hold NaN"):
        Features(["0", "1", "2"], bad, "f.npy")
    with pytest.raises(InputError, match="'a' appears twice"):
        Features(["a", "b", "a"], ARR)
    with pytest.raises(InputError, match=r"\[images, D\]"):
        Features(["a"], np.zeros(1, np.float32))
    (tmp_path / "f.txt").write_text("1 2 3")
    with pytest.raises(InputError, match="unknown features format '.txt'"):
        read_features(tmp_path / "f.txt")
    with pytest.raises(InputError, match="no such features file"):
        read_features(tmp_path / "missing.npy")


def test_captions_tsv_is_read_strictly(tmp_path):
    p = tmp_path / "captions.tsv"
    p.write_text("a.png\ta red circle\na.png\tone red circle\n\nb.png\ttwo squares\n")
    caps = read_captions(tmp_path)        # a directory with captions.tsv
    assert caps == {"a.png": ["a red circle", "one red circle"], "b.png": ["two squares"]}
    p.write_text("a.png\ta red circle\nb.png two squares\n")
    with pytest.raises(FormatError, match=r"captions.tsv:2: expected image_id<TAB>caption"):
        read_captions(p)
    p.write_text("a.png\t \n")
    with pytest.raises(FormatError, match=r"captions.tsv:1: an empty caption"):
        read_captions(p)


def test_features_and_captions_must_cover_the_same_images():
    f = Features(["a", "b", "c"], ARR, "f.safetensors")
    with pytest.raises(InputError, match="1 captioned images have no features .*'z'"):
        check_aligned(f, {"a": ["x"], "z": ["y"]}, "captions.tsv")
    with pytest.raises(InputError, match="3 images have features but captions.tsv captions 2 "
                                         r"\(first without a caption: 'c'\)"):
        check_aligned(f, {"a": ["x"], "b": ["y"]}, "captions.tsv")
