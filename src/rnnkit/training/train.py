"""Training recurrent language models: truncated BPTT over batchified streams, validation after
each epoch, checkpoints and exact resume.

Dimension letters: N tokens of a split, B streams (batch), S steps per stream (N // B),
T steps of a window (bptt), L layers, H hidden size, P parameters.

The loop, per epoch: the training split becomes B parallel streams (batchify); the hidden state
starts at zero and is carried from window to window (the gradient is not: truncated BPTT); each
window's loss is the cross-entropy (natural log) summed over its T steps and averaged over the B
streams -- the loss Zaremba et al. (2014) define, for which their learning rate 1.0 and clipping
at 5 are meant -- then the global gradient norm is clipped and the optimizer steps. After the
epoch, validation perplexity; the best model is kept (and written to --out); the learning rate
decays by --lr-decay after each epoch from --decay-after on (Zaremba's schedule). With --patience
K, validation also drives the schedule: the rate decays after any epoch that did not improve the
validation perplexity, and training stops after K such epochs in a row. At the end the best
model's test perplexity is measured.

A checkpoint (`MODEL.ckpt`, safetensors + JSON metadata, never pickle) holds everything the run
depends on -- parameters, best parameters, optimizer state, RNG state, the position (epoch,
window), the carried hidden state and the running sums -- so a resumed run ends with the same
weights, bit for bit, as one that was never interrupted (same data and thread count).
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .. import modelfile
from ..errors import InputError, ModelFileError, RnnkitError, TrainingError
from ..models.rnnlm import MODEL_TYPES, RNNLM, Architecture
from ..nn.backend import kernels
from ..nn.optim import DEFAULT_LR, OPTIMIZERS, clip_grad_norm, make_optimizer
from ..text.prepare import Corpus, load_data
from ..text.textio import atomic_write
from ..text.vocab import BOS, EOS

CHECKPOINT_FORMAT = "rnnkit-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_KEY = "rnnkit-checkpoint"
EVAL_WINDOW = 64     # steps per forward call when evaluating (any value gives the same result)
LOG_POINTS = 20      # training-loss records per epoch in metrics.jsonl


class TrainingInterrupted(TrainingError):
    """Ctrl-C (or a stop request): a checkpoint was written; --resume continues."""


@dataclass
class TrainOptions:
    """The options of `rnnkit train` for recurrent models (see its --help)."""

    model_type: str = "lstm"
    emb: int = 200
    hidden: int = 200
    layers: int = 2
    dropout: float = 0.0
    tie_weights: bool = False
    bptt: int = 35
    batch: int = 20
    epochs: int = 13
    optimizer: str = "sgd"
    lr: float | None = None
    lr_decay: float = 0.5
    decay_after: int = 4
    clip: float | None = 5.0
    init_scale: float = 0.1
    seed: int = 0
    threads: int | None = None
    patience: int | None = None
    init_from: str | None = None
    checkpoint_every: float | None = None
    resume: bool = False
    eval_batch: int = 1  # streams when measuring perplexity: 1 reads each split as one stream

    def check(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise InputError(f"unknown --type {self.model_type!r}: use one of "
                             f"{', '.join(MODEL_TYPES)}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown --optimizer {self.optimizer!r}: use one of "
                             f"{', '.join(OPTIMIZERS)}")
        for name in ("emb", "hidden", "layers", "bptt", "batch", "eval_batch"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got "
                                 f"{getattr(self, name)}")
        if self.epochs < 0:
            raise InputError(f"--epochs must not be negative, got {self.epochs}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise InputError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.clip is not None and self.clip < 0:
            raise InputError(f"--clip must not be negative (0 turns clipping off), got {self.clip}")
        if self.init_scale < 0:
            raise InputError(f"--init-scale must not be negative, got {self.init_scale}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if self.patience is not None and self.patience < 1:
            raise InputError(f"--patience must be at least 1, got {self.patience}")
        if self.checkpoint_every is not None and not self.checkpoint_every > 0:
            raise InputError(f"--checkpoint-every must be a positive number of minutes, got "
                             f"{self.checkpoint_every}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.emb != self.hidden:
            raise InputError(f"--tie-weights needs --emb equal to --hidden (got {self.emb} and "
                             f"{self.hidden})")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["init_from"] = None if self.init_from is None else str(self.init_from)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainOptions":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class TrainEvents:
    """What the loop reports while it runs; the CLI draws progress from it (the library itself
    never prints). Every method may be overridden; should_stop() lets a caller stop the run
    as Ctrl-C would (a checkpoint is written first)."""

    def start(self, info: dict) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, windows: int, done: int, tokens: int,
                    lr: float) -> None: ...
    def window(self, done: int, windows: int, tokens: int, loss: float) -> None: ...
    def epoch_end(self, record: dict) -> None: ...
    def checkpoint(self, path: Path, reason: str) -> None: ...
    def should_stop(self) -> bool:
        return False


# --- data ----------------------------------------------------------------------------------------
def lm_stream(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of a split: y = the ids (each sentence followed by </s>), x = y shifted
    right by one with <s> at the start of every sentence -- the samples x = (<s>, z1 .. zT),
    y = (z1 .. zT, </s>) laid end to end. Both [N] int64."""
    y = np.asarray(ids, np.int64)
    x = np.empty_like(y)
    if len(y):
        x[0] = BOS
        x[1:] = y[:-1]
        x[1:][y[:-1] == EOS] = BOS
    return x, y


