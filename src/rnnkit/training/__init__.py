"""Training recurrent models: one generic loop (loop.py) and a task per model kind (lm_task.py:
the language model's task, its options and its entry point `train`), checkpoints and metrics
(checkpoint.py)."""
from .checkpoint import load_records
from .lm_task import TrainOptions, train
from .loop import TrainEvents, TrainingInterrupted

__all__ = ["TrainOptions", "TrainEvents", "TrainingInterrupted", "train", "load_records"]
