"""The generic training loop with a task that is no language model: a quadratic fitted to points,
with a state carried between batches and randomness in its gradient. It trains, keeps the best
parameters, writes checkpoints and metrics, resumes bit for bit, and stops on a NaN."""
import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import rnnkit.training.loop as loop
from rnnkit.errors import TrainingError
from rnnkit.training.checkpoint import checkpoint_path, metrics_path, read_checkpoint
from rnnkit.training.loop import (
    LoopOptions,
    Task,
    Trainer,
    TrainEvents,
    TrainingInterrupted,
)

P, N, BATCH = 5, 64, 4   # parameters, training points, points per batch


class Quadratic(Task):
    """Fit w [P] to points x [N, P]: loss 0.5 ||w - m||^2 per point, where m is a running mean
    of the batches seen in the epoch (the carried state), plus gradient noise from the run's rng.
    Batches come in an order shuffled per epoch from (seed, epoch), as a bucketed seq2seq would."""

    def __init__(self, seed=0, nan_at=None):
        rng = np.random.default_rng(seed)
        self.points = {split: rng.normal(1.0, 0.5, (n, P))      # [n, P]
                       for split, n in (("train", N), ("valid", 16), ("test", 16))}
        self.nan_at, self.calls = nan_at, 0

    def build(self, opts, rng):
        self.opts = opts
        self.num_batches, self.epoch_tokens = N // BATCH, N
        self.w = rng.uniform(-1, 1, P)               # [P] flat parameters
        self.g = np.zeros(P)                         # [P] gradient
        self.m = np.zeros(P)                         # [P] carried from batch to batch

    def restore(self, opts, meta, path):
        assert meta["task"] == {"name": "quadratic", "size": P}
        self.build(opts, np.random.default_rng())    # the loop then fills flat

    @property
    def flat(self):
        return self.w

    @property
    def grad(self):
        return self.g

    def describe(self):
        return {"model_type": "quadratic", "parameters": P}

    def batches(self, epoch, start):
        order = np.random.default_rng([self.opts.seed, 2, epoch]).permutation(self.num_batches)
        for b in order[start:]:
            yield self.points["train"][b * BATCH:(b + 1) * BATCH], BATCH

    def loss_and_grad(self, batch, rng):
        self.calls += 1
        self.m = 0.5 * self.m + 0.5 * batch.mean(0)
        d = self.w - self.m
        self.g[...] = d + 0.01 * rng.standard_normal(P)
        nats = 0.5 * float(d @ d) * len(batch)
        return math.nan if self.calls == self.nan_at else nats

    def perplexity(self, split):
        d = self.w - self.points[split]
        return math.exp(0.5 * float((d * d).sum(1).mean()))

    def reset_state(self):
        self.m[...] = 0

    def state_tensors(self):
        return {"state.m": self.m}

    def load_state(self, tensors):
        self.m = np.array(tensors["state.m"])

    def checkpoint_meta(self):
        return {"task": {"name": "quadratic", "size": P}}

    def save_model(self, path, training):
        save_file({"w": self.w}, str(path), metadata={"training": json.dumps(training)})


class StopAfter(TrainEvents):
    def __init__(self, n):
        self.n, self.checkpoints = n, []

    def window(self, done, windows, tokens, loss):
        self.n -= 1

    def should_stop(self):
        return self.n <= 0

    def checkpoint(self, path, reason):
        self.checkpoints.append(reason)


OPTS = dict(epochs=4, lr=0.3, decay_after=2, threads=1, seed=3)


def records(out):
    strip = ("seconds", "tokens_per_s")
    return [{k: v for k, v in json.loads(line).items() if k not in strip}
            for line in metrics_path(out).read_text().splitlines()]


def test_loop_trains_a_task_that_is_no_language_model(tmp_path):
    task = Quadratic()
    out = tmp_path / "q.model"
    s = Trainer(task, out, LoopOptions(**OPTS), TrainEvents()).run()
    epochs = [r for r in records(out) if r["kind"] == "epoch"]
    assert [r["lr"] for r in epochs] == [0.3, 0.3, 0.15, 0.075]   # decay after epoch 2 on
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert s["model_type"] == "quadratic" and s["parameters"] == P and s["epochs_run"] == 4
    assert s["valid_perplexity"] == min(r["valid_ppl"] for r in epochs)
    best = load_file(str(out))["w"]                 # the best epoch's parameters, written to out
    np.testing.assert_array_equal(best, task.w)
    assert not checkpoint_path(out).exists() and records(out)[-1]["kind"] == "test"


@pytest.mark.parametrize("stops", [[3], [5, 9], [16]])  # mid-epoch, twice, at an epoch's end
def test_loop_resumes_bit_for_bit(tmp_path, stops):
    Trainer(Quadratic(), tmp_path / "full.model", LoopOptions(**OPTS), TrainEvents()).run()
    out = tmp_path / "part.model"
    for i, n in enumerate(stops):
        ev = StopAfter(n)
        with pytest.raises(TrainingInterrupted, match="--resume"):
            Trainer(Quadratic(), out, LoopOptions(**OPTS, resume=i > 0), ev).run()
        assert ev.checkpoints[-1] == "interrupted"
        tensors, meta = read_checkpoint(checkpoint_path(out))
        assert {"params", "state.m"} <= tensors.keys() and meta["task"]["name"] == "quadratic"
    s = Trainer(Quadratic(), out, LoopOptions(resume=True, threads=1), TrainEvents()).run()
    assert s["resumed_from"] is not None
    full = load_file(str(tmp_path / "full.model"))["w"]
    assert load_file(str(out))["w"].tobytes() == full.tobytes()
    assert records(out) == records(tmp_path / "full.model")


def test_loop_stops_on_nan_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "q.model"
    with pytest.raises(TrainingError, match=r"training diverged: the loss nan at epoch 2, "
                                            r"window 3/16 .*last good checkpoint .* is kept"):
        Trainer(Quadratic(nan_at=16 + 3), out, LoopOptions(**OPTS), TrainEvents()).run()
    _, meta = read_checkpoint(checkpoint_path(out))
    assert meta["position"] == {"epoch": 2, "window": 0} and meta["reason"] == "epoch"


def test_loop_imports_nothing_of_a_model_or_its_data():
    """loop.py imports from rnnkit only errors, nn and the checkpoint module."""
    tree = ast.parse(Path(loop.__file__).read_text())
    ours = [node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert sorted(ours) == ["checkpoint", "errors", "nn.backend", "nn.optim"]
    assert not [a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names if a.name.startswith("rnnkit")]


def test_thread_limit_holds_blas_to_one_thread_under_the_packed_kernels():
    """The kernels' own pool threads the layers; BLAS's spinning threads would take its cores."""
    from threadpoolctl import threadpool_info

    from rnnkit.nn.backend import kernels, thread_limit

    K = kernels()
    with thread_limit(2):
        assert K.get_num_threads() == 2
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and set(blas) == ({1} if K.gemm_backend() == "packed" else {2})
