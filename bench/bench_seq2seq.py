"""Benchmark of the translation model (models/seq2seq.py) against its PyTorch anchor
(bench/torch_seq2seq.py, the same architecture and tensor names) in the same run.

Configuration (the recommended Multi30k one): LSTM, E = H = 256, one layer, bidirectional
encoder, general (Luong) attention, batch 64 pairs, subword vocabularies of about 8k per side.
Speed targets (issue 12): training tokens/s >= 2x PyTorch; decoding sentences/s (beam 5, batch
64) >= 3x PyTorch with a standard batched beam search; batch-1 latency and peak memory (the
peak resident set of each side's process) reported. Training is timed twice: with a plain SGD
update (the products alone, as before), and with the update `rnnkit train --type seq2seq` runs
(the gradient norm clipped at 5, then Adam), against PyTorch's clip_grad_norm_ and its
torch.optim.Adam as shipped.

Speed runs on synthetic ids with Multi30k's lengths (German ~14, English ~15 subwords per
sentence), bucketed by length as `train --type seq2seq` does. Each side runs in its own process
(`--worker rnnkit|torch`), one after the other, with the same thread count, the same batches
and the same initial weights: the rnnkit model file is what PyTorch loads. The two alternate
for --rounds (3) and each measure keeps its best. Correctness first:
the PyTorch model's loss and every gradient on the first batch must agree with rnnkit's (loss
1e-5 relative, gradients 1e-4 of each tensor's largest entry) before anything is timed.
Decoding uses the untrained weights (reloaded after the timed training) with a fixed limit of M
output tokens (a random model rarely ends with </s>, so both sides do the same M steps; the
steps are counted and printed): sentences/s counts sources translated.

--full trains on Multi30k (task 1, de->en by default) with rnnkit's training loop within a time
budget and reports test_2016_flickr BLEU (sacreBLEU, detokenized, cased and lowercased) with beam
5, for the attention model and the table the lecture's figures ask for (no attention,
unidirectional vs bidirectional, en->de). Subwords: SentencePiece (unigram) per side when the
`sentencepiece` package is installed, else words (the table says which).

Usage:
  python bench/bench_seq2seq.py --quick                  # small check of the script (~2 min)
  python bench/bench_seq2seq.py                          # speed: 100 training steps, decoding
  python bench/bench_seq2seq.py --input-feeding         # the same speed runs with input feeding
  python bench/bench_seq2seq.py --full --minutes 60      # + Multi30k de->en BLEU, one model
  python bench/bench_seq2seq.py --full --table --minutes 60   # + none / uni / en->de (5 runs)
  python bench/bench_seq2seq.py --quick --full --no-speed     # the BLEU path on 1,000 pairs
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import cpu_name  # bench/_machine.py

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "multi30k"
CONFIG = dict(emb=256, hidden=256, layers=1, bidirectional=True, attention="general",
              batch=64, src_vocab=8000, trg_vocab=8000)
SRC_LEN, TRG_LEN = (14.0, 5.0), (15.0, 5.0)  # mean, sd of subword lengths (</s> excluded)
TRAIN_TARGET, DECODE_TARGET = 2.0, 3.0


# ------------------------------------------------------------------------------------------------
# synthetic batches with realistic lengths
# ------------------------------------------------------------------------------------------------
def synthetic_batches(cfg: dict, n: int, seed: int = 0):
    """n batches of cfg['batch'] pairs, bucketed by (target, source) length as the trainer's."""
    from rnnkit.models.seq2seq import make_batch

    rng = np.random.default_rng(seed)
    B = cfg["batch"]
    m = n * B
    ls = np.clip(rng.normal(*SRC_LEN, m).round(), 3, 45).astype(int)
    lt = np.clip(rng.normal(*TRG_LEN, m).round(), 3, 45).astype(int)
    pairs = [(rng.integers(3, cfg["src_vocab"], a), rng.integers(3, cfg["trg_vocab"], b))
             for a, b in zip(ls, lt)]
    order = np.lexsort((ls, lt))
    batches = [make_batch([pairs[i][0] for i in order[k:k + B]],
                          [pairs[i][1] for i in order[k:k + B]]) for k in range(0, m, B)]
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm], [p[0] for p in pairs]


def arch_of(cfg: dict):
    from rnnkit.models.seq2seq import Seq2SeqArchitecture

    return Seq2SeqArchitecture(cfg["src_vocab"], cfg["trg_vocab"], cfg["emb"], cfg["hidden"],
                               cfg["layers"], cfg["layers"], "lstm", cfg["bidirectional"],
                               cfg["attention"], input_feeding=cfg.get("input_feeding", False))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------------
