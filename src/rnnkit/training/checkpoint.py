"""The files a training run writes beside its model: the checkpoint and metrics.jsonl.

A checkpoint (`MODEL.ckpt`) is a safetensors file, never pickle. Its tensors: `params` and
`best_params` (the flat parameter buffer [P], now and at the best epoch), the optimizer's state
(`adam.m`, `adam.v` [P]) and whatever state the task carries between batches (the language
model's `state.h`, `state.c` [L, B, H]). Its metadata: one JSON document under the key
`rnnkit-checkpoint`, with `format`, `format_version` and everything else the run needs to go on
(options, position, learning rate, RNG state, records; see training.loop.Trainer).

metrics.jsonl (`MODEL.metrics.jsonl`) holds one JSON record per line, appended as training goes:
`{"kind": "train", ...}` a few times per epoch, `{"kind": "epoch", ...}` after each epoch and
`{"kind": "test", ...}` at the end. The model file keeps the same records in its metadata.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save

from .. import modelfile
from ..errors import FormatError, InputError, ModelFileError
from ..text.textio import atomic_write

CHECKPOINT_FORMAT = "rnnkit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_KEY = "rnnkit-checkpoint"


def model_out_path(out_path: str | os.PathLike) -> Path:
    """--out of a training run, checked before any work: a file name in an existing directory."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise InputError(f"{out_path}: is a directory; --out needs a file name")
    if not out_path.parent.is_dir() and str(out_path.parent):
        raise InputError(f"{out_path}: directory {out_path.parent} does not exist")
    return out_path


def checkpoint_path(out_path: str | os.PathLike) -> Path:
    p = Path(out_path)
    return p.with_name(p.name + ".ckpt")


def metrics_path(out_path: str | os.PathLike) -> Path:
    p = Path(out_path)
    return p.with_name(p.name + ".metrics.jsonl")


# --- checkpoints ---------------------------------------------------------------------------------
def write_checkpoint(path: Path, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write tensors and metadata atomically; `meta` is completed with format and version."""
    doc = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **meta}
    data = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                   metadata={CHECKPOINT_KEY: json.dumps(doc)})
    with atomic_write(path, "wb") as f:
        f.write(data)


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, metadata) of a checkpoint, or a ModelFileError that says to train afresh."""
    header = modelfile.read_header(path)
    raw = None if header is None else (header.get("__metadata__") or {}).get(CHECKPOINT_KEY)
    if raw is None:
        raise ModelFileError(f"{path}: not an rnnkit training checkpoint (damaged or truncated?); "
                             f"delete it and train without --resume")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the checkpoint's metadata is damaged; delete it and train "
                             f"without --resume")
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("format_version") != CHECKPOINT_VERSION:
        raise ModelFileError(f"{path}: checkpoint format {meta.get('format')!r} version "
                             f"{meta.get('format_version')} is not supported by this rnnkit "
                             f"(it reads version {CHECKPOINT_VERSION}); train without --resume")
    return modelfile.load_tensors(path), meta


# --- metrics -------------------------------------------------------------------------------------
def write_metrics(path: Path, records: list[dict]) -> None:
    """(Re)write metrics.jsonl with `records`, atomically: at the start of a run, or on resume
    with the records of the checkpoint (dropping any written after it)."""
    with atomic_write(path) as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def append_metric(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def load_records(path: str | os.PathLike) -> list[dict]:
    """The metrics of a training run: from a model file (its metadata), or a metrics.jsonl."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    header = modelfile.read_header(p)
    if header is not None:
        _, meta = modelfile.read(p)
        records = (meta.get("training") or {}).get("records")
        if not records:
            raise InputError(f"{p}: the model holds no training metrics (not trained by "
                             f"`rnnkit train` with a recurrent --type)")
        return records
    records = []
    with open(p, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise FormatError(f"{p}:{number}: not a JSON line (expected a metrics.jsonl "
                                  f"written by `rnnkit train`, or a model file)") from None
            if not isinstance(rec, dict) or "kind" not in rec:
                raise FormatError(f"{p}:{number}: not a training-metrics record")
            records.append(rec)
    if not records:
        raise InputError(f"{p}: no training metrics in the file")
    return records
