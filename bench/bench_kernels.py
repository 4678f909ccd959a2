"""Benchmark of rnnkit's recurrent kernels against the numpy reference and PyTorch.

For each config (B streams, T steps, E = H) it first checks the kernels against the reference
on that shape, then prints tokens/s of one layer's forward+backward and forward alone for
rnnkit, the numpy reference and PyTorch (nn.LSTM / nn.RNN, as shipped with oneDNN and with
oneDNN disabled), with 1 and 2 threads; the GFLOP/s rnnkit reaches against the time every
product would take at numpy's sgemm rate on the same shapes; and the latency of one generation
step (B = 1) with and without the output layer, softmax and sampling.

    python bench/bench_kernels.py            # the full run (several minutes)
    python bench/bench_kernels.py --quick    # small shapes, a few seconds
    python bench/bench_kernels.py --isa all  # every kernel path this CPU runs (avx512, avx2,
                                             # generic), each against PyTorch in this run

Only ratios measured in the same run mean anything on a shared machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from rnnkit.decoding.sampling import draw
from rnnkit.nn import reference as ref
from rnnkit.nn.backend import kernels

from _machine import cpu_header, cpu_name, isa_list  # bench/_machine.py

K = kernels()

CONFIGS = {  # name: (B, T, H), E = H
    "small": (20, 35, 200),
    "medium": (20, 35, 650),
    "large": (20, 35, 1500),
    "character": (64, 128, 512),
}
QUICK_CONFIGS = {"small": (20, 35, 200), "medium-T8": (20, 8, 650)}
VOCAB = 10_000


# --- helpers ---------------------------------------------------------------------------------
def best_time(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def median_time(fn, reps, warmup=50):
    for _ in range(warmup):
        fn()
    ts = np.empty(reps)
    for i in range(reps):
        t = time.perf_counter()
        fn()
        ts[i] = time.perf_counter() - t
    return float(np.median(ts))


def try_torch():
    try:
        import torch
    except Exception:  # torch is optional: any import failure means no torch columns
        return None
    return torch


def params(B, T, H, cell, seed=0):
    rng = np.random.default_rng(seed)
    f = np.float32
    G = 4 if cell == "lstm" else 1
    s = 1 / np.sqrt(H)
    return dict(
        x=rng.standard_normal((T, B, H)).astype(f), h0=(rng.standard_normal((B, H)) * 0.1).astype(f),
        c0=(rng.standard_normal((B, H)) * 0.1).astype(f),
        w_ih=rng.uniform(-s, s, (G * H, H)).astype(f), w_hh=rng.uniform(-s, s, (G * H, H)).astype(f),
        b_ih=rng.uniform(-s, s, G * H).astype(f), b_hh=rng.uniform(-s, s, G * H).astype(f),
        dh=rng.standard_normal((T, B, H)).astype(f))


def layer_flops(B, T, H, cell):
    """Multiply-adds x 2 of the six products of one layer (E = H), forward+backward and forward."""
    G = 4 if cell == "lstm" else 1
    one = 2.0 * T * B * G * H * H
    return 6 * one, 2 * one


def products(B, T, H, cell):
    """(M, K, N, count) of every product of one layer's forward+backward, row-major C = A·B."""
    G = 4 if cell == "lstm" else 1
    return [(T * B, H, G * H, 1),  # input projection
            (B, H, G * H, T),      # recurrent product, forward (per step)
            (B, G * H, H, T),      # recurrent product, backward (per step)
            (T * B, G * H, H, 1),  # dx
            (G * H, T * B, H, 2)]  # dW_ih, dW_hh


