"""The training loop, for every kind of model: epochs, the learning-rate schedule, clipping and
the optimizer step, validation, best-model keeping, checkpoints and exact resume, Ctrl-C and
divergence. What is being trained is a Task (below); the loop knows nothing about language
models.

Dimension letter: P parameters (the length of the task's ONE flat parameter buffer).

The loop, per epoch: the task yields the epoch's batches, each with its number of target tokens;
for each, the task computes the loss (natural log, summed over the batch's tokens) and writes
the gradient into its flat buffer; the global gradient norm is clipped (--clip) and the optimizer
steps the flat parameters (on one process, over the rows of an embedding that the batch read
only, when the task names them: Task.grad_rows). A NaN or infinite loss or gradient norm stops the run and keeps the
last checkpoint. After the epoch, the task measures the validation perplexity; the best
parameters are kept (and written to --out); the learning rate decays by --lr-decay after each
epoch from --decay-after on (Zaremba's schedule). With --patience K, validation also drives the
schedule: the rate decays after any epoch that did not improve the validation perplexity, and
training stops after K such epochs in a row. At the end the best parameters are restored and
the task measures the test perplexity. The events and the checkpoint call one batch a
*window* (the language model's word for it).

A checkpoint (training/checkpoint.py) holds everything the run depends on -- flat parameters,
best parameters, optimizer state, RNG state, the position (epoch, window), the running sums, and
whatever the task carries between batches -- so a resumed run ends with the same weights, bit for
bit, as one that was never interrupted (same data and thread count).

Adding a kind of model means writing a Task, not a trainer. The language model's is
training/lm_task.py (windows of batchified streams, the hidden state carried across windows).
An encoder-decoder trained on sentence pairs fits without changing this file: its build()
buckets the pairs by length into batches; batches(epoch, start) shuffles the bucket order with a
generator seeded by (seed, epoch) -- so the order after a resume is the one before -- and
yields (source, target) batches with their target-token counts; it carries no state between
batches, so it keeps the no-op reset_state/state_tensors/load_state of Task; perplexity() is that
of the target sentences given their sources; checkpoint_meta() and save_model() write its
architecture and both vocabularies. Image captioning is the same with an image vector for the
source.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelFileError, TrainingError
from ..nn.backend import kernels, thread_limit
from ..nn.optim import DEFAULT_LR, OPTIMIZERS, SparseRows, clip_grad_norm, make_optimizer
from .checkpoint import (
    append_metric,
    checkpoint_path,
    metrics_path,
    read_checkpoint,
    write_checkpoint,
    write_metrics,
)

LOG_POINTS = 20      # training-loss records per epoch in metrics.jsonl


def perplexity_of(nats: float) -> float:
    """e^nats: the perplexity of a mean loss in nats; inf beyond the float range (a diverging
    run's huge but finite loss), NaN kept."""
    return math.exp(nats) if nats < 709.0 else (math.inf if nats == nats else nats)


class TrainingInterrupted(TrainingError):
    """Ctrl-C (or a stop request): a checkpoint was written; --resume continues."""


@dataclass
class LoopOptions:
    """The loop's options of `rnnkit train` (see its --help); a task's options extend them."""

    epochs: int = 13
    optimizer: str = "sgd"
    lr: float | None = None
    lr_decay: float = 0.5
    decay_after: int = 4
    clip: float | None = 5.0
    seed: int = 0
    threads: int | None = None
    patience: int | None = None
    checkpoint_every: float | None = None
    resume: bool = False

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown --optimizer {self.optimizer!r}: use one of "
                             f"{', '.join(OPTIMIZERS)}")
        if self.epochs < 0:
            raise InputError(f"--epochs must not be negative, got {self.epochs}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise InputError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.clip is not None and self.clip < 0:
            raise InputError(f"--clip must not be negative (0 turns clipping off), got {self.clip}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if self.patience is not None and self.patience < 1:
            raise InputError(f"--patience must be at least 1, got {self.patience}")
        if self.checkpoint_every is not None and not self.checkpoint_every > 0:
            raise InputError(f"--checkpoint-every must be a positive number of minutes, got "
                             f"{self.checkpoint_every}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict:
        """Every option (of the subclass too), JSON-able: paths become strings."""
        return {k: os.fspath(v) if isinstance(v, os.PathLike) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class TrainEvents:
    """What the loop reports while it runs; the CLI draws progress from it (the library itself
    never prints). Every method may be overridden; should_stop() lets a caller stop the run
    as Ctrl-C would (a checkpoint is written first). start() gets the task's describe() with
    windows (batches per epoch), epochs and resumed_from ({epoch, window} or None)."""

    def start(self, info: dict) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, windows: int, done: int, tokens: int,
                    lr: float) -> None: ...
    def window(self, done: int, windows: int, tokens: int, loss: float) -> None: ...
    def epoch_end(self, record: dict) -> None: ...
    def checkpoint(self, path: Path, reason: str) -> None: ...
    def should_stop(self) -> bool:
        return False


class Task(ABC):
    """What the loop trains: a model with ONE flat parameter buffer and the data it learns from.

    The loop calls build() or restore() once, then per epoch reset_state() (at the epoch's
    start, not when resuming in its middle), batches(), and loss_and_grad() for each batch;
    perplexity() after each epoch and at the end; the file methods for checkpoints and the
    model file. `opts` is the run's options object (LoopOptions extended by the task's own).
    A task with no state between batches keeps the no-op reset_state, state_tensors and
    load_state defined here.
    """

    num_batches: int     # batches ("windows") per epoch, set by build() and restore()
    epoch_tokens: int    # target tokens per epoch (for progress), set by build() and restore()
    state_batch_axis: int = 0  # the batch axis of state_tensors(): ranks' states join there

    def shard(self, rank: int, size: int) -> None:
        """Data-parallel training (training/distributed.py): from build() or restore() on, train
        on part `rank` of `size` of every batch, with the loss scaled for the whole batch, and
        report the whole batch's tokens; state_tensors() and load_state() then hold this
        rank's part (load_state gets the whole checkpointed state and takes its part)."""
        raise InputError(f"{type(self).__name__} does not support --distributed training")

    # --- set-up ----------------------------------------------------------------------------------
    @abstractmethod
    def build(self, opts, rng: np.random.Generator) -> None:
        """Prepare the training batches for opts and create the model, fresh or from a trained
        one (--init-from), drawing any random initial values from rng (seeded by --seed).
        Raise InputError when the data does not suit the options."""

    @abstractmethod
    def restore(self, opts, meta: dict, path: Path) -> None:
        """Resume: check that the checkpoint `path` (metadata `meta`, as checkpoint_meta()
        wrote it) was made on this data, prepare the batches for opts (the checkpoint's
        options) and re-create the model from meta. The loop then fills the flat parameters
        and calls load_state()."""

    @property
    @abstractmethod
    def flat(self) -> np.ndarray:
        """The parameters [P], one contiguous buffer that the optimizer steps in place."""

    @property
    @abstractmethod
    def grad(self) -> np.ndarray:
        """The gradient [P], laid out as flat, written by loss_and_grad()."""

    @abstractmethod
    def describe(self) -> dict:
        """What the run's start event and summary show: model_type, parameters, and any more."""

    # --- training --------------------------------------------------------------------------------
    @abstractmethod
    def batches(self, epoch: int, start: int) -> Iterator[tuple[Any, int]]:
        """(batch, target tokens) for batches start .. num_batches - 1 of epoch `epoch` (from 1).
        The same (epoch, start) must give the same batches in a resumed process."""

    @abstractmethod
    def loss_and_grad(self, batch: Any, rng: np.random.Generator) -> float:
        """The loss of one batch in nats, summed over its target tokens; writes into grad the
        gradient the optimizer should follow (the task decides its scale). rng is the run's
        generator for training-time randomness (dropout), saved in every checkpoint."""

    def sparse_grad(self, on: bool) -> None:
        """The loop turns this on when it runs on one process (nothing but clipping touches the
        gradient between batches): a task may then keep parts of its gradient row-sparse and
        name them in grad_rows(). The default stays dense."""

    def grad_rows(self) -> tuple[SparseRows, ...]:
        """After loss_and_grad: the gradient's blocks that are zero outside the rows named
        (nn/optim.SparseRows; clipping and SGD pass over those rows only). Default: none."""
        return ()

    @abstractmethod
    def perplexity(self, split: str) -> float | None:
        """The perplexity of the model on a split ("valid", "test"), None without such data."""

    def reset_state(self) -> None:
        """Forget whatever is carried from batch to batch (at the start of each epoch)."""

    def epoch_metrics(self) -> dict:
        """More measures of the model after an epoch (e.g. a translation's BLEU), added to the
        epoch's record in metrics.jsonl; the default is none."""
        return {}

    def criterion(self, record: dict) -> float | None:
        """What selects the best model and drives --patience, lower is better: by default the
        validation perplexity (None: no validation data, every epoch counts as an improvement).
        A task may choose another measure of `record` (e.g. minus the validation BLEU)."""
        return record["valid_ppl"]

    # --- files -----------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, np.ndarray]:
        """The state carried between batches, for the checkpoint (names other than the loop's
        params, best_params and the optimizer's)."""
        return {}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        """Take the carried state back from a checkpoint's tensors."""

    @abstractmethod
    def checkpoint_meta(self) -> dict:
        """JSON-able metadata restore() needs (the architecture, the data's fingerprint)."""

    @abstractmethod
    def save_model(self, path: Path, training: dict) -> None:
        """Write the model file with the current parameters; `training` (options, records,
        best epoch, ...) goes into its metadata."""


class _StopOnSigint:
    """The first Ctrl-C asks the loop to stop at the end of the current window (it then writes a
    checkpoint); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class Trainer:
    """One training run; everything that a checkpoint must restore is an attribute here (or the
    task's carried state)."""

    def __init__(self, task: Task, out_path: Path, opts: LoopOptions, events: TrainEvents,
                 world=None):
        self.task, self.out_path, self.opts, self.events = task, out_path, opts, events
        # data-parallel: a distributed.World; only its rank 0 writes files
        self.world = world if world is not None and world.size > 1 else None
        self.root = self.world is None or self.world.root
        self.ckpt_path = checkpoint_path(out_path)
        self.metrics_path = metrics_path(out_path)
        # position and everything carried across windows and epochs
        self.epoch, self.window = 1, 0
        self.lr = opts.learning_rate
        self.best_valid, self.best_epoch, self.bad_epochs = math.inf, 0, 0
        self.best_flat: np.ndarray | None = None          # [P]
        self.epoch_nats, self.epoch_tokens, self.epoch_seconds = 0.0, 0, 0.0
        self.records: list[dict] = []
        self.elapsed = 0.0
        self.resumed_from: dict | None = None

    def run(self) -> dict:
        """Build (or, with --resume, restore) and train; returns the summary."""
        with thread_limit(self.opts.threads):
            if self.opts.resume:
                self.restore()
            else:
                self.build()
            return self._train()

    # --- setup ---------------------------------------------------------------------------------
    def build(self) -> None:
        opts, world = self.opts, self.world
        # training-time randomness (dropout): one generator per rank
        self.rng = np.random.default_rng([opts.seed, 1] + ([world.rank] if world else []))
        if world:
            self.task.shard(world.rank, world.size)
        self.task.build(opts, np.random.default_rng([opts.seed, 0]))  # initial values
        if world:   # the same seed gives the same values; rank 0's make sure of it
            world.bcast_array(self.task.flat)
        self.optimizer = make_optimizer(opts.optimizer, self.task.flat.shape[0])

    def save_checkpoint(self, reason: str) -> None:
        task, world = self.task, self.world
        state = task.state_tensors()
        rng_ranks = None
        if world:   # collective: every rank comes here at the same step
            state = world.gather_tensors(state, axis=task.state_batch_axis)
            rng_ranks = world.gather(self.rng.bit_generator.state)
            if not world.root:
                self.last_checkpoint = time.monotonic()
                return
        tensors = {"params": task.flat, **state}
        if self.best_flat is not None:
            tensors["best_params"] = self.best_flat
        tensors.update(self.optimizer.state_tensors())
        meta = {
            "options": self.opts.to_dict(), **task.checkpoint_meta(), "reason": reason,
            "position": {"epoch": self.epoch, "window": self.window},
            "lr": self.lr,
            "best_valid": self.best_valid if math.isfinite(self.best_valid) else None,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "epoch_nats": self.epoch_nats, "epoch_tokens": self.epoch_tokens,
            "epoch_seconds": self.epoch_seconds,
            "rng": self.rng.bit_generator.state, "optimizer": self.optimizer.state_meta(),
            "records": self.records, "elapsed": self.elapsed,
            "ranks": world.size if world else 1,
        }
        if rng_ranks is not None:
            meta["rng_ranks"] = rng_ranks
        write_checkpoint(self.ckpt_path, tensors, meta)
        self.last_checkpoint = time.monotonic()
        self.events.checkpoint(self.ckpt_path, reason)

    def restore(self) -> None:
        """Continue from the checkpoint beside --out, with the options it was made with."""
        try:
            self._restore()
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{self.ckpt_path}: damaged checkpoint ({type(e).__name__}: "
                                 f"{e}); delete it and train without --resume") from None

    def _restore(self) -> None:
        if not self.ckpt_path.exists():
            raise InputError(f"{self.ckpt_path}: no checkpoint to resume from (it is written "
                             f"beside --out at each epoch end); train without --resume")
        tensors, meta = read_checkpoint(self.ckpt_path)
        saved = type(self.opts).from_dict(meta["options"])
        # the run goes on with its own options; only how it runs may change
        saved.threads = self.opts.threads
        saved.checkpoint_every = self.opts.checkpoint_every
        saved.resume = True
        self.opts = saved
        task, world = self.task, self.world
        ranks = meta.get("ranks", 1)
        if ranks != (world.size if world else 1):
            raise InputError(f"{self.ckpt_path}: the checkpoint was written by a run of {ranks} "
                             f"rank(s); resume with the same number (mpiexec -n {ranks}"
                             f"{' ... --distributed' if ranks > 1 else ', or without mpiexec'})")
        if world:
            task.shard(world.rank, world.size)
        task.restore(saved, meta, self.ckpt_path)
        if tensors["params"].shape != task.flat.shape:
            raise ModelFileError(f"{self.ckpt_path}: damaged checkpoint (parameter count)")
        task.flat[...] = tensors["params"]
        self.optimizer = make_optimizer(saved.optimizer, task.flat.shape[0])
        self.optimizer.load_state(tensors, meta["optimizer"])
        task.load_state(tensors)
        self.best_flat = np.array(tensors["best_params"]) if "best_params" in tensors else None
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = meta["rng_ranks"][world.rank] if world else meta["rng"]
        self.epoch, self.window = meta["position"]["epoch"], meta["position"]["window"]
        self.lr = meta["lr"]
        self.best_valid = meta["best_valid"] if meta["best_valid"] is not None else math.inf
        self.best_epoch, self.bad_epochs = meta["best_epoch"], meta["bad_epochs"]
        self.epoch_nats, self.epoch_tokens = meta["epoch_nats"], meta["epoch_tokens"]
        self.epoch_seconds = meta.get("epoch_seconds", 0.0)
        self.records, self.elapsed = meta["records"], meta["elapsed"]
        self.resumed_from = {"epoch": self.epoch, "window": self.window}
        if self.root:
            write_metrics(self.metrics_path, self.records)

    # --- the loop ------------------------------------------------------------------------------
    def _train(self) -> dict:
        opts = self.opts
        t_run = time.monotonic()
        self.last_checkpoint = t_run
        if not opts.resume and self.root:
            write_metrics(self.metrics_path, [])
        stop = self.events.should_stop
        self.task.sparse_grad(self.world is None)
        with _StopOnSigint() as sigint:
            self.events.start({**self.task.describe(), "ranks": self.ranks,
                               "windows": self.task.num_batches,
                               "epochs": opts.epochs, "resumed_from": self.resumed_from})
            while self.epoch <= opts.epochs:
                if self._run_epoch(lambda: sigint.requested or stop(), t_run):
                    break
        self.elapsed += time.monotonic() - t_run
        return self.finish()

    def _interrupt(self, t_run: float) -> None:
        self.elapsed += time.monotonic() - t_run
        self.save_checkpoint("interrupted")
        raise TrainingInterrupted(
            f"interrupted at epoch {self.epoch}, window {self.window}/{self.task.num_batches}; "
            f"checkpoint written to {self.ckpt_path}; continue with the same command and --resume")

    def _run_epoch(self, stop_requested: Callable[[], bool], t_run: float) -> bool:
        """One epoch from the current position; True when training should stop early."""
        opts, task = self.opts, self.task
        n = task.num_batches
        if self.window == 0:
            task.reset_state()
            self.epoch_nats, self.epoch_tokens, self.epoch_seconds = 0.0, 0, 0.0
        self.events.epoch_start(self.epoch, opts.epochs, n, self.window, task.epoch_tokens,
                                self.lr)
        log_every = max(1, n // LOG_POINTS)
        t0 = time.monotonic()
        seconds0 = self.epoch_seconds
        every = opts.checkpoint_every * 60.0 if opts.checkpoint_every else None
        for w, (batch, tokens) in enumerate(task.batches(self.epoch, self.window), self.window):
            nats = task.loss_and_grad(batch, self.rng)
            due = bool(every and time.monotonic() - self.last_checkpoint >= every and w + 1 < n)
            stopping = stop_requested()
            if self.world:  # the one allreduce per step; the ranks agree on stopping too
                nats, stopping, due = self.world.allreduce_grad(
                    task.grad, nats, stopping, due and self.world.root)
            rows = () if self.world else task.grad_rows()
            norm = clip_grad_norm(task.grad, opts.clip, rows)
            # a mean loss past 700 nats a token (probabilities below e^-700) has diverged too
            if not (math.isfinite(nats) and math.isfinite(norm)) or nats > 700.0 * tokens:
                self._diverged(nats, norm, w, tokens)
            self.optimizer.step(task.flat, task.grad, self.lr, rows)
            self.epoch_nats += nats
            self.epoch_tokens += tokens
            self.window = w + 1
            self.epoch_seconds = seconds0 + time.monotonic() - t0
            self.events.window(w + 1, n, tokens, self.epoch_nats / self.epoch_tokens)
            if (w + 1) % log_every == 0 and w + 1 < n:
                loss = self.epoch_nats / self.epoch_tokens
                self._record({"kind": "train", "epoch": self.epoch, "window": w + 1,
                              "progress": round(self.epoch - 1 + (w + 1) / n, 6),
                              "loss": loss, "ppl": perplexity_of(loss), "lr": self.lr})
            if stopping:
                self._interrupt(t_run)
            if due:
                self.save_checkpoint("periodic")
        return self._end_epoch()

    def _diverged(self, nats: float, norm: float, w: int, tokens: int):
        if not math.isfinite(nats):
            what = f"loss {nats}"
        elif not math.isfinite(norm):
            what = f"gradient norm {norm}"
        else:
            what = f"loss {nats / tokens:.4g} nats a token"
        if self.ckpt_path.exists():
            keep = f"the last good checkpoint {self.ckpt_path} is kept (--resume continues from it)"
        else:
            keep = "no checkpoint had been written yet"
        raise TrainingError(
            f"training diverged: the {what} at epoch {self.epoch}, window {w + 1}/"
            f"{self.task.num_batches} (learning rate {self.lr:g}); stopped, {keep}; lower --lr, "
            f"clip harder (--clip) or use a smaller --init-scale")

    def _record(self, rec: dict) -> None:
        self.records.append(rec)
        if self.root:
            append_metric(self.metrics_path, rec)

    def _end_epoch(self) -> bool:
        opts, task = self.opts, self.task
        train_loss = self.epoch_nats / max(self.epoch_tokens, 1)
        valid_ppl = task.perplexity("valid")
        record = {"kind": "epoch", "epoch": self.epoch, "lr": self.lr, "train_loss": train_loss,
                  "train_ppl": perplexity_of(train_loss), "valid_ppl": valid_ppl,
                  **task.epoch_metrics()}
        score = task.criterion(record)
        improved = score is None or score < self.best_valid
        if improved:
            if score is not None:
                self.best_valid = score
            self.best_epoch = self.epoch
            self.bad_epochs = 0
            if self.best_flat is None:
                self.best_flat = np.empty_like(task.flat)
            self.best_flat[...] = task.flat
        else:
            self.bad_epochs += 1
        record.update({"best": improved and score is not None, "tokens": self.epoch_tokens,
                       "seconds": round(self.epoch_seconds, 3),
                       "tokens_per_s": round(self.epoch_tokens / max(self.epoch_seconds, 1e-9),
                                             1)})
        self._record(record)
        self.events.epoch_end(record)
        if improved:
            self._save_model(self.best_flat, final=False)
        # the schedule (Zaremba et al.: x decay after each epoch from `decay_after` on); with
        # --patience, also after an earlier epoch that did not improve the validation perplexity
        if self.epoch >= opts.decay_after or (opts.patience is not None and not improved):
            self.lr *= opts.lr_decay
        stop = opts.patience is not None and self.bad_epochs >= opts.patience
        self.epoch += 1
        self.window = 0
        if stop:
            self.epoch = opts.epochs + 1
        self.save_checkpoint("epoch")
        return stop

    def _save_model(self, params: np.ndarray, final: bool, extra: dict | None = None) -> None:
        """Write --out with `params` [P] (the current or the best ones)."""
        flat = self.task.flat
        keep = flat.copy() if params is not flat else None
        flat[...] = params
        training = {"options": {k: v for k, v in self.opts.to_dict().items()
                                if k not in ("resume", "checkpoint_every")},
                    "best_epoch": self.best_epoch,
                    "valid_perplexity": self.best_valid_perplexity(),
                    "epochs_run": self.epoch if not final else self.epoch - 1,
                    "complete": final, "records": self.records}
        training.update(extra or {})
        if self.root:
            self.task.save_model(self.out_path, training)
        if keep is not None:
            flat[...] = keep

    def best_valid_perplexity(self) -> float | None:
        """The validation perplexity of the best epoch (which the task's criterion chose)."""
        best = [r for r in self.records if r["kind"] == "epoch" and r["epoch"] == self.best_epoch]
        return best[-1]["valid_ppl"] if best else None

    @property
    def ranks(self) -> int:
        return self.world.size if self.world else 1

    def threads_used(self) -> int:
        return self.opts.threads if self.opts.threads is not None else kernels().get_num_threads()

    def finish(self) -> dict:
        task = self.task
        if self.best_flat is not None:
            task.flat[...] = self.best_flat
        test_ppl = task.perplexity("test")
        if test_ppl is not None:
            self._record({"kind": "test", "test_ppl": test_ppl, "epoch": self.best_epoch})
        epochs = [r for r in self.records if r["kind"] == "epoch"]
        seconds = sum(r["seconds"] for r in epochs)
        tokens = sum(r["tokens"] for r in epochs)
        extra = {"test_perplexity": test_ppl, "seconds": round(self.elapsed, 3)}
        self._save_model(task.flat, final=True, extra=extra)
        if self.root:
            self.ckpt_path.unlink(missing_ok=True)  # gone already is fine (harmless race)
        last = epochs[-1] if epochs else {}
        dist = {}
        if self.world and self.world.steps:
            dist = {"allreduce_ms_per_step": round(1e3 * self.world.allreduce_seconds
                                                   / self.world.steps, 4)}
        return {
            "model": str(self.out_path), **task.describe(),
            "epochs_run": len(epochs), "best_epoch": self.best_epoch,
            "train_perplexity": last.get("train_ppl"),
            "valid_perplexity": self.best_valid_perplexity(),
            "test_perplexity": test_ppl,
            "stopped_early": len(epochs) < self.opts.epochs,
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
            "seconds": round(self.elapsed, 3), "threads": self.threads_used(),
            "resumed_from": self.resumed_from, "metrics": str(self.metrics_path),
            "ranks": self.ranks, **dist,
        }
