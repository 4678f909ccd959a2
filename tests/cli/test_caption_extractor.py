"""The extractor record through the CLI: `features` writes it, `train --type caption` copies it into
the model, `caption MODEL IMAGES` re-extracts with the model's own settings, and `caption MODEL
FEATURES` (and `score --features`) refuse features of another extractor; files older than the
record still work, with one warning line."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from rnnkit.cli import main

pytest.importorskip("PIL", reason="the scene corpus needs Pillow (pip install 'rnnkit[images]')")
onnx = pytest.importorskip("onnx", reason="building the test CNN needs the onnx package")
pytest.importorskip("onnxruntime", reason="--onnx needs ONNX Runtime (pip install 'rnnkit[images]')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

D = 704   # the demo extractor's size: an ONNX CNN of the same width, so only the record tells


def cnn(path, seed):
    """1x1 conv to D channels -> relu -> global average pool -> flatten ("pooled" [N, D])."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(D, 3, 1, 1)).astype(np.float32)
    b = rng.normal(size=D).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"]),
             helper.make_node("Relu", ["conv"], ["grid"]),
             helper.make_node("GlobalAveragePool", ["grid"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["pooled"])]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "S", "S"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", D])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def run(capsys, args):
    code = main([str(a) for a in args])
    c = capsys.readouterr()
    return code, c.out, c.err


