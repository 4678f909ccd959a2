"""textio: line and block reading (gzip by magic bytes, stdin, UTF-8 errors with file, line and
byte offset), atomic files and directories."""
from __future__ import annotations

import gzip
import io
import os
import stat
import sys

import pytest

from rnnkit.errors import InputError
from rnnkit.text.textio import (
    atomic_directory,
    atomic_write,
    check_errors,
    open_binary,
    read_blocks,
    read_lines,
)

TEXT = "first line\r\n\nsecond, with é and 한국어\nlast without newline"
LINES = [(1, "first line"), (2, ""), (3, "second, with é and 한국어"), (4, "last without newline")]


@pytest.fixture
def plain(tmp_path):
    p = tmp_path / "plain.txt"
    p.write_bytes(TEXT.encode("utf-8"))
    return p


def test_read_lines(plain):
    assert list(read_lines(plain)) == LINES


def test_gzip_is_recognised_by_magic_bytes_not_name(tmp_path):
    disguised = tmp_path / "looks-plain.txt"
    disguised.write_bytes(gzip.compress(TEXT.encode("utf-8")))
    assert list(read_lines(disguised)) == LINES
    not_gzip = tmp_path / "named.gz"  # a plain file with a .gz name is read as plain text
    not_gzip.write_bytes(TEXT.encode("utf-8"))
    assert list(read_lines(not_gzip)) == LINES
    with open_binary(disguised) as f:
        assert f.read().decode("utf-8") == TEXT


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1 << 20])
def test_blocks_hold_whole_lines_whatever_the_block_size(plain, block):
    blocks = list(read_blocks(plain, block=block))
    lines = [(first + k, line) for first, text in blocks for k, line in enumerate(text.split("\n"))]
    assert [(n, t.rstrip("\r")) for n, t in lines] == LINES


def test_progress_counts_file_bytes(plain, tmp_path):
    seen = []
    list(read_blocks(plain, progress=seen.append, block=5))
    assert sum(seen) == plain.stat().st_size
    gz = tmp_path / "t.gz"
    gz.write_bytes(gzip.compress(TEXT.encode("utf-8") * 50))
    seen.clear()
    list(read_blocks(gz, progress=seen.append, block=16))
    assert sum(seen) == gz.stat().st_size  # compressed bytes: what a bar over file sizes needs


def test_invalid_utf8_names_file_line_and_byte(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"ok\nfine line\nbad \xff here\n")  # \xff is byte 17 of the file, 4 of line 3
    with pytest.raises(InputError) as e:
        list(read_lines(p))
    msg = str(e.value)
    assert msg.startswith(f"{p}:3: invalid UTF-8 at byte 17 of the file (byte 4 of the line)")
    assert "--errors replace" in msg


@pytest.mark.parametrize("block", [1, 4, 1 << 20])
def test_invalid_utf8_position_does_not_depend_on_blocks(tmp_path, block):
    p = tmp_path / "bad.txt"
    p.write_bytes("한\n둘 셋\n".encode("utf-8") + b"x\xc3(\n")  # 4 + 8 bytes, then x: line 3, file byte 13
    with pytest.raises(InputError, match=r":3: invalid UTF-8 at byte 13 of the file \(byte 1 "):
        list(read_blocks(p, block=block))


def test_errors_replace_substitutes_u_fffd(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"a \xff b\nc\n")
    assert list(read_lines(p, errors="replace")) == [(1, "a \ufffd b"), (2, "c")]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_lines(tmp_path / "nope.txt"))
    with pytest.raises(InputError, match="is a directory, expected a text file"):
        list(read_lines(tmp_path))


def test_damaged_gzip(tmp_path):
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(b"some text\n" * 1000)[:40])
    with pytest.raises(InputError, match="damaged or truncated gzip"):
        list(read_lines(p))


def test_bad_errors_value():
    with pytest.raises(InputError, match="--errors 'ignore': use strict"):
        check_errors("ignore")


@pytest.mark.parametrize("data", [TEXT.encode("utf-8"), gzip.compress(TEXT.encode("utf-8"))])
def test_stdin(monkeypatch, data):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert list(read_lines("-")) == LINES


def test_atomic_write_replaces_and_keeps_the_usual_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_atomic_write_failure_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as f:
            f.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_atomic_write_to_stdout(capsys):
    with atomic_write("-") as f:
        f.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"


def test_atomic_directory(tmp_path):
    target = tmp_path / "new" / "corpus"  # the missing parent is created
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists()
    assert (target / "a").read_text() == "1"
    with atomic_directory(target) as tmp:  # replaces the old directory as a whole
        (tmp / "b").write_text("2")
    assert sorted(os.listdir(target)) == ["b"]
    assert sorted(os.listdir(tmp_path / "new")) == ["corpus"]


def test_atomic_directory_failure_leaves_nothing(tmp_path):
    target = tmp_path / "corpus"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a").write_text("1")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []


# --- the output guards (issue 15) -----------------------------------------------------------------
def test_check_output_refuses_inputs_by_any_name(tmp_path):
    from rnnkit.errors import OutputError
    from rnnkit.text.textio import check_output

    src = tmp_path / "in.txt"
    src.write_text("x\n")
    os.link(src, tmp_path / "hard.txt")
    (tmp_path / "d").mkdir()
    for out in (src, tmp_path / "hard.txt", tmp_path / "." / "in.txt", tmp_path / "d" / "m"):
        with pytest.raises(OutputError):
            check_output(out, [src, tmp_path / "d"])
    check_output(tmp_path / "other.txt", [src, tmp_path / "d"])  # beside an input is fine
    check_output("-", [src])
    check_output(None, [src])


def test_output_lock_is_exclusive_and_released(tmp_path):
    from rnnkit.errors import OutputError
    from rnnkit.text.textio import output_lock

    out = tmp_path / "m.rnnkit"
    with output_lock(out):
        lock = tmp_path / ".m.rnnkit.lock"
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
            with output_lock(out):
                pass
    assert not lock.exists()
    with output_lock(out):  # free again
        pass


def test_write_errors_name_the_path(tmp_path, monkeypatch):
    import errno

    from rnnkit.errors import OutputError
    from rnnkit.text.textio import atomic_write

    target = tmp_path / "f.txt"
    target.write_text("old")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=r"f.txt: cannot write: no space left"):
        with atomic_write(target) as f:
            f.write("new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
