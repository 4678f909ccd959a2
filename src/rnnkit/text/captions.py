"""Captioning data: image features and captions, read strictly.

Dimension letters: N images, D feature size (R grid cells, for a spatial grid [N, R, D]).

Features (one row per image, ids telling which):
  NAME.safetensors   one tensor [N, D] (or [N, R, D]); the image ids, in row order, as a JSON
                     list in the metadata entry "ids" (what `rnnkit features` writes)
  NAME.npy           [N, D]; ids from NAME.ids (one per line) beside it, else the row numbers
  vgg_feats.mat      Karpathy's neuraltalk layout: `feats` [D, N] (one column per image), ids
                     from dataset.json beside it (images[i].filename; its sentences are
                     captions too) or tasks.txt (one file name per line), else the row numbers
Captions: `image_id<TAB>caption` lines (several lines per image), UTF-8.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from .textio import atomic_write, read_lines

FEATURES_KEY = "features"


@dataclass
class Features:
    """Image features with their ids: array [N, D] (or [N, R, D]), ids [N]."""

    ids: list[str]
    array: np.ndarray
    source: str = ""
    extractor: dict | None = None   # what made them (text/images.py), None when unknown

    def __post_init__(self):
        if len(self.ids) != len(self.array):
            raise InputError(f"{self.source}: {len(self.array)} feature rows but {len(self.ids)} "
                             f"image ids")
        if len(set(self.ids)) != len(self.ids):
            seen: set = set()
            dup = next(i for i in self.ids if i in seen or seen.add(i))
            raise InputError(f"{self.source}: image id {dup!r} appears twice")
        if self.array.ndim not in (2, 3):
            raise InputError(f"{self.source}: features must be [images, D] (or a grid [images, "
                             f"R, D]), got shape {list(self.array.shape)}")
        bad = ~np.isfinite(self.array.reshape(len(self.array), -1)).all(axis=1)
        if bad.any():
            first = self.ids[int(np.argmax(bad))]
            raise InputError(f"{self.source}: the features of image {first!r}"
                             f" hold NaN or infinite values ({int(bad.sum())} images in all); "
                             f"re-extract them")
        self.index = {i: n for n, i in enumerate(self.ids)}

    @property
    def size(self) -> int:
        return self.array.shape[-1]

    def rows(self, ids) -> np.ndarray:
        """The features of the given ids, in that order; InputError for an unknown id."""
        try:
            return self.array[[self.index[i] for i in ids]]
        except KeyError as e:
            raise InputError(f"{self.source}: no features for image id {e.args[0]!r}") from None


def _sidecar_ids(path: Path, n: int) -> list[str]:
    side = path.with_suffix(".ids")
    if side.is_file():
        return [line for _, line in read_lines(side) if line.strip()]
    return [str(i) for i in range(n)]


def read_features(path: str | os.PathLike) -> Features:
    """Features from .safetensors, .npy or neuraltalk's .mat (see the module's docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such features file")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            tensors = load_file(str(p))
            from safetensors import safe_open
            with safe_open(str(p), "np") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"{p}: not a readable safetensors file ({e})") from None
        if FEATURES_KEY in tensors:
            arr = tensors[FEATURES_KEY]
        elif len(tensors) == 1:
            arr = next(iter(tensors.values()))
        else:
            raise InputError(f"{p}: {len(tensors)} tensors and none named {FEATURES_KEY!r}; "
                             f"which one holds the features?")
        try:
            ids = [str(i) for i in json.loads(meta["ids"])] if "ids" in meta \
                else [str(i) for i in range(len(arr))]
        except (json.JSONDecodeError, TypeError):
            raise InputError(f"{p}: the metadata entry 'ids' is not a JSON list") from None
        extractor = None
        if "extractor" in meta:
            try:
                extractor = json.loads(meta["extractor"])
            except json.JSONDecodeError:
                extractor = None
            if not isinstance(extractor, dict):
                raise InputError(f"{p}: the metadata entry 'extractor' is not a JSON object "
                                 f"(a damaged file? re-extract with `rnnkit features`)")
    elif suffix == ".npy":
        extractor = None
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"{p}: not a numeric .npy array ({e})") from None
        ids = _sidecar_ids(p, len(arr))
    elif suffix == ".mat":
        extractor = None
        arr, ids = _read_neuraltalk(p)
    else:
        raise InputError(f"{p}: unknown features format {p.suffix!r}: use .safetensors, .npy or "
                         f"neuraltalk's .mat")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return Features(ids, np.ascontiguousarray(arr, np.float32), str(p), extractor)


