"""`rnnkit train` for recurrent models: the options, and train(), which picks the task for them
and runs the generic loop (training/loop.py). The language model's task is training/lm_task.py;
checkpoints and metrics are training/checkpoint.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..text.prepare import Corpus, load_data
from .checkpoint import load_records
from .lm_task import LMOptions, LMTask
from .loop import LoopOptions, Trainer, TrainEvents, TrainingInterrupted

# what `rnnkit.cli` imports from here, with require_matplotlib and plot_curves (see __getattr__)
__all__ = ["TrainOptions", "TrainEvents", "TrainingInterrupted", "train", "load_records"]


@dataclass
class TrainOptions(LoopOptions, LMOptions):
    """The options of `rnnkit train` for recurrent language models (see its --help): the loop's
    (LoopOptions) and the language model's (LMOptions)."""

    def check(self) -> None:
        LMOptions.check(self)
        LoopOptions.check(self)


def train(data, out_path: str | os.PathLike, options: TrainOptions | None = None,
          events: TrainEvents | None = None, **kw) -> dict:
    """Train a recurrent language model on `data` (a Corpus, a corpus directory or a text file)
    and write the best model to `out_path`; returns a JSON-able summary. Options as TrainOptions
    (or keyword arguments)."""
    opts = options or TrainOptions(**kw)
    opts.check()
    if opts.resume and opts.init_from:
        raise InputError("--resume continues a run; it cannot be combined with --init-from")
    out_path = Path(out_path)
    if out_path.is_dir():
        raise InputError(f"{out_path}: is a directory; --out needs a file name")
    if not out_path.parent.is_dir() and str(out_path.parent):
        raise InputError(f"{out_path}: directory {out_path.parent} does not exist")
    corpus = data if isinstance(data, Corpus) else load_data(data)
    # the one task so far; sentence pairs and captions will pick theirs here by their options
    task = LMTask(corpus)
    return Trainer(task, out_path, opts, events or TrainEvents()).run()


def __getattr__(name: str):
    """require_matplotlib and plot_curves moved to report/plots.py; the CLI still imports them
    from here until it moves to its own package. A lazy re-export, because report/ sits above
    training/ in the layers: delete it once nothing imports them from here."""
    if name in ("require_matplotlib", "plot_curves"):
        from ..report import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
