"""Memory-mapped rnnkit n-gram models against KenLM's binary formats: file size, load time,
resident memory after loading and after scoring, and query speed (issue 17).

One WikiText-2 5-gram (rnnkit's estimator, the same n-grams as `lmplz -o 5`), exported to ARPA
and turned into KenLM's `probing` and `trie` binaries by `build_binary`, then four ways to
score WikiText-2 test:
  - rnnkit, model read in full (`rnnkit.load(path)`),
  - rnnkit, memory-mapped (`rnnkit.load(path, mmap=True)`, `rnnkit score --mmap`),
  - KenLM's `query` on the probing binary and on the trie binary, with its default load
    method (`-l populate`: MAP_POPULATE maps every page at load) and with `-l lazy`.
Also the quantised trie (`build_binary -q 8 -b 8 trie`): its size and how far its scores move.

Correctness first: KenLM's per-word log10 (`query -v word`, summed per sentence in double
precision) must equal rnnkit's per-sentence scores within 1e-4 on every test sentence, for the
probing and the trie binary, before anything is timed.

How it measures. Each variant runs in its own child process:
  - rnnkit: a child Python process loads the model (load time inside the process), reads
    /proc/self/smaps_rollup and /proc/self/smaps, scores the text (encode + score, one
    compiled call), reads them again.
  - KenLM: `query -b -v sentence MODEL` with a pipe for stdin; the load time is from spawn
    until the process blocks reading fd 0 (/proc/PID/syscall), the memory is read from
    /proc/PID/smaps_rollup then, the text is written and the memory read again once every
    sentence's line came back.
Rss counts every page mapped into the process; Pss divides shared pages by the processes
sharing them (pages of a mapped model file are shared by every process scoring with it);
"file Rss" counts only the pages of the model file itself that the process touched. The memory
figures are valid on a busy machine; the times are not (label them so).

Usage:
  python bench/bench_ngram_query.py --kenlm-bin KENLM_BUILD/bin              # full: test x10
  python bench/bench_ngram_query.py --kenlm-bin KENLM_BUILD/bin --quick      # test x1
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # bench/_machine.py

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # per sentence, log10: KenLM prints float32 per-word values
_KEEP = []  # the child's model


# ---- memory of a process -------------------------------------------------------------------
def smaps_rollup(pid: int | str = "self") -> dict[str, float]:
    """The kB fields of /proc/PID/smaps_rollup as MiB (Rss, Pss, Anonymous, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return out


def file_rss(path: str | Path, pid: int | str = "self") -> tuple[float, float]:
    """(Rss, Pss) in MiB of the mappings of file `path` in process `pid`: the pages of that
    file the process has touched (or had mapped for it)."""
    target = os.path.realpath(path)
    rss = pss = 0.0
    inside = False
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line.split(maxsplit=5)
            if "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                inside = len(head) == 6 and head[5].strip() == target
            elif inside and head[0] == "Rss:":
                rss += int(head[1]) / 1024
            elif inside and head[0] == "Pss:":
                pss += int(head[1]) / 1024
    return rss, pss


def memory(pid: int | str, model: Path) -> dict[str, float]:
    r = smaps_rollup(pid)
    frss, fpss = file_rss(model, pid)
    return {"rss": r["Rss"], "pss": r["Pss"], "anon": r.get("Anonymous", 0.0),
            "file_rss": frss, "file_pss": fpss}


# ---- the rnnkit side (run in a child process) -------------------------------------------------
def rnnkit_child(model: Path, text: Path, mmap: bool, repeat: int) -> dict:
    """Load, score, measure: what one child process reports (JSON on stdout)."""
    import rnnkit

    lines = text.read_text("utf-8").splitlines()
    before = memory("self", model)
    t0 = time.perf_counter()
    lm = rnnkit.load(model, mmap=mmap)
    t_load = time.perf_counter() - t0
    loaded = memory("self", model)
    ids, offsets, _ = lm.encode_lines(lines)  # once for the per-sentence scores
    lp, _ = lm.score_flat(ids, offsets)
    ends = offsets[1:] + np.arange(1, len(lines) + 1)  # sentence s ends after its </s>
    sentence = np.add.reduceat(lp, np.concatenate(([0], ends[:-1]))) if len(lp) else lp
    t0 = time.perf_counter()
    for _ in range(repeat):
        ids, offsets, _ = lm.encode_lines(lines)
        lp, _ = lm.score_flat(ids, offsets)
    t_score = time.perf_counter() - t0
    scored = memory("self", model)
    _KEEP.append(lm)  # mapped until the process ends (--hold measures again)
    return {"load_s": t_load, "score_s": t_score, "tokens": len(lp) * repeat,
            "before": before, "loaded": loaded, "scored": scored,
            "sentence_log10": sentence.tolist()}


def shared_mapping(model: Path, text: Path, env, processes: int = 2) -> list[dict]:
    """`processes` children map the model and score the text at the same time; each then
    reports its memory while all of them are alive: the file's pages are counted once in the
    sum of their Pss (the page-sharing claim of memory-mapped models, measured)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(model), "--text",
           str(text), "--repeat", "1", "--mmap", "--hold"]
    children = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
                for _ in range(processes)]
    for p in children:  # every child has loaded and scored
        if not p.stdout.readline():
            raise SystemExit(f"FAIL: {' '.join(cmd)}\n{p.stderr.read()[-2000:]}")
    for p in children:  # now all of them measure, all still alive
        p.stdin.write("\n")
        p.stdin.flush()
    out = [json.loads(p.stdout.readline()) for p in children]
    for p in children:
        p.stdin.close()
        p.wait()
    return out


def run_rnnkit(model: Path, text: Path, mmap: bool, repeat: int, env) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(model), "--text",
           str(text), "--repeat", str(repeat)] + ["--mmap"] * mmap
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if r.returncode:
        raise SystemExit(f"FAIL: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return json.loads(r.stdout)


# ---- the KenLM side --------------------------------------------------------------------------
def blocked_on_stdin(pid: int) -> bool:
    """True when the process sits in read(0, ...) (x86-64 syscall 0; aarch64 63)."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
            fields = f.read().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] in ("0", "63") and int(fields[1], 16) == 0


