"""Features out of images: decode (Pillow), resize, normalise, run a frozen CNN -- an ONNX model
through ONNX Runtime, or rnnkit's demo extractor (scenes.demo_features) -- in batches.

Dimension letters: N images, C channels, S image side, D feature size, R grid cells.

Pillow and onnxruntime form the optional extra `rnnkit[images]`; nothing is downloaded.

Every features file records the extractor that made it (`extractor_record`): the demo extractor
with its version and parameters, or an ONNX model's file name, sha256, output layer, input size,
mean, std and layout (pooled or grid). A caption model keeps the record of its training features,
so captioning refuses features of another extractor (`check_extractor`) and re-extracts images with
the model's own settings (`extract_for_model`). Two records name the same extractor when they
agree on everything but the ONNX file's name.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from .captions import Features
from .scenes import DEMO_SIZE, demo_extractor_record, demo_features, need_pillow

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def list_images(inputs) -> list[Path]:
    """Image files of the given files and directories (a directory's images, sorted by name)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such image file or directory")
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in "
                         f"{', '.join(map(str, inputs))}")
    return files


def load_pixels(paths: list[Path], size: int) -> np.ndarray:
    """Images decoded to RGB and resized to size x size (bilinear): [N, S, S, 3] uint8."""
    Image, _ = need_pillow()
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                out[i] = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: cannot decode the image ({e})") from None
    return out


def _onnx_session(model_path: str | os.PathLike, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError("--onnx needs ONNX Runtime: pip install 'rnnkit[images]'") from None
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors for a bad model file
        raise InputError(f"{model_path}: ONNX Runtime cannot load the model ({e})") from None


def extract_features(inputs, onnx: str | os.PathLike | None = None, *, size: int | None = None,
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     output: str | None = None, batch: int = 32, threads: int | None = None,
                     progress: Callable[[int], None] | None = None) -> Features:
    """Features of images (files or directories), one row per image in sorted-id order (the id
    is the file name).

    Without `onnx`, the demo extractor (32 x 32 pixels, its own fixed normalisation). With an
    ONNX model: images resized to size x size, scaled to [0, 1], normalised by (x - mean) / std
    per channel (ImageNet's by default), fed NCHW float32 in batches; `output` names the layer to
    take (default: the model's first output): [N, D] is kept, [N, D, h, w] becomes a spatial
    grid [N, h*w, D] (for attention), [N, D, 1, 1] a vector."""
    files = list_images(inputs)
    files = sorted(files, key=lambda f: f.name)
    ids = [f.name for f in files]
    if len(set(ids)) != len(ids):
        raise InputError("two images share a file name (the image id); give one directory")
    if batch < 1:
        raise InputError(f"--batch must be at least 1, got {batch}")
    if size is not None and onnx is None:
        raise InputError("--size sets the ONNX model's input size; give --onnx (the demo "
                         f"extractor reads {DEMO_SIZE} x {DEMO_SIZE})")
    if size is not None and not 1 <= size <= 4096:
        raise InputError(f"--size must be between 1 and 4096 pixels, got {size}")
    rows = []
    if onnx is None:
        for s in range(0, len(files), batch):
            rows.append(demo_features(load_pixels(files[s:s + batch], DEMO_SIZE)))
            if progress:
                progress(len(files[s:s + batch]))
        return Features(ids, np.concatenate(rows), "demo extractor", demo_extractor_record())
    sess = _onnx_session(onnx, threads)
    inp = sess.get_inputs()[0]
    if size is None:
        shape = inp.shape
        size = shape[-1] if isinstance(shape[-1], int) else 224
    names = [o.name for o in sess.get_outputs()]
    if output is not None and output not in names:
        raise InputError(f"{onnx}: no output named {output!r}; it has {', '.join(names)}")
    out_name = output or names[0]
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    if np.any(std <= 0):
        raise InputError("--std must be positive")
    for s in range(0, len(files), batch):
        x = load_pixels(files[s:s + batch], size).transpose(0, 3, 1, 2).astype(np.float32) / 255
        x = (x - mean) / std                                                  # [n, 3, S, S]
        try:
            (y,) = sess.run([out_name], {inp.name: np.ascontiguousarray(x)})
        except Exception as e:  # onnxruntime's own untyped errors: a wrong size, a bad graph
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{onnx}: ONNX Runtime cannot run the model on {size} x {size} "
                             f"images ({first}); check --size against the model's input "
                             f"{list(inp.shape)}") from None
        y = np.asarray(y, np.float32)
        if y.ndim == 4:
            y = y.reshape(y.shape[0], y.shape[1], -1).transpose(0, 2, 1)      # [n, R, D]
            if y.shape[1] == 1:
                y = y[:, 0]
        elif y.ndim != 2:
            raise InputError(f"{onnx}: output {out_name!r} has shape {list(y.shape)}; take a "
                             f"pooled [N, D] or a grid [N, D, h, w] layer (--output)")
        rows.append(y)
        if progress:
            progress(len(x))
    arr = np.ascontiguousarray(np.concatenate(rows))
    record = {"kind": "onnx", "file": Path(onnx).name, "sha256": file_sha256(onnx),
              "output": out_name, "input_size": int(size),
              "mean": [float(v) for v in mean.reshape(-1)],
              "std": [float(v) for v in std.reshape(-1)],
              "layout": "grid" if arr.ndim == 3 else "pooled", "dim": int(arr.shape[-1])}
    return Features(ids, arr, str(onnx), record)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _identity(record: dict) -> dict:
    """What decides the features: the record without the ONNX file's name (a renamed file
    makes the same features), floats as JSON writes them."""
    return json.loads(json.dumps({k: v for k, v in record.items() if k != "file"},
                                 sort_keys=True))


