"""Benchmark of the n-gram side at scale: sampling speed, the scale corpus, estimation against
lmplz as the corpus grows, and loading a memory-mapped model.

Stages (issue 17):
  1. Sampling: a 5-gram of WikiText-2 train (rnnkit's estimator, --order 5); its exact fast
     sampler against the generic sampler of the protocol (the anchor: the full distribution per
     step) in the same run. Target: >= 1M tokens/s. Checked first: the first token drawn after
     several contexts follows the model's distribution (total variation below 3 sigma).
  2. The scale corpus: --tokens tokens (default 100M) sampled from that model with --seed, one
     paragraph per line, written to --corpus (kept for lmplz and later runs).
  3. With --lmplz PATH (KenLM's lmplz built from source, see docs/ngram.md): rnnkit train
     --type ngram --order 5 against `lmplz -o 5 -S 2G` on the same file at each --sizes prefix,
     wall time and peak RSS from the kernel (rnnkit: prepare + train, the larger peak). Both
     read one copy of the text without blank lines and with <unk> renamed UNK (lmplz counts a
     blank line as a sentence and refuses <unk>). The n-gram counts per order must be lmplz's
     and every log10 p / backoff must match its ARPA within 1e-6 before anything is reported;
     every command is printed. --repeat-text 10 adds WikiText-2 x1 and x10 (issue 17's table).
  4. The resulting model memory-mapped: load time and the first perplexity of WikiText-2 valid
     against a full read (and KenLM's binary when --build-binary PATH is given).

Usage (the full run takes hours on 2 cores: run it on a quiet machine):
  python bench/bench_scale.py --corpus /data/scale100m.txt --lmplz kenlm/build/bin/lmplz \
      --build-binary kenlm/build/bin/build_binary --sizes 10M,30M,100M --repeat-text 10
  python bench/bench_scale.py --quick [--lmplz PATH]   # 1M tokens (200K for lmplz): checks it
  python bench/bench_scale.py --dask [--quick]         # the Dask estimator, 1 and 2 workers
  python bench/bench_scale.py --dask --text scale100m.txt --tokens 10M   # on the scale corpus
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import cpu_name  # bench/_machine.py
from bench_ngram import compare_with_reference, rnnkit_command, timed_process

ROOT = Path(__file__).resolve().parents[1]


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def check_sampler(lm, rng_seed: int) -> float:
    """Chi-square of 20k first draws after a few contexts against the model's p(. | context),
    over its 30 most likely tokens and the rest as one cell; fails below p = 1e-4. Returns the
    smallest p-value."""
    from scipy.stats import chisquare

    from rnnkit.decoding.sampling import sample_sentences

    worst = 1.0
    for prompt in ("", "the", "in the", "of the first", "he was"):
        draws = sample_sentences(lm, 20000, max_len=1, seed=rng_seed, prompt=prompt or None)
        k = len(prompt.split())
        first = np.array([s.ids[k] if len(s.ids) > k else 2 for s in draws])
        state = lm.start(1)
        for w in prompt.split():
            state = lm.advance(state, np.array([lm.vocab.index.get(w, 0)]))
        p = 10.0 ** lm.log_probs(state)[0]
        p /= p.sum()
        top = np.argsort(-p)[:30]
        freq = np.bincount(first, minlength=len(p))
        obs = np.append(freq[top], len(first) - freq[top].sum())
        exp = np.append(p[top], 1 - p[top].sum()) * len(first)
        _, pv = chisquare(obs, exp * obs.sum() / exp.sum())
        if pv < 1e-4:
            raise SystemExit(f"FAIL: draws after {prompt!r} are off the model (chi-square p {pv:g})")
        worst = min(worst, pv)
    return worst


def write_corpus(lm, path: Path, tokens: int, seed: int, chunk: int = 20000) -> tuple[int, float]:
    """Sample paragraphs until `tokens` tokens (</s> excluded); returns (tokens, seconds)."""
    from rnnkit.models.ngram._ngram import VocabHash, join_tokens

    data, off = VocabHash(lm.vocab.tokens).token_bytes()
    done, t0 = 0, time.perf_counter()
    seeds = np.random.default_rng(seed).integers(0, 2**62, 1 << 20)
    with open(path, "wb") as f:
        for i in range(1 << 20):
            ids, offsets, _, _ = lm.sample_ids(chunk, 10000, np.zeros(0, np.int64), int(seeds[i]))
            keep = np.flatnonzero(offsets[1:] - offsets[:-1] > 0)  # no empty lines
            parts = [ids[offsets[s]:offsets[s + 1]] for s in keep]
            cat = np.concatenate(parts)
            lens = np.zeros(len(parts) + 1, np.int64)
            np.cumsum([len(p) for p in parts], out=lens[1:])
            f.write(join_tokens(cat, lens, data, off))
            done += len(cat)
            if done >= tokens:
                break
    return done, time.perf_counter() - t0


def head_tokens(src: Path, dst: Path, tokens: int) -> None:
    """The first lines of src holding `tokens` tokens."""
    n = 0
    with open(src, "rb") as f, open(dst, "wb") as g:
        for line in f:
            g.write(line)
            n += len(line.split())
            if n >= tokens:
                break


# ---- the lmplz anchor ------------------------------------------------------------------------
def lmplz_text(src: Path, dst: Path, repeat: int = 1) -> int:
    """src (x repeat) as both tools read it alike: blank lines dropped (rnnkit's prepare skips
    them, lmplz counts each as the sentence <s> </s>) and the token <unk> renamed UNK (lmplz
    refuses <unk> in its input; rnnkit reads it as its unknown word). Returns the tokens."""
    tokens = 0
    with open(dst, "wb") as g:
        for _ in range(repeat):
            with open(src, "rb") as f:
                for line in f:
                    words = line.split()
                    if words:
                        g.write(b" ".join(b"UNK" if w == b"<unk>" else w for w in words) + b"\n")
                        tokens += len(words)
    return tokens


def arpa_counts(path: Path) -> list[int]:
    """The n-gram counts of an ARPA file's \\data\\ section."""
    counts = []
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"ngram "):
                counts.append(int(line.split(b"=")[1]))
            elif counts and not line.strip():
                return counts
    return counts


