"""import-torch checks every tensor against the architecture it infers, before copying any: a
wrong shape, a missing or an extra tensor is one error naming the tensor, never numpy's message
or (worse) a model silently built from the wrong numbers."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from rnnkit.cli import main
from rnnkit.errors import ModelFileError
from rnnkit.models.torch_import import from_torch_state

V, E, H = 5, 3, 4
TOKENS = ["<unk>", "<s>", "</s>", "a", "b"]


def state(**changes):
    rng = np.random.default_rng(0)
    t = {"encoder.weight": (V, E), "rnn.weight_ih_l0": (4 * H, E), "rnn.weight_hh_l0": (4 * H, H),
         "rnn.bias_ih_l0": (4 * H,), "rnn.bias_hh_l0": (4 * H,), "decoder.weight": (V, H),
         "decoder.bias": (V,)}
    t.update(changes)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in t.items() if s is not None}


def test_a_correct_state_imports(tmp_path):
    save_file(state(), str(tmp_path / "s.safetensors"))
    m = from_torch_state(tmp_path / "s.safetensors", TOKENS)
    assert (m.arch.emb, m.arch.hidden, m.arch.layers) == (E, H, 1)


@pytest.mark.parametrize("changes,words", [
    ({"rnn.weight_ih_l0": (4 * H, E + 3)}, ["rnn.weight_ih_l0", f"[{4 * H}, {E + 3}]",
                                           f"[{4 * H}, {E}]"]),
    ({"rnn.weight_ih_l1": (4 * H, H)}, ["rnn.weight_hh_l1", "missing"]),
    ({"encoder.weight": (V,)}, ["encoder.weight", "matrix"]),
    ({"decoder.bias": (V + 2,)}, ["decoder.bias", f"[{V + 2}]", f"[{V}]"]),
    ({"decoder.weight": (V, H + 1)}, ["decoder.weight"]),
    ({"rnn.bias_ih_l0": (3 * H,)}, ["rnn.bias_ih_l0"]),
    ({"rnn.weight_hh_l0": None}, ["rnn.weight_hh_l0", "missing"]),
    ({"extra.weight": (2, 2)}, ["unexpected tensor", "extra.weight"]),
])
def test_every_tensor_is_checked(tmp_path, capsys, changes, words):
    path = tmp_path / "s.safetensors"
    save_file(state(**changes), str(path))
    with pytest.raises(ModelFileError) as e:
        from_torch_state(path, TOKENS)
    for w in words:
        assert w in str(e.value)
    vocab = tmp_path / "v.txt"
    vocab.write_text("\n".join(TOKENS) + "\n")
    out = tmp_path / "x.rnnkit"
    code = main(["import-torch", str(path), "--vocab", str(vocab), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_nan_weights_are_refused_at_import(tmp_path):
    # before, the import wrote a model that every command then refused to load
    s = state()
    s["decoder.bias"][3] = np.nan
    save_file(s, str(tmp_path / "s.safetensors"))
    with pytest.raises(ModelFileError, match="decoder.bias holds NaN or infinite values"):
        from_torch_state(tmp_path / "s.safetensors", TOKENS)