def wait_blocked(p: subprocess.Popen, timeout: float = 600.0) -> None:
    end = time.perf_counter() + timeout
    while not blocked_on_stdin(p.pid):
        if p.poll() is not None:
            raise SystemExit(f"FAIL: {p.args} exited with {p.returncode}: "
                             f"{p.stderr.read().decode()[-2000:]}")
        if time.perf_counter() > end:
            raise SystemExit(f"FAIL: {p.args} did not finish loading in {timeout:.0f} s")
        time.sleep(0.0005)


def run_query(query: str, model: Path, text: Path, repeat: int, lazy: bool) -> dict:
    """KenLM's query on `text` x repeat: load time, memory after load and after scoring,
    scoring time, and its summary."""
    data = text.read_bytes()
    n_lines = data.count(b"\n")
    cmd = [query, "-b", "-v", "sentence", "-v", "summary"] + ["-l", "lazy"] * lazy + [str(model)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    wait_blocked(p)
    t_load = time.perf_counter() - t0
    loaded = memory(p.pid, model)

    def feed():
        for _ in range(repeat):
            p.stdin.write(data)
        p.stdin.flush()

    writer = threading.Thread(target=feed)
    t0 = time.perf_counter()
    writer.start()
    got = 0
    while got < n_lines * repeat:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"FAIL: {' '.join(cmd)} stopped early: "
                             f"{p.stderr.read().decode()[-2000:]}")
        got += line.startswith(b"Total:")
    t_score = time.perf_counter() - t0
    writer.join()
    wait_blocked(p)
    scored = memory(p.pid, model)
    rest, err = p.communicate()
    summary = dict(line.split(":\t") for line in rest.decode().splitlines() if ":\t" in line)
    return {"load_s": t_load, "score_s": t_score, "tokens": int(summary["Tokens"]),
            "loaded": loaded, "scored": scored, "ppl": float(summary["Perplexity including OOVs"]),
            "usage": err.decode().strip().splitlines()[-1]}


