"""Training recurrent models: one generic loop (loop.py) and a task per model kind (lm_task.py),
checkpoints and metrics (checkpoint.py), the entry point (train.py).

`from rnnkit.training import train` is the function; the module of the same name is still
reachable as `from rnnkit.training.train import ...`.
"""
from .checkpoint import load_records
from .loop import TrainEvents, TrainingInterrupted
from .train import TrainOptions, train

__all__ = ["TrainOptions", "TrainEvents", "TrainingInterrupted", "train", "load_records"]