def _read_neuraltalk(p: Path) -> tuple[np.ndarray, list[str]]:
    from scipy.io import loadmat
    try:
        mat = loadmat(str(p))
    except (ValueError, OSError, NotImplementedError) as e:
        raise InputError(f"{p}: not a readable MATLAB file ({e})") from None
    if "feats" not in mat:
        raise InputError(f"{p}: no 'feats' matrix (neuraltalk's vgg_feats.mat has feats [D, N])")
    arr = np.asarray(mat["feats"]).T                   # [N, D]: neuraltalk stores one column each
    dataset, tasks = p.parent / "dataset.json", p.parent / "tasks.txt"
    if dataset.is_file():
        ids = [img.get("filename", str(img.get("imgid", i)))
               for i, img in enumerate(_dataset_images(dataset))]
    elif tasks.is_file():
        ids = [line.strip() for _, line in read_lines(tasks) if line.strip()]
    else:
        ids = [str(i) for i in range(len(arr))]
    if len(ids) != len(arr):
        src = dataset if dataset.is_file() else tasks
        raise InputError(f"{p}: {len(arr)} feature columns but {src} lists {len(ids)} images")
    return arr, ids


def _dataset_images(path: Path) -> list[dict]:
    try:
        images = json.loads(path.read_text("utf-8"))["images"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not neuraltalk's dataset.json (an 'images' list): {e}") from None
    return images


def write_features(path: str | os.PathLike, features: Features) -> None:
    """One [N, D] (or [N, R, D]) float32 tensor, and the ids and the extractor's record in the
    metadata, atomically."""
    from safetensors.numpy import save
    meta = {"ids": json.dumps(features.ids, ensure_ascii=False)}
    if features.extractor is not None:
        meta["extractor"] = json.dumps(features.extractor, sort_keys=True)
    data = save({FEATURES_KEY: np.ascontiguousarray(features.array, np.float32)}, metadata=meta)
    with atomic_write(path, "wb") as f:
        f.write(data)


def read_captions(path: str | os.PathLike) -> "OrderedDict[str, list[str]]":
    """image id -> its captions, from `image_id<TAB>caption` lines (or neuraltalk's
    dataset.json: each image's sentences' raw text). Strict: a line without a tab or with an
    empty caption is an error that names the line."""
    if os.fspath(path) == "-":  # image_id<TAB>caption lines from stdin
        return _caption_lines("standard input", read_lines("-"))
    p = Path(path)
    if p.is_dir():
        for name in ("captions.tsv", "dataset.json"):
            if (p / name).is_file():
                return read_captions(p / name)
        raise InputError(f"{p}: no captions.tsv (image_id<TAB>caption lines) or dataset.json")
    if not p.is_file():
        raise InputError(f"{p}: no such captions file")
    caps: OrderedDict[str, list[str]] = OrderedDict()
    if p.suffix.lower() == ".json":
        for i, img in enumerate(_dataset_images(p)):
            key = img.get("filename", str(img.get("imgid", i)))
            caps[key] = [s.get("raw") or " ".join(s["tokens"]) for s in img.get("sentences", [])]
        return caps
    return _caption_lines(p, read_lines(p))


def _caption_lines(p, lines) -> "OrderedDict[str, list[str]]":
    caps: OrderedDict[str, list[str]] = OrderedDict()
    for number, line in lines:
        if not line.strip():
            continue
        image_id, tab, text = line.partition("\t")
        if not tab:
            raise FormatError(f"{p}:{number}: expected image_id<TAB>caption, found no tab in "
                              f"{line[:60]!r}")
        if not text.strip() or not image_id.strip():
            what = "caption" if image_id.strip() else "image id"
            raise FormatError(f"{p}:{number}: an empty {what}")
        caps.setdefault(image_id.strip(), []).append(text.strip())
    if not caps:
        raise InputError(f"{p}: no captions")
    return caps


def check_aligned(features: Features, captions: dict, captions_path: str = "the captions"
                  ) -> None:
    """Every captioned image has features and every image with features has captions."""
    missing = [i for i in captions if i not in features.index]
    if missing:
        raise InputError(f"{captions_path}: {len(missing)} captioned images have no features in "
                         f"{features.source} (first: {missing[0]!r}); were the features "
                         f"extracted from the same images?")
    extra = [i for i in features.ids if i not in captions]
    if extra:
        raise InputError(f"{features.source}: {len(features.ids)} images have features but "
                         f"{captions_path} captions {len(captions)} (first without a caption: "
                         f"{extra[0]!r}); give features and captions of the same images")
