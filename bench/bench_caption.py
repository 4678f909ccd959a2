"""Benchmark of image captioning: quality on synthetic scenes, and speed against a PyTorch model of
the same architecture in the same run.

1. Quality (synthetic scenes, the demo extractor): BLEU-1..4 (sacrebleu; CIDEr where
   pycocoevalcap is installed) of greedy and beam-3 captions of held-out scenes, beside an
   image-blind model (the same network trained with every feature vector zero), and the
   training time.
2. Speed: training tokens/s (Adam, same batches; the best of 3 rounds that alternate the sides)
   and caption generation (images/s, beam 3, a
   batch of 64 images; the best of 5 alternating rounds of 10 searches per side) of rnnkit and of PyTorch
   (nn.Linear projection, nn.Embedding, nn.LSTM, nn.Linear output; its beam search is rnnkit's
   own decoding/beam.py over a protocol adapter, so only the model's arithmetic differs; the
   search's own bookkeeping, the same on both sides, bounds the ratio). Targets: >= 2x, >= 3x.
3. Feature extraction images/s with ONNX Runtime (a small random-weight CNN built with onnx's
   helpers, 224 x 224), 1 and 2 threads; and the demo extractor.

Correctness before timing: PyTorch is loaded with rnnkit's weights and both compute the loss and
every gradient of one batch; they must agree (relative 1e-4) before anything is timed.

Usage:
  python bench/bench_caption.py --quick        # small sizes: checks the script (~1-2 min)
  python bench/bench_caption.py --threads 2    # the full run (on a quiet 2-core machine):
                     # 800 training scenes, 100 held-out, 12 epochs; greedy, beam 3 and beam 5;
                     # speed over 200 batches of 64 captions; extraction of 512 images
  python bench/bench_caption.py --onnx efficientnet-lite0.onnx
                     # the demo extractor against ImageNet features (scripts/export_efficientnet_lite0.py)

Beam captions use the length penalty --alpha (default 0.6, as `rnnkit caption`).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from _machine import cpu_name  # bench/_machine.py

import rnnkit
from rnnkit.decoding.beam import beam_search
from rnnkit.decoding.caption_metrics import caption_scores
from rnnkit.models.caption import make_caption_batch
from rnnkit.nn.backend import kernels
from rnnkit.text.captions import read_captions, write_features
from rnnkit.text.images import extract_features
from rnnkit.text.scenes import write_scenes
from rnnkit.training.caption_task import CaptionTrainOptions, load_caption_data, train_caption


def quality(work: Path, n_train: int, n_test: int, epochs: int, threads: int, onnx=None,
            name: str = "", alpha: float = 0.6, beams=(1, 3)) -> dict:
    """Scenes, features (the demo extractor, or an ONNX CNN), captioner and blind model."""
    if not (work / "train").exists():
        write_scenes(work / "train", n_train, seed=0)
        write_scenes(work / "test", n_test, seed=1)
    t0 = time.perf_counter()
    write_features(work / f"train{name}.safetensors",
                   extract_features(work / "train" / "images", onnx, threads=threads))
    test = extract_features(work / "test" / "images", onnx, threads=threads)
    extract_seconds = time.perf_counter() - t0
    refs = read_captions(work / "test" / "captions.tsv")
    R = [refs[i] for i in test.ids]
    opts = dict(emb=64, hidden=96, layers=1, epochs=epochs, batch=32, lr=0.005, threads=threads)
    t0 = time.perf_counter()
    s = train_caption(work / "train", work / f"cap{name}.rnnkit", CaptionTrainOptions(**opts),
                      features=work / f"train{name}.safetensors")
    seconds = time.perf_counter() - t0
    blind = load_caption_data(work / "train", work / f"train{name}.safetensors")
    blind.features.array[:] = 0
    train_caption(blind, work / "blind.rnnkit", CaptionTrainOptions(**opts))
    m, b = rnnkit.load(work / f"cap{name}.rnnkit"), rnnkit.load(work / "blind.rnnkit")
    out = {"train_seconds": seconds, "valid_ppl": s["valid_perplexity"],
           "extract_seconds": extract_seconds, "dim": int(test.array.shape[-1])}
    runs = [("greedy" if k == 1 else f"beam {k}", m, test.array, k) for k in beams]
    for name, model, X, beam in runs + [("blind greedy", b, np.zeros_like(test.array), 1)]:
        hyps = model.caption(X, beam=beam, alpha=alpha)
        out[name] = caption_scores([h[0][0] for h in hyps], R)
        out[name]["words"] = float(np.mean([len(h[0][0].split()) for h in hyps]))
        out[name]["log10_prob"] = float(np.mean([h[0][1] for h in hyps]))
    return out


class TorchCaption:
    """The same architecture in PyTorch, with rnnkit's tensors, and the decoding protocol."""

    def __init__(self, m):
        import torch
        a = m.arch
        self.torch, self.m = torch, m
        self.proj = torch.nn.Linear(a.feature_size, a.emb)
        self.emb = torch.nn.Embedding(a.vocab_size, a.emb)
        self.rnn = torch.nn.LSTM(a.emb, a.hidden, a.layers)
        self.out = torch.nn.Linear(a.hidden, a.vocab_size)
        sd = {k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()}
        self.proj.load_state_dict({"weight": sd["encoder.projection.weight"],
                                   "bias": sd["encoder.projection.bias"]})
        self.emb.load_state_dict({"weight": sd["decoder.embedding.weight"]})
        self.rnn.load_state_dict({k[len("decoder.rnn."):]: v for k, v in sd.items()
                                  if k.startswith("decoder.rnn.")})
        self.out.load_state_dict({"weight": sd["decoder.output.weight"],
                                  "bias": sd["decoder.output.bias"]})
        self.mean = torch.from_numpy(m.feature_mean.astype(np.float32))
        self.std = torch.from_numpy(m.feature_std.astype(np.float32))
        self.params = [*self.proj.parameters(), *self.emb.parameters(), *self.rnn.parameters(),
                       *self.out.parameters()]

    def loss(self, batch):
        torch = self.torch
        f = (torch.from_numpy(batch.features.astype(np.float32)) - self.mean) / self.std
        x = torch.cat([self.proj(f)[None], self.emb(torch.from_numpy(batch.trg_in))], 0)
        h, _ = self.rnn(x)
        valid = torch.from_numpy(batch.valid)
        logits = self.out(h[1:][valid])
        return torch.nn.functional.cross_entropy(
            logits, torch.from_numpy(batch.trg_out)[valid], reduction="sum")

    # the protocol, so rnnkit's beam search runs over this model
    class State:
        def __init__(self, h, c):
            self.h, self.c = h, c

        def select(self, rows):
            import torch
            r = torch.from_numpy(np.asarray(rows))
            return TorchCaption.State(self.h[:, r], self.c[:, r])

    def start(self, batch=None, context=None):
        torch = self.torch
        with torch.no_grad():
            f = (torch.from_numpy(np.asarray(context, np.float32)) - self.mean) / self.std
            x = torch.stack([self.proj(f), self.emb.weight[1].expand(len(f), -1)])
            _, (h, c) = self.rnn(x)
        return TorchCaption.State(h, c)

    def advance(self, st, ids):
        torch = self.torch
        with torch.no_grad():
            x = self.emb(torch.from_numpy(np.asarray(ids, np.int64)))[None]
            _, (st.h, st.c) = self.rnn(x, (st.h, st.c))
        return st

    def log_probs(self, st):
        torch = self.torch
        with torch.no_grad():
            return (torch.log_softmax(self.out(st.h[-1]), -1) / np.log(10)).numpy()


