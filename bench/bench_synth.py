"""The long-dependency demonstration (the lecture's section 8.3), measured: on an `rnnkit synth`
corpus whose last word is a function of the first across a filler of >= 20 random words, how
often does each model predict the right final word?

Models: LSTM, LSTM without forget gate, peephole LSTM, tanh RNN (same size and schedule as the
test in tests/test_train.py) and a 5-gram (modified Kneser-Ney). Accuracy is the argmax over the
K answer words of p(answer | the sentence up to it), on the test split: chance is 1/K. Then
`diagnose` on the trained RNN and LSTM: the mean norm of dL_t/dh_{t-k} against k.

Usage:
  python bench/bench_synth.py                   # seeds 0..3
  python bench/bench_synth.py --quick           # one seed
  python bench/bench_synth.py --filler 30,40 --epochs 60
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

CONFIG = dict(emb=16, hidden=32, layers=1, epochs=50, bptt=50, batch=8, lr=0.5, lr_decay=0.8,
              decay_after=30, threads=1)
TYPES = ("lstm", "lstm-nofg", "lstm-peephole", "rnn")


def final_word_accuracy(model, sentences) -> float:
    answers = np.array([i for i, t in enumerate(model.vocab.tokens)
                        if t[0] == "a" and t[1:].isdigit()])
    by_length: dict[int, list] = {}
    for s in sentences:
        by_length.setdefault(len(s), []).append(s)
    right = 0
    for n, group in by_length.items():
        a = np.array(group, np.int64)
        state = model.start(len(a))
        for t in range(n - 1):
            state = model.advance(state, a[:, t])
        pred = answers[model.log_probs(state)[:, answers].argmax(1)]
        right += int((pred == a[:, -1]).sum())
    return right / len(sentences)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=5000)
    ap.add_argument("--filler", default="20,24")
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--filler-vocab", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seeds = [1]

    from rnnkit.models.ngram import estimate as ngram
    from rnnkit.text import synth
    from rnnkit.report.diagnose import gradient_by_distance
    from rnnkit.text.prepare import build_corpus
    from rnnkit.models.rnnlm import load
    from rnnkit.training import train

    lo, hi = synth.parse_filler(args.filler)
    cfg = dict(CONFIG, epochs=args.epochs)
    print(f"# bench_synth {datetime.date.today()}  CPU: {cpu_name()}  corpus: {args.sentences} "
          f"sentences, filler {lo}-{hi} words of {args.filler_vocab}, {args.keys} keys "
          f"(chance {1 / args.keys:.2f})")
    print(f"# recurrent config: {cfg}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth."))
    rows: dict[str, list] = {t: [] for t in TYPES + ("5-gram",)}
    grads = {}
    for seed in args.seeds:
        synth.write(tmp / "synth.txt", sentences=args.sentences, filler_min=lo, filler_max=hi,
                    keys=args.keys, filler_vocab=args.filler_vocab, seed=seed)
        corpus = build_corpus([str(tmp / "synth.txt")], split="0.8,0.1,0.1")
        test = corpus.sentences("test")
        for t in TYPES:
            t0 = time.perf_counter()
            s = train(corpus, tmp / f"{t}.rnnkit", model_type=t, seed=seed, **cfg)
            model = load(tmp / f"{t}.rnnkit")
            acc = final_word_accuracy(model, test)
            rows[t].append((acc, s["valid_perplexity"], time.perf_counter() - t0))
            if seed == args.seeds[0] and t in ("lstm", "rnn"):
                grads[t] = gradient_by_distance(model, np.asarray(corpus["valid"]),
                                                max_distance=hi + 2, streams=32, positions=4)
            print(f"  seed {seed} {t:14s} accuracy {acc:.3f}  valid ppl "
                  f"{s['valid_perplexity']:.3f}  {rows[t][-1][2]:.1f} s", flush=True)
        t0 = time.perf_counter()
        ng = ngram.train(corpus, order=5, discount_fallback=True)
        rows["5-gram"].append((final_word_accuracy(ng, test), ng.perplexity(corpus.text("valid")),
                               time.perf_counter() - t0))
        print(f"  seed {seed} 5-gram         accuracy {rows['5-gram'][-1][0]:.3f}", flush=True)

    print(f"\n| model | final-word accuracy (seeds {', '.join(map(str, args.seeds))}) | mean |")
    print("|---|---|---:|")
    for t, r in rows.items():
        accs = [a for a, _, _ in r]
        print(f"| {t} | {' '.join(f'{a:.3f}' for a in accs)} | {np.mean(accs):.3f} |")
    print("\n| k | mean ‖dL_t/dh_(t−k)‖ rnn | lstm |")
    print("|---:|---:|---:|")
    for i, k in enumerate(grads["lstm"]["distance"]):
        print(f"| {k} | {grads['rnn']['grad_norm'][i][-1]:.2e} | "
              f"{grads['lstm']['grad_norm'][i][-1]:.2e} |")


if __name__ == "__main__":
    main()
