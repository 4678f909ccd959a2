"""Model files written by an earlier rnnkit (tests/data/legacy: trained on the English sample
before the package was split into layers) load and score exactly as they did then.

expected.json holds what that version's `full_scores` and `perplexity` returned."""
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
    assert got == want["full_scores"]
    assert model.perplexity(EXPECTED["sentences"]) == want["perplexity"]
