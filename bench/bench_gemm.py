"""The packed GEMM alone, on each kernel path and blocking: check it, then time it against
numpy's sgemm.

For each shape C[M, N] = A[M, K] · W[N, K]ᵀ (W in PyTorch's layout, as the layers use it) it
first checks the packed product (kernels.matmul on the 'packed' backend, packing included)
against numpy in float64, then times it and np.matmul on the same float32 arrays in the same
run, with the same thread count for both (threadpoolctl for numpy's BLAS, set_num_threads for
rnnkit), alternating rounds so that a busy spell of the machine hits every column alike, and
prints one table: GFLOP/s of each path (and blocking) and its ratio to numpy.

    python bench/bench_gemm.py --quick                          # a few seconds
    python bench/bench_gemm.py --threads 2 --isa all
    python bench/bench_gemm.py --isa avx512 --blocking 120x768,240x768,120x512
    python bench/bench_gemm.py --isa all --pack-a never,auto,always

--blocking times each MC x KC_MAX (rows of A per block x the most K per block; see
docs/kernels.md, "Blocking per microarchitecture") in place of the CPU's row of the blocking
table: the way to argue a new row for a CPU with numbers. A KC_MAX other than the row's cuts
the sum over K elsewhere, so its results differ in the last bits (the check still holds).
--pack-a times the kernels with A's block copied into their order first never, always, or
where the rule in rk_gemm.h says it pays (auto, the default); the copy changes no bits.

The shapes: the per-step recurrent products of Zaremba's small, medium and large LSTM (B = 20),
the input projections of a 35-step window (T·B = 700 rows), a backward product (dx, K = 4H) and
the softmax of a 10k vocabulary.
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

from _machine import cpu_header, isa_list  # bench/_machine.py

K = kernels()

SHAPES = [  # (name, M, K, N)
    ("step H=200", 20, 200, 800),
    ("step H=650", 20, 650, 2600),
    ("input proj H=200", 700, 200, 800),
    ("input proj H=650", 700, 650, 2600),
    ("softmax V=10k", 700, 200, 10000),
    ("dx H=650", 700, 2600, 650),
    ("step H=1500", 20, 1500, 6000),
    ("input proj H=1500", 700, 1500, 6000),
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


def blocking_list(arg: str | None) -> list[tuple[int, int] | None]:
    """--blocking 'MCxKC,...' as [(mc, kc_max), ...]; None: the CPU's row only."""
    if not arg:
        return [None]
    out = []
    for item in arg.split(","):
        try:
            mc, kc = (int(v) for v in item.lower().split("x"))
        except ValueError:
            sys.exit(f"error: --blocking takes MCxKC_MAX items such as 120x768, got {item!r}")
        if mc < 1 or kc < 16:
            sys.exit(f"error: --blocking needs MC >= 1 and KC_MAX >= 16, got {item!r}")
        out.append((mc, kc))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="threads for rnnkit and numpy")
    ap.add_argument("--quick", action="store_true", help="about 0.1 s of timing per product")
    ap.add_argument("--isa", default=None,
                    help="kernel paths to time: all, or a list such as avx512,avx2 "
                         "[the one selected at load time]")
    ap.add_argument("--blocking", default=None,
                    help="blockings to time, MCxKC_MAX, e.g. 120x768,240x768 [the CPU's row]")
    ap.add_argument("--pack-a", default=None,
                    help="when A's block is copied first: a list of auto (the rule in "
                         "rk_gemm.h), never, always [auto]")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds; each column keeps its best [3]")
    args = ap.parse_args()
    paths = [p for p in isa_list(args.isa) if p != "generic"]
    if not paths:
        sys.exit("error: this CPU has neither AVX2 nor AVX-512, so there is no packed GEMM to time")
    blockings = blocking_list(args.blocking)
    packs = (args.pack_a or "auto").split(",")
    if any(m not in K.PACK_A for m in packs):
        sys.exit(f"error: --pack-a takes {', '.join(K.PACK_A)}, got {args.pack_a!r}")
    budget = (0.1 if args.quick else 1.0) / args.rounds
    K.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    cols = []   # (label, path, (mc, kc_max, pack_a))
    for path in paths:
        K.set_isa(path)
        row = K.cpu_info()["blocking"]
        for b in blockings:
            mc, kc = b if b else (row["mc"], row["kc_max"])
            for mode in packs:
                label = path + (f" {mc}x{kc}" if args.blocking else "") + (
                    f" {mode}" if args.pack_a else "")
                cols.append((label, path, (mc, kc, mode)))
    print(f"# {datetime.date.today()}  {cpu_header()}  threads: {args.threads}  "
          f"check: relative error <= {RTOL:.0e} against float64")
    print("# GFLOP/s, best of " + str(args.rounds) + " alternating rounds; (x.xx) = rnnkit / numpy")
    width = max(14, *(len(c[0]) + 2 for c in cols))
    print(f"{'shape':<18s} {'M x K x N':>18s} {'rel err':>8s} "
          + "".join(f"{c[0]:>{width}s}" for c in cols) + f"{'numpy':>8s}")
    with threadpool_limits(limits=args.threads):
        for name, M, Kd, N in SHAPES:
            a = rng.standard_normal((M, Kd)).astype(np.float32)
            w = (rng.standard_normal((N, Kd)) / np.sqrt(Kd)).astype(np.float32)
            c = np.empty((M, N), np.float32)
            err, best = 0.0, [np.inf] * (len(cols) + 1)
            for r in range(args.rounds):
                for i, (_, path, b) in enumerate(cols):
                    K.set_isa(path)
                    K.set_blocking(b[0], b[1], pack_a=b[2])
                    if r == 0:
                        err = max(err, check(a, w))
                    best[i] = min(best[i], best_time(lambda: K.matmul(a, w, c, trans_b=True), budget))
                best[-1] = min(best[-1], best_time(lambda: np.matmul(a, w.T, out=c), budget))
            flops = 2.0 * M * Kd * N
            cells = "".join(f"{f'{flops / t / 1e9:.1f} ({best[-1] / t:.2f})':>{width}s}"
                            for t in best[:-1])
            print(f"{name:<18s} {f'{M} x {Kd} x {N}':>18s} {err:8.1e} {cells}"
                  f"{flops / best[-1] / 1e9:8.1f}")
    K.set_isa(paths[0])
    print("# rnnkit: kernels.matmul on the packed backend, packing W included; "
          "numpy: np.matmul on float32 (its BLAS sgemm)")


if __name__ == "__main__":
    main()
