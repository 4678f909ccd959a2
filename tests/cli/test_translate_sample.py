"""The lecture's two designs on the bundled Korean-English sample, through the command line as
the quick start runs them: the attention model translates the held-out pairs far better than
the one-feature-vector model, and translates the lecture's example sentence.

Measured when the thresholds were set (2026-12-04, Zen 4, 1 thread, the quick start's
configuration): test BLEU 80.3 with attention, 3.4 without (sacreBLEU, beam 5). Other BLAS
libraries round differently and land a few points away, hence the margins."""
from __future__ import annotations

import json

from rnnkit.cli import main
from rnnkit.text.parallel import ParallelCorpus


def test_attention_beats_one_feature_vector_on_the_sample(tmp_path, capsys):
    data = tmp_path / "ko-en"
    assert main(["prepare", "--sample", "ko-en", "--parallel", "--out", str(data)]) == 0
    pairs = ParallelCorpus.load(data).text("test")
    assert len(pairs) >= 100
    src, ref = tmp_path / "test.ko", tmp_path / "test.en"
    src.write_text("".join(k + "\n" for k, _ in pairs), encoding="utf-8")
    ref.write_text("".join(e + "\n" for _, e in pairs), encoding="utf-8")
    bleu = {}
    for attention in ("none", "general"):
        model = tmp_path / f"{attention}.rnnkit"
        assert main(["train", str(data), "--type", "seq2seq", "--attention", attention,
                     "--emb", "64", "--hidden", "128", "--layers", "1", "--batch", "32",
                     "--epochs", "10", "--lr", "0.003", "--threads", "1",
                     "--out", str(model), "--json"]) == 0
        hyp = tmp_path / f"{attention}.hyp"
        capsys.readouterr()
        assert main(["translate", str(model), str(src), "--beam", "5"]) == 0
        hyp.write_text(capsys.readouterr().out, encoding="utf-8")
        assert main(["evaluate", str(hyp), str(ref), "--json"]) == 0
        bleu[attention] = json.loads(capsys.readouterr().out)["bleu"]["score"]
    with capsys.disabled():  # reported, as the issue asks (shown with -s)
        print("held-out BLEU:", bleu)
    assert bleu["general"] >= 60, bleu
    assert bleu["none"] <= 30, bleu
    assert bleu["general"] - bleu["none"] >= 40, bleu
    lecture = tmp_path / "lecture.ko"
    lecture.write_text("자세히 보아야 예쁘다\n", encoding="utf-8")
    assert main(["translate", str(tmp_path / "general.rnnkit"), str(lecture), "--beam", "5"]) == 0
    assert capsys.readouterr().out == "it is beautiful to see closely\n"
