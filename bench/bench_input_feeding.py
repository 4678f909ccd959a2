"""What input feeding (Luong et al. 2015, section 3.3; `train --type seq2seq --input-feeding`)
costs in training speed: target tokens/s of the same translation model with and without it,
rnnkit and its PyTorch anchor (bench/torch_seq2seq.py) in the same run.

With input feeding the decoder reads h~_{t-1}, so it cannot run as one window: rnnkit runs the
decoder one step at a time (a window kernel of T = 1 per step, then that step's attention), and
so does PyTorch (nn.LSTM called per step). Correctness first: on the first batch the PyTorch
loss must agree with rnnkit's to 1e-5 (relative) with input feeding before anything is timed.

Times are the process's CPU time (time.process_time), not wall time: on a shared machine a
process waits for a core, and its CPU seconds still measure its work (one thread each side).

Configuration: LSTM, E = H (default 256), one layer, bidirectional encoder, general attention,
batch 64 pairs, synthetic ids with Multi30k-like lengths (~14 source, ~15 target tokens).

Usage:
  python bench/bench_input_feeding.py --quick        # small sizes, a few steps (~1 min)
  python bench/bench_input_feeding.py                # E = H = 256, 20 steps each
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_header  # noqa: E402

from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqArchitecture, make_batch  # noqa: E402
from rnnkit.nn.backend import kernels  # noqa: E402
from rnnkit.text.vocab import SPECIALS, Vocab  # noqa: E402


def batches(rng, n, B, V):
    out = []
    for _ in range(n):
        src = [rng.integers(3, V, max(2, int(rng.normal(14, 3)))) for _ in range(B)]
        trg = [rng.integers(3, V, max(2, int(rng.normal(15, 3)))) for _ in range(B)]
        out.append(make_batch(src, trg))
    return out


def rnnkit_speed(model, data):
    model.forward_backward(data[0], 1.0)                                      # warm-up
    t0 = time.process_time()
    for b in data:
        model.forward_backward(b, 1.0 / b.size)
    return sum(b.tokens for b in data) / (time.process_time() - t0)


def torch_speed(tmodel, data, ts, torch):
    def step(b):
        tmodel.zero_grad()
        loss = tmodel(*ts.batch_tensors(b)) / b.size
        loss.backward()
    step(data[0])
    t0 = time.process_time()
    for b in data:
        step(b)
    return sum(b.tokens for b in data) / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    H = 64 if args.quick else 256
    V = 1000 if args.quick else 8000
    steps = args.steps or (8 if args.quick else 20)
    K = kernels()
    K.set_num_threads(args.threads)
    try:  # numpy's own BLAS (the attention's products) at the same thread count
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    vocab = Vocab(list(SPECIALS) + [f"w{i}" for i in range(V - 3)])
    rng = np.random.default_rng(0)
    data = batches(rng, steps, 64, V)
    try:
        import torch

        import torch_seq2seq as ts
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = ts = None
    print(f"# {datetime.date.today()}  {cpu_header()}  threads {args.threads}  "
          f"E = H = {H}, V = {V}, batch 64, {steps} steps")
    rows = []
    for feed in (False, True):
        arch = Seq2SeqArchitecture(V, V, H, H, 1, 1, "lstm", True, "general",
                                   input_feeding=feed)
        m = Seq2Seq(arch, vocab, vocab)
        m.init_uniform(np.random.default_rng(1), 0.1)
        theirs = None
        if torch is not None:
            t = ts.TorchSeq2Seq(arch.to_dict())
            ts.load_rnnkit_tensors(t, m.state_dict())
            ours = m.forward_loss(data[0])
            ref = float(t(*ts.batch_tensors(data[0])).detach())
            if abs(ours - ref) > 1e-5 * abs(ref):
                sys.exit(f"loss differs from PyTorch's (input feeding {feed}): {ours} vs {ref}")
            theirs = torch_speed(t, data, ts, torch)
        rows.append((feed, rnnkit_speed(m, data), theirs))
    print(f"{'input feeding':<14} {'rnnkit tok/s':>13} {'PyTorch tok/s':>14} {'ratio':>6}")
    for feed, ours, theirs in rows:
        tt = f"{theirs:14,.0f}" if theirs else f"{'-':>14}"
        ratio = f"{ours / theirs:6.2f}" if theirs else f"{'-':>6}"
        print(f"{'yes' if feed else 'no':<14} {ours:13,.0f} {tt} {ratio}")
    print(f"input feeding keeps {rows[1][1] / rows[0][1]:.0%} of rnnkit's speed without it"
          + (f" (PyTorch: {rows[1][2] / rows[0][2]:.0%})" if rows[0][2] else ""))


if __name__ == "__main__":
    main()
