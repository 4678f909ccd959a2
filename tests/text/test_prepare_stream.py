"""prepare --memory (text/prepare_stream.py): the same directory as prepare, byte for byte, with
the ids streamed through temporary files."""
from __future__ import annotations

import filecmp
import os

import pytest

from rnnkit.errors import InputError
from rnnkit.text.prepare import prepare, sample_path
from rnnkit.text.prepare_stream import prepare_streamed


def same_dirs(a, b) -> bool:
    names = sorted(os.listdir(a))
    return names == sorted(os.listdir(b)) and all(
        filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in names)


@pytest.mark.parametrize("options", [
    {},  # the default random split 0.9,0.05,0.05
    {"split": "1,0,0"},
    {"split": "0.8,0.1,0.1", "seed": 3, "min_count": 2},
    {"max_vocab": 300, "level": "char"},
    {"lowercase": True, "split": "0.5,0.5,0"},
])
def test_streamed_directory_is_byte_identical(tmp_path, options):
    src = str(sample_path("en"))
    m1 = prepare([src], tmp_path / "a", **options)
    temp = tmp_path / "temp"
    temp.mkdir()
    # 64 KB: blocks of 4096 ids (the floor), so the sample (~100k ids) streams through ~25
    m2 = prepare_streamed([src], tmp_path / "b", memory=1 << 16, temp_dir=temp, **options)
    assert m1 == m2
    assert same_dirs(tmp_path / "a", tmp_path / "b")
    assert list(temp.iterdir()) == []


def test_valid_and_test_files_and_a_given_vocab(tmp_path):
    src = sample_path("en")
    lines = src.read_text("utf-8").splitlines()
    (tmp_path / "v.txt").write_text("\n".join(lines[:50]) + "\n", "utf-8")
    (tmp_path / "t.txt").write_text("\n".join(lines[50:90]) + "\n", "utf-8")
    kw = dict(valid=tmp_path / "v.txt", test=tmp_path / "t.txt")
    prepare([str(src)], tmp_path / "a", **kw)
    prepare_streamed([str(src)], tmp_path / "b", memory=1 << 16, **kw)
    assert same_dirs(tmp_path / "a", tmp_path / "b")
    prepare([str(src)], tmp_path / "c", vocab=tmp_path / "a" / "vocab.txt", split="1,0,0")
    prepare_streamed([str(src)], tmp_path / "d", memory=1 << 16,
                     vocab=tmp_path / "a" / "vocab.txt", split="1,0,0")
    assert same_dirs(tmp_path / "c", tmp_path / "d")


def test_errors_and_cleanup(tmp_path, monkeypatch):
    src = str(sample_path("en"))
    with pytest.raises(InputError, match="--level subword"):
        prepare_streamed([src], tmp_path / "x", memory=1 << 20, level="subword")
    with pytest.raises(InputError, match="--temp-dir .*no such directory"):
        prepare_streamed([src], tmp_path / "x", memory=1 << 20, temp_dir=tmp_path / "nope")
    (tmp_path / "empty.txt").write_text("\n\n", "utf-8")
    temp = tmp_path / "temp"
    temp.mkdir()
    with pytest.raises(InputError, match="no sentences"):
        prepare_streamed([str(tmp_path / "empty.txt")], tmp_path / "x", memory=1 << 20,
                         temp_dir=temp)
    assert list(temp.iterdir()) == [] and not (tmp_path / "x").exists()
