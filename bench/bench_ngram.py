"""Benchmark of the n-gram models: KenLM agreement first, then training, scoring and ARPA loading.

Targets (issue 4), with KenLM's figures on this kind of machine (2-core Xeon) as anchors:
  - 5-gram modified Kneser-Ney on WikiText-2 train (2.1M tokens), process start to model file:
    <= 4 s wall and <= 500 MB peak RSS (lmplz -o 5 -S 2G: 3.96 s, 437 MiB); PTB: lmplz 1.63 s.
  - scoring the PTB test set repeated 20 times: >= 3M tokens/s (KenLM query: 4.6-6.1M).
  - loading PTB's 95 MB 5-gram ARPA: faster than KenLM's 0.86 s.
  - NLTK's KneserNeyInterpolated (order 3), if installed: fit and score on a small slice.
The `kenlm` Python module, if installed, is timed in the same run on the same ARPA file.

Correctness comes first: the PTB 5-gram (with <unk> renamed UNK, as the reference was built)
must give the reference test perplexity 141.1862 within 0.05%, and every n-gram's log10 p and
backoff must match the lmplz ARPA (o3 with --quick, o5 otherwise).

Training runs the `rnnkit` console script under /usr/bin/time -v (peak RSS from the kernel), on
a corpus prepared beforehand with --split 1,0,0 (the preparation is timed separately): process
start to model file, best of --repeat runs.

Usage:
  python bench/bench_ngram.py                  # ../shared/data relative to the repository
  python bench/bench_ngram.py --data DIR --repeat 3 --threads 1
  python bench/bench_ngram.py --quick          # PTB only, smaller repeats: checks the script
  python bench/bench_ngram.py --memory 200M,1G # only: train --memory against the in-memory run
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import cpu_name  # bench/_machine.py

ROOT = Path(__file__).resolve().parents[1]
KENLM = {"lmplz_wt2_s": 3.96, "lmplz_wt2_mib": 437, "lmplz_ptb_s": 1.63,
         "query_tok_s": (4.6e6, 6.1e6), "arpa_load_s": 0.86}
PTB_O5_TEST_PPL = 141.1862
TARGETS = {"train_s": 4.0, "train_mb": 500, "score_tok_s": 3e6, "load_s": KENLM["arpa_load_s"]}


def rnnkit_command() -> list[str]:
    script = Path(sys.executable).parent / "rnnkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rnnkit"]


def timed_process(cmd: list[str], env) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a child process, via /usr/bin/time -v when present."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    if os.path.exists(time_bin):
        t0 = time.perf_counter()
        r = subprocess.run([time_bin, "-v", *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        return wall, (int(m.group(1)) / 1024 if m else float("nan"))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024


def renamed_copy(src: Path, dst: Path) -> Path:
    """PTB with its <unk> token renamed UNK (how the reference ARPAs were trained)."""
    dst.write_text(src.read_text("utf-8").replace("<unk>", "UNK"), "utf-8")
    return dst


def compare_with_reference(ours, ref) -> tuple[float, float]:
    to_ours = np.array([ours.vocab.index.get(t, -1) for t in ref.vocab.tokens])
    worst_p = worst_b = 0.0
    for k in range(1, ours.order + 1):
        W_o, W_r = ours.words_matrix(k), to_ours[ref.words_matrix(k)]
        order = np.lexsort(W_r.T[::-1])
        if not np.array_equal(W_o, W_r[order]):
            raise SystemExit(f"FAIL: the {k}-gram sets differ from lmplz's")
        worst_p = max(worst_p, float(np.abs(ours.tables.logp[k - 1]
                                            - ref.tables.logp[k - 1][order]).max()))
        worst_b = max(worst_b, float(np.abs(ours.tables.backoff[k - 1]
                                            - ref.tables.backoff[k - 1][order]).max()))
    return worst_p, worst_b


def memory_mode(args, env) -> None:
    """--memory 200M,1G: the staged external estimator (`train --memory`) against the in-memory
    one on WikiText-2 train (PTB with --quick), 5-gram MKN: the models must be bit-identical
    (every table array equal) before the wall time and peak RSS of each are printed, with the
    in-memory run as the anchor and lmplz's recorded figure beside it."""
    import rnnkit

    cmd = rnnkit_command()
    name, text = ("PTB", args.data / "ptb" / "train.txt") if args.quick else \
        ("WikiText-2", args.data / "wikitext-2" / "train.txt")
    repeat = 1 if args.quick else args.repeat
    tmp = Path(tempfile.mkdtemp(prefix="bench_ngram_memory."))
    try:
        prepared = tmp / "prepared"
        timed_process(cmd + ["prepare", str(text), "--split", "1,0,0", "--out", str(prepared),
                             "--json"], env)
        runs = {}
        for budget in [None] + args.memory.split(","):
            out = tmp / f"m-{budget or 'ram'}.rnnkit"
            extra = [] if budget is None else ["--memory", budget, "--temp-dir", str(tmp)]
            best, rss = float("inf"), 0.0
            for _ in range(repeat):
                wall, mib = timed_process(cmd + ["train", str(prepared), "--type", "ngram",
                                                 "--order", "5", "--out", str(out), "--json",
                                                 *extra], env)
                best, rss = min(best, wall), max(rss, mib)
            runs[budget] = (best, rss, out)
        ref = rnnkit.load(runs[None][2]).tables
        for budget, (_, _, out) in runs.items():
            t = rnnkit.load(out).tables
            for field in ("word", "ctx", "suffix", "logp", "backoff"):
                for k in range(1, ref.order):
                    if not np.array_equal(getattr(ref, field)[k], getattr(t, field)[k]):
                        raise SystemExit(f"FAIL: --memory {budget}: {field} of order {k + 1} "
                                         f"differs from the in-memory model")
        print(f"check: the models of --memory {args.memory} are bit-identical to the in-memory "
              f"one (every n-gram, log10 p and backoff)")
        wall0, rss0, _ = runs[None]
        print(f"\n{name} train, 5-gram MKN, process start to model file, best of {repeat}; "
              f"{datetime.date.today()}, {cpu_name()}, {args.threads} thread(s); taken on a busy "
              f"machine unless it was quiet")
        print(f"{'estimator':<28}{'wall s':>9}{'peak RSS MiB':>14}{'time vs RAM':>13}")
        for budget, (wall, rss, _) in runs.items():
            label = "in memory (anchor)" if budget is None else f"--memory {budget}"
            print(f"{label:<28}{wall:>9.2f}{rss:>14.0f}{wall / wall0:>12.2f}x")
        if not args.quick:
            print(f"{'lmplz -o 5 -S 2G (recorded)':<28}{KENLM['lmplz_wt2_s']:>9.2f}"
                  f"{KENLM['lmplz_wt2_mib']:>14.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--quick", action="store_true", help="PTB only, one repeat: checks the script")
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing; the best is kept")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (pinned)")
    ap.add_argument("--memory", metavar="SIZES",
                    help="only the memory-budget comparison, e.g. 200M,1G (see memory_mode)")
    args = ap.parse_args()
    repeat = 1 if args.quick else args.repeat
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    env = dict(os.environ)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass

    if args.memory:
        memory_mode(args, env)
        return

    import rnnkit
    from rnnkit.models.ngram import estimate as ngram
    from rnnkit.models.ngram.arpa import read_arpa
    from rnnkit.text.prepare import build_corpus
    from rnnkit.decoding.scoring import score_text

    data, ref = args.data, args.data / "reference"
    if not (ref / "ptb-unkword.o5.arpa.gz").exists():
        raise SystemExit(f"{ref}: the KenLM reference data is not there; pass --data")
    rows = []  # (what, rnnkit, anchor name, anchor value, ratio text)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ngram."))
    try:
        # ---- correctness ---------------------------------------------------------------------
        train_txt = renamed_copy(data / "ptb" / "train.txt", tmp / "ptb.train.txt")
        test_txt = renamed_copy(data / "ptb" / "test.txt", tmp / "ptb.test.txt")
        corpus = build_corpus([str(train_txt)], split="1,0,0")
        o5 = ngram.train(corpus, 5)
        test_lines = test_txt.read_text("utf-8").splitlines()
        ppl = score_text(o5, test_lines).perplexity
        rel = abs(ppl / PTB_O5_TEST_PPL - 1)
        print(f"check: PTB 5-gram test perplexity {ppl:.4f} (KenLM {PTB_O5_TEST_PPL}, "
              f"relative difference {rel:.1e})")
        if rel > 5e-4:
            raise SystemExit("FAIL: perplexity differs from KenLM's by more than 0.05%")
        check_order = 3 if args.quick else 5
        ours = o5 if check_order == 5 else ngram.train(corpus, 3)
        worst_p, worst_b = compare_with_reference(
            ours, read_arpa(ref / f"ptb-unkword.o{check_order}.arpa.gz"))
        print(f"check: every {check_order}-gram model entry vs lmplz: max |d log10 p| "
              f"{worst_p:.1e}, max |d backoff| {worst_b:.1e}")
        if worst_p > 1e-5 or worst_b > 1e-5:
            raise SystemExit("FAIL: the model differs from lmplz's by more than 1e-5")

        # ---- training ------------------------------------------------------------------------
        cmd = rnnkit_command()
        sets = [("PTB", train_txt, KENLM["lmplz_ptb_s"], None)]
        wt2 = data / "wikitext-2" / "train.txt"
        if not args.quick and wt2.exists():
            sets.append(("WikiText-2", wt2, KENLM["lmplz_wt2_s"], KENLM["lmplz_wt2_mib"]))
        for name, text, anchor_s, anchor_mib in sets:
            prepared = tmp / f"{name}.prepared"
            t_prep, _ = timed_process(cmd + ["prepare", str(text), "--split", "1,0,0", "--out",
                                             str(prepared), "--json"], env)
            best, rss = float("inf"), 0.0
            for _ in range(repeat):
                wall, mib = timed_process(cmd + ["train", str(prepared), "--type", "ngram",
                                                 "--order", "5", "--out", str(tmp / "m.rnnkit"),
                                                 "--json"], env)
                best, rss = min(best, wall), max(rss, mib)
            rows.append((f"train 5-gram MKN, {name} (s, process start to model file)",
                         f"{best:.2f}", "lmplz -o 5", f"{anchor_s:.2f}", f"{anchor_s / best:.2f}x"))
            if anchor_mib:
                rows.append((f"train 5-gram MKN, {name}: peak RSS (MiB)", f"{rss:.0f}",
                             "lmplz -o 5 -S 2G", f"{anchor_mib}", f"{anchor_mib / rss:.2f}x"))
            rows.append((f"prepare {name} (s, not in the training time)", f"{t_prep:.2f}", "",
                         "", ""))

        # ---- scoring -------------------------------------------------------------------------
        lines = test_lines * 20
        n_tokens = sum(len(s.split()) + 1 for s in lines)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            s = score_text(o5, lines)
            best = min(best, time.perf_counter() - t0)
        assert s.tokens == n_tokens
        rate = n_tokens / best
        lo, hi = KENLM["query_tok_s"]
        rows.append(("score PTB test x20 (tokens/s, text to summary)", f"{rate / 1e6:.2f}M",
                     "KenLM query (binary)", f"{lo / 1e6:.1f}-{hi / 1e6:.1f}M",
                     f"{rate / hi:.2f}-{rate / lo:.2f}x"))
        ids, offsets, _ = o5.encode_lines(lines)
        t0 = time.perf_counter()
        o5.score_flat(ids, offsets)
        flat = n_tokens / (time.perf_counter() - t0)
        rows.append(("score PTB test x20 (tokens/s, ids to log10, compiled)", f"{flat / 1e6:.2f}M",
                     "", "", ""))

        # ---- ARPA load -----------------------------------------------------------------------
        plain = tmp / "ptb-unkword.o5.arpa"
        with gzip.open(ref / "ptb-unkword.o5.arpa.gz", "rb") as f, open(plain, "wb") as g:
            shutil.copyfileobj(f, g, 1 << 22)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            loaded = rnnkit.load(plain)
            best = min(best, time.perf_counter() - t0)
        assert abs(score_text(loaded, test_lines).perplexity / PTB_O5_TEST_PPL - 1) < 5e-4
        size_mb = plain.stat().st_size / 1e6
        rows.append((f"load PTB 5-gram ARPA, {size_mb:.0f} MB (s)", f"{best:.2f}", "KenLM",
                     f"{KENLM['arpa_load_s']:.2f}", f"{KENLM['arpa_load_s'] / best:.2f}x"))

        # ---- the kenlm module in this run ----------------------------------------------------
        try:
            import kenlm
        except ImportError:
            kenlm = None
            print("kenlm module not installed: its rows are skipped")
        if kenlm is not None:
            t0 = time.perf_counter()
            km = kenlm.Model(str(plain))
            t_load = time.perf_counter() - t0
            rows.append(("load PTB 5-gram ARPA (s)", f"{best:.2f}", "kenlm module, same run",
                         f"{t_load:.2f}", f"{t_load / best:.2f}x"))
            sample = test_lines * 2
            t0 = time.perf_counter()
            total = sum(lp for s in sample for lp, _, _ in km.full_scores(s))
            t_k = time.perf_counter() - t0
            n = sum(len(s.split()) + 1 for s in sample)
            t0 = time.perf_counter()
            ours_total = score_text(o5, sample).log10_prob
            t_o = time.perf_counter() - t0
            if abs(total - ours_total) > 1e-3 * abs(total):
                raise SystemExit(f"FAIL: kenlm total {total} vs rnnkit {ours_total}")
            rows.append(("score PTB test x2 (tokens/s)", f"{n / t_o / 1e6:.2f}M",
                         "kenlm full_scores, same run", f"{n / t_k / 1e6:.2f}M",
                         f"{t_k / t_o:.2f}x"))

        # ---- NLTK ----------------------------------------------------------------------------
        try:
            from nltk.lm import KneserNeyInterpolated
            from nltk.lm.preprocessing import padded_everygram_pipeline
        except ImportError:
            KneserNeyInterpolated = None
            print("nltk not installed: its rows are skipped")
        if KneserNeyInterpolated is not None:
            n_train = 500 if args.quick else 2000
            sents = [s.split() for s in train_txt.read_text("utf-8").splitlines()[:n_train]]
            t0 = time.perf_counter()
            lm = KneserNeyInterpolated(3)
            lm.fit(*padded_everygram_pipeline(3, sents))
            t_fit = time.perf_counter() - t0
            slice_path = tmp / "slice.txt"
            slice_path.write_text("\n".join(" ".join(s) for s in sents) + "\n", "utf-8")
            t0 = time.perf_counter()
            tri = ngram.train(build_corpus([str(slice_path)], split="1,0,0"), 3, "kn",
                              discount_fallback=True)
            t_ours = time.perf_counter() - t0
            rows.append((f"fit 3-gram KN on {n_train} PTB sentences (s)", f"{t_ours:.3f}",
                         "nltk KneserNeyInterpolated", f"{t_fit:.2f}", f"{t_fit / t_ours:.0f}x"))
            grams = [(tuple(s[i - 2:i]), s[i]) for s in sents[:50] for i in range(2, len(s))][:300]
            t0 = time.perf_counter()
            for ctx, w in grams:
                lm.score(w, ctx)
            t_n = (time.perf_counter() - t0) / len(grams)
            t0 = time.perf_counter()
            for _ in range(20):
                tri.score_arrays([tri.encode(" ".join(ctx + (w,)))[0] for ctx, w in grams],
                                 bos=False, eos=False)
            t_r = (time.perf_counter() - t0) / (20 * len(grams))
            rows.append(("score one trigram (microseconds)", f"{t_r * 1e6:.1f}",
                         "nltk KneserNeyInterpolated", f"{t_n * 1e6:.0f}", f"{t_n / t_r:.0f}x"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"rnnkit n-gram benchmark, {datetime.date.today()}, {cpu_name()}, "
                    f"{os.cpu_count()} cores, {args.threads} thread(s), numpy {np.__version__}, "
                    f"rnnkit {rnnkit.__version__}" + (" (--quick)" if args.quick else ""),
              title_justify="left")
    for col in ("measure", "rnnkit", "anchor", "anchor value", "rnnkit vs anchor"):
        t.add_column(col, justify="left" if col in ("measure", "anchor") else "right")
    for r in rows:
        t.add_row(*r)
    Console(width=160).print(t)
    print("KenLM anchors are the figures quoted in issue 4 (lmplz/query on a 2-core Xeon), unless "
          "the row says 'same run'. Ratios > 1 mean rnnkit is faster (or smaller).")


if __name__ == "__main__":
    main()
