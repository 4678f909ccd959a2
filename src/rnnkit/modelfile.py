"""rnnkit model files: one safetensors file, tensors by name plus one JSON metadata document.

The JSON document sits under the safetensors `__metadata__` key "rnnkit" and holds at least
`format` ("rnnkit-model"), `format_version`, `model_type` (e.g. "ngram", "lstm"), the vocabulary,
the tokenizer and the training manifest. Loading parses the header and copies tensors: it never
runs code (no pickle).

This module is the format only; rnnkit.load knows the model types.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from .errors import ModelFileError
from .text.textio import atomic_write

FORMAT = "rnnkit-model"
# 2: n-gram files hold no ctx arrays, no top-order backoff and int32 start arrays where they
# fit (31% smaller); every other model type is unchanged. Files of every version here load.
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
META_KEY = "rnnkit"


# the order in which safetensors lays out tensors: by dtype in this order, then by name
_WRITE_ORDER = ("U64", "I64", "F64", "F32", "U32", "I32", "F16", "U16", "I16", "I8", "U8", "BOOL")


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write tensors and metadata atomically. `meta` is completed with format and version.

    The file is streamed: header, then each tensor's bytes straight from its array, so writing
    costs no copy of the model (safetensors' own `save` builds the whole file in memory first:
    +146 MiB at the peak of training the WikiText-2 5-gram). The bytes are those `save` writes.
    """
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    names = {np.dtype(v): k for k, v in _DTYPES.items()}
    arrays, kinds = {}, {}
    for name, value in tensors.items():
        a = np.asarray(value)
        little = a.dtype.newbyteorder("<")
        if little not in names:
            raise ModelFileError(f"tensor {name!r}: dtype {a.dtype} cannot be stored")
        arrays[name] = np.ascontiguousarray(a, little)  # [...] as the file stores it
        kinds[name] = names[little]
    order = sorted(arrays, key=lambda k: (_WRITE_ORDER.index(kinds[k]), k))
    header = {"__metadata__": {META_KEY: json.dumps(doc, ensure_ascii=False)}}
    offset = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": kinds[name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors pads it
    with atomic_write(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in order:
            if arrays[name].nbytes:
                f.write(memoryview(arrays[name].reshape(-1)).cast("B"))


def read_header(path: str | os.PathLike) -> dict | None:
    """The safetensors JSON header of `path`, or None when the file is not safetensors."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > 100_000_000 or n > p.stat().st_size - 8:
                return None
            raw = f.read(n)
    except FileNotFoundError:
        raise ModelFileError(f"{p}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{p}: is a directory, expected a model file") from None
    except PermissionError:
        raise ModelFileError(f"{p}: permission denied (cannot read the model file)") from None
    except OSError as e:
        raise ModelFileError(f"{p}: cannot read: {e.strerror or e}") from None
    if not raw.lstrip().startswith(b"{"):
        return None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__") or {}, dict):
        return None
    return header


def model_type(header: dict) -> str | None:
    """The model type named in a safetensors header's rnnkit metadata (None: none or damaged)."""
    try:
        return json.loads((header.get("__metadata__") or {})[META_KEY]).get("model_type")
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError):
        return None


def read(path: str | os.PathLike, mmap: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Tensors and metadata of an rnnkit model file; ModelFileError if it is not one.

    mmap: the tensors are read-only views of the file mapped into memory (map_tensors) rather
    than copies: nothing is read until used, and processes mapping one file share its pages."""
    p = Path(path)
    header = read_header(p)
    if header is None:
        raise ModelFileError(f"{p}: not an rnnkit model file (not safetensors)")
    meta_raw = (header.get("__metadata__") or {}).get(META_KEY)
    if meta_raw is None:
        raise ModelFileError(
            f"{p}: a safetensors file without rnnkit metadata; for a PyTorch state dict use "
            f"`rnnkit import-torch` with --vocab")
    try:
        meta = json.loads(meta_raw)
    except (json.JSONDecodeError, TypeError, RecursionError):
        raise ModelFileError(f"{p}: the rnnkit metadata is not valid JSON (corrupted file?)") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{p}: the rnnkit metadata is not a JSON object (corrupted file?)")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{p}: unknown model format {meta.get('format')!r}")
    if meta.get("format_version") not in READ_VERSIONS:
        raise ModelFileError(
            f"{p}: model format version {meta.get('format_version')} is not supported by this "
            f"rnnkit (it reads versions {READ_VERSIONS[0]} to {READ_VERSIONS[-1]}); upgrade "
            f"rnnkit or retrain the model")
    tensors = map_tensors(p, header) if mmap else load_tensors(p)
    return tensors, meta


# safetensors dtype names -> numpy (the ones numpy has)
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
           "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}


def map_tensors(path: str | os.PathLike, header: dict | None = None) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as read-only arrays over one memory map of it, at the
    header's data offsets (little-endian, as the format stores them). Checks that every tensor
    lies inside the file and its byte length matches its shape; ModelFileError otherwise."""
    p = Path(path)
    header = read_header(p) if header is None else header
    if header is None:
        raise ModelFileError(f"{p}: not a safetensors file")
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    size = p.stat().st_size
    base = 8 + n
    try:
        whole = np.memmap(p, dtype=np.uint8, mode="r") if size > base else np.zeros(0, np.uint8)
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{p}: cannot map the model file ({e})") from None
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{p}: tensor {name!r} has a damaged header entry") from None
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= begin <= end and base + end <= size) or end - begin != count * dtype.itemsize:
            raise ModelFileError(f"{p}: tensor {name!r} lies outside the file or does not match "
                                 f"its shape (damaged or truncated model file)")
        out[name] = whole[base + begin:base + end].view(dtype).reshape(shape)
    return out


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays; ModelFileError if it is damaged."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: damaged or truncated model file ({e})") from None
