"""Features out of images: a tiny ONNX CNN built with the onnx package's helpers, run by
`extract_features` (Pillow + ONNX Runtime), against numpy's computation of the same network."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL", reason="image features need Pillow (pip install 'rnnkit[images]')")
onnx = pytest.importorskip("onnx", reason="building the test CNN needs the onnx package")
pytest.importorskip("onnxruntime", reason="--onnx needs ONNX Runtime (pip install 'rnnkit[images]')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rnnkit.errors import InputError  # noqa: E402
from rnnkit.text.captions import read_features, write_features  # noqa: E402
from rnnkit.text.images import extract_features  # noqa: E402

S, F = 8, 4
W = np.random.default_rng(0).normal(size=(F, 3, 3, 3)).astype(np.float32)
B = np.random.default_rng(1).normal(size=F).astype(np.float32)


def tiny_cnn(path):
    """conv 3x3 (pad 1) -> relu ("grid" [N, F, S, S]) -> global average pool -> flatten
    ("pooled" [N, F])."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["grid"]),
             helper.make_node("GlobalAveragePool", ["grid"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["pooled"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, S, S])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", F]),
         helper.make_tensor_value_info("grid", TensorProto.FLOAT, ["N", F, S, S])],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def numpy_cnn(pixels, mean, std):
    x = (pixels.astype(np.float32) / 255 - mean) / std                     # [N, S, S, 3]
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    grid = np.zeros((len(x), F, S, S), np.float64)
    for i in range(S):
        for j in range(S):
            patch = pad[:, i:i + 3, j:j + 3, :]                               # [N, 3, 3, C]
            grid[:, :, i, j] = np.einsum("nuvc,fcuv->nf", patch, W) + B
    grid = np.maximum(grid, 0)
    return grid.mean(axis=(2, 3)), grid


def test_onnx_features_equal_numpy(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (5, S, S, 3), dtype=np.uint8)
    (tmp_path / "img").mkdir()
    for k, name in enumerate(["e", "b", "d", "a", "c"]):   # ids come back sorted
        Image.fromarray(pixels[k]).save(tmp_path / "img" / f"{name}.png")
    order = np.argsort(["e", "b", "d", "a", "c"])
    tiny_cnn(tmp_path / "cnn.onnx")
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pooled, grid = numpy_cnn(pixels[order], np.array(mean), np.array(std))
    f = extract_features(tmp_path / "img", tmp_path / "cnn.onnx", mean=mean, std=std, batch=2,
                         threads=1)
    assert f.ids == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    np.testing.assert_allclose(f.array, pooled, rtol=1e-4, atol=1e-5)
    g = extract_features(tmp_path / "img", tmp_path / "cnn.onnx", mean=mean, std=std,
                         output="grid")
    assert g.array.shape == (5, S * S, F)   # a spatial grid [N, R, D] for attention
    np.testing.assert_allclose(g.array, grid.reshape(5, F, -1).transpose(0, 2, 1), rtol=1e-4,
                               atol=1e-5)
    write_features(tmp_path / "f.safetensors", f)
    back = read_features(tmp_path / "f.safetensors")
    assert back.ids == f.ids and np.array_equal(back.array, f.array)
    with pytest.raises(InputError, match="no output named 'fc7'; it has pooled, grid"):
        extract_features(tmp_path / "img", tmp_path / "cnn.onnx", output="fc7")


def test_bad_images_and_models_are_clear_errors(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png: cannot decode the image"):
        extract_features(tmp_path / "broken.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        extract_features(tmp_path / "empty")
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    from PIL import Image
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    with pytest.raises(InputError, match="ONNX Runtime cannot load the model"):
        extract_features(tmp_path / "ok.png", tmp_path / "bad.onnx")
