"""A scene corpus that works offline: small images of simple shapes with several differently
worded captions each -- the captioning counterpart of the long-dependency corpus (synth.py) and
the bundled demo -- and the frozen demo feature extractor that reads them.

Dimension letters: N images, S image side (pixels), F filters, G grid side, D feature size.

A scene holds one object, or two objects one above the other or side by side. An object has a
shape (circle, square, triangle), a colour (red, green, blue, yellow) and a size (small, large).
Captions say what is there, e.g. "a small red circle above a blue square", "two green triangles
side by side". Scenes and captions are a function of (seed, index) alone.

Drawing needs Pillow (the `rnnkit[images]` extra); describing scenes does not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .textio import atomic_directory, check_replaceable_dir

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 220),
           "yellow": (235, 210, 40)}
SIZES = ("small", "large")
SIDE = 64          # S: the images are S x S pixels
BACKGROUND = (235, 235, 235)
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}


def need_pillow():
    """Pillow's Image and ImageDraw, or an InputError that says how to install them."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise InputError("drawing and reading images needs Pillow: pip install 'rnnkit[images]'"
                         ) from None
    return Image, ImageDraw


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str

    def words(self, with_size: bool = True) -> str:
        return f"{self.size} {self.colour} {self.shape}" if with_size else \
            f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    layout: str  # "single", "vertical" (objects[0] above objects[1]), "horizontal" (0 left of 1)
    jitter: tuple[int, int]

    def captions(self) -> list[str]:
        """Several wordings of what the scene shows (all true of it)."""
        if self.layout == "single":
            o = self.objects[0]
            return [f"a {o.words()}", f"there is a {o.words()}", f"a {o.words()} on its own",
                    f"one {o.words(False)}"]
        a, b = self.objects
        if a == b:
            n = f"{a.size} {a.colour} {PLURAL[a.shape]}"
            if self.layout == "vertical":
                return [f"two {n} one above the other", f"two {n} stacked",
                        f"a pair of {a.colour} {PLURAL[a.shape]} one above the other"]
            return [f"two {n} side by side", f"two {n} next to each other",
                    f"a pair of {a.colour} {PLURAL[a.shape]} side by side"]
        if self.layout == "vertical":
            return [f"a {a.words()} above a {b.words()}", f"a {b.words()} below a {a.words()}",
                    f"a {a.words(False)} over a {b.words(False)}"]
        return [f"a {a.words()} left of a {b.words()}", f"a {b.words()} right of a {a.words()}",
                f"a {a.words(False)} beside a {b.words(False)}"]


def scene(seed: int, index: int) -> Scene:
    """Scene number `index` of the corpus `seed`: one object in 2 scenes of 5, two different
    objects in 2 of 5, two identical ones in 1 of 5."""
    rng = np.random.default_rng([seed, index])

    def obj():
        return Obj(SHAPES[rng.integers(3)], list(COLOURS)[rng.integers(4)], SIZES[rng.integers(2)])

    kind = rng.integers(5)
    jitter = (int(rng.integers(-4, 5)), int(rng.integers(-4, 5)))
    if kind < 2:
        return Scene((obj(),), "single", jitter)
    layout = "vertical" if rng.integers(2) else "horizontal"
    a = obj()
    b = a if kind == 4 else obj()
    while b == a and kind != 4:
        b = obj()
    return Scene((a, b), layout, jitter)


