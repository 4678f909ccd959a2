"""Reading and writing text and files the way every rnnkit command does.

- `-` is stdin (input) or stdout (output).
- Input is UTF-8, read line by line; gzip is recognised by its magic bytes, not its name.
- Invalid UTF-8 raises InputError naming the file, the line and the byte offset, unless
  errors="replace", which substitutes U+FFFD.
- Every file rnnkit writes is written atomically: to a temporary file in the same directory,
  then renamed over the target, so a crash or Ctrl-C never leaves a half-written file.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

GZIP_MAGIC = b"\x1f\x8b"


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def open_binary(path: str | os.PathLike):
    """Open a file (or `-` for stdin) for binary reading, transparently gunzipping it."""
    if str(path) == "-":
        raw = sys.stdin.buffer
    else:
        p = Path(path)
        if p.is_dir():
            raise InputError(f"{p}: is a directory, expected a text file")
        try:
            raw = open(p, "rb")
        except FileNotFoundError:
            raise InputError(f"{p}: no such file") from None
        except PermissionError:
            raise InputError(f"{p}: permission denied") from None
        except OSError as e:
            raise InputError(f"{p}: cannot open: {e.strerror}") from None
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    return buffered


def read_lines(path: str | os.PathLike, errors: str = "strict") -> Iterator[tuple[int, str]]:
    """Yield (line number from 1, text without the line ending) for each line of a UTF-8 file."""
    if errors not in ("strict", "replace"):
        raise ValueError(f"errors must be 'strict' or 'replace', not {errors!r}")
    name = display_name(path)
    f = open_binary(path)
    offset = 0
    try:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if errors == "replace":
                    text = raw.decode("utf-8", errors="replace")
                else:
                    raise InputError(
                        f"{name}:{number}: invalid UTF-8 at byte {offset + e.start} of the file "
                        f"(byte {e.start} of the line); is the file in another encoding? "
                        f"convert it with iconv, or pass --errors replace to substitute U+FFFD"
                    ) from None
            offset += len(raw)
            yield number, text.rstrip("\r\n")
    except (OSError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{name}: cannot read: {e}") from None
    finally:
        if str(path) != "-":
            f.close()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file beside `path` for writing; rename it over `path` on success.

    `-` writes to stdout instead (there is nothing to make atomic).
    """
    if str(path) == "-":
        if "b" in mode:
            yield sys.stdout.buffer
        else:
            yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{target}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary directory beside `path`; on success it replaces `path` in one rename.

    If `path` exists it is moved aside first and removed after the new directory is in place.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{target}: parent directory {parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.replace(target, old / "d")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