# --- rnnkit, reference, torch runners ----------------------------------------------------------
def rnnkit_runner(p, cell):
    state = {}
    z = np.zeros_like(p["h0"])

    def fwd():
        if cell == "lstm":
            out = K.lstm_forward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"],
                                 p["b_hh"], cache=state.get("c"))
        else:
            out = K.rnn_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                cache=state.get("c"))
        state["c"] = out[-1]
        return out

    def fwd_bwd():
        out = fwd()
        if cell == "lstm":
            return out, K.lstm_backward(p["dh"], z, z, out[-1])
        return out, K.rnn_backward(p["dh"], z, out[-1])
    return fwd, fwd_bwd


def reference_runner(p, cell):
    z = np.zeros_like(p["h0"])

    def fwd():
        if cell == "lstm":
            return ref.lstm_forward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"],
                                    p["b_hh"])
        return ref.rnn_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])

    def fwd_bwd():
        out = fwd()
        if cell == "lstm":
            return out, ref.lstm_backward(p["dh"], z, z, out[-1])
        return out, ref.rnn_backward(p["dh"], z, out[-1])
    return fwd, fwd_bwd


def torch_runner(torch, p, cell):
    H = p["h0"].shape[1]
    mod = torch.nn.LSTM(H, H) if cell == "lstm" else torch.nn.RNN(H, H)
    with torch.no_grad():
        for ours, theirs in [("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"),
                             ("b_ih", "bias_ih_l0"), ("b_hh", "bias_hh_l0")]:
            getattr(mod, theirs).copy_(torch.from_numpy(p[ours]))
    x = torch.from_numpy(p["x"]).requires_grad_()
    h0 = torch.from_numpy(p["h0"]).unsqueeze(0)
    c0 = torch.from_numpy(p["c0"]).unsqueeze(0)
    dh = torch.from_numpy(p["dh"])
    state = (h0, c0) if cell == "lstm" else h0

    def fwd():
        with torch.no_grad():
            return mod(x, state)

    def fwd_bwd():
        out, _ = mod(x, state)
        out.backward(dh)
        return out
    return fwd, fwd_bwd


def max_rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check(p, cell, torch):
    """rnnkit against the reference (float64) on this shape: the largest relative error over
    the outputs and every gradient; and against torch's outputs when torch is there."""
    _, kfb = rnnkit_runner(p, cell)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    _, rfb = reference_runner(p64, cell)
    (kout, kgrads), (rout, rgrads) = kfb(), rfb()
    err = max_rel_err(kout[0], rout[0])
    for g, r in zip(kgrads, rgrads):
        if r is not None:
            err = max(err, max_rel_err(g, r))
    terr = None
    if torch is not None:
        tout = torch_runner(torch, p, cell)[0]()[0].numpy()
        terr = max_rel_err(kout[0], tout)
    return err, terr


# --- numpy's sgemm rate, measured where OpenBLAS picks its kernel for this CPU --------------
def sgemm_rates(shapes, threads):
    """GFLOP/s of numpy's sgemm for each (M, K, N), in a subprocess without
    OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some machines for old OpenBLAS builds; they
    make a current numpy use a slower kernel)."""
    env = dict(os.environ)
    removed = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in env]
    if len(removed) == 1:
        raise SystemExit("error: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE must be unset together")
    for k in removed:
        del env[k]
    out = subprocess.run([sys.executable, __file__, "--sgemm-rates", json.dumps(shapes),
                          "--threads", str(threads)], env=env, capture_output=True, text=True,
                         check=True)
    res = json.loads(out.stdout)
    res["unset"] = removed
    return res