def draw(sc: Scene):
    """The scene as an S x S RGB Pillow image."""
    Image, ImageDraw = need_pillow()
    img = Image.new("RGB", (SIDE, SIDE), BACKGROUND)
    d = ImageDraw.Draw(img)
    jx, jy = sc.jitter
    if sc.layout == "single":
        centres = [(SIDE // 2 + jx, SIDE // 2 + jy)]
    elif sc.layout == "vertical":
        centres = [(SIDE // 2 + jx, SIDE // 4 + 2 + jy), (SIDE // 2 + jx, 3 * SIDE // 4 - 2 + jy)]
    else:
        centres = [(SIDE // 4 + 2 + jx, SIDE // 2 + jy), (3 * SIDE // 4 - 2 + jx, SIDE // 2 + jy)]
    for o, (cx, cy) in zip(sc.objects, centres):
        r = (6 if o.size == "small" else 12) if sc.layout != "single" else \
            (8 if o.size == "small" else 18)
        box = [cx - r, cy - r, cx + r, cy + r]
        colour = COLOURS[o.colour]
        if o.shape == "circle":
            d.ellipse(box, fill=colour)
        elif o.shape == "square":
            d.rectangle(box, fill=colour)
        else:
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return img


def _is_scenes_dir(out: Path) -> bool:
    return {p.name for p in out.iterdir()} <= {"images", "captions.tsv"}


def write_scenes(out_dir: str | os.PathLike, n: int, seed: int = 0, start: int = 0) -> dict:
    """DIR/images/scene-NNNNNN.png and DIR/captions.tsv (image_id<TAB>caption, every wording
    of every scene), written atomically; returns a summary."""
    if n < 1:
        raise InputError(f"--scenes must be at least 1, got {n}")
    need_pillow()
    out = Path(out_dir)
    check_replaceable_dir(out, _is_scenes_dir, "a scenes directory (it holds more than images/ "
                          "and captions.tsv)")
    lines = 0
    with atomic_directory(out) as tmp:
        (tmp / "images").mkdir()
        with open(tmp / "captions.tsv", "w", encoding="utf-8", newline="\n") as f:
            for i in range(start, start + n):
                sc = scene(seed, i)
                name = f"scene-{i:06d}.png"
                draw(sc).save(tmp / "images" / name, format="PNG")
                for c in sc.captions():
                    f.write(f"{name}\t{c}\n")
                    lines += 1
    return {"out": str(out), "images": n, "captions": lines, "seed": seed}


# ------------------------------------------------------------------------------------------------
# the demo feature extractor
# ------------------------------------------------------------------------------------------------
DEMO_SIZE = 64      # images are resized to DEMO_SIZE x DEMO_SIZE
DEMO_FILTERS = 16   # F fixed random 5x5 filters
DEMO_GRID = 4       # G: the filter responses are max- and mean-pooled over a G x G grid
DEMO_THUMB = 8      # and the image itself is kept as a DEMO_THUMB x DEMO_THUMB colour thumbnail
DEMO_DIM = 2 * DEMO_FILTERS * DEMO_GRID * DEMO_GRID + DEMO_THUMB * DEMO_THUMB * 3  # D = 704
DEMO_VERSION = 1    # raise it whenever demo_features computes anything differently


def demo_extractor_record() -> dict:
    """The demo extractor's identity, as features files and caption models record it: features
    of two records that differ are not interchangeable."""
    return {"kind": "demo", "version": DEMO_VERSION, "size": DEMO_SIZE, "filters": DEMO_FILTERS,
            "filter_seed": 0, "grid": DEMO_GRID, "thumb": DEMO_THUMB, "layout": "pooled",
            "dim": DEMO_DIM}


def _demo_filters() -> np.ndarray:
    """[F, 3, 5, 5] zero-mean random filters, fixed by the seed 0: a frozen, untrained CNN layer."""
    w = np.random.default_rng(0).normal(size=(DEMO_FILTERS, 3, 5, 5))
    w -= w.mean(axis=(1, 2, 3), keepdims=True)
    return (w / np.sqrt((w * w).sum(axis=(1, 2, 3), keepdims=True))).astype(np.float32)


def demo_features(pixels: np.ndarray) -> np.ndarray:
    """The demo extractor: pixels [N, S, S, 3] uint8 (S = DEMO_SIZE) -> features [N, D = 704].

    Not a trained network: one layer of F fixed random 5x5 convolutions (seed 0) with ReLU,
    max- and mean-pooled over a 4 x 4 grid (where edges and corners are, and how much of
    each), concatenated with an 8 x 8
    colour thumbnail (what colour is where). It is frozen, as the CNN of transfer learning is;
    only the caption model's projection learns to read it."""
    x = pixels.astype(np.float32) / 255.0                                     # [N, S, S, 3]
    N, S = x.shape[:2]
    w = _demo_filters()                                                       # [F, 3, 5, 5]
    pad = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    patches = np.lib.stride_tricks.sliding_window_view(pad, (5, 5), axis=(1, 2))  # [N,S,S,3,5,5]
    resp = np.maximum(np.einsum("nijcuv,fcuv->nijf", patches, w, optimize=True), 0)  # [N,S,S,F]
    c = S // DEMO_GRID
    cells = resp.reshape(N, DEMO_GRID, c, DEMO_GRID, c, DEMO_FILTERS)
    pooled = np.concatenate([cells.max(axis=(2, 4)), cells.mean(axis=(2, 4))], axis=-1)
    t = S // DEMO_THUMB
    thumb = x.reshape(N, DEMO_THUMB, t, DEMO_THUMB, t, 3).mean(axis=(2, 4))
    return np.concatenate([pooled.reshape(N, -1), thumb.reshape(N, -1)], axis=1).astype(
        np.float32)
