"""Features out of images: decode (Pillow), resize, normalise, run a frozen CNN -- an ONNX model
through ONNX Runtime, or rnnkit's demo extractor (scenes.demo_features) -- in batches.

Dimension letters: N images, C channels, S image side, D feature size, R grid cells.

Pillow and onnxruntime form the optional extra `rnnkit[images]`; nothing is downloaded.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from .captions import Features
from .scenes import DEMO_SIZE, demo_features, need_pillow

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
    rows = []
    if onnx is None:
        for s in range(0, len(files), batch):
            rows.append(demo_features(load_pixels(files[s:s + batch], DEMO_SIZE)))
            if progress:
                progress(len(files[s:s + batch]))
        return Features(ids, np.concatenate(rows), "demo extractor")
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
        (y,) = sess.run([out_name], {inp.name: np.ascontiguousarray(x)})
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
    return Features(ids, np.ascontiguousarray(np.concatenate(rows)), str(onnx))