def _sgemm_rates_child(shapes, threads):
    rng = np.random.default_rng(0)
    rates = {}
    with threadpool_limits(threads):
        arch = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
        for M, Kd, N in shapes:
            a = rng.standard_normal((M, Kd)).astype(np.float32)
            b = rng.standard_normal((Kd, N)).astype(np.float32)
            c = np.empty((M, N), np.float32)
            flops = 2.0 * M * Kd * N
            reps = int(min(2000, max(5, 3e9 / flops / 10)))
            t = best_time(lambda: [np.matmul(a, b, out=c) for _ in range(10)], reps // 10 + 2) / 10
            rates[f"{M}x{Kd}x{N}"] = flops / t / 1e9
    print(json.dumps({"rates": rates, "openblas": arch}))


# --- two single-thread processes side by side ----------------------------------------------
def _spin_child(reps):
    K.set_num_threads(1)
    p = params(20, 35, 200, "lstm")
    _, fb = rnnkit_runner(p, "lstm")
    fb()
    t = time.perf_counter()
    for _ in range(reps):
        fb()
    print(time.perf_counter() - t)


def side_by_side(reps):
    """Ratio of the speed of two single-thread processes running together to one alone."""
    cmd = [sys.executable, __file__, "--spin", str(reps)]
    solo = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    pair = [float(p.communicate()[0]) for p in procs]
    return solo / max(pair)


# --- generation step ----------------------------------------------------------------------
def generation(torch, H, layers, reps, threads):
    rng = np.random.default_rng(1)
    f = np.float32
    s = 1 / np.sqrt(H)
    W = [dict(w_ih=rng.uniform(-s, s, (4 * H, H)).astype(f), w_hh=rng.uniform(-s, s, (4 * H, H)).astype(f),
              b_ih=rng.uniform(-s, s, 4 * H).astype(f), b_hh=rng.uniform(-s, s, 4 * H).astype(f))
         for _ in range(layers)]
    wd = rng.uniform(-s, s, (VOCAB, H)).astype(f)
    bd = np.zeros(VOCAB, f)
    x = rng.standard_normal((1, H)).astype(f)
    hs = [np.zeros((1, H), f) for _ in range(layers)]
    cs = [np.zeros((1, H), f) for _ in range(layers)]
    gates = np.empty((1, 4 * H), f)
    lp = np.empty((1, VOCAB), f)
    log10e = np.float32(np.log10(np.e))

    def step():
        inp = x
        for w, h, c in zip(W, hs, cs):
            K.lstm_step(inp, h, c, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], gates=gates)
            inp = h
        return inp

    def full():
        h = step()
        K.log_softmax(h, wd, bd, out=lp)
        return draw(lp * log10e, rng)  # natural log -> log10; the library samples in numpy

    res = {"rnnkit step": median_time(step, reps), "rnnkit full": median_time(full, reps)}
    if torch is not None:
        lstm = torch.nn.LSTM(H, H, num_layers=layers)
        dec = torch.nn.Linear(H, VOCAB)
        tx = torch.from_numpy(x).unsqueeze(0)
        st = (torch.zeros(layers, 1, H), torch.zeros(layers, 1, H))

        def tstep():
            nonlocal st
            out, st = lstm(tx, st)
            return out

        def tfull():
            out = tstep()
            return torch.multinomial(torch.softmax(dec(out[0]), -1), 1)

        with torch.no_grad():
            res["torch step oneDNN"] = median_time(tstep, reps)
            res["torch full oneDNN"] = median_time(tfull, reps)
            with torch.backends.mkldnn.flags(enabled=False):
                res["torch step native"] = median_time(tstep, reps)
                res["torch full native"] = median_time(tfull, reps)
    return res


