"""Data-parallel training over MPI ranks (`mpiexec -n N rnnkit train ... --distributed`).

Dimension letters: P parameters (the flat buffer), N ranks, B the global batch (streams),
b = B / N the streams of one rank.

Every rank holds the whole model and trains on its shard of the batch: the task cuts the same
B streams a single process would read and keeps streams [rank * b, (rank + 1) * b) (Task.shard);
the translation and caption tasks, whose batch is a bucket of B independent examples, keep
part `rank` of each bucket (ShardedExamples), every rank visiting the buckets in the same order.
Each step every rank computes the gradient of its streams' loss, already scaled for the global
batch, and ONE allreduce (sum) of a [P + 2] buffer -- the flat gradient, the loss, a stop flag --
gives every rank the gradient a single process with batch B would compute (up to the order of
the float sums), the global loss and whether any rank was asked to stop (Ctrl-C). Then every rank
clips and steps the same way, so the parameters stay identical everywhere without ever being
sent again. Rank 0 writes the checkpoints, the metrics and the model file; the carried state of
every rank is gathered into the checkpoint as one [.., B, ..] tensor, so a checkpoint looks like
a single process's, and --resume needs the same N (the dropout generators are per rank).

A rank that dies (killed, out of memory) makes mpiexec end the others (MPICH's Hydra reports the
bad termination); a rank that fails with an error calls Abort from the command line, so the
job never hangs in an allreduce waiting for it.

What the ranks must agree on after an epoch (validation perplexity, BLEU: they drive the
learning-rate schedule, early stopping and the best model) is computed once, on rank 0, and
broadcast (ShardedExamples.on_root), instead of by every rank.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from .buckets import epoch_order

MPI_HINT = "pip install 'rnnkit[mpi]' (mpi4py and MPICH's wheel) and start with mpiexec -n N"
_active: World | None = None   # the job's World once mpi_world() made it


def mpi_world() -> World:
    """A World over MPI.COMM_WORLD, or InputError saying how to get mpi4py."""
    global _active
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise InputError(f"--distributed needs mpi4py ({e}): {MPI_HINT}") from None
    _active = World(MPI.COMM_WORLD, MPI)
    return _active


def active_world() -> World | None:
    """The World of this process's data-parallel job, if one was started."""
    return _active


class World:
    """The ranks of one job: rank, size and the few collectives the loop needs."""

    def __init__(self, comm, mpi):
        self.comm, self.mpi = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._buf: np.ndarray | None = None       # [P + 3] gradient, loss, two flags
        self.allreduce_seconds = 0.0               # time in the gradient allreduce
        self.steps = 0

    @property
    def root(self) -> bool:
        return self.rank == 0

    def allreduce_grad(self, grad: np.ndarray, nats: float, stop: bool, checkpoint: bool
                       ) -> tuple[float, bool, bool]:
        """Sum grad [P] over the ranks in place, in one allreduce with the loss and two flags
        riding along; returns (the summed loss, whether any rank asked to stop, whether any
        asked for a checkpoint) -- the same on every rank, so they take the same branches."""
        P = grad.shape[0]
        if self._buf is None or self._buf.shape[0] != P + 3 or self._buf.dtype != grad.dtype:
            self._buf = np.empty(P + 3, grad.dtype)
        buf = self._buf
        buf[:P] = grad
        # the loss in the gradient's float32 loses about 1e-7 of it: it is only reported and
        # tested for NaN (the gradient's own sums are float32 anyway)
        buf[P] = nats
        buf[P + 1] = 1.0 if stop else 0.0
        buf[P + 2] = 1.0 if checkpoint else 0.0
        t0 = time.perf_counter()
        self.comm.Allreduce(self.mpi.IN_PLACE, buf, op=self.mpi.SUM)
        self.allreduce_seconds += time.perf_counter() - t0
        self.steps += 1
        grad[...] = buf[:P]
        return float(buf[P]), bool(buf[P + 1] > 0), bool(buf[P + 2] > 0)

    def bcast_array(self, a: np.ndarray) -> None:
        """Rank 0's a into every rank's a (in place)."""
        self.comm.Bcast(a, root=0)

    def gather_tensors(self, tensors: dict[str, np.ndarray], axis: int
                       ) -> dict[str, np.ndarray] | None:
        """On rank 0: each tensor of every rank joined along `axis` in rank order; None
        elsewhere."""
        parts = self.comm.gather(tensors, root=0)
        if not self.root:
            return None
        return {name: np.concatenate([p[name] for p in parts], axis=axis) for name in tensors}

    def bcast(self, obj):
        """Rank 0's obj on every rank (a small picklable value: numbers, a dict of them)."""
        return self.comm.bcast(obj, root=0)

    def gather(self, obj):
        """Every rank's obj, in rank order, on rank 0 (None elsewhere)."""
        return self.comm.gather(obj, root=0)

    def abort(self, code: int) -> None:
        """End every rank of the job (after an error on this one)."""
        self.comm.Abort(code)


