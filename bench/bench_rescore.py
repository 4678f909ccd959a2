"""Benchmark: N-best rescoring throughput (candidates per second) and memory.

N-best lists are built from Penn Treebank test sentences: each group holds the sentence and 9
corrupted variants (two words swapped, a word replaced, a word dropped, a word doubled), with a
made-up acoustic score. Timed on the same groups, in one run:

  - the n-gram model (5-gram MKN trained on PTB train with `rnnkit train --type ngram`),
  - the LSTM (2 layers of 200, PTB's vocabulary: Zaremba et al.'s "small" shape; its weights
    are random unless --lstm gives a trained model -- the arithmetic is the same),
  - their linear interpolation (0.5, 0.5),
  - the same LSTM in PyTorch (when torch imports), scoring the same batches: embedding, nn.LSTM,
    linear and log_softmax under no_grad, the way a PyTorch user would.

Correctness first: the PyTorch and rnnkit log10 scores of every candidate must agree (1e-3), and
a candidate's score must not depend on the batch it is in. Then the peak RSS of
`rnnkit rescore --best-only` streaming a generated N-best file, at two sizes (bounded memory
means the same peak for both).

    python bench/bench_rescore.py [--data ../shared/data] [--threads 2] [--quick]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnkit.models.mixture import Mixture  # noqa: E402
from rnnkit.rescoring.nbest import NBestReader  # noqa: E402
from rnnkit.rescoring.rescore import rescore, score_texts  # noqa: E402
from rnnkit.models.rnnlm import RNNLM, Architecture  # noqa: E402
from rnnkit.text.vocab import BOS, EOS, SPECIALS, Tokenizer, Vocab  # noqa: E402

from _machine import cpu_name  # bench/_machine.py


def corrupt(words: list[str], rng: np.random.Generator, vocab: list[str]) -> list[str]:
    w = list(words)
    kind = rng.integers(4)
    if len(w) < 2:
        kind = 1
    i = int(rng.integers(len(w))) if w else 0
    if kind == 0:  # swap two neighbours
        i = int(rng.integers(len(w) - 1))
        w[i], w[i + 1] = w[i + 1], w[i]
    elif kind == 1 and w:  # replace a word
        w[i] = vocab[int(rng.integers(len(vocab)))]
    elif kind == 2:  # drop a word
        del w[i]
    else:  # double a word
        w.insert(i, w[i])
    return w


def write_nbest(path: Path, sentences: list[str], size: int, vocab: list[str], seed: int = 0,
                repeat: int = 1) -> int:
    rng = np.random.default_rng(seed)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in range(repeat):
            for g, s in enumerate(sentences):
                words = s.split()
                cands = [words] + [corrupt(words, rng, vocab) for _ in range(size - 1)]
                for c in cands:
                    f.write(f"s{r}-{g}\t{' '.join(c)}\t{-0.1 * len(c) + rng.normal():.3f}\n")
                    n += 1
    return n


def train_ngram(train: Path, out: Path, order: int) -> str | None:
    cmd = [sys.executable, "-m", "rnnkit", "train", str(train), "--type", "ngram", "--order",
           str(order), "--out", str(out), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return (p.stderr.strip().splitlines() or ["failed"])[-1]
    return None


def torch_scorer(model: RNNLM, threads: int):
    import torch

    torch.set_num_threads(threads)
    a = model.arch
    emb = torch.nn.Embedding(a.vocab_size, a.emb)
    rnn = torch.nn.LSTM(a.emb, a.hidden, a.layers)
    dec = torch.nn.Linear(a.hidden, a.vocab_size)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    emb.load_state_dict({"weight": sd["encoder.weight"]})
    rnn.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")})
    dec.load_state_dict({"weight": sd["decoder.weight"], "bias": sd["decoder.bias"]})
    for m in (emb, rnn, dec):
        m.eval()

    def score(texts: list[str]) -> np.ndarray:
        ids = [model.encode(t)[0].astype(np.int64) for t in texts]
        T = max(len(i) for i in ids) + 1
        B = len(ids)
        x = np.zeros((T, B), np.int64)
        y = np.zeros((T, B), np.int64)
        mask = np.zeros((T, B), np.float32)
        x[0] = BOS
        for b, s in enumerate(ids):
            x[1:len(s) + 1, b] = s
            y[:len(s), b] = s
            y[len(s), b] = EOS
            mask[:len(s) + 1, b] = 1
        with torch.no_grad():
            h, _ = rnn(emb(torch.from_numpy(x)))
            lp = torch.log_softmax(dec(h), dim=-1)
            tok = lp.gather(2, torch.from_numpy(y)[..., None])[..., 0] * torch.from_numpy(mask)
            return (tok.sum(0) / np.log(10)).double().numpy()

    return score


def torch_worker(lstm_path: str, nbest: str, threads: int, batch: int, check: int) -> None:
    """Run in a process of its own (two thread pools spinning on the same 2 cores would slow
    each other down): print the log10 scores of the first `check` candidates and the best of
    two timings as JSON."""
    import json

    import torch

    from rnnkit.models.rnnlm import load as load_rnn

    model = load_rnn(lstm_path)
    score = torch_scorer(model, threads)
    groups = list(NBestReader(nbest))
    sample = [c.text for g in groups for c in g.candidates][:check]
    best = min(time_groups(score, groups, batch)[0] for _ in range(2))
    n = sum(len(g.candidates) for g in groups)
    print(json.dumps({"check": score(sample).tolist(), "seconds": best, "candidates": n,
                      "version": torch.__version__}))


def time_groups(fn, groups, batch: int) -> tuple[float, np.ndarray]:
    """Seconds to score every candidate, batching whole groups up to `batch` candidates."""
    out = []
    t0 = time.perf_counter()
    pending = []
    for g in groups:
        pending.extend(c.text for c in g.candidates)
        if len(pending) >= batch:
            out.append(fn(pending))
            pending = []
    if pending:
        out.append(fn(pending))
    return time.perf_counter() - t0, np.concatenate(out)


def peak_rss(model_path: Path, nbest: Path) -> tuple[float, float]:
    # VmHWM, not getrusage: Linux carries ru_maxrss over exec from the forking parent
    code = ("import re, sys, time; from rnnkit.cli import main; t = time.perf_counter(); "
            "c = main(sys.argv[1:]); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
            "sys.stderr.write(f'RSS {hwm} {time.perf_counter() - t}\\n'); sys.exit(c)")
    p = subprocess.run([sys.executable, "-c", code, "rescore", str(model_path), str(nbest),
                        "--best-only"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    line = [s for s in p.stderr.splitlines() if s.startswith("RSS ")]
    if p.returncode != 0 or not line:
        raise RuntimeError(f"rescore failed: {p.stderr.strip()[-300:]}")
    _, kb, secs = line[-1].split()
    return int(kb) / 1024, float(secs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                    help="directory holding ptb/{train,test}.txt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes, for checking the script")
    ap.add_argument("--lstm", help="a trained rnnkit LSTM model to use instead of random weights")
    ap.add_argument("--ngram", help="an n-gram model (or ARPA) instead of training a 5-gram")
    ap.add_argument("--batch", type=int, default=256, help="candidates per scoring call")
    ap.add_argument("--torch-worker", nargs=2, metavar=("LSTM", "NBEST"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch_worker(*args.torch_worker, args.threads, args.batch, 80)
        return 0

    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    ptb = Path(args.data) / "ptb"
    if not (ptb / "test.txt").exists():
        print(f"no PTB data under {ptb}: pass --data", file=sys.stderr)
        return 2
    test = [s.strip() for s in open(ptb / "test.txt", encoding="utf-8") if s.strip()]
    groups_n = 150 if args.quick else len(test)
    tmp = Path(tempfile.mkdtemp(prefix="bench_rescore."))
    print(f"# rnnkit rescoring benchmark, {datetime.date.today()}, {cpu_name()}, "
          f"{args.threads} thread(s){' (quick)' if args.quick else ''}")

    # --- models ------------------------------------------------------------------------------
    train_txt = ptb / "train.txt"
    words = sorted({w for line in open(train_txt, encoding="utf-8") for w in line.split()}
                   - set(SPECIALS))
    ngram = None
    ngram_path = Path(args.ngram) if args.ngram else tmp / "ptb5.rnnkit"
    if not args.ngram:
        problem = train_ngram(train_txt, ngram_path, 5 if not args.quick else 3)
        if problem:
            print(f"n-gram model: not available ({problem})")
    if ngram_path.exists():
        import rnnkit

        ngram = rnnkit.load(ngram_path)
    if args.lstm:
        from rnnkit.models.rnnlm import load as load_rnn

        lstm = load_rnn(args.lstm)
    else:
        vocab = Vocab(list(SPECIALS) + words)
        lstm = RNNLM(Architecture("lstm", len(vocab), 200, 200, 2), vocab, Tokenizer())
        lstm.init_uniform(np.random.default_rng(0), 0.1)
    lstm_path = tmp / "lstm.rnnkit"
    lstm.save(lstm_path)

    nbest = tmp / "ptb-test.nbest.tsv"
    total = write_nbest(nbest, test[:groups_n], 10, words)
    groups = list(NBestReader(nbest))
    print(f"N-best list: {len(groups):,} groups of 10 candidates ({total:,} candidates) from "
          f"PTB test sentences; batches of up to {args.batch} candidates\n")

    # --- correctness -------------------------------------------------------------------------
    sample = [c.text for g in groups[:8] for c in g.candidates]
    together = score_texts(lstm, sample)[0]
    alone = np.array([score_texts(lstm, [t])[0][0] for t in sample])
    assert np.allclose(together, alone, atol=1e-4), "a score depends on its batch"
    first80 = [c.text for g in groups for c in g.candidates][:80]
    mine80 = score_texts(lstm, first80)[0]

    # --- throughput ---------------------------------------------------------------------------
    rows = []

    def run(name, model, reps=1, share=False):
        best = None
        for _ in range(reps):
            t0 = time.perf_counter()
            n = sum(len(r.lm) for r in rescore(model, groups, batch=args.batch, share=share))
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        rows.append((name, n / best, best))
        return n / best

    if ngram is not None:
        run(f"n-gram ({ngram.model_type})", ngram, 3)
    lstm_cps = run("LSTM 2x200 (rnnkit)", lstm, 2)
    run("LSTM 2x200 (rnnkit, --share-prefixes)", lstm, 1, share=True)
    if ngram is not None:
        run("n-gram + LSTM, linear 0.5/0.5", Mixture([ngram, lstm], [0.5, 0.5]), 2)
    torch_cps = None
    import importlib.util
    import json

    if importlib.util.find_spec("torch") is None:
        print("PyTorch is not installed: no PyTorch column")
    else:  # after rnnkit's timings, in a process of its own
        p = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--batch",
                            str(args.batch), "--torch-worker", str(lstm_path), str(nbest)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"the PyTorch worker failed: {p.stderr.strip()[-500:]}")
        res = json.loads(p.stdout.strip().splitlines()[-1])
        err = float(np.max(np.abs(np.array(res["check"]) - mine80)))
        assert err < 1e-3, f"rnnkit and PyTorch disagree by {err} (log10)"
        print(f"check: rnnkit's and PyTorch's log10 scores of 80 candidates agree within "
              f"{err:.1e}\n")
        torch_cps = res["candidates"] / res["seconds"]
        rows.append((f"LSTM 2x200 (PyTorch {res['version']})", torch_cps, res["seconds"]))

    print("| model | candidates/s | seconds | vs PyTorch LSTM |")
    print("| --- | ---: | ---: | ---: |")
    for name, cps, secs in rows:
        ratio = f"{cps / torch_cps:.2f}x" if torch_cps else "-"
        print(f"| {name} | {cps:,.0f} | {secs:.2f} | {ratio} |")
    if torch_cps:
        print(f"\nLSTM: rnnkit / PyTorch = {lstm_cps / torch_cps:.2f}x (target >= 3x)")

    # --- streaming memory ----------------------------------------------------------------------
    rss_model = ngram_path if ngram is not None else lstm_path
    small, large = (20_000, 80_000) if args.quick else (100_000, 500_000)
    print(f"\npeak RSS of `rnnkit rescore {'n-gram' if ngram is not None else 'LSTM'} FILE "
          f"--best-only` (whole process):")
    print("| candidates | file MB | peak RSS MB | seconds |")
    print("| ---: | ---: | ---: | ---: |")
    for n in (small, large):
        reps = max(1, n // (len(test) * 10))
        f = tmp / f"big-{n}.tsv"
        count = write_nbest(f, test[: max(1, n // (10 * reps))], 10, words, seed=1, repeat=reps)
        mb, secs = peak_rss(rss_model, f)
        print(f"| {count:,} | {f.stat().st_size / 2**20:.1f} | {mb:.0f} | {secs:.1f} |")
        f.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