# --- main ---------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes and few repetitions")
    ap.add_argument("--threads", default="1,2", help="thread counts to run, e.g. 1,2")
    ap.add_argument("--configs", default=None, help="comma-separated config names")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--isa", default=None,
                    help="kernel paths to run: all, or a list such as avx512,avx2 [the one "
                         "selected at load time]; PyTorch is timed once per shape and thread "
                         "count, the anchor of every path")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--markdown", default=None,
                    help="also write the tables in Markdown to this file (for the README)")
    ap.add_argument("--sgemm-rates", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spin", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sgemm_rates is not None:
        return _sgemm_rates_child([tuple(s) for s in json.loads(args.sgemm_rates)],
                                  int(args.threads))
    if args.spin is not None:
        return _spin_child(args.spin)

    torch = None if args.no_torch else try_torch()
    threads = [int(t) for t in args.threads.split(",")]
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    if args.configs:
        allc = {**CONFIGS, **QUICK_CONFIGS}
        configs = {c: allc[c] for c in args.configs.split(",")}
    reps_of = (lambda B, T, H: 2) if args.quick else (
        lambda B, T, H: int(min(20, max(3, 4e9 / layer_flops(B, T, H, "lstm")[0]))))
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"# rnnkit kernel benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}")
    isas = isa_list(args.isa)
    print(f"# CPU: {cpu_header()}")
    print(f"# {os.cpu_count()} logical CPUs; python {platform.python_version()}, "
          f"numpy {np.__version__}" + (f", torch {torch.__version__} (its CPU capability: "
                                       f"{torch.backends.cpu.get_cpu_capability()})"
                                       if torch else ", no torch"))
    if torch is not None and "avx2" in isas:
        print("# (to time the avx2 path against PyTorch on AVX2 too, as on a CPU without AVX-512, "
              "run with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)")
    print(f"# rnnkit kernel paths in this run: {', '.join(isas)}; numpy/scipy BLAS here: "
          f"{'; '.join(blas)}")
    results = {"date": str(datetime.datetime.now()), "cpu": cpu_name(), "configs": {},
               "generation": {}}
    md = [f"Measured {datetime.datetime.now():%Y-%m-%d} on {cpu_header()} "
          f"[{os.cpu_count()} logical CPUs], torch {torch.__version__ if torch else '-'}, "
          f"numpy {np.__version__}; `python bench/bench_kernels.py`.", ""]

    if max(threads) > 1:
        r = side_by_side(5 if args.quick else 30)
        ok = r > 0.85
        print(f"# two single-thread processes side by side run at {r:.2f}x the speed of one "
              f"alone: {'both cores are free' if ok else 'the cores are SHARED with other load: 2-thread figures are not meaningful'}")
        results["side_by_side"] = r
        md += [f"Two single-thread processes side by side ran at {r:.2f}x the speed of one "
               f"alone{'' if ok else ' (the machine was shared: 2-thread rows are not meaningful)'}.", ""]
    md += ["One layer, forward+backward, thousands of tokens/s; ratio = rnnkit / the faster "
           "PyTorch path (oneDNN or native); sgemm line = (time of every product at numpy's "
           "sgemm rate on the same shape) / rnnkit's time.", "",
           "| path | config | cell | threads | rnnkit | numpy reference | PyTorch oneDNN "
           "| PyTorch native | ratio | vs reference | fwd only ratio | GFLOP/s | sgemm line |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    gen_md = []
    torch_times, rates_of = {}, {}  # one PyTorch anchor per shape and thread count, for every path
    for isa in isas:
        K.set_isa(isa)
        run_path(args, isa, torch, threads, configs, reps_of, results, md, gen_md, torch_times,
                 rates_of)
    md += ["", f"Generation, one stream, one step carrying state (median µs); full = plus the "
           f"output layer over {VOCAB} words, softmax and sampling; ratio = rnnkit / the faster "
           "PyTorch path.", "",
           "| path | H | layers | threads | rnnkit step | PyTorch step | ratio | rnnkit full "
           "| PyTorch full | ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"] + gen_md
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


def run_path(args, isa, torch, threads, configs, reps_of, results, md, gen_md, torch_times,
             rates_of):
    """Correctness, throughput and generation on one kernel path (selected by the caller)."""
    print(f"\n# ===== kernel path: {isa} (products: {K.gemm_backend()}) =====")


    # 1. correctness on every shape before any timing
    print("\n## correctness (max relative error vs the float64 reference; vs torch outputs)")
    for name, (B, T, H) in configs.items():
        for cell in ("lstm", "rnn"):
            err, terr = check(params(B, T, H, cell), cell, torch)
            flag = "ok" if err < 1e-3 else "FAILED"
            tt = f", torch {terr:.1e}" if terr is not None else ""
            print(f"{name:10s} {cell:4s} B={B} T={T} E=H={H}: reference {err:.1e}{tt}  {flag}")
            if err >= 1e-3:
                raise SystemExit(f"error: {cell} kernel disagrees with the reference on {name} "
                                 f"(path {isa})")

    # 2. throughput
    print("\n## one layer, tokens/s (k = 1000); ratio = rnnkit / the faster PyTorch path")
    hdr = (f"{'config':10s} {'cell':4s} {'thr':>3s} | {'rnnkit f+b':>10s} {'numpy ref':>9s} "
           f"{'torch oneDNN':>12s} {'torch native':>12s} {'ratio':>5s} {'vs ref':>6s} | "
           f"{'rnnkit fwd':>10s} {'torch fwd':>9s} {'ratio':>5s} | {'GFLOP/s':>7s} "
           f"{'sgemm line':>10s}")
    print(hdr)
    print("-" * len(hdr))
    for name, (B, T, H) in configs.items():
        reps = reps_of(B, T, H)
        for cell in ("lstm", "rnn"):
            p = params(B, T, H, cell)
            fb_flops, f_flops = layer_flops(B, T, H, cell)
            shapes = products(B, T, H, cell)
            for nt in threads:
                row = {}
                K.set_num_threads(nt)
                with threadpool_limits(1):  # rnnkit's products do not use BLAS threads
                    kf, kfb = rnnkit_runner(p, cell)
                    row["rnnkit f+b"] = best_time(kfb, reps)
                    row["rnnkit fwd"] = best_time(kf, reps)
                with threadpool_limits(nt):
                    rf, rfb = reference_runner(p, cell)
                    row["ref f+b"] = best_time(rfb, max(1, reps // 4), warmup=0)
                key = (name, cell, nt)
                if torch is not None and key in torch_times:
                    row.update(torch_times[key])
                elif torch is not None:
                    torch.set_num_threads(nt)
                    tf, tfb = torch_runner(torch, p, cell)
                    row["torch oneDNN f+b"] = best_time(tfb, reps)
                    row["torch oneDNN fwd"] = best_time(tf, reps)
                    with torch.backends.mkldnn.flags(enabled=False):
                        row["torch native f+b"] = best_time(tfb, reps)
                        row["torch native fwd"] = best_time(tf, reps)
                    torch_times[key] = {k: v for k, v in row.items() if k.startswith("torch")}
                if key not in rates_of:
                    rates_of[key] = sgemm_rates([s[:3] for s in shapes], nt)
                rates = rates_of[key]
                line = sum(2.0 * M * Kd * N * cnt / (rates["rates"][f"{M}x{Kd}x{N}"] * 1e9)
                           for M, Kd, N, cnt in shapes)
                row["sgemm line"] = line
                row["numpy openblas"] = rates["openblas"]
                tok = B * T

                def ks(t):
                    return f"{tok / t / 1e3:10.1f}" if t else f"{'-':>10s}"
                tfb = min(row.get("torch oneDNN f+b", np.inf), row.get("torch native f+b", np.inf))
                tfw = min(row.get("torch oneDNN fwd", np.inf), row.get("torch native fwd", np.inf))
                ratio = f"{tfb / row['rnnkit f+b']:5.2f}" if np.isfinite(tfb) else "    -"
                fratio = f"{tfw / row['rnnkit fwd']:5.2f}" if np.isfinite(tfw) else "    -"
                print(f"{name:10s} {cell:4s} {nt:3d} | {ks(row['rnnkit f+b'])} "
                      f"{tok / row['ref f+b'] / 1e3:9.1f} "
                      f"{ks(row.get('torch oneDNN f+b')):>12s} {ks(row.get('torch native f+b')):>12s} "
                      f"{ratio} {row['ref f+b'] / row['rnnkit f+b']:5.1f}x | "
                      f"{ks(row['rnnkit fwd'])} {(tok / tfw / 1e3 if np.isfinite(tfw) else 0):9.1f} "
                      f"{fratio} | {fb_flops / row['rnnkit f+b'] / 1e9:7.0f} "
                      f"{line / row['rnnkit f+b']:9.2f}x")
                results["configs"][f"{isa}/{name}/{cell}/{nt}"] = row

                def kt(t):
                    return f"{tok / t / 1e3:.1f}" if t else "-"
                md.append(f"| {isa} | {name} (B={B}, T={T}, H={H}) | {cell} | {nt} | {kt(row['rnnkit f+b'])} "
                          f"| {kt(row['ref f+b'])} | {kt(row.get('torch oneDNN f+b'))} "
                          f"| {kt(row.get('torch native f+b'))} | {ratio.strip()} "
                          f"| {row['ref f+b'] / row['rnnkit f+b']:.1f}x | {fratio.strip()} "
                          f"| {fb_flops / row['rnnkit f+b'] / 1e9:.0f} "
                          f"| {line / row['rnnkit f+b']:.2f} |")
    print("(sgemm line: the time of every product at numpy's rate on the same shape and thread "
          "count, as a fraction of rnnkit's time: 1.00x = rnnkit runs at numpy's sgemm rate "
          f"including the gate math; numpy measured with OpenBLAS's "
          f"{'/'.join(sorted(set(map(str, rates['openblas']))))} kernel"
          + (f", {' and '.join(rates['unset'])} unset" if rates["unset"] else "") + ")")

    # 3. generation
    print(f"\n## generation, one stream (B = 1), one step carrying state; 'full' adds the output "
          f"layer over {VOCAB} words, softmax and sampling (median, microseconds)")
    hdr = (f"{'H':>5s} {'layers':>6s} {'thr':>3s} | {'rnnkit step':>11s} {'torch step':>10s} "
           f"{'ratio':>5s} | {'rnnkit full':>11s} {'torch full':>10s} {'ratio':>5s}")
    print(hdr)
    print("-" * len(hdr))
    for H in ((200,) if args.quick else (200, 650)):
        for layers in (1, 2):
            for nt in threads:
                K.set_num_threads(nt)
                if torch is not None:
                    torch.set_num_threads(nt)
                gkey = (H, layers, nt)
                with threadpool_limits(nt):
                    g = generation(torch if gkey not in torch_times else None, H, layers,
                                   300 if args.quick else 2000, nt)
                if torch is not None:
                    if gkey in torch_times:
                        g.update(torch_times[gkey])
                    else:
                        torch_times[gkey] = {k: v for k, v in g.items() if k.startswith("torch")}
                ts = min(g.get("torch step oneDNN", np.nan), g.get("torch step native", np.nan))
                tf = min(g.get("torch full oneDNN", np.nan), g.get("torch full native", np.nan))
                print(f"{H:5d} {layers:6d} {nt:3d} | {g['rnnkit step'] * 1e6:11.1f} "
                      f"{ts * 1e6:10.1f} {g['rnnkit step'] / ts:5.2f} | "
                      f"{g['rnnkit full'] * 1e6:11.1f} {tf * 1e6:10.1f} "
                      f"{g['rnnkit full'] / tf:5.2f}")
                results["generation"][f"{isa}/{H}/{layers}/{nt}"] = g
                gen_md.append(f"| {isa} | {H} | {layers} | {nt} | {g['rnnkit step'] * 1e6:.1f} "
                          f"| {ts * 1e6:.1f} | {g['rnnkit step'] / ts:.2f} "
                          f"| {g['rnnkit full'] * 1e6:.1f} | {tf * 1e6:.1f} "
                          f"| {g['rnnkit full'] / tf:.2f} |")
    print("(ratio = rnnkit / the faster PyTorch path; targets: step <= 0.25, full <= 0.5)")


if __name__ == "__main__":
    main()
