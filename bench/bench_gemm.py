"""The packed AVX-512 GEMM alone: check it, then time it against numpy's sgemm.

For each shape C[M, N] = A[M, K] · W[N, K]ᵀ (W in PyTorch's layout, as the layers use it) it
first checks the packed product (kernels.matmul on the 'packed' backend, packing included)
against numpy in float64, then times it and np.matmul on the same float32 arrays in the same
run, with the same thread count for both (threadpoolctl for numpy's BLAS, set_num_threads for
rnnkit), and prints one table: GFLOP/s of each and the ratio rnnkit / numpy.

    python bench/bench_gemm.py --quick             # a few seconds
    python bench/bench_gemm.py --threads 2

The shapes: the per-step recurrent products of Zaremba's small and medium LSTM (B = 20), the
input projections of a 35-step window (T·B = 700 rows), and the softmax of a 10k vocabulary.
Only ratios measured in the same run mean anything on a shared machine.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnkit.nn.backend import kernels

from _machine import cpu_name  # bench/_machine.py

K = kernels()

SHAPES = [  # (name, M, K, N)
    ("step H=200", 20, 200, 800),
    ("step H=650", 20, 650, 2600),
    ("input proj H=200", 700, 200, 800),
    ("input proj H=650", 700, 650, 2600),
    ("softmax V=10k", 700, 200, 10000),
]
# float32 products of length K against float64: |error| <= RTOL · sum_k |a_mk w_nk| with room
# for K roundings (K · 2^-24 ≈ 4e-5 at K = 650), far below what a wrong index would give
RTOL = 1e-4


def best_time(fn, budget):
    """The best of repeated calls within about `budget` seconds (at least 3)."""
    fn()
    best, spent, n = np.inf, 0.0, 0
    while n < 3 or spent < budget:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def check(a, w):
    """The packed product against float64 numpy: the worst error relative to sum |a||w|."""
    c = K.matmul(a, w, trans_b=True)
    want = a.astype(np.float64) @ w.astype(np.float64).T
    scale = np.abs(a).astype(np.float64) @ np.abs(w).astype(np.float64).T
    err = float(np.max(np.abs(c - want) / scale))
    if not err <= RTOL:
        sys.exit(f"error: the packed GEMM is wrong: relative error {err:.2e} > {RTOL:.0e}")
    return err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for rnnkit and numpy")
    ap.add_argument("--quick", action="store_true", help="about 0.1 s of timing per product")
    args = ap.parse_args()
    if K.gemm_backend() != "packed":
        sys.exit("error: this CPU has no AVX-512, so there is no packed GEMM to time")
    budget = 0.1 if args.quick else 1.0
    K.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"# {datetime.date.today()}  CPU: {cpu_name()}  threads: {args.threads}  "
          f"check: relative error <= {RTOL:.0e} against float64")
    print(f"{'shape':<18s} {'M x K x N':>18s} {'rel err':>8s} {'rnnkit GFLOP/s':>15s} "
          f"{'numpy GFLOP/s':>14s} {'ratio':>6s}")
    with threadpool_limits(limits=args.threads):
        for name, M, Kd, N in SHAPES:
            a = rng.standard_normal((M, Kd)).astype(np.float32)
            w = (rng.standard_normal((N, Kd)) / np.sqrt(Kd)).astype(np.float32)
            err = check(a, w)
            c = np.empty((M, N), np.float32)
            t_rk = best_time(lambda: K.matmul(a, w, c, trans_b=True), budget)
            t_np = best_time(lambda: np.matmul(a, w.T, out=c), budget)
            flops = 2.0 * M * Kd * N
            print(f"{name:<18s} {f'{M} x {Kd} x {N}':>18s} {err:8.1e} {flops / t_rk / 1e9:15.1f} "
                  f"{flops / t_np / 1e9:14.1f} {t_np / t_rk:6.2f}")
    print("# rnnkit: kernels.matmul on the packed backend, packing W included; "
          "numpy: np.matmul on float32 (its BLAS sgemm); ratio = rnnkit / numpy speed")


if __name__ == "__main__":
    main()