def query_word_scores(query: str, model: Path, text: Path) -> np.ndarray:
    """Per-sentence log10 from `query -v word`: KenLM's float32 per-word values summed in double
    precision (its own `Total:` is a float32 sum, off by up to ~1e-4 on long lines)."""
    with open(text, "rb") as f:
        r = subprocess.run([query, "-v", "word", "-v", "sentence", str(model)], stdin=f,
                           capture_output=True, check=True)
    totals = []
    for line in r.stdout.decode("utf-8").splitlines():  # word=id length log10<TAB>... Total: ...
        if "Total: " not in line:
            continue
        words = line.split("\t")[:-1]
        totals.append(sum(float(w.rsplit(" ", 2)[2]) for w in words))
    return np.array(totals)


def build_binaries(build_binary: str, arpa: Path, out: Path) -> dict[str, Path]:
    paths = {}
    for name, args in (("probing", ["probing"]), ("trie", ["trie"]),
                       ("trie -q 8 -b 8", ["-q", "8", "-b", "8", "trie"])):
        path = out / f"wt2-5.{name.replace(' ', '')}.binary"
        r = subprocess.run([build_binary, *args, str(arpa), str(path)], capture_output=True,
                           text=True, check=False)
        if r.returncode:
            raise SystemExit(f"FAIL: build_binary {' '.join(args)}: {r.stderr[-2000:]}")
        paths[name] = path
    return paths