def seconds(fn) -> float:
    """The wall time of one call of fn."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternating_best(rounds: int, *timings) -> list[float]:
    """Each of `timings` (callables returning seconds) run in `rounds` rounds that alternate
    them: the least each gave."""
    best = [float("inf")] * len(timings)
    for _ in range(rounds):
        for i, timing in enumerate(timings):
            best[i] = min(best[i], timing())
    return best


def speed(work: Path, name: str, threads: int, quick: bool) -> list[tuple]:
    import torch
    torch.set_num_threads(threads)
    m = rnnkit.load(work / f"cap{name}.rnnkit")
    data = load_caption_data(work / "train", work / f"train{name}.safetensors")
    rows, caps = data.examples("train", m.vocab)
    order = np.random.default_rng(0).permutation(len(caps))
    bs = 64
    batches = [make_caption_batch(data.features.array[rows[order[i:i + bs]]],
                                  [caps[j] for j in order[i:i + bs]])
               for i in range(0, len(order) - bs + 1, bs)][: 20 if quick else 200]
    tm = TorchCaption(m)
    # correctness first: loss and every gradient of one batch
    b0 = batches[0]
    loss_r = m.forward_backward(b0, 1.0)
    g = m.layout.views(m.grad)
    loss_t = tm.loss(b0)
    loss_t.backward()
    assert abs(loss_r - loss_t.item()) <= 1e-4 * abs(loss_r), (loss_r, loss_t.item())
    pairs = [("encoder.projection.weight", tm.proj.weight), ("decoder.embedding.weight",
             tm.emb.weight), ("decoder.output.weight", tm.out.weight),
             ("decoder.rnn.weight_hh_l0", tm.rnn.weight_hh_l0)]
    for name, p in pairs:
        np.testing.assert_allclose(g[name], p.grad.numpy(), rtol=1e-3, atol=1e-4 * np.abs(
            g[name]).max())
    print("correctness: loss and gradients agree with PyTorch", file=sys.stderr)
    tokens = sum(b.tokens for b in batches)
    # training: forward, backward, Adam step
    from rnnkit.nn.optim import make_optimizer
    opt = make_optimizer("adam", m.flat.shape[0])
    with threadpool_limits(1 if kernels().gemm_backend() == "packed" else threads):
        K = kernels()
        old = K.get_num_threads()
        K.set_num_threads(threads)
        topt = torch.optim.Adam(tm.params, lr=1e-3)

        def train_r():
            for b in batches:
                m.forward_backward(b, 1.0 / b.size)
                opt.step(m.flat, m.grad, 1e-3)

        def train_t():
            for b in batches:
                topt.zero_grad()
                (tm.loss(b) / b.size).backward()
                topt.step()

        # rounds alternate the two sides and each keeps its best: one pass of ~0.5 s per side
        # moved by up to 2x between runs (a side's pool threads still spinning when the other
        # starts), the best of 3 alternating rounds by a few per cent
        t_r, t_t = alternating_best(1 if quick else 3, lambda: seconds(train_r),
                                    lambda: seconds(train_t))
        feats = data.features.array[:64]
        tm = TorchCaption(m)

        def search(model):
            return beam_search(model, feats, beam=3, max_len=20, alpha=0.0)

        def best_of(model, reps=10):   # a warm-up call, then the best of `reps` (a search of
            search(model)              # 64 images: 1-5 ms)
            return min(seconds(lambda: search(model)) for _ in range(reps))
        # rounds alternate the sides, as for training: one block of 10 searches per side moved
        # the ratio between 1.4x and 3.1x on a noisy host (2026-12-03)
        g_r, g_t = alternating_best(1 if quick else 5, lambda: best_of(m), lambda: best_of(tm))
        hr, ht = search(m), search(tm)
        K.set_num_threads(old)
    same = sum(a[0].tokens == b[0].tokens for a, b in zip(hr, ht))
    print(f"beam 3: {same} of 64 captions identical in rnnkit and PyTorch", file=sys.stderr)
    return [("training tokens/s (Adam, batch 64)", tokens / t_r, tokens / t_t, 2.0),
            ("generation images/s (beam 3, batch 64)", 64 / g_r, 64 / g_t, 3.0)]


def onnx_cnn(path: Path, size: int):
    """A small random-weight CNN (3 conv + relu, strides 2, global pooling), for timing only."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inits, prev, cin = [], [], "x", 3
    for k, cout in enumerate((32, 64, 128)):
        w = (rng.normal(size=(cout, cin, 3, 3)) * 0.1).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{k}"))
        nodes += [helper.make_node("Conv", [prev, f"w{k}"], [f"c{k}"], strides=[2, 2],
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"])]
        prev, cin = f"r{k}", cout
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["g"]),
              helper.make_node("Flatten", ["g"], ["pooled"])]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", cin])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def extraction(work: Path, quick: bool) -> list[tuple]:
    images = work / "train" / "images"
    files = sorted(images.iterdir())[: 64 if quick else 512]
    rows = []
    t0 = time.perf_counter()
    extract_features(files)
    rows.append(("demo extractor, images/s", len(files) / (time.perf_counter() - t0)))
    try:
        onnx_cnn(work / "cnn.onnx", 224)
    except ImportError:
        print("onnx is not installed: ONNX Runtime extraction not timed", file=sys.stderr)
        return rows
    for t in (1, 2):
        extract_features(files[:4], work / "cnn.onnx", threads=t)   # warm-up
        t0 = time.perf_counter()
        extract_features(files, work / "cnn.onnx", threads=t, batch=32)
        rows.append((f"ONNX Runtime 224x224 CNN, {t} thread{'s' * (t > 1)}, images/s",
                     len(files) / (time.perf_counter() - t0)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--onnx", help="also caption the scenes from this ONNX CNN's pooled features "
                    "(e.g. scripts/export_efficientnet_lite0.py's), to compare with the demo "
                    "extractor")
    ap.add_argument("--scenes", type=int, default=None,
                    help="training scenes [default: 800, --quick 400]")
    ap.add_argument("--neuraltalk", help="a directory with neuraltalk's vgg_feats.mat (and "
                    "tasks.txt or dataset.json): time reading its features")
    ap.add_argument("--alpha", type=float, default=0.6, help="the beam's length penalty")
    args = ap.parse_args()
    full = not args.quick
    scenes = args.scenes or (800 if full else 400)
    n_test, epochs = (100, 12) if full else (60, 8)
    beams = (1, 3, 5) if full else (1, 3)
    print(f"bench_caption{'' if full else ' --quick'}  "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
          f"UTC  CPU: {cpu_name()}  threads: {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = [("demo extractor", None)] + ([(Path(args.onnx).name, args.onnx)] if args.onnx
                                             else [])
        for k, (label, onnx) in enumerate(runs):
            q = quality(work, scenes, n_test, epochs, args.threads, onnx, str(k), args.alpha,
                        beams)
            print(f"\n{label} (D = {q['dim']}, extraction {q['extract_seconds']:.1f} s): synthetic "
                  f"scenes, {scenes} training, {n_test} held-out, {epochs} epochs; training "
                  f"{q['train_seconds']:.1f} s, valid ppl {q['valid_ppl']:.2f}; beams with "
                  f"length penalty {args.alpha}")
            print(f"{'captions':<14}" + "".join(f"{c:>9}" for c in (
                "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "words", "log10 p")))
            for name in [("greedy" if b == 1 else f"beam {b}") for b in beams] + ["blind greedy"]:
                s = q[name]
                cider = f"{s['cider']:9.3f}" if "cider" in s else f"{'-':>9}"
                print(f"{name:<14}" + "".join(f"{s[f'bleu{n}']:9.2f}" for n in range(1, 5))
                      + cider + f"{s['words']:9.2f}{s['log10_prob']:9.3f}")
        print(f"(BLEU: {q['greedy']['bleu_implementation']}; CIDEr: "
              f"{q['greedy'].get('cider_implementation', 'pycocoevalcap not installed')})")
        try:
            import torch  # noqa: F401
            rows = speed(work, "0", args.threads, not full)
            print(f"\n{'speed':<42}{'rnnkit':>12}{'PyTorch':>12}{'ratio':>8}{'target':>8}")
            for name, r, t, target in rows:
                print(f"{name:<42}{r:12,.0f}{t:12,.0f}{r / t:8.2f}{target:>7.0f}x")
        except ImportError:
            print("\nPyTorch is not installed: no speed anchor (pip install torch)")
        if args.neuraltalk:
            from rnnkit.text.captions import read_features
            t0 = time.perf_counter()
            f = read_features(Path(args.neuraltalk) / "vgg_feats.mat")
            print(f"\nneuraltalk vgg_feats.mat: {len(f.ids)} images x {f.size} features "
                  f"(ids {f.ids[0]}, ...) read in {time.perf_counter() - t0:.2f} s")
        print()
        for name, v in extraction(work, not full):
            print(f"{name:<52}{v:10,.1f}")


if __name__ == "__main__":
    main()
