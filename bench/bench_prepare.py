"""Benchmark of `rnnkit prepare`: tokens per second end to end and peak memory.

Targets (issue: foundation): on PTB and WikiText-2 training text, at least 2 million tokens per
second end to end, process start included; peak RSS under 400 MB on WikiText-2 concatenated ten
times (about 21M tokens).

Each measurement runs the `rnnkit prepare` console script as a child process, times it from
spawn to exit and reads the child's peak resident set size from the kernel (os.wait4: the same
figure `/usr/bin/time -v` prints as "Maximum resident set size"). The machine may be shared, so
each file is run --repeat times and the best time is kept (the RSS is the largest seen).
Before timing, the output of one run is checked against a plain-Python count of the same file
(sentences, tokens and vocabulary) and against its own checksums.

Anchors from the same run: `wc -w` on the same file (C, reading and counting words: the floor
for anything that reads the text), and `rnnkit --version` (the process start: interpreter and
imports, paid once per command).

Usage:
  python bench/bench_prepare.py                 # ../shared/data relative to the repository
  python bench/bench_prepare.py --data DIR --repeat 5
  python bench/bench_prepare.py --quick         # small inputs, to check that the script works
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # bench/_machine.py

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATE = 2_000_000  # tokens per second, end to end
TARGET_RSS_MB = 400
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def rnnkit_command() -> list[str]:
    script = Path(sys.executable).parent / "rnnkit"
    if script.exists():
        return [str(script)]
    found = shutil.which("rnnkit")
    return [found] if found else [sys.executable, "-m", "rnnkit"]


def run(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of a child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024, p.returncode  # ru_maxrss is in KB on Linux


def reference_counts(path: Path) -> tuple[int, int, int]:
    """(sentences, tokens with one </s> per sentence, distinct words) in plain Python."""
    sentences = words = 0
    vocab = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            w = line.split()
            if w:
                sentences += 1
                words += len(w)
                vocab.update(w)
    vocab -= {"<unk>", "<s>", "</s>"}
    return sentences, words + sentences, len(vocab) + 3


def check(path: Path, out: Path, cmd: list[str]) -> int:
    """Run prepare once and compare with the reference; return the number of tokens."""
    subprocess.run(cmd + ["prepare", str(path), "--out", str(out), "--split", "1,0,0", "--json"],
                   check=True, stdout=subprocess.DEVNULL, env=ENV)
    from rnnkit.text.prepare import Corpus

    corpus = Corpus.load(out, verify=True)
    s = corpus.manifest["splits"]["train"]
    got = (s["sentences"], s["tokens"] + s["sentences"], len(corpus.vocab))
    want = reference_counts(path)
    if got != want:
        raise SystemExit(f"{path}: prepare gives (sentences, tokens, vocabulary) {got}, the "
                         f"reference {want}")
    return got[1]


def best_of(cmd: list[str], repeat: int) -> tuple[float, float]:
    times, rss = [], 0.0
    for _ in range(repeat):
        wall, mb, _ = run(cmd)
        times.append(wall)
        rss = max(rss, mb)
    return min(times), rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder with ptb/train.txt and wikitext-2/train.txt")
    ap.add_argument("--repeat", type=int, default=5, help="runs per file; the best is kept")
    ap.add_argument("--times", type=int, default=10, help="copies of WikiText-2 for the RSS run")
    ap.add_argument("--quick", action="store_true", help="small inputs: check the script runs")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    a = ap.parse_args()
    cmd = rnnkit_command()

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        tmp = Path(tmp)
        inputs = {}
        ptb, wiki = a.data / "ptb" / "train.txt", a.data / "wikitext-2" / "train.txt"
        if not (ptb.is_file() and wiki.is_file()):
            print(f"note: {a.data} has no ptb/ and wikitext-2/; using the bundled samples",
                  file=sys.stderr)
            from rnnkit.text.prepare import sample_path

            ptb, wiki = tmp / "sample-en.txt", tmp / "sample-ko.txt"
            ptb.write_text(sample_path("en").read_text("utf-8") * 50, encoding="utf-8")
            wiki.write_text(sample_path("ko").read_text("utf-8") * 50, encoding="utf-8")
        if a.quick:
            for name, src in (("ptb", ptb), ("wiki", wiki)):
                head = tmp / f"{name}-head.txt"
                with open(src, encoding="utf-8") as f, open(head, "w", encoding="utf-8") as g:
                    g.writelines(line for _, line in zip(range(5000), f))
                inputs[f"{src.parent.name}/{src.name} (first 5000 lines)"] = head
            a.repeat, a.times = min(a.repeat, 2), min(a.times, 2)
        else:
            inputs[f"{ptb.parent.name}/{ptb.name}"] = ptb
            inputs[f"{wiki.parent.name}/{wiki.name}"] = wiki
        many = tmp / f"wiki-x{a.times}.txt"
        src = inputs[list(inputs)[1]]
        with open(many, "wb") as g:
            for _ in range(a.times):
                g.write(src.read_bytes())
        inputs[f"{list(inputs)[1].split(' ')[0]} x{a.times}"] = many

        start, start_rss = best_of(cmd + ["--version"], a.repeat)
        rows = []
        for label, path in inputs.items():
            tokens = check(path, tmp / "checked", cmd)  # correctness first
            t = time.perf_counter()
            subprocess.run(["wc", "-w", str(path)], check=True, stdout=subprocess.DEVNULL)
            wc = time.perf_counter() - t
            for _ in range(a.repeat - 1):
                t = time.perf_counter()
                subprocess.run(["wc", "-w", str(path)], check=True, stdout=subprocess.DEVNULL)
                wc = min(wc, time.perf_counter() - t)
            wall, rss = best_of(cmd + ["prepare", str(path), "--out", str(tmp / "out"),
                                       "--json"], a.repeat)
            rows.append({"input": label, "MB": path.stat().st_size / 1e6, "tokens": tokens,
                         "seconds": wall, "tokens_per_s": tokens / wall, "peak_rss_mb": rss,
                         "wc_seconds": wc, "vs_wc": wall / wc})

    print(f"rnnkit prepare benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; prepare is single-threaded "
          f"(OMP/OpenBLAS/MKL threads pinned to 1); Python {platform.python_version()}")
    print(f"command: {' '.join(cmd)} prepare FILE --out DIR --json; best of {a.repeat} runs; "
          f"tokens = words + one </s> per non-blank line")
    print(f"process start (`rnnkit --version`): {start:.3f} s, {start_rss:.0f} MB")
    head = (f"{'input':<42} {'MB':>7} {'tokens':>11} {'seconds':>8} {'tokens/s':>11} "
            f"{'target':>8} {'peak RSS MB':>11} {'wc -w s':>8} {'x wc':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['input']:<42} {r['MB']:>7.1f} {r['tokens']:>11,} {r['seconds']:>8.3f} "
              f"{r['tokens_per_s'] / 1e6:>10.2f}M {TARGET_RATE / 1e6:>7.1f}M "
              f"{r['peak_rss_mb']:>11.0f} {r['wc_seconds']:>8.3f} {r['vs_wc']:>6.1f}")
    rate_ok = all(r["tokens_per_s"] >= TARGET_RATE for r in rows[:-1])
    rss_ok = rows[-1]["peak_rss_mb"] < TARGET_RSS_MB
    print(f"rate >= {TARGET_RATE / 1e6:.0f}M tokens/s on the single corpora: "
          f"{'yes' if rate_ok else 'NO'}; peak RSS on {rows[-1]['input']} < "
          f"{TARGET_RSS_MB} MB: {'yes' if rss_ok else 'NO'}"
          + (" (quick run: small inputs, not the targets' sizes)" if a.quick else ""))
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
