"""The captioning commands through the real entry point: synth --scenes, features, train --type
caption, caption (greedy, beam, n-best, JSON, references), score --features; bad inputs as one
`error:` line and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rnnkit.cli import main

pytest.importorskip("PIL", reason="the scene corpus needs Pillow (pip install 'rnnkit[images]')")


def run(capsys, args):
    code = main([str(a) for a in args])
    c = capsys.readouterr()
    return code, c.out, c.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cap")
    assert main(["synth", "--scenes", "60", "--out", str(d / "s"), "--seed", "2"]) == 0
    assert main(["features", str(d / "s" / "images"), "--out", str(d / "f.safetensors")]) == 0
    assert main(["train", str(d / "s"), "--type", "caption", "--features",
                 str(d / "f.safetensors"), "--emb", "16", "--hidden", "16", "--layers", "1",
                 "--epochs", "2", "--out", str(d / "c.rnnkit"), "--json"]) == 0
    return d


def test_train_caption_score_end_to_end(trained, capsys):
    d = trained
    code, out, _ = run(capsys, ["caption", d / "c.rnnkit", d / "f.safetensors"])
    lines = out.splitlines()
    assert code == 0 and len(lines) == 60 and lines[0].startswith("scene-000000.png\t")
    # images straight in: the demo extractor runs on the fly, same captions
    code, out2, _ = run(capsys, ["caption", d / "c.rnnkit", d / "s" / "images"])
    assert out2 == out
    code, out, err = run(capsys, ["caption", d / "c.rnnkit", d / "f.safetensors", "--beam", "3",
                                  "--n-best", "2", "--json", "--references",
                                  d / "s" / "captions.tsv"])
    docs = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(docs) == 61
    first = docs[0]
    assert len(first["n_best"]) == 2
    assert first["n_best"][0]["log10_prob"] >= first["n_best"][1]["log10_prob"]
    s = docs[-1]["summary"]
    assert 0 <= s["bleu4"] <= s["bleu1"] <= 100 and s["bleu_implementation"].startswith("sacrebleu")
    # score: log10 p(caption | image) equals the model's own scoring
    code, out, err = run(capsys, ["score", d / "c.rnnkit", d / "s" / "captions.tsv",
                                  "--features", d / "f.safetensors", "--json"])
    docs = [json.loads(x) for x in out.splitlines()]
    import rnnkit
    m = rnnkit.load(d / "c.rnnkit")
    from rnnkit.text.captions import read_features
    f = read_features(d / "f.safetensors")
    ids = m.vocab.encode(m.tokenizer.split(docs[0]["caption"])).astype(np.int64)
    (lp,) = m.caption_log_probs(f.rows([docs[0]["id"]]), [ids])
    assert code == 0 and docs[0]["log10_prob"] == pytest.approx(float(lp.sum()), abs=1e-4)
    assert docs[-1]["summary"]["captions"] == len(docs) - 1
    # the captions from stdin, as `-` says in --help
    import io
    import sys
    lines = (d / "s" / "captions.tsv").read_text(encoding="utf-8")
    stdin = sys.stdin
    try:
        sys.stdin = io.TextIOWrapper(io.BytesIO(lines.encode()), encoding="utf-8")
        code, out2, _ = run(capsys, ["score", d / "c.rnnkit", "-", "--features",
                                     d / "f.safetensors", "--json"])
    finally:
        sys.stdin = stdin
    assert code == 0 and out2 == out


def test_bad_inputs_are_one_error_line(trained, capsys, tmp_path):
    d = trained
    data = tmp_path / "data"
    data.mkdir()
    (data / "captions.tsv").write_text("nope.png\ta cat\n")
    code, _, err = run(capsys, ["train", data, "--type", "caption", "--features",
                                d / "f.safetensors", "--out", tmp_path / "m.rnnkit"])
    assert code == 2 and err.startswith("error: ") and "no features" in err
    code, _, err = run(capsys, ["train", d / "s", "--type", "caption", "--out",
                                tmp_path / "m.rnnkit"])
    assert code == 2 and "--features" in err
    bad = np.zeros((2, 7), np.float32)
    np.save(tmp_path / "bad.npy", bad)
    code, _, err = run(capsys, ["caption", d / "c.rnnkit", tmp_path / "bad.npy"])
    assert code == 2 and "[images, 704]" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, ["caption", d / "f.safetensors", d / "f.safetensors"])
    assert code == 2 and err.startswith("error: ")
    code, _, err = run(capsys, ["synth", "--scenes", "3"])
    assert code == 2 and "--scenes needs --out DIR" in err
    code, _, err = run(capsys, ["features", tmp_path / "nothing", "--out", tmp_path / "x"])
    assert code == 2 and "no such image file or directory" in err
    # an output over an input image; --size without a CNN to size for
    img = tmp_path / "one.png"
    img.write_bytes((d / "s" / "images" / "scene-000000.png").read_bytes())
    before = img.read_bytes()
    code, _, err = run(capsys, ["features", img, "--out", img])
    assert code == 2 and "is the input" in err and img.read_bytes() == before
    code, _, err = run(capsys, ["features", img, "--size", "32", "--out",
                                tmp_path / "f.safetensors"])
    assert code == 2 and "give --onnx" in err
    code, _, err = run(capsys, ["features", img, "--std", "nan,1,1", "--out",
                                tmp_path / "f.safetensors"])
    assert code == 2 and "--std needs three finite numbers" in err
    code, _, err = run(capsys, ["features", img, "--out", tmp_path / "f.txt"])
    assert code == 2 and "ending in .safetensors" in err and not (tmp_path / "f.txt").exists()
    # references that cannot serve are refused before any caption is printed
    empty = tmp_path / "norefs"
    empty.mkdir()
    code, out, err = run(capsys, ["caption", d / "c.rnnkit", d / "f.safetensors",
                                  "--references", empty])
    assert code == 2 and out == "" and "no captions.tsv" in err


def test_python_api_and_a_real_process(trained):
    import rnnkit
    m = rnnkit.load(trained / "c.rnnkit")
    from rnnkit.text.captions import read_features
    f = read_features(trained / "f.safetensors")
    caps = m.caption(f.array[:2], beam=3)
    assert len(caps) == 2 and isinstance(caps[0][0][0], str)
    r = subprocess.run([sys.executable, "-m", "rnnkit", "caption", str(trained / "c.rnnkit"),
                        str(trained / "f.safetensors"), "--beam", "2"], capture_output=True,
                       timeout=120)
    assert r.returncode == 0 and len(r.stdout.decode().splitlines()) == 60
