"""Reading and writing text and files the way every rnnkit command does.

- `-` is stdin (input) or stdout (output).
- Input is UTF-8, read in blocks of whole lines (`read_blocks`) or line by line (`read_lines`);
  gzip is recognised by its magic bytes, not its name. Lines end at b"\\n" only (a trailing
  "\\r" is dropped by read_lines; tokenizers treat it as whitespace).
- Invalid UTF-8 raises InputError naming the file, the line and the byte offset, unless
  errors="replace", which substitutes U+FFFD.
- Every file rnnkit writes is written atomically: to a temporary file in the same directory,
  then renamed over the target, so a crash or Ctrl-C never leaves a half-written file.
  Directories likewise (`atomic_directory`). A full disk, a quota, a read-only file system or an
  I/O error while writing becomes OutputError naming the path (`write_error`).
- The guards every writing command calls before it reads anything (new commands too):
  `check_output(out, inputs)` refuses an output that is one of the inputs or lies inside an input
  directory; `output_lock(out)` takes an exclusive lock beside the output, so two runs with the
  same output cannot interleave (the second names the process that holds it).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import io
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError, OutputError

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
            if sys.stdin is None or sys.stdin.closed:
                raise InputError("<stdin>: standard input is closed; give a file, or pipe text in")
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

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.stream.read(n)
        except (OSError, EOFError, zlib.error) as e:
            what = "a damaged or truncated gzip file" if self.gzip else "a read error"
            raise InputError(f"{self.name}: cannot read ({what}: {e})") from None
        if not self.gzip:
            self._consumed += len(data)
        return data

    def __enter__(self) -> "_Input":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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


def open_binary(path: str | os.PathLike) -> _Input:
    """Open a file (or `-` for stdin) for binary reading, transparently gunzipping it: the one
    reader of every input file. Its `read(n)` turns every failure (a damaged or truncated gzip
    stream, an I/O error) into InputError naming the file; `.gzip` says whether it was
    compressed; `close()` leaves stdin open. Opening fails with InputError for a missing,
    unreadable or directory path."""
    return _Input(path)


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
            f"convert it with iconv (`rnnkit prepare` can also substitute U+FFFD: --errors "
            f"replace)") from None


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
    rest: list[bytes] = []  # the start of a line longer than a block, in pieces (no quadratic +=)
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
                rest.append(data)
                continue
            if rest:
                rest.append(data[:cut])
                chunk = b"".join(rest)
                rest.clear()
            else:
                chunk = data[:cut]
            if cut + 1 < len(data):
                rest.append(data[cut + 1:])
            del data
            text = _decode(chunk, errors, name, line, offset)
            line += chunk.count(b"\n") + 1
            offset += len(chunk) + 1
            del chunk  # the bytes go before the text is used: one copy of a long line, not two
            yield line - 1 - text.count("\n"), text
            del text
        if rest:
            yield line, _decode(b"".join(rest), errors, name, line, offset)
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
    except OSError as e:
        raise write_error(target, e) from None
    try:
        os.fchmod(fd, _default_mode(False))
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            raise write_error(target, e) from None
        raise


# errors of the medium, not of the program: a user can fix them (free space, remount, ...)
WRITE_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EIO", "EFBIG")
                         if hasattr(errno, n))


def write_error(path: str | os.PathLike, e: OSError) -> OutputError:
    """The OutputError for an OSError met while writing `path` (`-`: stdout)."""
    what = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
            errno.EIO: "input/output error"}.get(e.errno, e.strerror or str(e))
    if getattr(errno, "EDQUOT", None) == e.errno:
        what = "disk quota exceeded"
    hint = "; nothing was written (the previous file, if any, is intact)" if str(path) != "-" else ""
    return OutputError(f"{display_name(path) if str(path) != '-' else '<stdout>'}: cannot write: "
                       f"{what}{hint}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: str | os.PathLike | None, inputs, *, flag: str = "--out") -> None:
    """Refuse to write `out` over one of `inputs`, or into a directory that is one of them.

    Every command that writes a file calls this before it reads or writes anything, with every
    path it reads (text files, corpus directories, models, vocabularies); `-` and None are
    skipped. A file beside its input is fine; `en/model.rnnkit` with input `en/` is not (the
    output, its checkpoints and temporary files would land among the corpus files). Symlinks and
    hard links are resolved, so `./a.txt` and a link to it are the same file.
    """
    if out is None or str(out) == "-":
        return
    target = Path(out)
    resolved = target.resolve()
    for p in inputs:
        if p is None or str(p) == "-":
            continue
        src = Path(p)
        if resolved == src.resolve() or _same_file(target, src):
            raise OutputError(f"{flag} {out}: is the input {p}; writing it would destroy the "
                              f"input: choose another {flag}")
        if src.is_dir() and src.resolve() in resolved.parents:
            raise OutputError(f"{flag} {out}: is inside the input directory {p}; writing there "
                              f"could damage it: choose another {flag}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(out: str | os.PathLike | None):
    """Hold an exclusive lock on `out` for the duration: a second run writing the same output
    fails at once with OutputError naming the process that holds the lock (exit 2), instead of
    interleaving its files with the first. The lock is `flock` on a hidden `.NAME.lock` file beside
    the output, holding the owner's pid; the kernel releases it when the process dies (even by
    SIGKILL), so a stale lock file never blocks. `-` and None take no lock."""
    if out is None or str(out) == "-":
        yield
        return
    target = Path(out)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        yield  # the writer reports the missing directory
        return
    lock = parent / f".{target.name}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield  # a read-only directory: the write itself will say why it fails
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            raise OutputError(f"{out}: another rnnkit run (pid {holder}) is writing this output; "
                              f"wait for it to finish, or choose another output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)
    finally:
        os.close(fd)


def clean_stale_temporaries(parent: str | os.PathLike, name: str) -> None:
    """Remove `.NAME.*.tmp` / `.NAME.*.old` left in `parent` by a run that was killed (SIGKILL,
    power loss) while writing NAME. A temporary is stale when the pid recorded in it (see
    `atomic_directory`) is no longer alive; one without a pid is left alone."""
    d = Path(parent)
    with contextlib.suppress(OSError):
        for p in d.glob(f".{name}.*"):
            if not (p.name.endswith(".tmp") or p.name.endswith(".old")) or not p.is_dir():
                continue
            pidfile = p / ".pid" if p.name.endswith(".tmp") else p / "pid"
            try:
                pid = int(pidfile.read_text())
            except (OSError, ValueError):
                continue
            if not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)


def check_replaceable_dir(out: Path, is_ours: Callable[[Path], bool], what: str,
                          force: bool | None = None) -> None:
    """atomic_directory replaces `out` whole: refuse a file, or a non-empty directory that
    `is_ours` does not recognise (`what` names ours). With force=True the directory is replaced
    anyway; force=False says so in the message; None: the command has no --force."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and not force and any(out.iterdir()) and not is_ours(out):
        hint = "" if force is None else ", or pass --force to replace it and everything in it"
        raise InputError(f"{out}: exists and is not {what}; choose another --out{hint}")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary directory beside `path`; on success it replaces `path` in one rename.

    Missing parent directories are created. If `path` exists it is moved aside first and
    removed after the new directory is in place. The files written into the temporary directory
    are flushed to disk before the rename, so even a power failure cannot leave a directory
    that looks complete but is not.
    """
    target = Path(path)
    if target.is_dir():  # it would be moved aside from under the running process
        root, cwd = target.resolve(), Path.cwd().resolve()
        if root == cwd or root in cwd.parents:
            raise InputError(f"{target}: is the current directory or holds it, which cannot be "
                             f"replaced; choose another output directory")
    parent = target.parent if str(target.parent) else Path(".")
    clean_stale_temporaries(parent, target.name)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
        (tmp / ".pid").write_text(str(os.getpid()))
    except FileExistsError:
        raise InputError(f"{target}: {parent} exists and is not a directory") from None
    except PermissionError:
        raise InputError(f"{target}: permission denied (cannot write in {parent})") from None
    try:
        os.chmod(tmp, _default_mode(True))
        yield tmp
        (tmp / ".pid").unlink()
        for f in tmp.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        old = None
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            (old / "pid").write_text(str(os.getpid()))
            os.replace(target, old / "d")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            raise write_error(target, e) from None
        raise