def compare_arpa_sorted(ours, theirs: Path, tmp: Path, memory: str) -> tuple[float, float]:
    """Every n-gram of two ARPA files compared without reading either into memory (lmplz's
    ARPA of the 100M-token corpus does not fit in Python on 24 GiB): each file is rewritten
    as one `words<TAB>log10 p<TAB>backoff` line per n-gram, order by order (a missing backoff
    is 0), the lines sorted by GNU sort within `memory` on disk, and the two sorted files
    walked side by side by awk. `ours` is an ARPA file or the command that writes one to
    stdout (no second 10 GB file on disk). Fails unless both hold the same n-grams; returns the
    largest |d log10 p| and |d backoff|."""
    split = (r'/^\\[0-9]+-grams:$/ { k = substr($1, 2) + 0; next } '
             r'/^\\/ || NF == 0 { k = 0; next } '
             r'k { print $2 "\t" $1 "\t" (NF > 2 ? $3 : 0) > (out "." k) }')
    env = dict(os.environ, LC_ALL="C")
    sorted_files = {}
    for name, arpa in (("ours", ours), ("theirs", theirs)):
        out = tmp / f"cmp-{name}"
        awk = ["awk", "-F", "\t", "-v", f"out={out}", split]
        if isinstance(arpa, Path):
            subprocess.run(awk + [str(arpa)], check=True)
        else:
            writer = subprocess.Popen(arpa, stdout=subprocess.PIPE)
            subprocess.run(awk, stdin=writer.stdout, check=True)
            writer.stdout.close()
            if writer.wait() != 0:
                raise SystemExit(f"FAIL: {' '.join(arpa)} failed")
        for part in sorted(tmp.glob(f"cmp-{name}.*")):
            done = part.with_suffix(part.suffix + ".sorted")
            subprocess.run(["sort", "-S", memory, "-T", str(tmp), "--parallel=2", "-o",
                            str(done), str(part)], check=True, env=env)
            part.unlink()
            sorted_files.setdefault(name, []).append(done)
    if len(sorted_files["ours"]) != len(sorted_files["theirs"]):
        raise SystemExit("FAIL: the orders differ from lmplz's")
    walk = ('{ if ($1 != $4) { print "FAIL: n-gram " NR ": " $1 " against lmplz'"'"'s " $4; '
            'bad = 1; exit 1 } d = $2 - $5; if (d < 0) d = -d; if (d > dp) dp = d; '
            'd = $3 - $6; if (d < 0) d = -d; if (d > db) db = d } '
            'END { if (bad) exit 1; printf "%.3g %.3g\\n", dp, db }')
    dp = db = 0.0
    for a, b in zip(sorted_files["ours"], sorted_files["theirs"]):
        if a.stat().st_size != 0 and b.stat().st_size == 0:
            raise SystemExit(f"FAIL: {b.name}: lmplz has no such order")
        # a shorter file leaves empty fields: the n-gram strings differ at that line
        paste = subprocess.Popen(["paste", str(a), str(b)], stdout=subprocess.PIPE, env=env)
        walker = subprocess.Popen(["awk", "-F", "\t", walk], stdin=paste.stdout,
                                  stdout=subprocess.PIPE, text=True, env=env)
        paste.stdout.close()  # awk's early exit then ends paste (SIGPIPE)
        out = walker.communicate()[0]
        paste.wait()
        if walker.returncode != 0:
            raise SystemExit(out.strip() or f"FAIL: comparing {a.name}")
        p, q = (float(v) for v in out.split())
        dp, db = max(dp, p), max(db, q)
        a.unlink()
        b.unlink()
    return dp, db