def batchify(a: np.ndarray, batch: int) -> np.ndarray:
    """[N] -> [S, B] time-major: stream b is the b-th contiguous slice of S = N // B tokens
    (the last N mod B tokens are left out)."""
    s = len(a) // batch
    return np.ascontiguousarray(a[:s * batch].reshape(batch, s).T)


def window_starts(steps: int, bptt: int) -> list[int]:
    return list(range(0, steps, bptt))


def evaluate(model: RNNLM, ids: np.ndarray, batch: int = 1, window: int = EVAL_WINDOW
             ) -> tuple[float, int]:
    """(cross-entropy in nats summed over every target, number of targets) of a split.

    With batch 1 the split is read as one stream with the state carried throughout (as Zaremba
    et al. evaluate). With batch B it is cut into B streams for speed, each starting from the
    zero state (as PyTorch's word_language_model evaluates, B = 10), which changes the result
    slightly; the N mod B tokens left over continue the last stream, so every token counts."""
    x, y = lm_stream(ids)
    n = len(y)
    if n == 0:
        return 0.0, 0
    batch = max(1, min(batch, n))
    xb, yb = batchify(x, batch), batchify(y, batch)
    h, c = model.zero_state(batch)
    total = 0.0
    for s in range(0, xb.shape[0], window):
        total += model.forward_loss(xb[s:s + window], yb[s:s + window], h, c)
    rest = n - xb.shape[0] * batch
    if rest:
        h1 = np.ascontiguousarray(h[:, -1:])
        c1 = None if c is None else np.ascontiguousarray(c[:, -1:])
        xr, yr = x[n - rest:, None], y[n - rest:, None]
        for s in range(0, rest, window):
            total += model.forward_loss(np.ascontiguousarray(xr[s:s + window]),
                                        np.ascontiguousarray(yr[s:s + window]), h1, c1)
    return total, n


def perplexity(model: RNNLM, ids: np.ndarray, batch: int = 1) -> float:
    nats, count = evaluate(model, ids, batch)
    return math.exp(nats / count) if count else math.nan


# --- files beside the model ----------------------------------------------------------------------
def checkpoint_path(out_path: str | os.PathLike) -> Path:
    p = Path(out_path)
    return p.with_name(p.name + ".ckpt")


def metrics_path(out_path: str | os.PathLike) -> Path:
    p = Path(out_path)
    return p.with_name(p.name + ".metrics.jsonl")


def write_metrics(path: Path, records: list[dict]) -> None:
    with atomic_write(path) as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
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


@contextmanager
def thread_limit(threads: int | None):
    """Threads of the kernels and of BLAS for the block: results are deterministic per count.

    With the packed backend the kernels' own pool does the threading, and BLAS is held to one
    thread: OpenBLAS's threads spin after each call and took the cores from the pool's (PTB
    small config, 2 threads: 6,500 tokens/s with both pools at 2 threads, 14,200 with BLAS at 1).
    """
    from threadpoolctl import threadpool_limits

    K = kernels()
    old = K.get_num_threads()
    n = old if threads is None else threads
    blas = 1 if K.gemm_backend() == "packed" else n
    try:
        K.set_num_threads(n)
        with threadpool_limits(limits=blas):
            yield
    finally:
        K.set_num_threads(old)


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


