"""Model files written by an earlier rnnkit (tests/data/legacy: trained on the English sample
before the package was split into layers) load and score exactly as they did then.

expected.json holds what that version's `full_scores` and `perplexity` returned. The flags and
lengths must be equal; the log10 scores equal up to float32 rounding (relative 1e-6): a change of
the product kernel for a few rows (BLAS -> dot products) moves their last bits."""
import json
from pathlib import Path

import pytest

import rnnkit

LEGACY = Path(__file__).parents[1] / "data" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text("utf-8"))


@pytest.mark.parametrize("name", ["lstm", "peephole", "rnn", "tri"])
def test_legacy_model_file_scores_as_before(name):
    model = rnnkit.load(LEGACY / f"{name}.rnnkit")
    if name != "tri":   # written before output layers were a choice: a full softmax
        assert model.arch.output == "full" and model.arch.cutoffs == ()
    want = EXPECTED["scores"][name]
    got = [[list(x) for x in model.full_scores(s)] for s in EXPECTED["sentences"]]
    assert [[x[1:] for x in s] for s in got] == [[x[1:] for x in s] for s in want["full_scores"]]
    assert [x[0] for s in got for x in s] == pytest.approx(
        [x[0] for s in want["full_scores"] for x in s], rel=1e-6)
    assert model.perplexity(EXPECTED["sentences"]) == pytest.approx(want["perplexity"], rel=1e-6)