# the two workers (one process each)
# ------------------------------------------------------------------------------------------------
def rnnkit_worker(args, cfg) -> dict:
    from threadpoolctl import threadpool_limits

    from rnnkit import modelfile
    from rnnkit.decoding.beam import beam_search
    from rnnkit.models.seq2seq import from_file_parts
    from rnnkit.nn.backend import thread_limit
    from rnnkit.nn.optim import clip_grad_norm, make_optimizer

    threadpool_limits(args.threads)
    os.environ["RNNKIT_NUM_THREADS"] = str(args.threads)
    tensors, meta = modelfile.read(args.init)
    model = from_file_parts(args.init, tensors, meta)
    batches, sources = synthetic_batches(cfg, args.steps + 1, args.seed)
    out = {}
    model.forward_backward(batches[0], 1.0)
    modelfile.save(Path(args.tmp) / "rnnkit-grads.rnnkit",
                   {n: np.array(g) for n, g in model.g.items()}, {"model_type": "grads"})
    out["loss0"] = model.forward_loss(batches[0])
    sgd = make_optimizer("sgd", model.flat.shape[0])
    with thread_limit(args.threads):   # as `rnnkit train` runs: BLAS at 1 thread, the pool at N
        out.update(time_training(lambda b: model.forward_backward(b, 1.0 / b.size),
                                 lambda: sgd.step(model.flat, model.grad, 1e-3), batches[1:]))
        # the trainer's own update for translation: the norm clipped at 5, then Adam
        model = from_file_parts(args.init, tensors, meta)
        adam = make_optimizer("adam", model.flat.shape[0])

        def adam_update():
            clip_grad_norm(model.grad, 5.0)
            adam.step(model.flat, model.grad, 1e-3)
        out.update(time_training(lambda b: model.forward_backward(b, 1.0 / b.size),
                                 adam_update, batches[1:], "adam_"))

    # decoding with the untrained weights (training moved them: after 100 steps on random ids
    # the model's first choice is </s>, and the searches ended after 2 steps)
    model = from_file_parts(args.init, tensors, meta)
    steps = count_calls(model, "top_log_probs")   # the search's one output call per step

    def decode(srcs, beam):
        return beam_search(model, srcs, beam, args.max_len, 1, 1.0)

    out.update(time_decoding(decode, sources, args, steps))
    out["peak_mb"] = peak_mb()
    return out


def torch_worker(args, cfg) -> dict:
    import torch
    import torch_seq2seq as ts  # bench/torch_seq2seq.py

    torch.set_num_threads(args.threads)
    model = ts.load_rnnkit_file(args.init)
    batches, sources = synthetic_batches(cfg, args.steps + 1, args.seed)
    model.zero_grad()
    loss = model(*ts.batch_tensors(batches[0]))
    loss.backward()
    from safetensors.torch import save_file
    save_file({n: p.grad.contiguous() for n, p in model.named_parameters()},
              str(Path(args.tmp) / "torch-grads.safetensors"))
    out = {"loss0": float(loss), "torch": torch.__version__, "threads": torch.get_num_threads()}
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def fb(b):
        opt.zero_grad()
        loss = model(*ts.batch_tensors(b)) / b.size
        loss.backward()
        return float(loss)

    out.update(time_training(fb, opt.step, batches[1:]))
    model = ts.load_rnnkit_file(args.init)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)   # as shipped (its default implementation)

    def adam_update():
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
    out.update(time_training(fb, adam_update, batches[1:], "adam_"))

    model = ts.load_rnnkit_file(args.init)     # the untrained weights, as rnnkit's side
    steps = count_calls(model, "_step")

    def decode(srcs, beam):
        from rnnkit.models.seq2seq import make_batch
        pb = make_batch(srcs, None)
        return model.beam_search(torch.from_numpy(pb.src), torch.from_numpy(pb.src_len), beam,
                                 args.max_len, 1.0)

    out.update(time_decoding(decode, sources, args, steps))
    out["peak_mb"] = peak_mb()
    return out


def time_training(forward_backward, update, batches, prefix: str = "") -> dict:
    forward_backward(batches[0])  # warm-up (allocations, caches)
    update()
    tokens, t0, c0 = 0, time.perf_counter(), time.process_time()
    for b in batches[1:]:
        forward_backward(b)
        update()
        tokens += b.tokens
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {f"{prefix}train_tokens": tokens, f"{prefix}train_seconds": dt,
            f"{prefix}train_tok_s": tokens / dt, f"{prefix}train_tok_cpu_s": tokens / dc}


