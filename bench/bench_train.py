"""Benchmark of recurrent-model training: Zaremba et al.'s "small" PTB configuration, rnnkit
against a PyTorch model of the same architecture in the same run.

Configuration (Zaremba, Sutskever & Vinyals 2014, "small"): 2 LSTM layers of 200 units, 200-d
embedding, bptt 20, batch 20, 13 epochs, SGD lr 1 halved after each epoch from epoch 4 on
(epochs 5.. get 0.5, 0.25, ...), gradient norm clipped at 5, uniform init in [-0.1, 0.1], no
dropout; the loss is the cross-entropy summed over the window and averaged over the batch.
Their test perplexity: 114.5 (target: rnnkit <= 114.5). Speed target: rnnkit's training
tokens/s >= 2x PyTorch's on every kernel path, avx512 and avx2 (same architecture, data order,
loss, clipping and threads; PyTorch runs in a separate process, `--torch-worker`, so the two
never share cores, and on its faster path: as shipped with oneDNN or with
`torch.backends.mkldnn.flags(enabled=False)`). An anchor measured here before: PyTorch trains
this configuration at about 8,100 tokens/s with 2 threads.

Correctness before timing: the PyTorch model is loaded with rnnkit's initial weights
(`load_state_dict` on the rnnkit tensors) and both compute the loss and every gradient of the
first window; they must agree (relative 1e-4) before anything is timed.

Usage:
  python bench/bench_train.py                       # full: 13 epochs rnnkit + PyTorch speed (1 epoch per path)
  python bench/bench_train.py --quick               # 300 windows, best of 3 alternating rounds
  python bench/bench_train.py --quick --isa all     # every kernel path here, one PyTorch anchor
  python bench/bench_train.py --epochs 2 --threads 1
  python bench/bench_train.py --corpus wikitext-2   # same configuration on WikiText-2
  python bench/bench_train.py --corpus tinyshakespeare --quick  # character level, bits/char + samples
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import cpu_header, isa_list  # bench/_machine.py

ROOT = Path(__file__).resolve().parents[1]
ZAREMBA_SMALL = dict(model_type="lstm", emb=200, hidden=200, layers=2, dropout=0.0, bptt=20,
                     batch=20, epochs=13, optimizer="sgd", lr=1.0, lr_decay=0.5, decay_after=4,
                     clip=5.0, init_scale=0.1, seed=0)
ZAREMBA_TEST_PPL = 114.5
SPEED_TARGET = 2.0
CHAR = dict(model_type="lstm", emb=128, hidden=512, layers=2, bptt=128, batch=64, epochs=5,
            optimizer="adam", lr=2e-3, lr_decay=0.9, decay_after=1, clip=5.0, init_scale=0.08)


def load_corpus(data: Path, name: str):
    from rnnkit.text.prepare import build_corpus

    d = data / name
    if name == "tinyshakespeare":
        return build_corpus([str(d / "input.txt")], level="char", split="0.9,0.05,0.05")
    missing = [f for f in ("train.txt", "valid.txt", "test.txt") if not (d / f).exists()]
    if missing:
        raise SystemExit(f"{d}: missing {', '.join(missing)} (pass --data DIR)")
    return build_corpus([str(d / "train.txt")], valid=str(d / "valid.txt"),
                        test=str(d / "test.txt"))


def side_by_side_check(seconds: float = 0.6) -> str:
    """Do two single-thread processes run at full speed side by side (2 free cores)?"""
    code = ("import time,numpy as np;a=np.random.rand(20,200).astype(np.float32);"
            "b=np.random.rand(200,800).astype(np.float32);n=0;t=time.perf_counter()\n"
            f"while time.perf_counter()-t<{seconds}:\n a@b;n+=1\nprint(n)")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def run(k):
        ps = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               env=env) for _ in range(k)]
        return [int(p.communicate()[0]) for p in ps]

    alone = run(1)[0]
    pair = run(2)
    ratio = min(pair) / alone
    verdict = "yes" if ratio > 0.85 else "NO: the machine is shared, 2-thread numbers are unreliable"
    return f"two 1-thread processes side by side run at {ratio:.2f}x of one alone ({verdict})"


# --- PyTorch (in its own process) -----------------------------------------------------------------
def torch_worker(args) -> None:
    """Train PyTorch's LSTM LM from rnnkit's initial weights on the same streams; print JSON."""
    import torch
    from safetensors.torch import load_file, save_file

    from rnnkit.training.lm_task import batchify, lm_stream

    torch.set_num_threads(args.threads)
    cfg = json.loads(args.config)
    corpus = load_corpus(Path(args.data), args.corpus)
    V = len(corpus.vocab)
    E, H, L, B, T = cfg["emb"], cfg["hidden"], cfg["layers"], cfg["batch"], cfg["bptt"]

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, L)
            self.decoder = torch.nn.Linear(H, V)

        def forward(self, x, hidden):
            out, hidden = self.rnn(self.encoder(x), hidden)
            return self.decoder(out).view(-1, V), hidden

    model = LM()
    model.load_state_dict(load_file(args.init))
    x, y = lm_stream(corpus["train"])
    xb, yb = torch.from_numpy(batchify(x, B)), torch.from_numpy(batchify(y, B))
    starts = list(range(0, xb.shape[0], T))
    params = list(model.parameters())

    def step(i, hidden, lr):
        s = starts[i]
        hidden = tuple(h.detach() for h in hidden)
        logits, hidden = model(xb[s:s + T], hidden)
        # Zaremba's loss: summed over the window, averaged over the batch
        loss = torch.nn.functional.cross_entropy(logits, yb[s:s + T].reshape(-1),
                                                 reduction="sum") / B
        model.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["clip"])
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-lr)
        return hidden, float(loss)

    zeros = (torch.zeros(L, B, H), torch.zeros(L, B, H))
    # gradients of the first window, for the correctness check (before any update)
    logits, _ = model(xb[:T], zeros)
    loss0 = torch.nn.functional.cross_entropy(logits, yb[:T].reshape(-1), reduction="sum") / B
    model.zero_grad()
    loss0.backward()
    save_file({k: p.grad.contiguous() for k, p in model.named_parameters()}, args.grads)
    model.zero_grad()
    n = min(args.windows, len(starts)) if args.windows else len(starts)
    warm = min(10, n // 10)
    tokens = sum(min(T, xb.shape[0] - starts[i]) * B for i in range(warm, n))
    speeds = {}
    # PyTorch's faster path counts: as shipped (oneDNN) or its native kernels, each from the
    # same initial weights over the same windows
    for name, flag in (("onednn", True), ("native", False)):
        model.load_state_dict(load_file(args.init))
        hidden = zeros
        t0 = None
        with torch.backends.mkldnn.flags(enabled=flag):
            for i in range(n):
                if i == warm:
                    t0 = time.perf_counter()
                hidden, _ = step(i, hidden, cfg["lr"])
        speeds[name] = tokens / (time.perf_counter() - t0)
    print(json.dumps({"loss0": float(loss0), "tokens_per_s": max(speeds.values()),
                      "speeds": speeds, "windows": n - warm,
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "capability": torch.backends.cpu.get_cpu_capability()}))


def run_torch(args, cfg, init_path, grads_path, windows) -> dict | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    cmd = [sys.executable, __file__, "--torch-worker", "--data", str(args.data), "--corpus",
           args.corpus, "--threads", str(args.threads), "--config", json.dumps(cfg), "--init",
           str(init_path), "--grads", str(grads_path), "--windows", str(windows)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"the PyTorch worker failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- rnnkit ---------------------------------------------------------------------------------------
def check_against_torch(model, corpus, cfg, grads_path, loss_torch) -> str:
    """rnnkit's loss and every gradient of the first window against PyTorch's."""
    from safetensors.numpy import load_file

    from rnnkit.training.lm_task import batchify, lm_stream

    x, y = lm_stream(corpus["train"])
    xb, yb = batchify(x, cfg["batch"]), batchify(y, cfg["batch"])
    T, B = cfg["bptt"], cfg["batch"]
    h, c = model.zero_state(B)
    loss = model.forward_backward(xb[:T], yb[:T], h, c, 1.0 / B) / B
    theirs = load_file(str(grads_path))
    worst = 0.0
    for name, g in theirs.items():
        ours = model.g[name]
        err = np.abs(ours - g).max() / max(np.abs(g).max(), 1e-12)
        worst = max(worst, float(err))
    rel = abs(loss - loss_torch) / abs(loss_torch)
    if rel > 1e-4 or worst > 1e-3:
        raise SystemExit(f"rnnkit and PyTorch disagree on the first window: loss {loss} vs "
                         f"{loss_torch} (rel {rel:.2e}), worst gradient rel. error {worst:.2e}")
    return f"first window: loss {loss:.4f} vs PyTorch {loss_torch:.4f} (rel {rel:.1e}), " \
           f"max gradient rel. error {worst:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--corpus", default="ptb", choices=["ptb", "wikitext-2", "tinyshakespeare"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="rnnkit epochs [13 (5 for chars)]")
    ap.add_argument("--quick", action="store_true", help="speed on 300 windows, no full training")
    ap.add_argument("--windows", type=int, default=None, help="windows timed (quick mode)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--isa", default=None,
                    help="kernel paths to train on: all, or a list such as avx512,avx2 [the one "
                         "selected at load time]; PyTorch runs once, the anchor of every path")
    ap.add_argument("--rounds", type=int, default=3,
                    help="quick mode: PyTorch and rnnkit alternate this many times and each keeps "
                         "its best tokens/s (one run's ratio moved by 30%% on a shared host)")
    ap.add_argument("--eval-batch", type=int, default=1,
                    help="streams for validation/test perplexity (1 = Zaremba's protocol)")
    # the PyTorch worker's own arguments
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--init", help=argparse.SUPPRESS)
    ap.add_argument("--grads", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker(args)
        return

    import rnnkit
    from rnnkit.models.rnnlm import RNNLM, Architecture
    from rnnkit.nn.backend import thread_limit
    from rnnkit.training import TrainEvents

    char = args.corpus == "tinyshakespeare"
    cfg = dict(CHAR if char else ZAREMBA_SMALL)
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    windows = args.windows or (300 if args.quick else 0)
    from rnnkit.nn.backend import kernels

    isas = isa_list(args.isa)
    print(f"# bench_train {datetime.date.today()}  threads: {args.threads}  "
          f"rnnkit {rnnkit.__version__}  kernel paths: {', '.join(isas)}")
    print(f"# CPU: {cpu_header()}")
    if args.threads > 1:
        print("# " + side_by_side_check())
    t0 = time.perf_counter()
    corpus = load_corpus(args.data, args.corpus)
    print(f"# {args.corpus}: vocabulary {len(corpus.vocab):,}, train {len(corpus['train']):,} "
          f"tokens (prepared in {time.perf_counter() - t0:.1f} s)")
    print(f"# config: {json.dumps(cfg)}")

    tmp = Path(tempfile.mkdtemp(prefix="bench_train."))
    arch = Architecture(cfg["model_type"], len(corpus.vocab), cfg["emb"], cfg["hidden"],
                        cfg["layers"])
    init = RNNLM(arch, corpus.vocab, corpus.tokenizer)
    init.init_uniform(np.random.default_rng([cfg["seed"] if "seed" in cfg else 0, 0]),
                      cfg["init_scale"])  # the initial weights train() draws for this seed
    init.save(tmp / "init.rnnkit")

    torch_res = None
    if not args.no_torch and not char:
        torch_res = run_torch(args, cfg, tmp / "init.rnnkit", tmp / "grads.safetensors",
                              windows or 0)

    class Timer(TrainEvents):
        def __init__(self, limit):
            self.limit, self.n, self.t0, self.tokens, self.warm = limit, 0, None, 0, 10

        def window(self, done, windows_, tokens, loss):
            self.n += 1
            if self.n == self.warm:
                self.t0 = time.perf_counter()
            elif self.n > self.warm:
                self.tokens += tokens
            self.last = time.perf_counter()

        def should_stop(self):
            return bool(self.limit) and self.n >= self.limit

        def epoch_end(self, r):
            print(f"  epoch {r['epoch']}: lr {r['lr']:.4g} train ppl {r['train_ppl']:.2f} "
                  f"valid ppl {r['valid_ppl']:.2f} {r['tokens_per_s']:,.0f} tok/s "
                  f"{r['seconds']:.0f} s", flush=True)

    # quick mode: rounds alternate the sides (PyTorch ran once above; rnnkit's last round is the
    # one below that prints the table) and each keeps its best
    rounds = max(1, args.rounds) if windows else 1
    earlier = {isa: [] for isa in isas}
    torch_runs = [torch_res] if torch_res else []
    for _ in range(rounds - 1):
        for isa in isas:
            kernels().set_isa(isa)
            earlier[isa].append(run_rnnkit(args, cfg, corpus, tmp / f"model-{isa}.rnnkit",
                                           Timer(windows))[1])
        if torch_runs:
            torch_runs.append(run_torch(args, cfg, tmp / "init.rnnkit",
                                        tmp / "grads.safetensors", windows))
    if len(torch_runs) > 1:
        torch_res = dict(torch_runs[0], speeds={k: max(r["speeds"][k] for r in torch_runs)
                                                for k in torch_runs[0]["speeds"]})
        torch_res["tokens_per_s"] = max(torch_res["speeds"].values())
    if rounds > 1:
        print(f"\n# {rounds} alternating rounds per side, each measure the best of them")

    for isa in isas:
        kernels().set_isa(isa)
        print(f"\n# ===== kernel path: {isa} =====")
        if torch_res is not None:
            with thread_limit(args.threads):
                print("# check: " + check_against_torch(init, corpus, cfg,
                                                        tmp / "grads.safetensors",
                                                        torch_res["loss0"]))
        train_on_path(args, cfg, corpus, tmp / f"model-{isa}.rnnkit", windows, char, torch_res,
                      Timer, isa, earlier[isa])


def run_rnnkit(args, cfg, corpus, model_path, timer):
    """rnnkit's training until the end or the timer's last window: (summary or None, its
    tokens/s over the timed windows)."""
    from rnnkit.training import TrainingInterrupted, TrainOptions, train

    summary = None
    try:
        summary = train(corpus, model_path, TrainOptions(**cfg, threads=args.threads,
                                                         eval_batch=args.eval_batch), timer)
    except TrainingInterrupted:
        pass
    return summary, (timer.tokens / (timer.last - timer.t0) if timer.t0 else float("nan"))


def train_on_path(args, cfg, corpus, model_path, windows, char, torch_res, Timer, isa,
                  earlier=()):
    """Train (or time `windows` windows) on the selected kernel path; print its table."""
    from threadpoolctl import threadpool_info

    wall0 = time.perf_counter()
    summary, ours = run_rnnkit(args, cfg, corpus, model_path, Timer(windows))
    wall = time.perf_counter() - wall0
    ours = max([ours, *earlier])
    blas = ", ".join(sorted({f"{i['internal_api']} {i.get('version')}" for i in threadpool_info()}))

    print(f"\n| {args.corpus} training ({args.threads} threads, path {isa}) | rnnkit | PyTorch "
          f"| ratio |")
    print("|---|---:|---:|---:|")
    theirs = torch_res["tokens_per_s"] if torch_res else None
    ratio = ours / theirs if theirs else None
    print(f"| tokens/s | {ours:,.0f} | {'-' if not theirs else f'{theirs:,.0f}'} | "
          f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    if summary is not None:
        key = "bits/char" if char else "perplexity"

        def fmt(v):
            return "-" if v is None else (f"{math.log2(v):.3f}" if char else f"{v:.2f}")

        print(f"| valid {key} (best epoch {summary['best_epoch']}) | "
              f"{fmt(summary['valid_perplexity'])} | | |")
        print(f"| test {key} | {fmt(summary['test_perplexity'])} | "
              f"{f'{ZAREMBA_TEST_PPL} (Zaremba, PTB)' if args.corpus == 'ptb' else ''} | |")
        print(f"| wall time, {summary['epochs_run']} epochs | {wall / 60:.1f} min | | |")
    print(f"\n# BLAS: {blas}; torch: {torch_res['torch'] if torch_res else 'not run'}")
    if torch_res:
        sp = torch_res["speeds"]
        print(f"# PyTorch tokens/s: {sp['onednn']:,.0f} as shipped (oneDNN), {sp['native']:,.0f} "
              f"with mkldnn disabled, CPU capability {torch_res['capability']}; the faster is the "
              f"anchor (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 hold it to AVX2)")
    if ratio is not None:
        print(f"# speed target >= {SPEED_TARGET}x PyTorch: {'met' if ratio >= SPEED_TARGET else 'NOT met'}")
    if summary is not None and not char and cfg["epochs"] == 13 and args.corpus == "ptb":
        ok = summary["test_perplexity"] <= ZAREMBA_TEST_PPL
        print(f"# test perplexity target <= {ZAREMBA_TEST_PPL}: {'met' if ok else 'NOT met'}")
    if summary is not None and char:
        from rnnkit.models.rnnlm import load

        model = load(model_path)
        for s in model.generate(3, seed=0, max_len=200, temperature=0.8):
            print("  sample: " + s)


if __name__ == "__main__":
    main()