# ---- the run ---------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--kenlm-bin", type=Path,
                    help="KenLM's build/bin (build_binary, query); without it rnnkit only")
    ap.add_argument("--repeat", type=int, default=10, help="WikiText-2 test x N for the timing")
    ap.add_argument("--quick", action="store_true", help="test x1: checks the script")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--text", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.child:
        print(json.dumps(rnnkit_child(args.child, args.text, args.mmap, args.repeat)), flush=True)
        if args.hold:  # measure again when the parent says every sibling is alive
            sys.stdin.readline()
            print(json.dumps(memory("self", args.child)), flush=True)
            sys.stdin.readline()
        return
    repeat = 1 if args.quick else args.repeat
    env = dict(os.environ)
    from bench_ngram import rnnkit_command

    wt2 = args.data / "wikitext-2"
    with tempfile.TemporaryDirectory(prefix="bench_ngram_query.") as tmp:
        tmp = Path(tmp)
        model, arpa = tmp / "wt2-5.rnnkit", tmp / "wt2-5.arpa"
        subprocess.run(rnnkit_command() + ["train", str(wt2 / "train.txt"), "--type", "ngram",
                                           "--order", "5", "--out", str(model), "--json"],
                       check=True, capture_output=True, env=env)
        subprocess.run(rnnkit_command() + ["export", str(model), "--arpa", str(arpa)],
                       check=True, capture_output=True, env=env)
        test = wt2 / "test.txt"
        results = {"rnnkit read": run_rnnkit(model, test, False, repeat, env),
                   "rnnkit --mmap": run_rnnkit(model, test, True, repeat, env)}
        ours = np.array(results["rnnkit read"]["sentence_log10"])
        if not np.array_equal(ours, results["rnnkit --mmap"]["sentence_log10"]):
            raise SystemExit("FAIL: the mapped model scores differently from the read one")
        shared = shared_mapping(model, test, env)
        sizes = {"rnnkit read": model.stat().st_size, "rnnkit --mmap": model.stat().st_size,
                 "ARPA": arpa.stat().st_size}
        quant_ppl = None
        if args.kenlm_bin:
            query = str(args.kenlm_bin / "query")
            binaries = build_binaries(str(args.kenlm_bin / "build_binary"), arpa, tmp)
            for name in ("probing", "trie"):
                theirs = query_word_scores(query, binaries[name], test)
                if len(theirs) != len(ours):
                    raise SystemExit(f"FAIL: KenLM {name} scored {len(theirs)} sentences, "
                                     f"rnnkit {len(ours)}")
                worst = float(np.abs(theirs - ours).max())
                print(f"check: KenLM {name} vs rnnkit, {len(ours):,} WikiText-2 test sentences: "
                      f"max |d log10 p(sentence)| {worst:.1e}")
                if worst > TOLERANCE:
                    raise SystemExit(f"FAIL: differs from KenLM {name} by more than {TOLERANCE}")
            for name in ("probing", "trie"):
                for lazy in (False, True):
                    key = f"KenLM {name}" + (" -l lazy" if lazy else "")
                    results[key] = run_query(query, binaries[name], test, repeat, lazy)
                    sizes[key] = binaries[name].stat().st_size
            full = results["KenLM trie"]["ppl"]
            quant = run_query(query, binaries["trie -q 8 -b 8"], test, 1, False)
            sizes["KenLM trie -q 8 -b 8"] = binaries["trie -q 8 -b 8"].stat().st_size
            quant_ppl = (quant["ppl"], full, quant["loaded"]["rss"])
        ppl = 10 ** (-ours.sum() / (results["rnnkit read"]["tokens"] / repeat))

    print(f"\n{datetime.date.today()}  {cpu_name()}  threads {args.threads}  "
          f"WikiText-2 5-gram, test x{repeat} ({results['rnnkit read']['tokens']:,} tokens), "
          f"perplexity {ppl:.2f}{'  (--quick)' if args.quick else ''}")
    print("memory in MiB (smaps_rollup; valid on a busy machine); times taken on a busy machine")
    head = (f"{'variant':<24} {'file MB':>8} {'load s':>8} {'Rss load':>9} {'Pss load':>9} "
            f"{'file Rss':>9} {'Rss end':>8} {'Pss end':>8} {'file Rss':>9} {'anon end':>9} "
            f"{'tokens/s':>11}")
    print(head)
    for name, r in results.items():
        lo, sc = r["loaded"], r["scored"]
        print(f"{name:<24} {sizes[name] / 1e6:>8.1f} {r['load_s']:>8.3f} {lo['rss']:>9.1f} "
              f"{lo['pss']:>9.1f} {lo['file_rss']:>9.1f} {sc['rss']:>8.1f} {sc['pss']:>8.1f} "
              f"{sc['file_rss']:>9.1f} {sc['anon']:>9.1f} {r['tokens'] / r['score_s']:>11,.0f}")
    for name in ("rnnkit read", "rnnkit --mmap"):
        b = results[name]["before"]
        print(f"{name}: the interpreter with numpy and rnnkit imported, before loading: "
              f"Rss {b['rss']:.1f}, Pss {b['pss']:.1f} MiB (included above)")
    print(f"rnnkit --mmap, {len(shared)} processes scoring at once: model file Rss "
          + " + ".join(f"{m['file_rss']:.1f}" for m in shared) + " MiB, its Pss "
          + " + ".join(f"{m['file_pss']:.1f}" for m in shared)
          + f" = {sum(m['file_pss'] for m in shared):.1f} MiB (shared pages counted once); "
          f"total Pss {sum(m['pss'] for m in shared):.1f} MiB, total Rss "
          f"{sum(m['rss'] for m in shared):.1f} MiB")
    print(f"ARPA file: {sizes['ARPA'] / 1e6:.1f} MB")
    if quant_ppl:
        q, f, rss = quant_ppl
        print(f"KenLM trie -q 8 -b 8: {sizes['KenLM trie -q 8 -b 8'] / 1e6:.1f} MB, Rss after "
              f"load {rss:.1f} MiB, perplexity {q:.4f} against {f:.4f} unquantised "
              f"({(q / f - 1) * 100:+.3f}%)")
        best = min(sizes[k] for k in sizes if k.startswith("KenLM trie"))
        print(f"ratio rnnkit file / KenLM trie: {sizes['rnnkit read'] / sizes['KenLM trie']:.2f}x;"
              f" / probing: {sizes['rnnkit read'] / sizes['KenLM probing']:.2f}x;"
              f" / quantised trie: {sizes['rnnkit read'] / best:.2f}x")
    print("KenLM via its `query` binary (-b -v sentence -v summary; stdin a pipe): load time is "
          "spawn to its first read of stdin; tokens/s includes writing the text through the pipe")


if __name__ == "__main__":
    main()