# --- the run -------------------------------------------------------------------------------------
class Trainer:
    """One training run; everything that a checkpoint must restore is an attribute here."""

    def __init__(self, corpus: Corpus, out_path: Path, opts: TrainOptions, events: TrainEvents):
        self.corpus, self.out_path, self.opts, self.events = corpus, out_path, opts, events
        self.ckpt_path = checkpoint_path(out_path)
        self.metrics_path = metrics_path(out_path)
        if "train" not in corpus or len(corpus["train"]) == 0:
            raise InputError("the data has no training split")
        if not opts.resume:  # (a resumed run batchifies with the checkpoint's options)
            self._batchify(opts)
        self.has_valid = "valid" in corpus and len(corpus["valid"]) > 0
        self.has_test = "test" in corpus and len(corpus["test"]) > 0
        # position and everything carried across windows and epochs
        self.epoch, self.window = 1, 0
        self.lr = opts.learning_rate
        self.best_valid, self.best_epoch, self.bad_epochs = math.inf, 0, 0
        self.best_flat: np.ndarray | None = None
        self.epoch_nats, self.epoch_tokens, self.epoch_seconds = 0.0, 0, 0.0
        self.records: list[dict] = []
        self.elapsed = 0.0
        self.finished = False
        self.resumed_from: dict | None = None

    # --- setup ---------------------------------------------------------------------------------
    def _batchify(self, opts: TrainOptions) -> None:
        x, y = lm_stream(self.corpus["train"])
        self.xb, self.yb = batchify(x, opts.batch), batchify(y, opts.batch)  # [S, B]
        if self.xb.shape[0] == 0:
            raise InputError(f"the training split has {len(y)} tokens, fewer than --batch "
                             f"{opts.batch}; use a smaller --batch or more data")
        self.starts = window_starts(self.xb.shape[0], opts.bptt)

    def build_model(self) -> None:
        opts, vocab = self.opts, self.corpus.vocab
        self.rng = np.random.default_rng([opts.seed, 1])  # dropout masks
        init_rng = np.random.default_rng([opts.seed, 0])
        if opts.init_from:
            self.model = init_from_model(opts, self.corpus, init_rng)
        else:
            arch = Architecture(opts.model_type, len(vocab), opts.emb, opts.hidden, opts.layers,
                                opts.tie_weights, opts.dropout)
            self.model = RNNLM(arch, vocab, self.corpus.tokenizer)
            self.model.init_uniform(init_rng, opts.init_scale)
        self.optimizer = make_optimizer(opts.optimizer, self.model.flat.shape[0])
        self.h, self.c = self.model.zero_state(opts.batch)

    def fingerprint(self) -> dict:
        return {"vocab_sha256": self.corpus.vocab.sha256(), "vocab_size": len(self.corpus.vocab),
                "train_tokens": int(len(self.corpus["train"]))}

    # --- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, reason: str) -> None:
        from safetensors.numpy import save as st_save

        tensors = {"params": self.model.flat, "state.h": self.h}
        if self.c is not None:
            tensors["state.c"] = self.c
        if self.best_flat is not None:
            tensors["best_params"] = self.best_flat
        tensors.update(self.optimizer.state_tensors())
        meta = {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
            "options": self.opts.to_dict(), "architecture": self.model.arch.to_dict(),
            "data": self.fingerprint(), "reason": reason,
            "position": {"epoch": self.epoch, "window": self.window},
            "lr": self.lr,
            "best_valid": self.best_valid if math.isfinite(self.best_valid) else None,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "epoch_nats": self.epoch_nats, "epoch_tokens": self.epoch_tokens,
            "epoch_seconds": self.epoch_seconds,
            "rng": self.rng.bit_generator.state, "optimizer": self.optimizer.state_meta(),
            "records": self.records, "elapsed": self.elapsed,
            "model_meta": {k: v for k, v in self.model.meta.items() if k != "training"},
        }
        data = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                       metadata={CHECKPOINT_KEY: json.dumps(meta)})
        with atomic_write(self.ckpt_path, "wb") as f:
            f.write(data)
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
        data = meta["data"]
        if data.get("vocab_sha256") != self.corpus.vocab.sha256():
            raise InputError(
                f"{self.ckpt_path}: vocabulary mismatch: the checkpoint was trained with a "
                f"vocabulary of {data.get('vocab_size')} tokens that differs from the data's "
                f"({len(self.corpus.vocab)} tokens); resume with the same data, or train without "
                f"--resume")
        if data.get("train_tokens") != int(len(self.corpus["train"])):
            raise InputError(f"{self.ckpt_path}: the training split differs from the one the "
                             f"checkpoint was made with; resume with the same data")
        saved = TrainOptions.from_dict(meta["options"])
        # the run goes on with its own options; only how it runs may change
        saved.threads = self.opts.threads
        saved.checkpoint_every = self.opts.checkpoint_every
        saved.resume = True
        self.opts = saved
        self._batchify(saved)
        arch = Architecture.from_dict(meta["architecture"])
        self.model = RNNLM(arch, self.corpus.vocab, self.corpus.tokenizer,
                           meta=meta.get("model_meta"))
        if tensors["params"].shape != self.model.flat.shape:
            raise ModelFileError(f"{self.ckpt_path}: damaged checkpoint (parameter count)")
        self.model.flat[...] = tensors["params"]
        self.optimizer = make_optimizer(saved.optimizer, self.model.flat.shape[0])
        self.optimizer.load_state(tensors, meta["optimizer"])
        self.h = np.array(tensors["state.h"])
        self.c = np.array(tensors["state.c"]) if "state.c" in tensors else None
        self.best_flat = np.array(tensors["best_params"]) if "best_params" in tensors else None
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.window = meta["position"]["epoch"], meta["position"]["window"]
        self.lr = meta["lr"]
        self.best_valid = meta["best_valid"] if meta["best_valid"] is not None else math.inf
        self.best_epoch, self.bad_epochs = meta["best_epoch"], meta["bad_epochs"]
        self.epoch_nats, self.epoch_tokens = meta["epoch_nats"], meta["epoch_tokens"]
        self.epoch_seconds = meta.get("epoch_seconds", 0.0)
        self.records, self.elapsed = meta["records"], meta["elapsed"]
        self.resumed_from = {"epoch": self.epoch, "window": self.window}
        write_metrics(self.metrics_path, self.records)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict:
        opts = self.opts
        t_run = time.monotonic()
        self.last_checkpoint = t_run
        if not opts.resume:
            write_metrics(self.metrics_path, [])
        stop = self.events.should_stop
        with _StopOnSigint() as sigint:
            self.events.start({"model_type": self.model.model_type,
                               "parameters": self.model.num_parameters,
                               "windows": len(self.starts), "epochs": opts.epochs,
                               "resumed_from": self.resumed_from})
            while self.epoch <= opts.epochs:
                if self._run_epoch(lambda: sigint.requested or stop(), t_run):
                    break
        self.elapsed += time.monotonic() - t_run
        return self.finish()

    def _interrupt(self, t_run: float) -> None:
        self.elapsed += time.monotonic() - t_run
        self.save_checkpoint("interrupted")
        raise TrainingInterrupted(
            f"interrupted at epoch {self.epoch}, window {self.window}/{len(self.starts)}; "
            f"checkpoint written to {self.ckpt_path}; continue with the same command and --resume")

    def _run_epoch(self, stop_requested, t_run: float) -> bool:
        """One epoch from the current position; True when training should stop early."""
        opts, model, B = self.opts, self.model, self.opts.batch
        n = len(self.starts)
        if self.window == 0:
            self.h[...] = 0
            if self.c is not None:
                self.c[...] = 0
            self.epoch_nats, self.epoch_tokens, self.epoch_seconds = 0.0, 0, 0.0
        self.events.epoch_start(self.epoch, opts.epochs, n, self.window,
                                self.xb.shape[0] * B, self.lr)
        log_every = max(1, n // LOG_POINTS)
        t0 = time.monotonic()
        seconds0 = self.epoch_seconds
        every = opts.checkpoint_every * 60.0 if opts.checkpoint_every else None
        scale = 1.0 / B
        for w in range(self.window, n):
            s = self.starts[w]
            x, y = self.xb[s:s + opts.bptt], self.yb[s:s + opts.bptt]
            tokens = x.shape[0] * B
            nats = model.forward_backward(x, y, self.h, self.c, scale, self.rng)
            norm = clip_grad_norm(model.grad, opts.clip)
            if not (math.isfinite(nats) and math.isfinite(norm)):
                self._diverged(nats, norm, w)
            self.optimizer.step(model.flat, model.grad, self.lr)
            self.epoch_nats += nats
            self.epoch_tokens += tokens
            self.window = w + 1
            self.epoch_seconds = seconds0 + time.monotonic() - t0
            self.events.window(w + 1, n, tokens, self.epoch_nats / self.epoch_tokens)
            if (w + 1) % log_every == 0 and w + 1 < n:
                loss = self.epoch_nats / self.epoch_tokens
                self._record({"kind": "train", "epoch": self.epoch, "window": w + 1,
                              "progress": round(self.epoch - 1 + (w + 1) / n, 6),
                              "loss": loss, "ppl": math.exp(loss), "lr": self.lr})
            if stop_requested():
                self._interrupt(t_run)
            if every and time.monotonic() - self.last_checkpoint >= every and w + 1 < n:
                self.save_checkpoint("periodic")
        return self._end_epoch()

    def _diverged(self, nats: float, norm: float, w: int):
        what = f"loss {nats}" if not math.isfinite(nats) else f"gradient norm {norm}"
        if self.ckpt_path.exists():
            keep = f"the last good checkpoint {self.ckpt_path} is kept (--resume continues from it)"
        else:
            keep = "no checkpoint had been written yet"
        raise TrainingError(
            f"training diverged: the {what} at epoch {self.epoch}, window {w + 1}/"
            f"{len(self.starts)} (learning rate {self.lr:g}); stopped, {keep}; lower --lr, "
            f"clip harder (--clip) or use a smaller --init-scale")

    def _record(self, rec: dict) -> None:
        self.records.append(rec)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def _end_epoch(self) -> bool:
        opts, model = self.opts, self.model
        train_loss = self.epoch_nats / max(self.epoch_tokens, 1)
        if self.has_valid:
            valid_ppl = perplexity(model, self.corpus["valid"], opts.eval_batch)
        else:
            valid_ppl = None
        improved = valid_ppl is None or valid_ppl < self.best_valid
        if improved:
            if valid_ppl is not None:
                self.best_valid = valid_ppl
            self.best_epoch = self.epoch
            self.bad_epochs = 0
            if self.best_flat is None:
                self.best_flat = np.empty_like(model.flat)
            self.best_flat[...] = model.flat
        else:
            self.bad_epochs += 1
        record = {"kind": "epoch", "epoch": self.epoch, "lr": self.lr, "train_loss": train_loss,
                  "train_ppl": math.exp(train_loss), "valid_ppl": valid_ppl,
                  "best": improved and valid_ppl is not None, "tokens": self.epoch_tokens,
                  "seconds": round(self.epoch_seconds, 3),
                  "tokens_per_s": round(self.epoch_tokens / max(self.epoch_seconds, 1e-9), 1)}
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

    def _save_model(self, flat: np.ndarray, final: bool, extra: dict | None = None) -> None:
        model = self.model
        keep = model.flat.copy() if flat is not model.flat else None
        model.flat[...] = flat
        training = {"options": {k: v for k, v in self.opts.to_dict().items()
                                if k not in ("resume", "checkpoint_every")},
                    "best_epoch": self.best_epoch,
                    "valid_perplexity": None if math.isinf(self.best_valid) else self.best_valid,
                    "epochs_run": self.epoch if not final else self.epoch - 1,
                    "complete": final, "records": self.records,
                    "data": {**self.fingerprint(), "manifest": self.corpus.manifest}}
        training.update(extra or {})
        model.save(self.out_path, training=training)
        if keep is not None:
            model.flat[...] = keep

    def threads_used(self) -> int:
        if self.opts.threads is not None:
            return self.opts.threads
        K = self.model.K
        return K.get_num_threads() if hasattr(K, "get_num_threads") else (os.cpu_count() or 1)

    def finish(self) -> dict:
        model = self.model
        if self.best_flat is not None:
            model.flat[...] = self.best_flat
        test_ppl = None
        if self.has_test:
            test_ppl = perplexity(model, self.corpus["test"], self.opts.eval_batch)
            self._record({"kind": "test", "test_ppl": test_ppl, "epoch": self.best_epoch})
        epochs = [r for r in self.records if r["kind"] == "epoch"]
        seconds = sum(r["seconds"] for r in epochs)
        tokens = sum(r["tokens"] for r in epochs)
        extra = {"test_perplexity": test_ppl, "seconds": round(self.elapsed, 3)}
        self._save_model(model.flat, final=True, extra=extra)
        if self.ckpt_path.exists():
            self.ckpt_path.unlink()
        last = epochs[-1] if epochs else {}
        return {
            "model": str(self.out_path), "model_type": model.model_type,
            "parameters": model.num_parameters, "vocab_size": len(model.vocab),
            "epochs_run": len(epochs), "best_epoch": self.best_epoch,
            "train_perplexity": last.get("train_ppl"),
            "valid_perplexity": None if math.isinf(self.best_valid) else self.best_valid,
            "test_perplexity": test_ppl,
            "stopped_early": len(epochs) < self.opts.epochs,
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
            "seconds": round(self.elapsed, 3), "threads": self.threads_used(),
            "resumed_from": self.resumed_from, "metrics": str(self.metrics_path),
        }


def init_from_model(opts: TrainOptions, corpus: Corpus, rng: np.random.Generator) -> RNNLM:
    """A model for the corpus's vocabulary started from a trained one (pre-train, fine-tune).

    The architecture is the trained model's; rows of the embedding and output layer are mapped
    by token, and tokens the trained model did not have keep their fresh initialisation.
    """
    from ..models.rnnlm import load

    old = load(opts.init_from)
    a = old.arch
    arch = Architecture(a.model_type, len(corpus.vocab), a.emb, a.hidden, a.layers,
                        a.tie_weights, opts.dropout)
    model = RNNLM(arch, corpus.vocab, corpus.tokenizer)
    model.init_uniform(rng, opts.init_scale)
    for name, v in old.p.items():
        if name not in ("encoder.weight", "decoder.weight", "decoder.bias"):
            model.p[name][...] = v
    new_ids, old_ids = [], []
    for i, token in enumerate(corpus.vocab.tokens):
        j = old.vocab.index.get(token)
        if j is not None:
            new_ids.append(i)
            old_ids.append(j)
    new_ids, old_ids = np.array(new_ids, np.int64), np.array(old_ids, np.int64)
    for name in ("encoder.weight", "decoder.bias") + (() if a.tie_weights else ("decoder.weight",)):
        model.p[name][new_ids] = old.p[name][old_ids]
    opts.model_type, opts.emb, opts.hidden, opts.layers = a.model_type, a.emb, a.hidden, a.layers
    opts.tie_weights = a.tie_weights
    model.meta["init_from"] = {"model": str(opts.init_from), "mapped_tokens": int(len(new_ids)),
                               "new_tokens": int(len(corpus.vocab) - len(new_ids))}
    return model


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
    trainer = Trainer(corpus, out_path, opts, events or TrainEvents())
    with thread_limit(opts.threads):
        if opts.resume:
            trainer.restore()
        else:
            trainer.build_model()
        return trainer.run()


# --- learning curves -----------------------------------------------------------------------------
def require_matplotlib():
    """matplotlib.pyplot with a file-only backend, or an error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise RnnkitError("plotting needs matplotlib, an optional extra: "
                          "pip install 'rnnkit[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_records(path: str | os.PathLike) -> list[dict]:
    """The metrics of a training run: from a model file (its metadata), or a metrics.jsonl."""
    from ..errors import FormatError

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


def plot_curves(records: list[dict], out_path: str | os.PathLike, title: str = "") -> dict:
    """Training and validation perplexity against epochs (log scale), written as a PNG."""
    plt = require_matplotlib()
    train = [(r["progress"], r["ppl"]) for r in records if r["kind"] == "train"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if train or epochs:
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
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(out_path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return {"out": str(out_path), "epochs": len(epochs), "train_points": len(train),
            "valid_points": len(valid)}