def compare_lmplz(args, tmp: Path, corpus: Path, wt2: Path, env) -> list[tuple]:
    """rnnkit (prepare + train, both under --memory MEMORY) against `lmplz -o 5 -S MEMORY` on
    the same text: the same n-gram counts per order and every log10 p / backoff within 1e-6
    first, then wall time and peak RSS of each child process. Prints every command it runs."""
    import shlex

    import rnnkit

    texts = []  # (name, text file, discount fallback, tokens)
    for size in ("200K" if args.quick else args.sizes).split(","):
        part = tmp / f"head-{size}.txt"
        head_tokens(corpus, part, parse_size(size))
        # sampled from a model in which every word follows many contexts, no word has an
        # adjusted count of 1: both need the fallback (each applies it to the failing order only)
        texts.append((f"scale {size}", tmp / f"scale-{size}.txt", True,
                      lmplz_text(part, tmp / f"scale-{size}.txt")))
    if args.repeat_text:
        for n in sorted({1, args.repeat_text}):
            # repeated text has no n-gram seen once at the top order: both need the fallback
            texts.append((f"WikiText-2 x{n}", tmp / f"wt2x{n}.txt", n > 1,
                          lmplz_text(wt2, tmp / f"wt2x{n}.txt", n)))
    rows = []
    for name, text, fallback, tokens in texts:
        arpa, ours, prepared = tmp / "lmplz.arpa", tmp / "ours.rnnkit", tmp / "prepared"
        commands = {
            "lmplz": [args.lmplz, "-o", "5", "-S", args.memory, "--text", str(text), "--arpa",
                      str(arpa)] + ["--discount_fallback"] * fallback,
            # lmplz reads text: rnnkit's time is prepare (all of it as train, not normalised:
            # lmplz reads bytes) + train
            "prepare": rnnkit_command() + ["prepare", str(text), "--split", "1,0,0",
                                           "--normalize", "none", "--memory", args.memory,
                                           "--out", str(prepared)],
            "train": rnnkit_command() + ["train", str(prepared), "--type", "ngram", "--order",
                                         "5", "--memory", args.memory, "--out", str(ours)]
                     + ["--discount-fallback"] * fallback}
        print(f"{name}:", file=sys.stderr)
        for cmd in commands.values():
            print("  " + shlex.join(cmd), file=sys.stderr)
        lw, lmib = timed_process(commands["lmplz"], env)
        pw, pmib = timed_process(commands["prepare"], env)
        tw, tmib = timed_process(commands["train"], env)
        rw, rmib = pw + tw, max(pmib, tmib)
        model = rnnkit.load(ours, mmap=True)
        theirs = arpa_counts(arpa)
        if model.counts != theirs:
            raise SystemExit(f"FAIL: {name}: n-grams per order {model.counts}, lmplz {theirs}")
        if tokens <= parse_size(args.full_check_max):
            dp, db = compare_with_reference(model, rnnkit.load(arpa))
            print(f"check: {name}: n-grams per order {theirs} as lmplz's; max |d log10 p| "
                  f"{dp:.1e}, max |d backoff| {db:.1e}")
        else:  # reading lmplz's ARPA into Python needs more than 24 GiB at 100M tokens
            export = rnnkit_command() + ["export", str(ours), "--arpa", "-"]
            dp, db = compare_arpa_sorted(export, arpa, tmp, args.memory)
            print(f"check: {name}: n-grams per order {theirs} as lmplz's; max |d log10 p| "
                  f"{dp:.1e}, max |d backoff| {db:.1e} (both ARPA files sorted on disk)")
        if max(dp, db) > 1e-6:
            raise SystemExit(f"FAIL: {name}: differs from lmplz by {max(dp, db):g}")
        rows.append((f"5-gram {name} ({tokens / 1e6:.2f}M tok): time (s)", f"{rw:.1f}",
                     "lmplz -o 5 -S " + args.memory, f"{lw:.1f}", f"{lw / rw:.2f}x"))
        rows.append((f"5-gram {name}: peak RSS (MiB)", f"{rmib:.0f}", "lmplz", f"{lmib:.0f}",
                     f"{lmib / rmib:.2f}x"))
        rows.append((f"5-gram {name}: prepare + train (s)", f"{pw:.1f} + {tw:.1f}", "", "", ""))
        for row in rows[-3:]:  # as they come: a long run that dies later keeps them
            print("  " + " | ".join(row), file=sys.stderr, flush=True)
        if args.build_binary:
            binary = tmp / "lmplz.binary"
            subprocess.run([args.build_binary, "trie", str(arpa), str(binary)], check=True,
                           capture_output=True)
            rows.append((f"model file {name} (MB)", f"{ours.stat().st_size / 1e6:.0f}",
                         "KenLM trie binary", f"{binary.stat().st_size / 1e6:.0f}", ""))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--corpus", type=Path, help="where to write (or find) the scale corpus")
    ap.add_argument("--tokens", default="100M", help="scale corpus size (tokens)")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--lmplz", help="KenLM's lmplz binary: runs the estimation comparison")
    ap.add_argument("--build-binary", help="KenLM's build_binary: the binary-model anchor")
    ap.add_argument("--sizes", default="10M,30M,100M", help="corpus prefixes for the growth table")
    ap.add_argument("--memory", default="2G", help="lmplz -S and rnnkit --memory")
    ap.add_argument("--repeat-text", type=int, default=0, help="also WikiText-2 x N")
    ap.add_argument("--full-check-max", default="30M",
                    help="up to this many tokens, lmplz's ARPA is read into memory to compare "
                         "every log10 value; above it, both ARPA files are sorted on disk")
    ap.add_argument("--quick", action="store_true",
                    help="1M tokens, estimation on 200K only: checks the script")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    env = dict(os.environ)
    import rnnkit
    from rnnkit.decoding import sampling

    tokens = parse_size("1M" if args.quick else args.tokens)
    wt2 = args.data / "wikitext-2" / "train.txt"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = tmp / "wt2-5.rnnkit"
        subprocess.run(rnnkit_command() + ["train", str(wt2), "--type", "ngram", "--order", "5",
                                           "--out", str(model_path), "--json"],
                       check=True, capture_output=True, env=env)
        lm = rnnkit.load(model_path)
        tv = check_sampler(lm, args.seed)
        print(f"check: first-token draws after 5 contexts follow the model (chi-square, smallest p {tv:.3g})")
        lm.sample_ids(1, 1, np.zeros(0, np.int64), 0)  # builds the sampler's tables
        t, c = time.perf_counter(), time.process_time()
        ids, _, _, done = lm.sample_ids(20000 if args.quick else 200000, 10000,
                                        np.zeros(0, np.int64), args.seed)
        fast = (len(ids) + done.sum()) / (time.perf_counter() - t)
        fast_cpu = (len(ids) + done.sum()) / (time.process_time() - c)
        state = lm.start(64)  # the anchor: the generic path, full distribution per step
        t, n = time.perf_counter(), 0
        rng = np.random.default_rng(args.seed)
        while time.perf_counter() - t < (1.0 if args.quick else 5.0):
            lp = lm.log_probs(state)
            state = lm.advance(state, sampling.draw(lp, rng))
            n += 64
        generic = n / (time.perf_counter() - t)
        rows.append(("sampling, WikiText-2 5-gram (tokens/s)", f"{fast:,.0f}",
                     "generic sampler", f"{generic:,.0f}", f"{fast / generic:.0f}x"))
        rows.append(("sampling, tokens per CPU-second", f"{fast_cpu:,.0f}", "", "", ""))
        corpus = args.corpus or tmp / "scale.txt"
        if not corpus.exists() or args.quick:
            n, secs = write_corpus(lm, corpus, tokens, args.seed, 2000 if args.quick else 20000)
            rows.append((f"scale corpus: {n:,} tokens written (tokens/s)", f"{n / secs:,.0f}",
                         "", "", ""))
        t = time.perf_counter()
        mapped = rnnkit.load(model_path, mmap=True)
        t_map = time.perf_counter() - t
        t = time.perf_counter()
        full = rnnkit.load(model_path)
        t_full = time.perf_counter() - t
        valid = (args.data / "wikitext-2" / "valid.txt").read_text("utf-8").splitlines()
        if mapped.perplexity(valid) != full.perplexity(valid):
            raise SystemExit("FAIL: the mapped model scores differently")
        rows.append(("load WikiText-2 5-gram, mapped (s)", f"{t_map:.3f}", "read in full",
                     f"{t_full:.3f}", f"{t_full / t_map:.1f}x"))
        # resident memory of a process that loads the model and scores WikiText-2 valid
        rss = []
        for mm in (True, False):
            code = (f"import rnnkit; lm = rnnkit.load({str(model_path)!r}, mmap={mm}); "
                    f"lm.perplexity(open({str(args.data / 'wikitext-2' / 'valid.txt')!r}, "
                    f"encoding='utf-8').read().splitlines())")
            rss.append(timed_process([sys.executable, "-c", code], env)[1])
        rows.append(("peak RSS, load + score valid, mapped (MiB)", f"{rss[0]:.0f}",
                     "read in full", f"{rss[1]:.0f}", f"{rss[1] / rss[0]:.2f}x"))
        rows.append((f"model file ({sum(lm.counts):,} n-grams, MB)",
                     f"{model_path.stat().st_size / 1e6:.0f}", "", "", ""))
        if args.lmplz:
            rows += compare_lmplz(args, tmp, corpus, wt2, env)
    print(f"\n{datetime.date.today()}  {cpu_name()}  threads {args.threads}"
          f"{'  (--quick)' if args.quick else ''}")
    print(f"{'measure':<46} {'rnnkit':>12}  {'anchor':<18} {'value':>10} {'ratio':>7}")
    for r in rows:
        print(f"{r[0]:<46} {r[1]:>12}  {r[2]:<18} {r[3]:>10} {r[4]:>7}")
    print("ratio: the anchor's time / rnnkit's (above 1: rnnkit is faster or smaller)")