def shard_slice(total: int, rank: int, size: int, what: str) -> slice:
    """Rank `rank`'s equal part of `total` items (streams), or InputError when they do not
    divide evenly."""
    if total % size:
        raise InputError(f"--batch {total} does not divide among {size} ranks: use a multiple "
                         f"of {size} (each rank trains --batch / N {what})")
    b = total // size
    return slice(rank * b, (rank + 1) * b)


class ShardedExamples:
    """Data-parallel for tasks whose batch is a bucket of B independent examples (sentence
    pairs, captions), mixed into their Task: rank r of N trains on the r-th contiguous part of
    every bucket (B / N examples; a last, shorter bucket gives parts that differ by one, possibly
    empty), with the loss still averaged over the whole bucket, so the allreduced gradient is the
    one a single process computes for the bucket. Nothing is carried between batches, so there
    is no state to shard."""

    _shard: tuple[int, int] | None = None   # (rank, ranks) when data-parallel

    def shard(self, rank: int, size: int) -> None:
        self._shard = (rank, size)

    def check_shard(self, batch: int, what: str) -> None:
        """InputError unless --batch divides among the ranks."""
        if self._shard is not None:
            shard_slice(batch, *self._shard, what)

    def my_examples(self, idx: np.ndarray) -> np.ndarray:
        """This rank's part of a bucket's example indices (all of them without sharding)."""
        if self._shard is None:
            return idx
        rank, size = self._shard
        return np.array_split(np.asarray(idx), size)[rank]

    def bucket_batches(self, epoch: int, start: int, stream: int, tokens: np.ndarray):
        """The epoch's buckets in their shuffled order from batch `start` (epoch_order's RNG
        stream `stream`): ((this rank's batch of the bucket, or None if it has none; the
        bucket's size), the bucket's tokens, counted from `tokens` [examples]). The Task has
        buckets, num_batches, opts.seed and _batch(indices)."""
        order = epoch_order(self.opts.seed, stream, epoch, self.num_batches)
        for i in order[start:]:
            bucket = self.buckets[i]
            mine = self.my_examples(bucket)
            yield ((self._batch(mine) if len(mine) else None, len(bucket)),
                   int(tokens[bucket].sum()))

    def part_loss(self, batch, loss) -> float:
        """loss(part, 1 / bucket size) of this rank's part of a bucket_batches batch; a rank
        with no example of a short last bucket gets a zero gradient and adds 0."""
        part, bucket_size = batch
        if part is None:
            self.model.grad[...] = 0
            return 0.0
        return loss(part, 1.0 / bucket_size)

    def on_root(self, fn):
        """fn() computed on rank 0 and broadcast to every rank (fn() itself without sharding)."""
        world = _active if self._shard is not None else None
        if world is None or world.size == 1:
            return fn()
        return world.bcast(fn() if world.root else None)
