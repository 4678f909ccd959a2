"""Reading and writing text and files the way every rnnkit command does.

- `-` is stdin (input) or stdout (output).
- Input is UTF-8, read in blocks of whole lines (`read_blocks`) or line by line (`read_lines`);
  gzip is recognised by its magic bytes, not its name. Lines end at b"\\n" only (a trailing
  "\\r" is dropped by read_lines; tokenizers treat it as whitespace).
- Invalid UTF-8 raises InputError naming the file, the line and the byte offset, unless
  errors="replace", which substitutes U+FFFD.
- Every file rnnkit writes is written atomically: to a temporary file in the same directory,
  then renamed over the target, so a crash or Ctrl-C never leaves a half-written file.
  Directories likewise (`atomic_directory`).
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
BLOCK = 1 << 20  # bytes read at a time: large enough to amortise Python's per-call cost
ERRORS = ("strict", "replace")


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def check_errors(errors: str) -> None:
    if errors not in ERRORS:
        raise InputError(f"--errors {errors!r}: use strict (stop at invalid UTF-8) or replace "
                         f"(substitute U+FFFD)")


class _Input:
    """A binary input (file or stdin), gunzipped when it starts with the gzip magic bytes.

    `position()` is the number of bytes consumed from the underlying file (compressed bytes for
    gzip), which is what a progress bar over file sizes needs.
    """

    def __init__(self, path: str | os.PathLike):
        self.name = display_name(path)
        if str(path) == "-":
            self.raw, self.owned = sys.stdin.buffer, False
        else:
            p = Path(path)
            if p.is_dir():
                raise InputError(f"{p}: is a directory, expected a text file")
            try:
                self.raw, self.owned = open(p, "rb"), True
            except FileNotFoundError:
                raise InputError(f"{p}: no such file") from None
            except PermissionError:
                raise InputError(f"{p}: permission denied") from None
            except OSError as e:
                raise InputError(f"{p}: cannot open: {e.strerror}") from None
        if not hasattr(self.raw, "peek"):  # e.g. a BytesIO standing in for stdin
            self.raw = io.BufferedReader(self.raw)
        try:
            head = self.raw.peek(2)[:2]
        except OSError as e:
            self.close()
            raise InputError(f"{self.name}: cannot read: {e.strerror or e}") from None
        self.gzip = head == GZIP_MAGIC
        self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb") if self.gzip else self.raw
        self._consumed = 0

    def read(self, n: int) -> bytes:
        try:
            data = self.stream.read(n)
        except (OSError, EOFError, zlib.error) as e:
            what = "a damaged or truncated gzip file" if self.gzip else "a read error"
            raise InputError(f"{self.name}: cannot read ({what}: {e})") from None
        if not self.gzip:
            self._consumed += len(data)
        return data

    def position(self) -> int:
        if self.gzip:
            with contextlib.suppress(OSError, ValueError):
                return self.raw.tell()
        return self._consumed

    def close(self) -> None:
        if self.owned:
            if self.stream is not self.raw:
                self.stream.close()
            self.raw.close()


def open_binary(path: str | os.PathLike):
    """Open a file (or `-` for stdin) for binary reading, transparently gunzipping it."""
    f = _Input(path)
    if f.gzip and f.owned:
        f.stream.myfileobj = f.raw  # so that closing the GzipFile closes the file too
    return f.stream


def _decode(data: bytes, errors: str, name: str, first_line: int, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors == "replace":
            return data.decode("utf-8", errors="replace")
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = first_line + data.count(b"\n", 0, e.start)
        raise InputError(
            f"{name}:{line}: invalid UTF-8 at byte {offset + e.start} of the file "
            f"(byte {e.start - line_start} of the line); is the file in another encoding? "
            f"convert it with iconv, or pass --errors replace to substitute U+FFFD") from None


def read_blocks(path: str | os.PathLike, errors: str = "strict",
                progress: Callable[[int], None] | None = None,
                block: int = BLOCK) -> Iterator[tuple[int, str]]:
    """Yield (number of the first line, text) for blocks of whole lines of a UTF-8 file.

    Each block holds complete lines separated by "\\n" and no final "\\n" (so
    `text.split("\\n")` gives its lines); a block never splits a line, so the UTF-8 decoding and
    error positions are exactly those of reading line by line. `progress(n)` is called with the
    number of bytes of the file consumed since the previous call.
    """
    check_errors(errors)
    f = _Input(path)
    name, line, offset, done = f.name, 1, 0, 0
    rest = b""
    try:
        while True:
            data = f.read(block)
            if progress is not None:
                pos = f.position()
                if pos > done:
                    progress(pos - done)
                    done = pos
            if not data:
                break
            cut = data.rfind(b"\n")
            if cut < 0:  # a line longer than the block: keep reading
                rest += data
                continue
            chunk = rest + data[:cut] if rest else data[:cut]
            rest = data[cut + 1:]
            yield line, _decode(chunk, errors, name, line, offset)
            line += chunk.count(b"\n") + 1
            offset += len(chunk) + 1
        if rest:
            yield line, _decode(rest, errors, name, line, offset)
    finally:
        f.close()


def read_lines(path: str | os.PathLike, errors: str = "strict") -> Iterator[tuple[int, str]]:
    """Yield (line number from 1, text without the line ending) for each line of a UTF-8 file."""
    for first, text in read_blocks(path, errors):
        for number, line in enumerate(text.split("\n"), first):
            yield number, line[:-1] if line.endswith("\r") else line


_umask: int | None = None


def _default_mode(directory: bool) -> int:
    """The mode a plain open()/mkdir() would give: mkstemp/mkdtemp use 0600/0700 instead."""
    global _umask
    if _umask is None:
        _umask = os.umask(0o022)
        os.umask(_umask)
    return (0o777 if directory else 0o666) & ~_umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file beside `path` for writing; rename it over `path` on success.

    `-` writes to stdout instead (there is nothing to make atomic).
    """
    if str(path) == "-":
        if "b" in mode:
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
        else:
            yield sys.stdout
            sys.stdout.flush()
        return
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError(f"{target}: is a directory; give a file name to write to")
    if not directory.is_dir():
        raise InputError(f"{target}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except PermissionError:
        raise InputError(f"{target}: permission denied (cannot write in {directory})") from None
    try:
        os.fchmod(fd, _default_mode(False))
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

    Missing parent directories are created. If `path` exists it is moved aside first and
    removed after the new directory is in place. The files written into the temporary directory
    are flushed to disk before the rename, so even a power failure cannot leave a directory
    that looks complete but is not.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except FileExistsError:
        raise InputError(f"{target}: {parent} exists and is not a directory") from None
    except PermissionError:
        raise InputError(f"{target}: permission denied (cannot write in {parent})") from None
    try:
        os.chmod(tmp, _default_mode(True))
        yield tmp
        for f in tmp.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        old = None
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.replace(target, old / "d")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
