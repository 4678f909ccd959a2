"""`rnnkit prepare --memory SIZE`: the corpus directory of `prepare`, byte for byte, with the
token ids streamed through temporary files instead of held whole in memory.

Dimension letters as in prepare.py: N tokens of a split, S sentences, B ids per block.

Pass 1 reads the text (the same loop as prepare._read) and appends provisional ids to a file,
B at a time; the random split (split_assignment, 1 byte per sentence) then sends each sentence's
ids to its split's file; the training counts give the vocabulary (prepare._build_vocab), and a
last pass remaps every split into its .npy in blocks. In memory: one block, the table of
distinct tokens and the split of each sentence. --valid/--test files are read into memory (they
are held-out text, small by nature). --level subword is not streamed.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from array import array
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import prepare as prep
from .corpus import SPLITS, Corpus, _sha256
from .textio import atomic_directory, display_name, read_blocks
from .vocab import EOS, UNK, Tokenizer, Vocab


def _write_ids(f, ids: np.ndarray) -> None:
    try:
        np.ascontiguousarray(ids, np.uint32).tofile(f)
    except OSError as e:
        raise InputError(f"{f.name}: cannot write: {e.strerror or e} (free space, or point "
                         f"--temp-dir at a larger disk)") from None


def _blocks(path: Path, n: int, rows: int):
    """(first id, ids) of a uint32 file of n ids in blocks of whole sentences (a sentence longer
    than `rows` is read whole)."""
    a = 0
    with open(path, "rb") as f:
        while a < n:
            f.seek(a * 4)
            block = np.fromfile(f, np.uint32, min(rows, n - a))
            while a + len(block) < n:
                ends = np.flatnonzero(block == EOS)
                if len(ends):
                    block = block[:int(ends[-1]) + 1]
                    break
                f.seek((a + len(block)) * 4)
                block = np.concatenate((block, np.fromfile(f, np.uint32, rows)))
            yield a, block
            a += len(block)


def prepare_streamed(inputs=None, out_dir=None, *, memory: int, temp_dir=None,
                     sample: str | None = None, level: str = "word", lowercase: bool = False,
                     min_count: int = 1, max_vocab: int | None = None, vocab=None, valid=None,
                     test=None, split=None, seed: int = 0, normalize: str = "nfc",
                     errors: str = "strict", force: bool = False, progress=None) -> dict:
    """prepare.prepare's directory (identical files) within about `memory` bytes of ids in
    flight plus the token table; see the module docstring. Returns the manifest."""
    if out_dir is None:
        raise InputError("--out DIR is required: the directory to write the corpus to")
    if level == "subword":
        raise InputError("--memory does not stream --level subword yet; prepare it without "
                         "--memory")
    inputs = prep._as_list(inputs)
    valid = os.fspath(valid) if valid else None
    test = os.fspath(test) if test else None
    out_dir = Path(out_dir)
    prep._check_out_dir(out_dir, force, inputs + [p for p in (valid, test) if p])
    inputs, fractions = prep.check_options(inputs, sample, min_count, max_vocab, vocab, valid,
                                           test, split, errors)
    tokenizer = Tokenizer(level=level, normalize=normalize, lowercase=lowercase)
    given_vocab = Vocab.read(vocab) if vocab is not None else None
    rows = max(int(memory) // 64, 1 << 12)  # ids per block: ~64 bytes each in flight (int64
    # bincount copies, the remapped block, the growing read buffer)
    if temp_dir is not None and not Path(temp_dir).is_dir():
        raise InputError(f"--temp-dir {temp_dir}: no such directory")
    work = Path(tempfile.mkdtemp(prefix="rnnkit-prepare-", dir=temp_dir))
    try:
        table = prep._Table()
        n, sentences = _read_to_file(inputs, tokenizer, table, errors, progress,
                                     work / "ids.bin", rows)
        if n == 0:
            raise InputError(f"{', '.join(map(display_name, inputs))}: no sentences (the input "
                             f"is empty or blank)")
        files = {}  # split -> (path, number of ids) of provisional ids
        held = {}  # split -> provisional ids in memory (--valid/--test files)
        if fractions is not None:
            which = prep.split_assignment(sentences, fractions, seed)
            if which is None:
                files["train"] = (work / "ids.bin", n)
                for name, f in zip(SPLITS[1:], fractions[1:]):
                    if f > 0:
                        held[name] = np.zeros(0, np.uint32)
            else:
                names = [name for k, name in enumerate(SPLITS) if k == 0 or fractions[k] > 0]
                outs = {name: open(work / f"{name}.bin", "wb") for name in names}
                counts_n = dict.fromkeys(names, 0)
                s0 = 0
                try:
                    for _, block in _blocks(work / "ids.bin", n, rows):
                        ends = np.flatnonzero(block == EOS)
                        per = np.repeat(which[s0:s0 + len(ends)], np.diff(ends, prepend=-1))
                        s0 += len(ends)
                        for name in names:
                            part = block[per == SPLITS.index(name)]
                            _write_ids(outs[name], part)
                            counts_n[name] += len(part)
                finally:
                    for f in outs.values():
                        f.close()
                (work / "ids.bin").unlink()
                files = {name: (work / f"{name}.bin", counts_n[name]) for name in names}
        else:
            files["train"] = (work / "ids.bin", n)
            for name, path in (("valid", valid), ("test", test)):
                if path:
                    held[name] = prep._read([path], tokenizer, table, errors, progress)
                    if len(held[name]) == 0:
                        raise InputError(f"{display_name(path)}: no sentences (the --{name} file "
                                         f"is empty or blank)")
        if given_vocab is None:
            counts = np.zeros(len(table), np.int64)  # [table] training counts by provisional id
            for _, block in _blocks(*files["train"], rows):
                counts += np.bincount(block, minlength=len(table))
            tokens, remap = prep._build_vocab(counts, table, min_count, max_vocab)
        else:
            tokens, remap = given_vocab.tokens, prep._vocab_remap(given_vocab, table)
        del table
        options = prep.manifest_options(inputs, sample, min_count, max_vocab, vocab, valid,
                                        test, fractions, seed, errors)
        order = [name for name in SPLITS if name in files or name in held]
        with atomic_directory(out_dir) as tmp:
            stats, final_counts = {}, None
            for name in order:
                blocks = (_blocks(*files[name], rows) if name in files
                          else [(0, held[name])])
                total = files[name][1] if name in files else len(held[name])
                st, c = _write_split(tmp / f"{name}.npy", blocks, total, remap, len(tokens),
                                     count=name == "train")
                stats[name] = st
                final_counts = c if name == "train" else final_counts
            final_counts[1] = final_counts[EOS]  # one <s> per sentence
            corpus = Corpus(Vocab(tokens, final_counts), tokenizer, {}, options=options)
            with open(tmp / "vocab.txt", "w", encoding="utf-8", newline="\n") as f:
                corpus.vocab.write(f)
            manifest = corpus.manifest
            manifest["splits"] = {name: {"file": f"{name}.npy", "dtype": "uint32",
                                         **stats[name], "sha256": _sha256(tmp / f"{name}.npy")}
                                  for name in order}
            with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
                json.dump(manifest, f, ensure_ascii=False, indent=2)
                f.write("\n")
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _read_to_file(paths, tokenizer, table, errors, progress, path: Path, rows: int):
    """prepare._read, appending the provisional ids to `path` every `rows` ids: (ids, sentences)."""
    n = sentences = 0
    with open(path, "wb") as f:
        buf = array(prep.ID_TYPECODE)

        def flush():
            nonlocal buf, n, sentences
            ids = np.frombuffer(buf, np.uint32) if len(buf) else np.zeros(0, np.uint32)
            sentences += int(np.count_nonzero(ids == EOS))
            n += len(ids)
            _write_ids(f, ids)
            buf = array(prep.ID_TYPECODE)

        lookup = table.__getitem__
        split_lines = tokenizer.split_lines
        for p in paths:
            for _, text in read_blocks(p, errors, progress):
                extend, append = buf.extend, buf.append
                if len(text) > prep.LONG_LINE and tokenizer.level == "word":
                    prep._read_long(text, split_lines, lookup, extend, append)
                else:
                    for tokens in split_lines(text):
                        if tokens:
                            extend(map(lookup, tokens))
                            append(EOS)
                if len(buf) >= rows:
                    flush()
        flush()
    return n, sentences


def _write_split(path: Path, blocks, n: int, remap: np.ndarray, V: int, count: bool):
    """The .npy of one split (np.save's bytes) from blocks of provisional ids, remapped; its
    manifest statistics (corpus._stats) and, for the training split, the counts by final id."""
    counts = np.zeros(V, np.int64) if count else None
    sentences = oov = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.dtype(np.uint32).str, "fortran_order": False, "shape": (n,)})
        for _, block in blocks:
            ids = remap[block]
            sentences += int(np.count_nonzero(ids == EOS))
            oov += int(np.count_nonzero(ids == UNK))
            if count:
                counts += np.bincount(ids, minlength=V)
            _write_ids(f, ids)
    tokens = n - sentences
    return {"sentences": sentences, "tokens": tokens, "oov": oov,
            "oov_rate": round(oov / tokens, 6) if tokens else 0.0}, counts
