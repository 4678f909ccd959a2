"""The scene corpus: deterministic per seed, captions true of the drawn image, the demo
extractor's shape and its frozen weights."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.text.scenes import COLOURS, DEMO_DIM, SIDE, demo_features, scene, write_scenes

PIL = pytest.importorskip("PIL", reason="drawing scenes needs Pillow (pip install 'rnnkit[images]')")


def test_same_seed_same_corpus_other_seed_other_corpus(tmp_path):
    a = write_scenes(tmp_path / "a", 12, seed=3)
    write_scenes(tmp_path / "b", 12, seed=3)
    write_scenes(tmp_path / "c", 12, seed=4)
    assert a["images"] == 12 and a["captions"] >= 36
    ta = (tmp_path / "a" / "captions.tsv").read_bytes()
    assert ta == (tmp_path / "b" / "captions.tsv").read_bytes()
    assert ta != (tmp_path / "c" / "captions.tsv").read_bytes()
    for name in ("scene-000000.png", "scene-000011.png"):
        assert (tmp_path / "a" / "images" / name).read_bytes() == \
            (tmp_path / "b" / "images" / name).read_bytes()


def test_only_a_scenes_directory_is_replaced(tmp_path, monkeypatch):
    from rnnkit.errors import RnnkitError
    text = tmp_path / "en.txt"
    text.write_text("keep me\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep me too\n")
    for out, why in ((text, "not a directory"), (other, "not a scenes directory")):
        with pytest.raises(RnnkitError, match=why):
            write_scenes(out, 2)
    assert text.read_text() == "keep me\n" and (other / "keep.txt").exists()
    write_scenes(tmp_path / "s", 2)
    write_scenes(tmp_path / "s", 3)        # a scenes directory is replaced whole
    assert len(list((tmp_path / "s" / "images").iterdir())) == 3
    monkeypatch.chdir(tmp_path / "s")
    with pytest.raises(RnnkitError, match="current directory"):
        write_scenes(".", 2)


def test_captions_say_what_is_drawn(tmp_path):
    from PIL import Image
    write_scenes(tmp_path / "s", 30, seed=0)
    lines = (tmp_path / "s" / "captions.tsv").read_text().splitlines()
    singles = 0
    for i in range(30):
        sc = scene(0, i)
        name = f"scene-{i:06d}.png"
        caps = [line.split("\t")[1] for line in lines if line.startswith(name + "\t")]
        assert len(caps) == len(sc.captions()) >= 3
        for o in sc.objects:
            assert all(o.colour in c for c in caps)
        if sc.layout == "single":
            singles += 1
            px = np.asarray(Image.open(tmp_path / "s" / "images" / name).convert("RGB"))
            cx, cy = SIDE // 2 + sc.jitter[0], SIDE // 2 + sc.jitter[1] + 2
            assert tuple(px[cy, cx]) == COLOURS[sc.objects[0].colour]
            assert tuple(px[0, 0]) == (235, 235, 235)
    assert singles >= 5


def test_demo_extractor_is_frozen_and_reads_colour():
    px = np.full((2, 64, 64, 3), 235, np.uint8)
    px[1, 20:40, 20:40] = COLOURS["red"]
    f = demo_features(px)
    assert f.shape == (2, DEMO_DIM) and f.dtype == np.float32
    np.testing.assert_array_equal(f, demo_features(px))
    thumb = f[:, -192:].reshape(2, 8, 8, 3)
    np.testing.assert_allclose(thumb[1, 3, 3], np.array(COLOURS["red"]) / 255, atol=1e-6)
    np.testing.assert_allclose(thumb[0], 235 / 255, atol=1e-6)