ONNX_OPTS = ["--size", "16", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--output",
             "pooled"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("extractor")
    assert main(["synth", "--scenes", "40", "--out", str(d / "s"), "--seed", "3"]) == 0
    (d / "cnn").mkdir()
    cnn(d / "cnn" / "cnn.onnx", 0)
    cnn(d / "cnn" / "other.onnx", 1)
    assert main(["features", str(d / "s" / "images"), "--out", str(d / "demo.safetensors")]) == 0
    assert main(["features", str(d / "s" / "images"), "--onnx", str(d / "cnn" / "cnn.onnx"),
                 *ONNX_OPTS, "--out", str(d / "onnx.safetensors")]) == 0
    (d / "m").mkdir()
    for name in ("demo", "onnx"):
        assert main(["train", str(d / "s"), "--type", "caption", "--features",
                     str(d / f"{name}.safetensors"), "--emb", "8", "--hidden", "8", "--epochs",
                     "1", "--out", str(d / "m" / f"{name}.rnnkit"), "--json"]) == 0
    return d


def _meta(path):
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        return f.metadata()


def test_features_write_the_record_and_train_copies_it(work):
    demo = json.loads(_meta(work / "demo.safetensors")["extractor"])
    assert demo["kind"] == "demo" and demo["version"] == 1 and demo["dim"] == D
    rec = json.loads(_meta(work / "onnx.safetensors")["extractor"])
    sha = hashlib.sha256((work / "cnn" / "cnn.onnx").read_bytes()).hexdigest()
    assert rec == {"kind": "onnx", "file": "cnn.onnx", "sha256": sha, "output": "pooled",
                   "input_size": 16, "mean": pytest.approx([0.5] * 3),
                   "std": pytest.approx([0.25] * 3), "layout": "pooled", "dim": D}
    import rnnkit
    assert rnnkit.load(work / "m" / "onnx.rnnkit").extractor == rec
    assert rnnkit.load(work / "m" / "demo.rnnkit").extractor == demo


def test_caption_refuses_features_of_another_extractor(work, capsys, tmp_path):
    # same width (704), so without the record the demo model would caption CNN features silently
    code, out, err = run(capsys, ["caption", work / "m" / "demo.rnnkit", work / "onnx.safetensors"])
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("error: ") and "demo extractor" in err and "cnn.onnx" in err
    code, _, err = run(capsys, ["score", work / "m" / "onnx.rnnkit", work / "s" / "captions.tsv",
                                "--features", work / "demo.safetensors"])
    assert code == 2 and len(err.splitlines()) == 1 and "ONNX model cnn.onnx" in err
    # the same CNN at another input size is another extractor too
    assert main(["features", str(work / "s" / "images"), "--onnx", str(work / "cnn" / "cnn.onnx"),
                 "--size", "8", "--out", str(tmp_path / "f8.safetensors")]) == 0
    code, _, err = run(capsys, ["caption", work / "m" / "onnx.rnnkit", tmp_path / "f8.safetensors"])
    assert code == 2 and "input_size" in err and "mean" in err and len(err.splitlines()) == 1
    # a renamed copy of the same CNN makes the same features: accepted
    shutil.copy(work / "cnn" / "cnn.onnx", tmp_path / "renamed.onnx")
    code, _, _ = run(capsys, ["features", work / "s" / "images", "--onnx",
                              tmp_path / "renamed.onnx", *ONNX_OPTS, "--out",
                              tmp_path / "r.safetensors"])
    assert code == 0
    code, out, err = run(capsys, ["caption", work / "m" / "onnx.rnnkit", tmp_path / "r.safetensors"])
    assert code == 0 and len(out.splitlines()) == 40 and err == ""


def test_caption_of_images_uses_the_models_extractor(work, capsys, tmp_path):
    m, images = work / "m" / "onnx.rnnkit", work / "s" / "images"
    code, ref, _ = run(capsys, ["caption", m, work / "onnx.safetensors", "--json"])
    assert code == 0
    # size 16, mean and std 0.5/0.25 and the output come from the model, not from the defaults
    code, out, err = run(capsys, ["caption", m, images, "--onnx", work / "cnn" / "cnn.onnx",
                                  "--json"])
    assert code == 0 and err == ""
    for a, b in zip(ref.splitlines(), out.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["caption"] == b["caption"] and a["log10_prob"] == pytest.approx(b["log10_prob"],
                                                                                 abs=1e-5)
    from rnnkit.text.images import extract_features
    default = extract_features(images, work / "cnn" / "cnn.onnx")
    from rnnkit.text.captions import read_features
    assert not np.allclose(default.array, read_features(work / "onnx.safetensors").array)
    # the CNN is not beside the model: say which file is needed
    code, _, err = run(capsys, ["caption", m, images])
    assert code == 2 and "cnn.onnx" in err and "--onnx" in err and len(err.splitlines()) == 1
    # another CNN's file: refused by its sha256
    code, _, err = run(capsys, ["caption", m, images, "--onnx", work / "cnn" / "other.onnx"])
    assert code == 2 and "sha256" in err and len(err.splitlines()) == 1
    # the demo model with --onnx: refused
    code, _, err = run(capsys, ["caption", work / "m" / "demo.rnnkit", images, "--onnx",
                                work / "cnn" / "cnn.onnx"])
    assert code == 2 and "drop --onnx" in err
    # the recorded file beside the model is found without --onnx
    d = tmp_path / "beside"
    d.mkdir()
    shutil.copy(m, d / "onnx.rnnkit")
    shutil.copy(work / "cnn" / "cnn.onnx", d / "cnn.onnx")
    code, out2, err = run(capsys, ["caption", d / "onnx.rnnkit", images, "--json"])
    assert code == 0 and out2 == out


def test_files_without_the_record_still_work_with_one_warning(work, capsys, tmp_path):
    from safetensors.numpy import load_file, save_file
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(work / "demo.safetensors")), str(old),
              metadata={"ids": _meta(work / "demo.safetensors")["ids"]})
    m = work / "m" / "demo.rnnkit"
    _, ref, _ = run(capsys, ["caption", m, work / "demo.safetensors"])
    code, out, err = run(capsys, ["caption", m, old])
    assert code == 0 and out == ref
    assert err.count("warning:") == 1 and "old.safetensors" in err
    import rnnkit
    model = rnnkit.load(m)
    del model.meta["extractor"]
    model.save(tmp_path / "old.rnnkit")
    assert rnnkit.load(tmp_path / "old.rnnkit").extractor is None
    for inputs in (work / "demo.safetensors", work / "s" / "images"):
        code, out, err = run(capsys, ["caption", tmp_path / "old.rnnkit", inputs])
        assert code == 0 and out == ref
        assert err.count("warning:") == 1 and "old.rnnkit" in err and "error" not in err