# ------------------------------------------------------------------------------------------------
# --dask: the cluster estimator (models/ngram/cluster.py) on 1 and 2 local workers
# ------------------------------------------------------------------------------------------------
def dask_main() -> None:
    """--dask: rnnkit's 5-gram of WikiText-2 train (or --text) on a local Dask cluster of 1 and 2
    worker processes against the in-memory estimator (the anchor) in the same run. Each cluster run is
    first checked to give the in-memory tables bit for bit (np.array_equal on every table).
    On 2 shared cores no speed-up can show: the scaling to more workers is estimated from the
    stage timings (workers' stages divide by W, the driver's assembly does not)."""
    ap = argparse.ArgumentParser(description=dask_main.__doc__.split("\n")[0])
    ap.add_argument("--dask", action="store_true", required=True)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--workers", default="1,2", help="local cluster sizes to time")
    ap.add_argument("--quick", action="store_true", help="the first 20,000 lines only")
    ap.add_argument("--text", type=Path,
                    help="estimate on this text instead of WikiText-2 train (e.g. the scale "
                         "corpus)")
    ap.add_argument("--tokens", help="only the first lines of --text holding this many tokens "
                                     "(e.g. 10M)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import distributed
    from threadpoolctl import threadpool_limits

    from rnnkit.models.ngram import cluster
    from rnnkit.models.ngram import estimate as est
    from rnnkit.text.prepare import build_corpus

    wt2 = args.text or args.data / "wikitext-2" / "train.txt"
    with tempfile.TemporaryDirectory() as tmp:
        src = wt2
        if args.tokens:
            src = Path(tmp) / f"head-{args.tokens}.txt"
            head_tokens(wt2, src, parse_size(args.tokens))
        if args.quick:
            src = Path(tmp) / "head.txt"
            with open(wt2, encoding="utf-8") as f:
                src.write_text("".join(line for _, line in zip(range(20000), f)), "utf-8")
        corpus = build_corpus([str(src)], split=(1.0, 0.0, 0.0))
    ids, V, N = np.asarray(corpus["train"]), len(corpus.vocab), args.order
    print(f"{src.name if not args.quick else f'{wt2.name}, first 20,000 lines'}: "
          f"{len(ids):,} ids, vocabulary {V:,}, order {N}", file=sys.stderr)
    with threadpool_limits(1):
        t = time.perf_counter()
        # the scale corpus, sampled from a model, has no 1-gram of adjusted count 1
        fallback = args.text is not None
        ref, _ = est.estimate(ids, V, N, "mkn", discount_fallback=fallback)
        t_mem = time.perf_counter() - t
    rows = [("in memory (estimate.py)", "-", f"{t_mem:.2f}", "-", "1.00x", "")]
    stage_1 = None
    for n in [int(w) for w in args.workers.split(",")]:
        t = time.perf_counter()
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as lc, distributed.Client(lc) as c:
            t_start = time.perf_counter() - t
            t = time.perf_counter()
            got, stats = cluster.estimate(c, ids, V, N, "mkn", discount_fallback=fallback)
            t_run = time.perf_counter() - t
        for name in ("word", "ctx", "suffix", "logp", "backoff"):
            for k in range(N):
                a, b = getattr(ref, name)[k], getattr(got, name)[k]
                if a is not None and not (a.dtype == b.dtype and np.array_equal(a, b)):
                    sys.exit(f"FAILED: {name} of order {k + 1} differs with {n} workers")
        st = stats["stage_seconds"]
        stage_1 = st if stage_1 is None and n == 1 else stage_1
        rows.append((f"Dask, {n} worker{'s' * (n > 1)}, {stats['partitions']} shards", n,
                     f"{t_run:.2f}", f"{t_start:.1f}", f"{t_mem / t_run:.2f}x",
                     " ".join(f"{k} {v:.2f}" for k, v in st.items())))
    print(f"\n{datetime.date.today()}  {cpu_name()}  threads 1 per process"
          f"{'  (--quick)' if args.quick else ''}  -- identical tables checked for every run")
    print(f"{'estimator':<30} {'wall s':>8} {'start s':>8} {'vs mem':>7}  stages (s)")
    for r in rows:
        print(f"{r[0]:<30} {r[2]:>8} {r[3]:>8} {r[4]:>7}  {r[5]}")
    print("vs mem: in-memory time / this time (above 1: the cluster is faster); start: the "
          "local cluster's start-up, not in wall")
    if stage_1:
        par = sum(v for k, v in stage_1.items() if k != "assemble")
        ser = stage_1.get("assemble", 0.0)
        est_w = ", ".join(f"{w} workers ~{ser + par / w:.1f} s" for w in (2, 4, 8, 16))
        print(f"scaling estimate from the 1-worker stages (count/adjust/probabilities divide by "
              f"W, the driver's assembly {ser:.2f} s does not; shuffle traffic ignored): {est_w}")


if __name__ == "__main__":
    if "--dask" in sys.argv[1:]:
        dask_main()
    else:
        main()
