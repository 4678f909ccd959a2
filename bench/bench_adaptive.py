"""Benchmark of the adaptive softmax (Grave et al. 2017) and of MPI data-parallel training.

1. WikiText-2 (33,278 words), a 2x650 LSTM language model (Zaremba's "medium" size, where the
   output layer dominates; no dropout, so that a few epochs compare like with like), bptt 35,
   batch 20, SGD lr 1 and clip 5 on the loss summed over the window and averaged over the batch
   (Zaremba's, as bench_train.py). Three models from the SAME initial weights, over the same windows, in the same run:
     rnnkit --output full            (FullSoftmax)
     rnnkit --output adaptive        (AdaptiveSoftmax, cutoffs 2000,10000, div_value 4)
     PyTorch nn.LSTM + nn.AdaptiveLogSoftmaxWithLoss (the anchor; its own process, so the two
     never share cores; it loads rnnkit's initial tensors by name with load_state_dict)
   Reported: training tokens/s and validation/test perplexity after the same number of epochs
   (or windows, with --windows / --quick). Targets (issue 14): adaptive >= 3x the full softmax's
   training speed with perplexity within 2%, and >= 2x PyTorch's adaptive softmax model.
2. --mpi: the allreduce time per step against the parameter count (mpiexec -n 2, float32 sums
   of 10^4 .. 3.3*10^7 floats), and `rnnkit train` on 1 process vs 2 ranks on this machine.

Correctness before timing: rnnkit's adaptive softmax and PyTorch's, with the same weights at
WikiText-2's size, must give the same log-probabilities (1e-4) and gradients (1e-3 relative).

--size small (the run this project can afford): the medium run takes hours on 2 cores (per epoch
of 2,966 windows, from --quick's CPU times: 0.98 s per window for the full softmax, 0.24 for the
adaptive one, plus PyTorch's, plus the whole valid and test splits per model; and the README's
command runs 6 epochs). The small
configuration keeps what the issue asks about -- WikiText-2's 33,278-word vocabulary, the same
data order, optimizer, cutoffs and initial weights for the three models -- with a 2x256 LSTM,
where the output layer dominates even more than at 2x650 (full-softmax FLOPs per recurrent FLOP
about V / (16 L H) = 4.1 against 1.6), trained for a fixed 1,000 windows (700,000 tokens, a
third of an epoch) that the three models see identically, then validation and test perplexity
on the first 60,000 tokens of each split, after the same windows. Its run time, estimated by
--quick (8 windows each) from the CPU time per window (an upper bound for a quiet machine, where
a window's wall time is at most its CPU time): at most 20 min on 2 quiet cores (2026-12-03,
load average 10-15 on the 2 cores: 60 min at those wall times; per window 0.30 CPU-s full,
0.06 adaptive, 0.78 PyTorch). After a third of an epoch the perplexities are not the converged
ones: the 2% target is for whole epochs, the small run shows the gap at equal training.

Whole epochs of the small size: `--windows 0 --eval-tokens 0 --epochs 4 --decay-from 3` (lr 1,
1, 0.5, 0.25, as Zaremba et al. halve it once the rate has done its work; with a constant lr 1
the third epoch's perplexity depends on where a still-noisy trajectory stands, and runs that
differ only in rounding ended 1-17% apart). At the speeds of 2026-12-03 on 2 quiet cores:
about 27 min per seed for the full softmax, 6 for the adaptive one and 11 for PyTorch's;
`--seeds 1,2 --skip-torch` for more initialisations.
The adaptive models have a head bias (rnnkit's default; `--no-head-bias` for PyTorch's).
Regularised, longer: `--dropout 0.3 --epochs 6 --decay-from 4 --per-epoch` (dropout on the
non-recurrent connections in all three models, as Zaremba et al.; the masks differ between
rnnkit and PyTorch, drawn from each side's own generator) with the validation perplexity after
every epoch (`--per-epoch`; evaluation is never timed as training).

Usage:
  python bench/bench_adaptive.py --quick               # a few windows each: checks the script
  python bench/bench_adaptive.py --size small --threads 2   # the affordable run (<= 25 min)
  python bench/bench_adaptive.py --size small --quick  # checks it and estimates its run time
  python bench/bench_adaptive.py --size small --classes 200   # + the class softmax (Mikolov)
  python bench/bench_adaptive.py --size small --windows 0 --eval-tokens 0 --epochs 4 \
      --decay-from 3 --seeds 1,2 --skip-torch          # whole epochs, two initialisations
  python bench/bench_adaptive.py --size small --windows 0 --eval-tokens 0 --epochs 6 \
      --decay-from 4 --dropout 0.3 --per-epoch --seeds 1   # regularised, 6 epochs (~75 min)
  python bench/bench_adaptive.py --epochs 2            # the comparison (hours on 2 cores)
  python bench/bench_adaptive.py --mpi --quick         # allreduce sizes up to 10^6, tiny training
  python bench/bench_adaptive.py --mpi                 # up to 3.3*10^7 floats, 1 epoch of a subset
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # bench/_machine.py

ROOT = Path(__file__).resolve().parents[1]
SMALL_WINDOWS = 1000         # 700,000 training tokens: a third of an epoch
SMALL_EVAL_TOKENS = 60_000   # the first 60,000 tokens of valid and of test
SIZES = {
    # Zaremba's "medium": whole epochs (hours on 2 cores)
    "medium": dict(model_type="lstm", emb=650, hidden=650, layers=2, bptt=35, batch=20, lr=1.0,
                   clip=5.0, init_scale=0.1, cutoffs=[2000, 10000], div_value=4.0,
                   head_bias=True, eval_batch=10, windows=0, eval_tokens=0),
    # <= 25 minutes on 2 quiet cores (see the docstring): the same vocabulary, data order and
    # optimizer; 2x256 keeps the output layer dominant (V / (16 L H) = 4.1 output FLOPs per
    # recurrent FLOP, 1.6 at 2x650), and a fixed number of windows, the same for the 3 models
    "small": dict(model_type="lstm", emb=256, hidden=256, layers=2, bptt=35, batch=20, lr=1.0,
                  clip=5.0, init_scale=0.1, cutoffs=[2000, 10000], div_value=4.0,
                  head_bias=True, eval_batch=10, windows=SMALL_WINDOWS, eval_tokens=SMALL_EVAL_TOKENS),
}
CONFIG = dict(SIZES["medium"])   # the run's configuration (main() sets it from --size)
TARGET_SPEEDUP, TARGET_PPL, TARGET_VS_TORCH = 3.0, 0.02, 2.0


def lr_at(lr: float, epoch: int, decay_from: int) -> float:
    """The learning rate of epoch `epoch` (1-based): lr, halved every epoch from epoch
    `decay_from` on (Zaremba et al. 2014's schedule; 0: constant)."""
    halvings = epoch - decay_from + 1 if decay_from and epoch >= decay_from else 0
    return lr / 2 ** halvings


def load_wikitext2(data: Path):
    from rnnkit.text.prepare import build_corpus

    d = data / "wikitext-2"
    missing = [f for f in ("train.txt", "valid.txt", "test.txt") if not (d / f).exists()]
    if missing:
        raise SystemExit(f"{d}: missing {', '.join(missing)} (pass --data DIR)")
    return build_corpus([str(d / "train.txt")], valid=str(d / "valid.txt"),
                        test=str(d / "test.txt"))


def streams(ids, batch):
    from rnnkit.training.lm_task import batchify, lm_stream

    x, y = lm_stream(ids)
    return batchify(x, batch), batchify(y, batch)   # [S, B] each


def eval_ids(corpus, split, limit):
    ids = np.asarray(corpus[split])
    return ids[:limit] if limit else ids


class EpochValidation:
    """With --per-epoch, the validation perplexity before each epoch after the first (the last
    epoch's comes with the final evaluation), and the wall and CPU time it took, which the
    training time must not count."""

    def __init__(self, on: bool):
        self.on, self.values, self.wall, self.cpu = on, [], 0.0, 0.0

    def before_epoch(self, epoch: int, ppl) -> None:
        if self.on and epoch > 1:
            t0, c0 = time.perf_counter(), time.process_time()
            self.values.append(ppl("valid"))
            self.wall += time.perf_counter() - t0
            self.cpu += time.process_time() - c0


# --- PyTorch (its own process) --------------------------------------------------------------------
def torch_worker(args) -> None:
    """Train nn.LSTM + AdaptiveLogSoftmaxWithLoss from rnnkit's initial tensors over the same
    windows; print tokens/s and perplexities as JSON."""
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    cfg = json.loads(args.config)
    corpus = load_wikitext2(Path(args.data))
    V = len(corpus.vocab)
    E, H, L, B, T = cfg["emb"], cfg["hidden"], cfg["layers"], cfg["batch"], cfg["bptt"]

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Embedding(V, E)
            # dropout where rnnkit puts it: the embedding output, between the layers and below
            # the decoder, never on h_{t-1} -> h_t (Zaremba et al. 2014)
            self.drop = torch.nn.Dropout(cfg.get("dropout", 0.0))
            self.rnn = torch.nn.LSTM(E, H, L, dropout=cfg.get("dropout", 0.0))
            self.decoder = torch.nn.AdaptiveLogSoftmaxWithLoss(
                H, V, cfg["cutoffs"], div_value=cfg["div_value"], head_bias=cfg["head_bias"])

        def loss(self, x, y, hidden):
            out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
            r = self.decoder(self.drop(out).reshape(-1, H), y.reshape(-1))
            return r.loss * y.numel(), hidden      # summed over the tokens

    model = LM()
    model.load_state_dict(load_file(args.init), strict=True)
    torch.manual_seed(1000)   # the dropout masks
    xb, yb = (torch.from_numpy(a) for a in streams(corpus["train"], B))
    starts = list(range(0, xb.shape[0], T))
    n = min(args.windows, len(starts)) if args.windows else len(starts)
    params = list(model.parameters())
    warm = min(2, n // 5)
    def ppl(split):
        model.eval()    # dropout off
        x, y = (torch.from_numpy(a) for a in streams(eval_ids(corpus, split, args.eval_tokens),
                                                      cfg["eval_batch"]))
        hidden = (torch.zeros(L, x.shape[1], H), torch.zeros(L, x.shape[1], H))
        total = 0.0
        with torch.no_grad():
            for s in range(0, x.shape[0], 64):
                loss, hidden = model.loss(x[s:s + 64], y[s:s + 64], hidden)
                total += float(loss)
        return math.exp(total / y.numel())

    tokens, seconds, val = 0, 0.0, EpochValidation(args.per_epoch)
    t_train, c_train = time.perf_counter(), time.process_time()
    for epoch in range(1, args.epochs + 1):
        lr = lr_at(cfg["lr"], epoch, args.decay_from)
        val.before_epoch(epoch, ppl)
        model.train()   # dropout on
        hidden = (torch.zeros(L, B, H), torch.zeros(L, B, H))
        for i in range(n):
            t0 = time.perf_counter()
            s = starts[i]
            hidden = tuple(h.detach() for h in hidden)
            loss, hidden = model.loss(xb[s:s + T], yb[s:s + T], hidden)
            model.zero_grad(set_to_none=False)
            (loss / B).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg["clip"])
            with torch.no_grad():
                for p in params:
                    p.add_(p.grad, alpha=-lr)
            if i >= warm:
                seconds += time.perf_counter() - t0
                tokens += min(T, xb.shape[0] - s) * B

    train_wall = time.perf_counter() - t_train - val.wall
    train_cpu = time.process_time() - c_train - val.cpu
    t_eval, c_eval = time.perf_counter(), time.process_time()
    valid, test = ppl("valid"), ppl("test")
    print(json.dumps({"tokens_per_s": tokens / seconds, "valid_ppl": valid, "test_ppl": test,
                      "valid_by_epoch": val.values + [valid],
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "train_wall": train_wall, "eval_wall": time.perf_counter() - t_eval,
                      "train_cpu": train_cpu, "eval_cpu": time.process_time() - c_eval,
                      "windows_run": n * args.epochs}))


# --- rnnkit ---------------------------------------------------------------------------------------
def make_model(corpus, output, seed=0, classes=0):
    from rnnkit.models.rnnlm import RNNLM, Architecture
    from rnnkit.nn.output import frequency_classes

    c = CONFIG
    kw = dict(output="adaptive", cutoffs=tuple(c["cutoffs"]), div_value=c["div_value"],
              head_bias=c["head_bias"]) if output == "adaptive" else {}
    if output == "classes":   # Mikolov's frequency binning of the training counts
        kw = dict(output="classes", cutoffs=tuple(frequency_classes(corpus.vocab.counts, classes)))
    arch = Architecture(c["model_type"], len(corpus.vocab), c["emb"], c["hidden"], c["layers"],
                        dropout=c.get("dropout", 0.0), **kw)
    m = RNNLM(arch, corpus.vocab, corpus.tokenizer)
    # the shared tensors (embedding, LSTM) get the same values in both models
    rng = np.random.default_rng(seed)
    for v in m.p.values():
        v[...] = rng.uniform(-c["init_scale"], c["init_scale"], v.shape)
    return m


def train_rnnkit(model, corpus, args, seed: int = 0) -> dict:
    from rnnkit.nn.optim import clip_grad_norm, make_optimizer
    from rnnkit.nn.backend import thread_limit

    c = CONFIG
    # dropout masks from their own generator, one per initialisation (None: no dropout)
    rng = np.random.default_rng(1000 + seed) if c.get("dropout", 0.0) else None
    T, B = c["bptt"], c["batch"]
    xb, yb = streams(corpus["train"], B)
    starts = list(range(0, xb.shape[0], T))
    n = min(args.windows, len(starts)) if args.windows else len(starts)
    warm = min(2, n // 5)
    sgd = make_optimizer("sgd", model.flat.shape[0])
    model.set_sparse_grad(True)   # as `rnnkit train` on one process: clip and step the rows read
    tokens, seconds, val = 0, 0.0, EpochValidation(args.per_epoch)
    t_train, c_train = time.perf_counter(), time.process_time()
    with thread_limit(args.threads):
        def ppl(split):
            x, y = streams(eval_ids(corpus, split, args.eval_tokens), c["eval_batch"])
            h, cc = model.zero_state(x.shape[1])
            total = sum(model.forward_loss(x[s:s + 64], y[s:s + 64], h, cc)
                        for s in range(0, x.shape[0], 64))
            return math.exp(total / y.size)

        for epoch in range(1, args.epochs + 1):
            lr = lr_at(c["lr"], epoch, args.decay_from)
            val.before_epoch(epoch, ppl)
            h, cc = model.zero_state(B)
            for i in range(n):
                t0 = time.perf_counter()
                s = starts[i]
                model.forward_backward(xb[s:s + T], yb[s:s + T], h, cc, 1.0 / B, rng=rng)
                rows = model.grad_rows()
                clip_grad_norm(model.grad, c["clip"], rows)
                sgd.step(model.flat, model.grad, lr, rows)  # in place, as `rnnkit train`
                if i >= warm:
                    seconds += time.perf_counter() - t0
                    tokens += min(T, xb.shape[0] - s) * B

        train_wall = time.perf_counter() - t_train - val.wall
        train_cpu = time.process_time() - c_train - val.cpu
        t_eval, c_eval = time.perf_counter(), time.process_time()
        valid, test = ppl("valid"), ppl("test")
        return {"tokens_per_s": tokens / seconds, "valid_ppl": valid, "test_ppl": test,
                "valid_by_epoch": val.values + [valid],
                "train_wall": train_wall, "eval_wall": time.perf_counter() - t_eval,
                "train_cpu": train_cpu, "eval_cpu": time.process_time() - c_eval,
                "windows_run": n * args.epochs}


def check_against_torch(V, threads) -> str:
    """The adaptive softmax at WikiText-2's size: rnnkit vs PyTorch, same weights."""
    import torch

    from rnnkit.nn.backend import kernels
    from rnnkit.nn.output import AdaptiveSoftmax, adaptive_softmax_shapes
    from rnnkit.nn.params import ParamLayout

    torch.set_num_threads(threads)
    H, cut = CONFIG["hidden"], CONFIG["cutoffs"]
    torch.manual_seed(0)
    div, hb = CONFIG["div_value"], CONFIG["head_bias"]
    tm = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, cut, div_value=div, head_bias=hb)
    layout = ParamLayout(adaptive_softmax_shapes(V, H, cut, div, hb))
    flat, grad = np.zeros(layout.size, np.float32), np.zeros(layout.size, np.float32)
    p, g = layout.views(flat), layout.views(grad)
    for k, v in tm.state_dict().items():
        p[f"decoder.{k}"][...] = v.numpy()
    ours = AdaptiveSoftmax(V, H, cut, kernels(), p, g, div_value=div, head_bias=hb)
    rng = np.random.default_rng(1)
    h = rng.standard_normal((256, H)).astype(np.float32)
    t = rng.integers(0, V, 256)
    th = torch.tensor(h, requires_grad=True)
    r = tm(th, torch.tensor(t))
    (r.loss * len(t)).backward()
    lp_err = float(np.abs(ours.log_probs(h[:8]) - tm.log_prob(th[:8]).detach().numpy()).max())
    ours.loss_forward(h, t)
    dh, _ = ours.loss_backward(1.0)
    worst = max(float(np.abs(g[f"decoder.{k}"] - q.grad.numpy()).max()
                      / max(float(q.grad.abs().max()), 1e-12)) for k, q in tm.named_parameters())
    worst = max(worst, float(np.abs(dh - th.grad.numpy()).max() / np.abs(th.grad.numpy()).max()))
    if lp_err > 1e-4 or worst > 1e-3:
        raise SystemExit(f"rnnkit's and PyTorch's adaptive softmax disagree: log-prob error "
                         f"{lp_err:.2e}, worst gradient rel. error {worst:.2e}")
    return (f"adaptive softmax vs PyTorch at V={V:,}, H={H}: max |log p| error {lp_err:.1e}, "
            f"max gradient rel. error {worst:.1e}")


def softmax_bench(args) -> None:
    t_start = time.perf_counter()
    corpus = load_wikitext2(Path(args.data))
    V = len(corpus.vocab)
    print(f"# rnnkit adaptive softmax benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}")
    print(f"# CPU: {cpu_name()}; threads: {args.threads}; {os.cpu_count()} cores visible")
    print(f"# WikiText-2: V = {V:,}, train {len(corpus['train']):,} tokens; size {args.size}: "
          f"{CONFIG['layers']}x{CONFIG['hidden']} "
          f"LSTM, bptt {CONFIG['bptt']}, batch {CONFIG['batch']}, cutoffs "
          f"{','.join(map(str, CONFIG['cutoffs']))}, div_value {CONFIG['div_value']:g}, head bias "
          f"{'on' if CONFIG['head_bias'] else 'off'}, dropout {CONFIG.get('dropout', 0.0):g}")
    what = (f"{args.windows} windows x {args.epochs} epoch(s)" if args.windows
            else f"{args.epochs} epoch(s)")
    ev = f"first {args.eval_tokens:,} tokens of valid/test" if args.eval_tokens else "full valid/test"
    sched = (f"lr {CONFIG['lr']:g} halved every epoch from epoch {args.decay_from}"
             if args.decay_from else f"lr {CONFIG['lr']:g} constant")
    print(f"# training: {what}, {sched}; perplexity on the {ev}")
    try:
        import torch  # noqa: F401
        have_torch = not args.skip_torch
    except ImportError:
        have_torch = False
    if have_torch:
        print("# check: " + check_against_torch(V, args.threads))
    fixed = time.perf_counter() - t_start   # loading and the check: paid once per run
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init.safetensors"
        seeds = [int(v) for v in args.seeds.split(",")]

        def label(output, seed):  # the first seed's rows keep the plain names
            return (f"rnnkit classes {args.classes}" if output == "classes"
                    else f"rnnkit {output}") + (f" seed {seed}" if seed != seeds[0] else "")

        for seed in seeds:  # each seed: another initialisation, shared by the models
            for output in ("full", "adaptive") + (("classes",) if args.classes else ()):
                model = make_model(corpus, output, seed=seed, classes=args.classes)
                if output == "adaptive" and have_torch and seed == seeds[0]:
                    from safetensors.numpy import save_file
                    save_file({k: np.ascontiguousarray(v) for k, v in model.p.items()}, str(init))
                rows[label(output, seed)] = train_rnnkit(model, corpus, args, seed)
        if have_torch:
            cmd = [sys.executable, __file__, "--torch-worker", "--data", str(args.data),
                   "--threads", str(args.threads), "--config", json.dumps(CONFIG), "--init",
                   str(init), "--windows", str(args.windows), "--epochs", str(args.epochs),
                   "--eval-tokens", str(args.eval_tokens),
                   "--decay-from", str(args.decay_from)] + (["--per-epoch"] if args.per_epoch else [])
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"the PyTorch worker failed:\n{r.stderr[-3000:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            rows[f"PyTorch {res['torch']} adaptive"] = res
    print(f"{'model':<32}{'tokens/s':>10}{'valid ppl':>11}{'test ppl':>10}")
    for name, r in rows.items():
        print(f"{name:<32}{r['tokens_per_s']:>10,.0f}{r['valid_ppl']:>11.2f}{r['test_ppl']:>10.2f}")
    if args.per_epoch:
        print("validation perplexity after each epoch:")
        for name, r in rows.items():
            print(f"  {name:<30}" + " ".join(f"{v:8.2f}" for v in r["valid_by_epoch"]))
    full, ad = rows["rnnkit full"], rows["rnnkit adaptive"]
    speed = ad["tokens_per_s"] / full["tokens_per_s"]
    dppl = ad["valid_ppl"] / full["valid_ppl"] - 1
    print(f"adaptive / full speed: {speed:.2f}x (target >= {TARGET_SPEEDUP:g}x); valid "
          f"perplexity adaptive vs full: {100 * dppl:+.1f}% (target within "
          f"{100 * TARGET_PPL:g}% after full epochs)")
    if len(seeds) > 1:  # the same comparison per initialisation: runs that differ in rounding
        # alone diverge (lr 1, no dropout), so one pair cannot settle a 2% target
        fulls = [rows[label("full", s)]["valid_ppl"] for s in seeds]
        ads = [rows[label("adaptive", s)]["valid_ppl"] for s in seeds]
        diffs = [100 * (a / f - 1) for f, a in zip(fulls, ads)]
        print(f"over seeds {args.seeds}: valid perplexity full {np.mean(fulls):.2f} "
              f"(range {min(fulls):.2f}-{max(fulls):.2f}), adaptive {np.mean(ads):.2f} "
              f"(range {min(ads):.2f}-{max(ads):.2f}); adaptive vs full per seed "
              f"{', '.join(f'{d:+.1f}%' for d in diffs)}, of the means "
              f"{100 * (np.mean(ads) / np.mean(fulls) - 1):+.1f}%")
    if args.classes:
        cl = rows[f"rnnkit classes {args.classes}"]
        print(f"classes / full speed: {cl['tokens_per_s'] / full['tokens_per_s']:.2f}x; valid "
              f"perplexity classes vs full: {100 * (cl['valid_ppl'] / full['valid_ppl'] - 1):+.1f}%")
    for name, r in rows.items():
        if name.startswith("PyTorch"):
            print(f"rnnkit adaptive / {name}: {ad['tokens_per_s'] / r['tokens_per_s']:.2f}x "
                  f"(target >= {TARGET_VS_TORCH:g}x)")
    print(f"# wall time of this run: {time.perf_counter() - t_start:.0f} s")
    if args.quick:
        print(estimate(rows, corpus, args, fixed))


def estimate(rows: dict, corpus, args, fixed: float) -> str:
    """The run time of the --size configuration's real run, from this --quick run: each model's
    time per training window (warm-up included) times the real run's windows, plus its
    evaluation time per token times the real run's evaluation tokens, plus loading and the check.

    Two numbers: with the wall times measured here (inflated on a busy machine), and with the
    CPU times (all threads) measured here. On a quiet machine a window's wall time is at most
    its CPU time (at least one thread works throughout) and at least CPU time / threads, so
    the CPU-time figure is an upper bound for 2 quiet cores that a busy machine hardly inflates
    (only through cache contention and threads that spin while waiting)."""
    c = CONFIG
    per_epoch = len(streams(corpus["train"], c["batch"])[0]) // c["bptt"]
    windows = (min(c["windows"], per_epoch) if c["windows"] else per_epoch) * args.full_epochs
    quick_eval = 2 * args.eval_tokens
    full_eval = (2 * c["eval_tokens"] if c["eval_tokens"]
                 else len(corpus["valid"]) + len(corpus["test"]))
    wall, cpu, parts = fixed, fixed, []
    for name, r in rows.items():
        wall += r["train_wall"] / r["windows_run"] * windows + r["eval_wall"] / quick_eval * full_eval
        cpu += r["train_cpu"] / r["windows_run"] * windows + r["eval_cpu"] / quick_eval * full_eval
        parts.append(f"{name} {r['train_wall'] / r['windows_run']:.2f} s wall, "
                     f"{r['train_cpu'] / r['windows_run']:.2f} s CPU per window")
    return (f"# estimate for `--size {args.size}` ({windows:,} windows, {full_eval:,} evaluation "
            f"tokens per model): {wall / 60:.0f} min at this run's wall times, at most "
            f"{cpu / 60:.0f} min on {args.threads} quiet cores (its CPU times)\n# per window: "
            + "; ".join(parts))


# --- MPI ------------------------------------------------------------------------------------------
def allreduce_worker(args) -> None:
    """Under mpiexec: the time of one float32 allreduce (sum) per size; rank 0 prints JSON."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = []
    for n in json.loads(args.sizes):
        buf = np.ones(n, np.float32)
        reps = max(3, min(200, int(2e7 // n)))
        comm.Barrier()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)   # warm-up
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        comm.Barrier()
        out.append((n, (time.perf_counter() - t0) / reps))
    if comm.Get_rank() == 0:
        print(json.dumps(out))


def mpi_bench(args) -> None:
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'rnnkit[mpi]'")
    print(f"# rnnkit MPI benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}")
    print(f"# CPU: {cpu_name()}; {os.cpu_count()} cores visible; 2 ranks on this one machine")
    top = 6 if args.quick else 7.52   # 10^6, or 3.3*10^7 floats (the 2x650 WikiText-2 model)
    sizes = [int(10 ** e) for e in np.arange(4, top + 0.01, 0.5)]
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--allreduce-worker",
                        "--sizes", json.dumps(sizes)], capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"the allreduce worker failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    print(f"{'parameters':>12}{'allreduce ms':>14}{'GB/s (2*4P/t)':>15}")
    for n, t in json.loads(r.stdout.strip().splitlines()[-1]):
        print(f"{n:>12,}{1e3 * t:>14.3f}{8 * n / t / 1e9:>15.2f}")
    # training: 1 process with 2 threads vs 2 ranks with 1 thread each, same data and batch
    corpus = load_wikitext2(Path(args.data))
    n_tokens = 20_000 if args.quick else 200_000
    hidden = 200 if args.quick else 650
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "part.txt"
        lines, count = [], 0
        for line in corpus.text("train"):
            lines.append(line)
            count += len(line.split()) + 1
            if count >= n_tokens:
                break
        text.write_text("\n".join(lines) + "\n", encoding="utf-8")
        V = len({w for line in lines for w in line.split()}) + 3   # about: prepare's split
        cutoffs = f"{V // 8},{V // 3}"
        common = ["train", str(text), "--hidden", str(hidden), "--emb", str(hidden),
                  "--batch", "20", "--bptt", "35", "--epochs", "1", "--json", "--output",
                  "adaptive", "--cutoffs", cutoffs]
        one = subprocess.run([sys.executable, "-m", "rnnkit", *common, "--threads", "2",
                              "--out", str(Path(tmp) / "one.rnnkit")], capture_output=True,
                             text=True)
        two = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "rnnkit", *common,
                              "--threads", "1", "--distributed", "--out",
                              str(Path(tmp) / "two.rnnkit")], capture_output=True, text=True)
        for r in (one, two):
            if r.returncode != 0:
                raise SystemExit(f"training failed:\n{r.stderr[-3000:]}")
        a, b = json.loads(one.stdout), json.loads(two.stdout)
    print(f"# rnnkit train on the first {n_tokens:,} WikiText-2 tokens, 2x{hidden} LSTM, adaptive "
          f"softmax (cutoffs {cutoffs}), batch 20, 1 epoch ({a['parameters']:,} parameters)")
    print(f"{'run':<28}{'tokens/s':>10}{'valid ppl':>11}{'allreduce ms/step':>19}")
    print(f"{'1 process, 2 threads':<28}{a['tokens_per_s']:>10,.0f}{a['valid_perplexity']:>11.2f}"
          f"{'-':>19}")
    print(f"{'2 ranks, 1 thread each':<28}{b['tokens_per_s']:>10,.0f}"
          f"{b['valid_perplexity']:>11.2f}{b['allreduce_ms_per_step']:>19.2f}")
    print(f"2 ranks / 1 process: {b['tokens_per_s'] / a['tokens_per_s']:.2f}x on the same 2 cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", choices=sorted(SIZES), default="medium",
                    help="medium: 2x650, whole epochs; small: 2x256, a fixed number of windows")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--windows", type=int, default=None,
                    help="windows per epoch (0: all; default: the size's)")
    ap.add_argument("--eval-tokens", type=int, default=None,
                    help="valid/test prefix (0: all; default: the size's)")
    ap.add_argument("--decay-from", type=int, default=0,
                    help="halve the learning rate every epoch from this one on (e.g. 3 of 4; "
                         "default 0: constant)")
    ap.add_argument("--per-epoch", action="store_true",
                    help="also the validation perplexity after every epoch (not timed)")
    ap.add_argument("--dropout", type=float, default=None,
                    help="dropout on the non-recurrent connections (default: the size's, 0)")
    ap.add_argument("--no-head-bias", action="store_true",
                    help="adaptive models without a head bias (PyTorch's default; rnnkit's "
                         "until 2026-12-03)")
    ap.add_argument("--classes", type=int, default=0,
                    help="also rnnkit's class softmax with this many classes (e.g. 200)")
    ap.add_argument("--quick", action="store_true", help="a few windows: checks the script")
    ap.add_argument("--mpi", action="store_true", help="the MPI benchmark instead")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--seeds", default="0",
                    help="initialisations to train each rnnkit model from, e.g. 0,1,2 "
                         "(PyTorch starts from the first one's)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--allreduce-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--init", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    if args.allreduce_worker:
        return allreduce_worker(args)
    CONFIG.clear()
    CONFIG.update(SIZES[args.size])
    if args.no_head_bias:
        CONFIG["head_bias"] = False
    if args.dropout is not None:
        if not 0.0 <= args.dropout < 1.0:
            raise SystemExit(f"--dropout must be in [0, 1), got {args.dropout}")
        CONFIG["dropout"] = args.dropout
    args.full_epochs = args.epochs   # what --quick estimates the run time of
    if args.quick:
        args.windows = args.windows or 8
        args.eval_tokens = args.eval_tokens or 2000
    else:
        args.windows = CONFIG["windows"] if args.windows is None else args.windows
        args.eval_tokens = CONFIG["eval_tokens"] if args.eval_tokens is None else args.eval_tokens
    if args.mpi:
        return mpi_bench(args)
    return softmax_bench(args)


if __name__ == "__main__":
    main()