def describe_extractor(record: dict | None) -> str:
    if record is None:
        return "an unrecorded extractor"
    if record.get("kind") == "demo":
        return f"rnnkit's demo extractor (version {record.get('version')})"
    return (f"ONNX model {record.get('file')} (sha256 {str(record.get('sha256'))[:12]}..., output "
            f"{record.get('output')!r}, {record.get('input_size')} px, mean "
            f"{record.get('mean')}, std {record.get('std')}, {record.get('layout')})")


def check_extractor(model_record: dict | None, features: Features, model_name: str
                    ) -> str | None:
    """InputError when the features were made by another extractor than the model's training
    features; a warning (text) when either side has no record (files older than the record)."""
    if model_record is None or features.extractor is None:
        which = model_name if model_record is None else features.source
        return (f"{which} does not record which extractor made its features (an older file); "
                f"the features cannot be checked against the model's")
    if _identity(model_record) != _identity(features.extractor):
        diff = sorted(k for k in set(model_record) | set(features.extractor) if k != "file"
                      and _identity(model_record).get(k) != _identity(features.extractor).get(k))
        raise InputError(f"{features.source}: features made by "
                         f"{describe_extractor(features.extractor)}, but {model_name} was trained "
                         f"on features of {describe_extractor(model_record)} (they differ in "
                         f"{', '.join(diff)}); give the images instead and the model's "
                         f"extractor runs on them")
    return None


def extract_for_model(inputs, model_record: dict | None, onnx: str | os.PathLike | None,
                      model_path: str | os.PathLike, *, batch: int = 32,
                      threads: int | None = None) -> tuple[Features, str | None]:
    """Features of images made the way the model's training features were (its extractor
    record): (features, a warning or None). An ONNX model is `onnx`, else the recorded file
    beside the model or in the working directory; its sha256 must match the record."""
    if model_record is None:
        return (extract_features(inputs, onnx, batch=batch, threads=threads),
                f"{model_path} does not record which extractor made its training features (an "
                f"older model); using {'--onnx ' + str(onnx) if onnx else 'the demo extractor'} "
                f"with its default settings")
    if model_record.get("kind") == "demo":
        if onnx is not None:
            raise InputError(f"{model_path} was trained on features of rnnkit's demo extractor, "
                             f"not of an ONNX model: drop --onnx {onnx}")
        if _identity(model_record) != _identity(demo_extractor_record()):
            raise InputError(f"{model_path} was trained on features of "
                             f"{describe_extractor(model_record)}; this rnnkit has "
                             f"{describe_extractor(demo_extractor_record())}: use the rnnkit "
                             f"release that trained the model")
        return extract_features(inputs, batch=batch), None
    if model_record.get("kind") != "onnx":
        raise InputError(f"{model_path}: unknown feature extractor {model_record.get('kind')!r} "
                         f"in the model file")
    name, sha = model_record.get("file", ""), model_record.get("sha256")
    if onnx is None:
        found = [p for p in (Path(model_path).parent / name, Path(name)) if name and p.is_file()]
        if not found:
            raise InputError(f"{model_path} was trained on features of "
                             f"{describe_extractor(model_record)}: give that model with --onnx")
        onnx = found[0]
    if file_sha256(onnx) != sha:
        raise InputError(f"{onnx}: not the ONNX model {model_path} was trained with (sha256 "
                         f"differs from {name}'s, {str(sha)[:12]}...); give that file with --onnx")
    return extract_features(inputs, onnx, size=model_record["input_size"],
                            mean=model_record["mean"], std=model_record["std"],
                            output=model_record["output"], batch=batch, threads=threads), None