def count_calls(obj, name: str) -> list[int]:
    """Count the calls of obj.name (a decoder step): [count], read after each timing."""
    n, f = [0], getattr(obj, name)

    def counted(*a, **k):
        n[0] += 1
        return f(*a, **k)
    setattr(obj, name, counted)
    return n


def time_decoding(decode, sources, args, steps) -> dict:
    rng = np.random.default_rng(args.seed + 1)
    B = 64
    groups = [[sources[i] for i in rng.choice(len(sources), B, replace=False)]
              for _ in range(args.decode_batches)]
    decode(groups[0][:8], 5)  # warm-up
    steps[0] = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for g in groups:
        decode(g, 5)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    decode_steps = steps[0]
    ones = [sources[i] for i in rng.choice(len(sources), args.latency_sentences, replace=False)]
    lat, lat_cpu = [], []
    for s in ones:
        t, c = time.perf_counter(), time.process_time()
        decode([s], 5)
        lat.append(time.perf_counter() - t)
        lat_cpu.append(time.process_time() - c)
    return {"decode_sent_s": B * len(groups) / dt, "decode_steps": decode_steps, "decode_sent_cpu_s": B * len(groups) / dc,
            "latency_ms": 1000 * float(np.median(lat)),
            "latency_cpu_ms": 1000 * float(np.median(lat_cpu))}


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
def run_worker(which: str, args, tmp: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", which, "--init", str(tmp / "init.rnnkit"),
           "--tmp", str(tmp), "--threads", str(args.threads), "--steps", str(args.steps),
           "--decode-batches", str(args.decode_batches), "--max-len", str(args.max_len),
           "--latency-sentences", str(args.latency_sentences), "--seed", str(args.seed),
           "--config", json.dumps(args.cfg)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               RNNKIT_NUM_THREADS=str(args.threads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"the {which} worker failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def best_of_rounds(results: list[dict]) -> dict:
    """One side's runs combined: the best speed and latency of each measure, the largest peak
    memory, the rest from the first run."""
    out = dict(results[0])
    for key in out:
        values = [res[key] for res in results]
        if key.endswith("_s"):
            out[key] = max(values)
        elif key.startswith("latency"):
            out[key] = min(values)
        elif key == "peak_mb":
            out[key] = max(values)
    return out


def check_gradients(tmp: Path, r: dict, t: dict) -> str:
    from safetensors.numpy import load_file

    from rnnkit import modelfile

    ours = modelfile.read(tmp / "rnnkit-grads.rnnkit")[0]
    theirs = load_file(str(tmp / "torch-grads.safetensors"))
    if set(ours) != set(theirs):
        raise SystemExit(f"CHECK FAILED: tensor names differ: {sorted(set(ours) ^ set(theirs))}")
    rel = abs(r["loss0"] - t["loss0"]) / abs(t["loss0"])
    worst = max(float(np.abs(ours[n] - theirs[n]).max() / (np.abs(theirs[n]).max() + 1e-30))
                for n in ours)
    msg = (f"first batch: loss {r['loss0']:.4f} vs PyTorch {t['loss0']:.4f} (rel {rel:.1e}), "
           f"worst gradient error {worst:.1e} of the tensor's largest entry")
    if rel > 1e-5 or worst > 1e-4:
        raise SystemExit("CHECK FAILED: " + msg)
    return msg


def speed(args) -> None:
    from threadpoolctl import threadpool_info

    from rnnkit.models.seq2seq import Seq2Seq
    from rnnkit.text.vocab import SPECIALS, Vocab

    cfg = args.cfg
    tmp = Path(tempfile.mkdtemp(prefix="bench-s2s-"))
    vocab = [Vocab(list(SPECIALS) + [f"w{i}" for i in range(cfg[k] - 3)])
             for k in ("src_vocab", "trg_vocab")]
    model = Seq2Seq(arch_of(cfg), *vocab)
    model.init_uniform(np.random.default_rng(args.seed), 0.1)
    model.save(tmp / "init.rnnkit")
    blas = ", ".join(sorted({i.get("internal_api", "?") for i in threadpool_info()}))
    print(f"# bench_seq2seq {datetime.datetime.now():%Y-%m-%d %H:%M} | CPU: {cpu_name()} | "
          f"threads: {args.threads} | BLAS: {blas} | {'busy machine' if args.busy else ''}")
    print(f"# config: {json.dumps(cfg)}; {args.steps} training steps, decoding "
          f"{args.decode_batches} x 64 sentences (beam 5, {args.max_len} tokens), "
          f"{args.latency_sentences} at batch 1")
    # rounds alternate the two sides' processes and each measure keeps its best: one run per
    # side moved the ratios by up to 30% on a noisy host (2026-12-03)
    runs = {"rnnkit": [], "torch": []}
    for _ in range(args.rounds):
        runs["rnnkit"].append(run_worker("rnnkit", args, tmp))
        if not args.no_torch:
            runs["torch"].append(run_worker("torch", args, tmp))
    r = best_of_rounds(runs["rnnkit"])
    t = best_of_rounds(runs["torch"]) if runs["torch"] else None
    if t is not None:
        print("# check: " + check_gradients(tmp, r, t))
        print(f"# PyTorch {t['torch']}, {t['threads']} threads")
    rows = [("training tokens/s", "train_tok_s", True, TRAIN_TARGET),
            ("  per CPU second (all threads)", "train_tok_cpu_s", True, None),
            ("  with clipping and Adam, as rnnkit trains", "adam_train_tok_s", True, TRAIN_TARGET),
            ("decoding sentences/s (batch 64, beam 5)", "decode_sent_s", True, DECODE_TARGET),
            ("  per CPU second (all threads)", "decode_sent_cpu_s", True, None),
            ("latency ms/sentence (batch 1, beam 5)", "latency_ms", False, None),
            ("  CPU ms/sentence (all threads)", "latency_cpu_ms", False, None),
            ("peak memory MB (process RSS)", "peak_mb", False, None)]
    print(f"| {'measure':<42} | {'rnnkit':>10} | {'PyTorch':>10} | {'ratio':>6} | target |")
    print(f"|{'-' * 44}|{'-' * 12}|{'-' * 12}|{'-' * 8}|--------|")
    for label, key, higher, target in rows:
        tv = t[key] if t else float("nan")
        ratio = r[key] / tv if higher else tv / r[key]
        tgt = f">= {target:g}x" if target else ""
        print(f"| {label:<42} | {r[key]:>10.1f} | {tv:>10.1f} | {ratio:>5.2f}x | {tgt:<6} |")
    print(f"# decoder steps over the timed batches (each over every alive row): rnnkit "
          f"{r['decode_steps']}, PyTorch {t['decode_steps'] if t else '-'}")
    print("# ratio: rnnkit / PyTorch for speeds, PyTorch / rnnkit for latency and memory "
          "(> 1: rnnkit better); per CPU second: the work done per second of the process's CPU "
          "time, steadier than wall time on a shared machine (with 1 thread)")


# ------------------------------------------------------------------------------------------------
# --full: Multi30k BLEU
# ------------------------------------------------------------------------------------------------
def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


class _Side:
    """One language of the corpus: a vocabulary, and how its text becomes ids and back."""

    def __init__(self, lines: list[str], vocab_size: int, work: Path, lang: str):
        from rnnkit.text.vocab import SPECIALS, Tokenizer, Vocab

        self.tokenizer = Tokenizer()
        try:
            import sentencepiece as spm
        except ImportError:
            spm = None
        self.level = "subword (SentencePiece unigram)" if spm else "word"
        if spm:
            src = work / f"{lang}.txt"
            src.write_text("\n".join(lines) + "\n", encoding="utf-8")
            spm.SentencePieceTrainer.train(input=str(src), model_prefix=str(work / lang),
                                           vocab_size=vocab_size, model_type="unigram",
                                           character_coverage=1.0, bos_id=-1, eos_id=-1,
                                           unk_id=0, minloglevel=2, hard_vocab_limit=False)
            self.sp = spm.SentencePieceProcessor(model_file=str(work / f"{lang}.model"))
            pieces = [self.sp.id_to_piece(i) for i in range(1, self.sp.get_piece_size())]
        else:
            self.sp = None
            from collections import Counter
            counts = Counter(w for line in lines for w in self.split(line))
            pieces = [w for w, _ in counts.most_common(vocab_size - len(SPECIALS))]
        self.vocab = Vocab(list(SPECIALS) + pieces)

    def split(self, line: str) -> list[str]:
        if self.sp is not None:
            return self.sp.encode(line, out_type=str)
        import re
        return re.findall(r"\w+|[^\w\s]", line)

    def encode(self, line: str) -> np.ndarray:
        return np.asarray(self.vocab.encode(self.split(line)), np.int64)

    def decode(self, ids) -> str:
        toks = self.vocab.decode(list(ids))
        if self.sp is not None:
            return self.sp.decode_pieces(toks)
        import re
        return re.sub(r" ([.,!?;:'])", r"\1", " ".join(toks))


class Multi30k:
    """The corpus object rnnkit's trainer reads (.src/.trg with .vocab and .tokenizer,
    .pairs(split), .manifest), until `rnnkit prepare --parallel` exists."""

    def __init__(self, data: Path, src: str, trg: str, vocab_size: int, work: Path,
                 limit: int | None = None):
        self.lines = {split: (read_lines(data / f"{name}.{src}.gz")[:limit],
                              read_lines(data / f"{name}.{trg}.gz")[:limit])
                      for split, name in (("train", "train"), ("valid", "val"),
                                          ("test", "test_2016_flickr"))}
        self.src = _Side(self.lines["train"][0], vocab_size, work, src)
        self.trg = _Side(self.lines["train"][1], vocab_size, work, trg)
        self.manifest = {"corpus": "multi30k task 1", "pair": f"{src}-{trg}",
                         "level": self.src.level}
        self._pairs = {k: [(self.src.encode(a), self.trg.encode(b)) for a, b in zip(*v)]
                       for k, v in self.lines.items()}

    def pairs(self, split: str):
        return self._pairs[split]


class _Budget:
    """Stops after the epoch that would not leave time for another (the loop rereads
    opts.epochs at every epoch)."""

    def __init__(self, opts, minutes: float):
        from rnnkit.training.loop import TrainEvents

        self.opts, self.limit, self.t0, self.records = opts, 60 * minutes, time.monotonic(), []
        events = TrainEvents()
        events.epoch_end = self.epoch_end
        self.events = events

    def epoch_end(self, record: dict) -> None:
        self.records.append(record)
        used = time.monotonic() - self.t0
        if used + used / len(self.records) > self.limit:
            self.opts.epochs = record.get("epoch", len(self.records))
        print(f"#   epoch {record.get('epoch')}: {json.dumps(record)[:160]}", file=sys.stderr)


def full_run(args, src: str, trg: str, attention: str, bidirectional: bool, work: Path) -> dict:
    import sacrebleu

    from rnnkit.decoding.beam import beam_search
    from rnnkit.training.seq2seq_task import Seq2SeqTrainOptions, train_seq2seq

    (work / f"{src}-{trg}").mkdir(parents=True, exist_ok=True)
    corpus = Multi30k(args.data, src, trg, args.vocab_size, work / f"{src}-{trg}",
                      args.max_pairs)
    opts = Seq2SeqTrainOptions(emb=256, hidden=256, layers=1, attention=attention,
                               bidirectional=bidirectional, dropout=0.3, batch=64,
                               epochs=args.epochs, optimizer="adam", lr=1e-3, clip=5.0,
                               threads=args.threads, patience=3, init_scale=0.1)
    budget = _Budget(opts, args.minutes)
    out = work / f"{src}-{trg}-{attention}-{'bi' if bidirectional else 'uni'}.rnnkit"
    t0 = time.monotonic()
    train_seq2seq(corpus, out, opts, budget.events)
    minutes = (time.monotonic() - t0) / 60
    import rnnkit
    model = rnnkit.load(out)
    sources, refs = corpus.lines["test"]
    ids = [p[0] for p in corpus.pairs("test")]
    hyps = [None] * len(ids)
    order = np.argsort([len(x) for x in ids], kind="stable")
    t1 = time.monotonic()
    for a in range(0, len(order), 64):
        idx = order[a:a + 64].tolist()
        found = beam_search(model, [ids[i] for i in idx], 5,
                            [int(2 * len(ids[i])) + 10 for i in idx], 1, 1.0)
        for i, h in zip(idx, found):
            hyps[i] = corpus.trg.decode(h[0].tokens)
    decode_s = time.monotonic() - t1
    metric, metric_lc = sacrebleu.BLEU(), sacrebleu.BLEU(lowercase=True)
    cased, lower = metric.corpus_score(hyps, [refs]), metric_lc.corpus_score(hyps, [refs])
    return {"pair": f"{src}-{trg}", "attention": attention,
            "encoder": "bi" if bidirectional else "uni", "level": corpus.src.level,
            "epochs": len(budget.records), "train_min": minutes, "bleu": cased.score,
            "bleu_lc": lower.score, "decode_s": decode_s,
            "signature": str(metric.get_signature()), "example": (sources[0], hyps[0], refs[0]),
            "valid_ppl": budget.records[-1].get("valid_ppl") if budget.records else None}


TABLE = [("de", "en", "general", True), ("de", "en", "none", True), ("de", "en", "general", False),
         ("de", "en", "none", False), ("en", "de", "general", True)]


def row_name(src, trg, att, bi) -> str:
    return f"{src}-{trg}:{att}:{'bi' if bi else 'uni'}"


def full(args) -> None:
    runs = TABLE if args.table else TABLE[:1]
    if args.rows:
        names = {row_name(*r): r for r in TABLE}
        unknown = [n for n in args.rows.split(",") if n not in names]
        if unknown:
            raise SystemExit(f"--rows: unknown {', '.join(unknown)}; the rows are "
                             f"{', '.join(names)}")
        runs = [names[n] for n in args.rows.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-s2s-full-"))
    print(f"# Multi30k test_2016_flickr, beam 5, {args.minutes} min training budget per model, "
          f"{args.threads} threads, {cpu_name()}, {datetime.date.today()}")
    print("| pair | attention | encoder | units | epochs | train min | valid ppl | BLEU | BLEU lc |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    sig = ""
    for src, trg, att, bi in runs:
        r = full_run(args, src, trg, att, bi, work)
        sig = r["signature"]
        print(f"#   {r['pair']} e.g. {r['example'][0]!r} -> {r['example'][1]!r} (ref "
              f"{r['example'][2]!r})", file=sys.stderr)
        print(f"| {r['pair']} | {r['attention']} | {r['encoder']} | {r['level']} | "
              f"{r['epochs']} | {r['train_min']:.1f} | {r['valid_ppl'] or float('nan'):.2f} | "
              f"{r['bleu']:.1f} | {r['bleu_lc']:.1f} |",
              flush=True)
    print(f"# sacreBLEU {sig} (detokenized; lc: lowercase=True)")
    print("# anchors: BiGRU + Bahdanau tutorial 28.3 lc greedy; no attention 13.8; target >= 30")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short check of the script")
    ap.add_argument("--full", action="store_true", help="also train on Multi30k and report BLEU")
    ap.add_argument("--table", action="store_true", help="with --full: every row of the table")
    ap.add_argument("--rows", help="with --full: only these rows, e.g. de-en:none:bi,"
                    "en-de:general:bi (pair:attention:encoder)")
    ap.add_argument("--minutes", type=float, default=60.0, help="training budget per model")
    ap.add_argument("--epochs", type=int, default=40, help="most epochs per model (--full)")
    ap.add_argument("--vocab-size", type=int, default=8000, help="per side (--full)")
    ap.add_argument("--max-pairs", type=int, help="use only the first N pairs of each split")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100, help="timed training steps")
    ap.add_argument("--decode-batches", type=int, default=3)
    ap.add_argument("--latency-sentences", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=30, help="output tokens when decoding")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3,
                    help="speed runs per side, alternating; each measure keeps its best")
    ap.add_argument("--attention", default=CONFIG["attention"])
    ap.add_argument("--uni", action="store_true", help="unidirectional encoder")
    ap.add_argument("--input-feeding", action="store_true",
                    help="the speed runs with input feeding (Luong et al. 2015, section 3.3)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-speed", action="store_true", help="with --full: BLEU only")
    ap.add_argument("--busy", action="store_true", help="label the timings 'busy machine'")
    ap.add_argument("--worker", choices=("rnnkit", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--init", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        cfg = json.loads(args.config)
        res = (rnnkit_worker if args.worker == "rnnkit" else torch_worker)(args, cfg)
        print(json.dumps(res))
        return
    args.cfg = dict(CONFIG, attention=args.attention, bidirectional=not args.uni,
                    input_feeding=args.input_feeding)
    if args.quick:
        args.steps, args.decode_batches, args.latency_sentences, args.rounds = 6, 1, 3, 1
        args.max_len = min(args.max_len, 12)
        if args.full:
            args.minutes, args.epochs = min(args.minutes, 1.0), 1
            args.max_pairs = args.max_pairs or 1000
    if not args.no_speed:
        speed(args)
    if args.full:
        full(args)


if __name__ == "__main__":
    main()
