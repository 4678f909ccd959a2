"""Benchmark of generation with recurrent models: rnnkit against PyTorch stepping the same model.

Measured, for an LSTM language model (by default the PTB "small" shape: V 10,001, E = H = 200,
2 layers; random weights unless --model is given):
  - one stream (B = 1): the latency of one token -- embedding, the layers' step, the output
    layer with log-softmax over V, and drawing the next token -- and of the step alone;
  - 64 streams: whole sentences per second (until </s> or --max-len tokens), sampled as one batch.
The anchor is PyTorch (`nn.LSTM` + `nn.Linear` with the same weights, loaded with
`load_state_dict` from the rnnkit file) stepping one token at a time with its hidden state
carried, softmax and torch.multinomial, in its own process with the same thread count, on its
faster path for each measure (as shipped with oneDNN, or `torch.backends.mkldnn.flags(enabled=
False)`; the table's note gives both).
Target: rnnkit's per-token latency <= 0.5x PyTorch's.

Correctness first: after a few steps on the same tokens, both give the same log-probabilities
(within 1e-4) before anything is timed.

Usage:
  python bench/bench_generate.py                 # threads 1 and 2
  python bench/bench_generate.py --quick         # fewer repetitions: checks the script
  python bench/bench_generate.py --hidden 650 --threads 1
  python bench/bench_generate.py --model lstm.rnnkit
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402
from bench_train import side_by_side_check  # noqa: E402

PROBE = [5, 17, 3, 99, 42]  # tokens fed before the log-probabilities are compared


def best_of(f, repeat: int) -> float:
    f()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            f()
        best = min(best, (time.perf_counter() - t) / repeat)
    return best


def torch_worker(args) -> None:
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    meta = json.loads(args.config)
    V, E, H, L = meta["vocab_size"], meta["emb"], meta["hidden"], meta["layers"]

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, L)
            self.decoder = torch.nn.Linear(H, V)

    m = LM().eval()
    m.load_state_dict(load_file(args.model))
    torch.manual_seed(0)
    out = {"torch": torch.__version__}
    with torch.inference_mode():
        def start(B):
            z = torch.zeros(L, B, H)
            ids = torch.full((1, B), 1, dtype=torch.long)  # <s>
            _, hid = m.rnn(m.encoder(ids), (z, z.clone()))
            return hid

        hid = start(1)
        for w in PROBE:
            _, hid = m.rnn(m.encoder(torch.tensor([[w]])), hid)
        lp = torch.log_softmax(m.decoder(hid[0][-1]), -1)
        out["probe"] = (lp[0].double() / np.log(10)).tolist()

        state = {"hid": start(1), "ids": torch.tensor([[3]])}

        def step():
            o, state["hid"] = m.rnn(m.encoder(state["ids"]), state["hid"])
            return o

        def full():
            o = step()
            p = torch.softmax(m.decoder(o[0]), -1)
            state["ids"] = torch.multinomial(p, 1).view(1, 1)

        # PyTorch's faster path counts: as shipped (oneDNN) or its native kernels
        for name, flag in (("onednn", True), ("native", False)):
            with torch.backends.mkldnn.flags(enabled=flag):
                state["hid"], state["ids"] = start(1), torch.tensor([[3]])
                step_us = best_of(step, args.repeat) * 1e6
                full_us = best_of(full, args.repeat) * 1e6
            out[f"{name}_step_us"], out[f"{name}_full_us"] = step_us, full_us
        out["step_us"] = min(out["onednn_step_us"], out["native_step_us"])
        out["full_us"] = min(out["onednn_full_us"], out["native_full_us"])

        def sentences():
            B = 64
            hid = start(B)
            done = torch.zeros(B, dtype=torch.bool)
            for _ in range(args.max_len):
                logits = m.decoder(hid[0][-1])
                logits[:, 1] = -float("inf")  # <s> is context only
                ids = torch.multinomial(torch.softmax(logits, -1), 1).view(B)
                done |= ids == 2
                if bool(done.all()):
                    break
                _, hid = m.rnn(m.encoder(ids.view(1, B)), hid)

        best = float("inf")
        for flag in (True, False):
            with torch.backends.mkldnn.flags(enabled=flag):
                best = min(best, best_of(sentences, max(1, args.repeat // 200)))
        out["sentences_per_s"] = 64 / best
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="an rnnkit LSTM model (default: random PTB-size)")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=10001)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--max-len", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.repeat = 200
    if args.torch_worker:
        args.threads = args.threads[0]
        torch_worker(args)
        return

    import rnnkit
    from rnnkit.models.rnnlm import RNNLM, Architecture, load
    from rnnkit.decoding.sampling import draw, sample_sentences
    from rnnkit.nn.backend import thread_limit
    from rnnkit.text.vocab import SPECIALS, Vocab

    tmp = Path(tempfile.mkdtemp(prefix="bench_generate."))
    if args.model:
        model = load(args.model)
        path = args.model
    else:
        V = args.vocab
        arch = Architecture("lstm", V, args.hidden, args.hidden, args.layers)
        model = RNNLM(arch, Vocab(list(SPECIALS) + [f"w{i}" for i in range(V - 3)]))
        model.init_uniform(np.random.default_rng(0), 0.1)
        path = tmp / "model.rnnkit"
        model.save(path)
    a = model.arch
    print(f"# bench_generate {datetime.date.today()}  CPU: {cpu_name()}  rnnkit "
          f"{rnnkit.__version__}  model: {a.model_type} V={a.vocab_size} E={a.emb} H={a.hidden} "
          f"L={a.layers}")
    if max(args.threads) > 1:
        print("# " + side_by_side_check())
    rows = []
    for threads in args.threads:
        torch_res = None
        if not args.no_torch and a.model_type == "lstm":
            try:
                import torch  # noqa: F401
                have_torch = True
            except ImportError:
                have_torch = False
            if have_torch:
                r = subprocess.run([sys.executable, __file__, "--torch-worker", "--model",
                                    str(path), "--threads", str(threads), "--config",
                                    json.dumps(a.to_dict()), "--repeat", str(args.repeat),
                                    "--max-len", str(args.max_len)],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"the PyTorch worker failed:\n{r.stderr[-3000:]}")
                torch_res = json.loads(r.stdout.strip().splitlines()[-1])
        with thread_limit(threads):
            state = model.start(1)
            for w in PROBE:
                model.advance(state, np.array([w]))
            if torch_res is not None:
                err = np.abs(model.log_probs(state)[0] - np.array(torch_res["probe"])).max()
                if err > 1e-4:
                    raise SystemExit(f"rnnkit and PyTorch disagree after {len(PROBE)} steps: "
                                     f"max |log10 p difference| {err:.2e}")
                print(f"# check ({threads} threads): log10 p after {len(PROBE)} steps agree "
                      f"with PyTorch within {err:.1e}")
            ids = np.array([3])
            rng = np.random.default_rng(0)

            def step():
                model.advance(state, ids)

            def full():
                model.advance(state, ids)
                ids[:] = draw(model.log_probs(state), rng)

            step_us = best_of(step, args.repeat) * 1e6
            full_us = best_of(full, args.repeat) * 1e6
            t = best_of(lambda: sample_sentences(model, 64, max_len=args.max_len, seed=0),
                        max(1, args.repeat // 200))
            rows.append((threads, step_us, full_us, 64 / t, torch_res))

    print("\n| threads | measure | rnnkit | PyTorch | rnnkit / PyTorch |")
    print("|---:|---|---:|---:|---:|")
    for threads, step_us, full_us, sps, tr in rows:
        def cell(ours, key, lower_better=True, unit=""):
            if tr is None:
                return f"| {ours:,.1f}{unit} | - | - |"
            theirs = tr[key]
            return f"| {ours:,.1f}{unit} | {theirs:,.1f}{unit} | {ours / theirs:.2f}x |"
        print(f"| {threads} | one stream: layers' step (µs/token) {cell(step_us, 'step_us')}")
        print(f"| {threads} | one stream: full token incl. output layer and sampling (µs) "
              f"{cell(full_us, 'full_us')}")
        print(f"| {threads} | 64 streams: sentences/s (max {args.max_len} tokens) "
              f"{cell(sps, 'sentences_per_s')}")
    for threads, _, _, _, tr in rows:
        if tr is not None:
            print(f"# PyTorch, {threads} thread(s): step {tr['onednn_step_us']:.0f} µs with "
                  f"oneDNN, {tr['native_step_us']:.0f} µs native; full token "
                  f"{tr['onednn_full_us']:.0f} / {tr['native_full_us']:.0f} µs")
    print("\n# target: full-token latency <= 0.5x PyTorch's (lower is better; for sentences/s "
          "higher is better)")
    for threads, _, full_us, _, tr in rows:
        if tr is not None:
            ratio = full_us / tr["full_us"]
            print(f"# {threads} thread(s): {ratio:.2f}x -> {'met' if ratio <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
