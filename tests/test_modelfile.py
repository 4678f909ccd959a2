"""rnnkit.modelfile.save streams the file: the bytes safetensors' own `save` writes (its tensor
order and header padding), for every dtype, shape and byte order, and files that read back."""
import json

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from rnnkit import modelfile
from rnnkit.errors import ModelFileError


def tensors():
    rng = np.random.default_rng(3)
    out = {f"t.{np.dtype(d).name}": rng.integers(0, 100, (2, 3)).astype(d)
           for d in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                     np.uint64, np.uint32, np.uint16, np.uint8)}
    out.update({"bool": rng.random(5) < 0.5, "empty": np.zeros((0, 4), np.float32),
                "scalar": np.float32(-2.5), "transposed": rng.random((3, 4)).astype(np.float32).T,
                "big-endian": np.arange(6, dtype=">i4").reshape(2, 3), "a.1.word": np.arange(7)})
    return out


def test_save_writes_the_bytes_of_safetensors_save(tmp_path):
    t, meta = tensors(), {"model_type": "x", "vocab": ["é", "한국", "\"q\" \\ \n\u0001"]}
    modelfile.save(tmp_path / "m.rnnkit", t, meta)
    doc = {"format": modelfile.FORMAT, "format_version": modelfile.FORMAT_VERSION, **meta}
    ref = st_save({k: np.ascontiguousarray(v) for k, v in t.items()},
                  metadata={modelfile.META_KEY: json.dumps(doc, ensure_ascii=False)})
    assert (tmp_path / "m.rnnkit").read_bytes() == ref


@pytest.mark.parametrize("mmap", [False, True])
def test_saved_file_reads_back(tmp_path, mmap):
    t = tensors()
    modelfile.save(tmp_path / "m.rnnkit", t, {"model_type": "x"})
    back, meta = modelfile.read(tmp_path / "m.rnnkit", mmap=mmap)
    assert meta["model_type"] == "x" and set(back) == set(t)
    for k, v in t.items():
        assert back[k].dtype == np.asarray(v).dtype.newbyteorder("=")
        np.testing.assert_array_equal(back[k], v)


def test_save_refuses_a_dtype_safetensors_cannot_hold(tmp_path):
    with pytest.raises(ModelFileError, match="'z': dtype complex64 cannot be stored"):
        modelfile.save(tmp_path / "m.rnnkit", {"z": np.zeros(2, np.complex64)}, {})
    assert not (tmp_path / "m.rnnkit").exists()
