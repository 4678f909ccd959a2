"""Benchmark: inference threading and --share-prefixes (issue 15), interleaved A/B in one run.

1. Does OpenBLAS's thread pool (spinning after each call) slow the kernels' own pool when
   scoring, as it did in training? The same LSTM (2 layers of 200, V = 10,000: Zaremba's "small"
   shape, random weights -- the arithmetic is that of a trained one) scores the same sentences
   with the kernels at --threads and BLAS (A) left at its default, (B) held to one thread, the
   way `nn.backend.thread_limit` holds it. Runs alternate A, B, A, B, ... so that a busy
   machine's load falls on both alike; the table gives the median of each.
2. `rescore --share-prefixes` against plain batched scoring on N-best groups of 10 candidates
   that share prefixes as a recogniser's do (one sentence and 9 variants changed past a random
   point), alternating likewise.

Correctness first: the scores of A and B, and of shared and plain rescoring, must agree (1e-4).

    python bench/bench_inference.py [--threads 2] [--reps 5] [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from rnnkit.models.rnnlm import RNNLM, Architecture  # noqa: E402
from rnnkit.nn.backend import kernels  # noqa: E402
from rnnkit.rescoring.nbest import Candidate, Group  # noqa: E402
from rnnkit.rescoring.rescore import rescore, score_texts  # noqa: E402
from rnnkit.text.vocab import SPECIALS, Tokenizer, Vocab  # noqa: E402

from _machine import cpu_name  # bench/_machine.py


def sentences(rng, words, n, lo=5, hi=30):
    return [" ".join(words[i] for i in rng.integers(len(words), size=rng.integers(lo, hi)))
            for _ in range(n)]


def nbest_groups(rng, words, n):
    groups = []
    for g, s in enumerate(sentences(rng, words, n)):
        w = s.split()
        cands = [s]
        for _ in range(9):
            cut = int(rng.integers(len(w) // 2, len(w)))  # recogniser variants share a prefix
            cands.append(" ".join(w[:cut] + [words[i] for i in
                                             rng.integers(len(words), size=len(w) - cut)]))
        groups.append(Group(str(g), [Candidate(c, -1.0) for c in cands], "tsv"))
    return groups


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes, for checking the script")
    args = ap.parse_args()
    K = kernels()
    K.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    V = 2000 if args.quick else 10000
    words = [f"w{i}" for i in range(V - 3)]
    vocab = Vocab(list(SPECIALS) + words)
    lstm = RNNLM(Architecture("lstm", V, 200, 200, 2), vocab, Tokenizer())
    lstm.init_uniform(rng, 0.1)
    texts = sentences(rng, words, 200 if args.quick else 2000)
    groups = nbest_groups(rng, words, 20 if args.quick else 200)
    reps = 2 if args.quick else args.reps
    blas = [f"{p['internal_api']} {p['num_threads']} threads" for p in threadpool_info()
            if p["user_api"] == "blas"]
    print(f"# rnnkit inference threading, {datetime.date.today()}, {cpu_name()}, kernels "
          f"{args.threads} thread(s), BLAS default: {', '.join(blas) or 'none found'}, gemm "
          f"backend {K.gemm_backend()}{' (quick)' if args.quick else ''}")

    # --- correctness ---------------------------------------------------------------------------
    a = score_texts(lstm, texts[:50])[0]
    with threadpool_limits(limits=1):
        b = score_texts(lstm, texts[:50])[0]
    assert np.allclose(a, b, atol=1e-4), "scores depend on the BLAS thread count"
    plain = [r.lm for r in rescore(lstm, groups[:5], share=False)]
    shared = [r.lm for r in rescore(lstm, groups[:5], share=True)]
    assert all(np.allclose(x, y, atol=1e-4) for x, y in zip(plain, shared)), "share differs"

    # --- timing, interleaved ------------------------------------------------------------------
    tokens = sum(len(t.split()) + 1 for t in texts)
    cands = sum(len(g.candidates) for g in groups)
    times = {k: [] for k in ("blas default", "blas 1", "plain", "shared")}
    for _ in range(reps):
        t0 = time.perf_counter()
        score_texts(lstm, texts)
        times["blas default"].append(time.perf_counter() - t0)
        with threadpool_limits(limits=1):
            t0 = time.perf_counter()
            score_texts(lstm, texts)
            times["blas 1"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _r in rescore(lstm, groups, share=False):
                pass
            times["plain"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _r in rescore(lstm, groups, share=True):
                pass
            times["shared"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("\n| what | rnnkit | anchor | ratio |\n| --- | ---: | ---: | ---: |")
    print(f"| scoring, tokens/s: BLAS 1 thread vs BLAS default (anchor) | "
          f"{tokens / med['blas 1']:,.0f} | {tokens / med['blas default']:,.0f} | "
          f"{med['blas default'] / med['blas 1']:.2f} |")
    print(f"| rescoring, candidates/s: --share-prefixes vs plain (anchor) | "
          f"{cands / med['shared']:,.0f} | {cands / med['plain']:,.0f} | "
          f"{med['plain'] / med['shared']:.2f} |")
    print(f"\nmedians of {reps} interleaved runs; {tokens:,} tokens, {cands:,} candidates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
