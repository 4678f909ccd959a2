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
from safetensors.numpy import save as st_save

from .errors import ModelFileError
from .text.textio import atomic_write

FORMAT = "rnnkit-model"
FORMAT_VERSION = 1
META_KEY = "rnnkit"


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write tensors and metadata atomically. `meta` is completed with format and version."""
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    data = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                   metadata={META_KEY: json.dumps(doc, ensure_ascii=False)})
    with atomic_write(path, "wb") as f:
        f.write(data)


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


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Tensors and metadata of an rnnkit model file; ModelFileError if it is not one."""
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
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{p}: model format version {meta.get('format_version')} is not supported by this "
            f"rnnkit (it reads version {FORMAT_VERSION}); upgrade rnnkit or retrain the model")
    tensors = load_tensors(p)
    return tensors, meta


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays; ModelFileError if it is damaged."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: damaged or truncated model file ({e})") from None
