"""Figures as PNG files: the learning curves of a training run, the gradient-by-distance
curves of `rnnkit diagnose`, and the attention of a translation.

matplotlib is an optional extra (`pip install 'rnnkit[plot]'`): it is imported inside
require_matplotlib only, so that importing this module, and every command that draws nothing,
works without it and does not pay its start-up time.
"""
from __future__ import annotations

import os
import warnings

from ..errors import RnnkitError
from ..text.textio import atomic_write


def require_matplotlib():
    """matplotlib.pyplot with a file-only backend, or an error saying how to install it."""
    try:
        import matplotlib  # optional extra: imported here only (see the module docstring)
    except ImportError:
        raise RnnkitError("plotting needs matplotlib, an optional extra: "
                          "pip install 'rnnkit[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_png_name(path: str | os.PathLike | None, flag: str) -> None:
    """Figures are written as PNG: a name that does not end in .png (a model, a metrics.jsonl
    beside it, a typo) is refused before anything is drawn or overwritten."""
    if path is not None and not os.fspath(path).lower().endswith(".png"):
        raise RnnkitError(f"{flag} {os.fspath(path)}: give a file name ending in .png (the figure "
                          f"is written as PNG)")


def save_figure(plt, fig, ax, out_path: str | os.PathLike) -> None:
    """Grid, legend and layout of a one-axes figure, then written atomically as a PNG (120 dpi)
    and closed."""
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(out_path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def plot_curves(records: list[dict], out_path: str | os.PathLike, title: str = "") -> dict:
    """Training and validation perplexity against epochs (log scale), written as a PNG."""
    plt = require_matplotlib()
    train = [(r["progress"], r["ppl"]) for r in records if r["kind"] == "train"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    if not train and not epochs:
        raise RnnkitError("the training metrics hold no epoch: nothing to draw")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = sorted(train + [(r["epoch"], r["train_ppl"]) for r in epochs])
    ax.plot([p for p, _ in pts], [v for _, v in pts], label="training (running mean)",
            color="tab:blue", alpha=0.8)
    valid = [(r["epoch"], r["valid_ppl"]) for r in epochs if r.get("valid_ppl") is not None]
    if valid:
        ax.plot(*zip(*valid), marker="o", label="validation", color="tab:orange")
    tests = [r for r in records if r["kind"] == "test"]
    if tests and tests[-1].get("test_ppl") is not None:
        ax.axhline(tests[-1]["test_ppl"], ls="--", color="tab:green",
                   label=f"test (best model) {tests[-1]['test_ppl']:.1f}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_title(title or "learning curves")
    save_figure(plt, fig, ax, out_path)
    return {"out": str(out_path), "epochs": len(epochs), "train_points": len(train),
            "valid_points": len(valid)}


def plot_gradients(results: dict[str, dict], out_path: str | os.PathLike) -> None:
    """One line per model (its last layer): mean ||dL_t/dh_{t-k}|| against k, log scale
    (`results` maps a name to what report.diagnose.gradient_by_distance returned)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, r in results.items():
        top = [row[-1] for row in r["grad_norm"]]
        ax.semilogy(r["distance"], top, marker=".", label=f"{name} ({r['model_type']})")
    ax.set_xlabel("distance k (steps)")
    ax.set_ylabel("mean ‖dL_t / dh_(t−k)‖ (last layer)")
    ax.set_title("gradient of the loss at t with respect to the hidden state at t-k")
    save_figure(plt, fig, ax, out_path)


def _font_covering(labels: list[str]) -> tuple[str | None, str]:
    """A font family whose glyphs cover every character of `labels` (None: the default one
    does), and, when no installed font does, a note naming a missing character."""
    from matplotlib import font_manager, ft2font

    chars = {ord(c) for t in labels for c in t if not c.isspace()}

    def covers(path) -> bool:
        try:
            return chars <= ft2font.FT2Font(path).get_charmap().keys()
        except (OSError, RuntimeError, ValueError):
            return False

    if covers(font_manager.findfont(font_manager.FontProperties())):
        return None, ""
    for entry in font_manager.fontManager.ttflist:
        # "Last Resort" (shipped with matplotlib) maps every character to a placeholder box
        if not entry.name.startswith("Last Resort") and covers(entry.fname):
            return entry.name, ""
    missing = next(chr(c) for c in sorted(chars) if c > 0x7F)
    return None, (f"no installed font has every character of the labels (e.g. {missing!r}); "
                  f"they are drawn as boxes: install a font that covers them, such as Noto Sans "
                  f"CJK for Korean, Chinese or Japanese")


def plot_attention(source: list[str], target: list[str], attention, out_path) -> str:
    """The attention of a translation as a heatmap: one row per target token (attention
    [len(target), len(source)], rows summing to 1), the source tokens across. The labels use
    an installed font that has their characters; returns a note ('' when all is well)."""
    plt = require_matplotlib()
    if getattr(attention, "shape", None) != (len(target), len(source)):
        raise RnnkitError(f"attention of shape {getattr(attention, 'shape', None)} for "
                          f"{len(target)} target and {len(source)} source tokens")
    family, note = _font_covering(source + target)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(source), 1.0 + 0.4 * len(target)))
    ax.imshow(attention, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    font = {"family": family} if family else {}
    ax.set_xticks(range(len(source)), source, rotation=60, ha="right", **font)
    ax.set_yticks(range(len(target)), target, **font)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    with warnings.catch_warnings():  # missing glyphs: said once, in the note
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        fig.tight_layout()
        with atomic_write(out_path, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return note
