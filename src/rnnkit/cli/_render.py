"""Everything the commands show to people: Rich tables, per-token colouring and the training
progress view. Each function takes the library's result (a dict or a record) and returns a
renderable; the command decides where it goes (stdout, or stderr when stdout carries data)."""
from __future__ import annotations

import numpy as np
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ..training.loop import perplexity_of


# ------------------------------------------------------------------------------------------------
# prepare, train
# ------------------------------------------------------------------------------------------------
def corpus_table(manifest: dict) -> Table:
    t = Table(title=f"corpus: vocabulary {manifest['vocab']['size']:,} tokens "
                    f"({manifest['tokenizer']['level']} level)")
    for col in ("split", "sentences", "tokens", "OOV tokens", "OOV rate"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for name, s in manifest["splits"].items():
        t.add_row(name, f"{s['sentences']:,}", f"{s['tokens']:,}", f"{s['oov']:,}",
                  f"{100 * s['oov_rate']:.2f}%")
    return t


def ngram_table(s: dict) -> Table:
    """N-grams (and discounts) per order of a trained n-gram model, perplexities as caption."""
    t = Table()
    t.add_column("order", justify="right")
    t.add_column("n-grams", justify="right")
    if s.get("discounts"):
        for col in ("D1", "D2", "D3+"):
            t.add_column(col, justify="right")
    for k, n in enumerate(s["ngrams"], 1):
        row = [str(k), f"{n:,}"]
        if s.get("discounts"):
            row += [f"{d:.6g}" for d in s["discounts"][k - 1]]
        t.add_row(*row)
    if s.get("estimator") == "dask":
        n = s["workers"]
        t.caption = f"Dask, {n} worker{'s' * (n != 1)}, {s['partitions']} shards: " + ", ".join(
            f"{name} {sec:.2f} s" for name, sec in s["stage_seconds"].items())
    for split in ("valid", "test"):
        if f"{split}_perplexity" in s:
            t.caption = (t.caption + "  " if t.caption else "") + \
                f"{split} perplexity {s[f'{split}_perplexity']:.2f}"
    return t


def train_summary_table(s: dict) -> Table:
    """The summary of a trained recurrent model."""
    t = Table(show_header=False)
    t.add_column("", style="bold")
    t.add_column("", justify="right")

    def ppl(v):
        return "-" if v is None else f"{v:.2f}"

    rows = [("parameters", f"{s['parameters']:,}"), ("vocabulary", f"{s['vocab_size']:,}"),
            *([("output layer", s["output"])] if s.get("output") else []),
            *([("MPI ranks", f"{s['ranks']} (allreduce {s['allreduce_ms_per_step']:.2f} ms/step)")]
              if s.get("ranks", 1) > 1 else []),
            ("epochs run", f"{s['epochs_run']}" + (" (stopped early)" if s["stopped_early"] else "")),
            ("best epoch", str(s["best_epoch"])), ("train perplexity", ppl(s["train_perplexity"])),
            ("valid perplexity (best)", ppl(s["valid_perplexity"])),
            ("test perplexity (best model)", ppl(s["test_perplexity"])),
            ("training speed", "-" if not s["tokens_per_s"] else f"{s['tokens_per_s']:,.0f} tok/s"),
            ("time", f"{s['seconds']:.1f} s"), ("metrics", s["metrics"])]
    for k, v in rows:
        t.add_row(k, v)
    return t


class _Speed(ProgressColumn):
    def render(self, task):
        return Text(f"{task.speed:,.0f} tok/s" if task.speed else "… tok/s")


class RichTrainEvents:
    """Training progress on stderr: one Rich bar per epoch (tokens/s, loss, perplexity, ETA) and
    one line per finished epoch. The events interface of training/loop.py."""

    def __init__(self, console):
        self.console = console
        self.progress = None
        self.task = None
        self.tokens_per_window = 0

    def _bar(self):
        return Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), _Speed(),
                        TextColumn("loss {task.fields[loss]}  ppl {task.fields[ppl]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=self.console, transient=True, redirect_stdout=False,
                        redirect_stderr=False)

    def start(self, info):
        where = ""
        if info.get("resumed_from"):
            r = info["resumed_from"]
            where = f", resuming at epoch {r['epoch']} window {r['window']}"
        output = f", {info['output']} softmax" if info.get("output") else ""
        if info.get("ranks", 1) > 1:
            output += f", {info['ranks']} MPI ranks"
        self.console.print(f"training {info['model_type']}: {info['parameters']:,} parameters"
                           f"{output}, {info['windows']:,} windows per epoch{where}", markup=False)

    def epoch_start(self, epoch, epochs, windows, done, tokens, lr):
        self.close()
        if not self.console.is_terminal:  # a log file gets the epoch lines only
            return
        self.progress = self._bar()
        self.progress.start()
        self.tokens_per_window = tokens / max(windows, 1)
        self.task = self.progress.add_task("", total=tokens, completed=done * self.tokens_per_window,
                                           epoch=f"{epoch}/{epochs}", loss="…", ppl="…")

    def window(self, done, windows, tokens, loss):
        if self.progress is not None:
            self.progress.update(self.task, advance=tokens, loss=f"{loss:.3f}",
                                 ppl=f"{perplexity_of(loss):.1f}")

    def epoch_end(self, record):
        self.close()
        valid = record["valid_ppl"]
        self.console.print(
            f"epoch {record['epoch']}: lr {record['lr']:.4g}  train ppl {record['train_ppl']:.2f}"
            f"  valid ppl {'-' if valid is None else f'{valid:.2f}'}"
            f"{'  (best)' if record['best'] else ''}  {record['tokens_per_s']:,.0f} tok/s  "
            f"{record['seconds']:.1f} s", markup=False)

    def checkpoint(self, path, reason):
        if reason == "periodic" and self.progress is not None:
            self.progress.console.print(f"checkpoint written to {path}", markup=False)

    def should_stop(self):
        return False

    def close(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# ------------------------------------------------------------------------------------------------
# score
# ------------------------------------------------------------------------------------------------
def per_token_text(rec) -> Text:
    """Each token with its log10 probability and n-gram length, coloured by surprisal."""
    t = Text()
    for i, (tok, lp, n, oov) in enumerate(rec.per_token):
        s = -lp  # surprisal in decimal digits (bans)
        style = ("bold white on red" if oov else "green" if s < 1 else "yellow" if s < 2
                 else "dark_orange" if s < 3 else "bold red")
        if i:
            t.append(" ")
        t.append(tok, style=style)
        t.append(f"[{lp:.2f}/{n}]", style="dim")
    return t


def score_summary_table(s) -> Table:
    t = Table()
    t.add_column("log10 p", justify="right")
    t.add_column("perplexity", justify="right")
    t.add_column("perplexity excl. OOV", justify="right")
    t.add_row(f"{s.log10_prob:.4f}", f"{s.perplexity:.4f}", f"{s.perplexity_excluding_oov:.4f}")
    return t


# ------------------------------------------------------------------------------------------------
# rescore, tune-interp, tune-rescore
# ------------------------------------------------------------------------------------------------
def group_table(r, names: list[str] | None) -> Table:
    """One rescored N-best group, best first; a column per model when there are several."""
    g = r.group
    t = Table(title=f"group {g.id}" + (f" (line {g.line})" if g.line else "")
              + ": log10 probabilities", title_justify="left", show_edge=False, expand=True)
    t.add_column("", width=1)
    t.add_column("rank", justify="right")
    t.add_column("candidate", overflow="fold", ratio=1)
    if names:
        for n in names:
            t.add_column(n, justify="right", no_wrap=True)
    t.add_column("LM" if not names else "mixture", justify="right", no_wrap=True)
    show_ac = any(c.score is not None for c in g.candidates)
    if show_ac:
        t.add_column("acoustic", justify="right", no_wrap=True)
    t.add_column("words", justify="right", no_wrap=True)
    show_total = not np.array_equal(r.total, r.lm)  # the score is the LM's unless weighted
    if show_total:
        t.add_column("score", justify="right", no_wrap=True)
    for rank, i in enumerate(r.order.tolist(), 1):
        c = g.candidates[i]
        row = ["★" if rank == 1 else "", str(rank), c.text + (f"  [dim]({c.id})[/]" if c.id
                                                               and g.format in ("id", "kaldi")
                                                               else "")]
        if names:
            row += [f"{x:.3f}" for x in r.components[:, i]]
        row.append(f"{r.lm[i]:.3f}")
        if show_ac:
            row.append("" if c.score is None else f"{c.score:.3f}")
        row.append(str(int(r.words[i])))
        if show_total:
            row.append(f"{r.total[i]:.3f}")
        t.add_row(*row, style="bold green" if rank == 1 else None)
    return t


def interpolation_table(res: dict, models: list[str]) -> Table:
    """Interpolation weights found by EM, each model's perplexity alone and the mixture's."""
    t = Table(title=f"interpolation weights (EM, {res['iterations']} iterations) on "
                    f"{res['sentences']:,} held-out sentences, {res['tokens']:,} tokens")
    for col in ("model", "weight", "perplexity alone"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for p, wt, ppl in zip(models, res["weights"], res["model_perplexities"]):
        t.add_row(p, f"{wt:.4f}", f"{ppl:.2f}")
    t.add_row("[bold]mixture[/]", "1.0000", f"[bold]{res['perplexity']:.2f}[/]")
    return t


def rescore_tuning_table(res: dict, unit: str, method: str) -> Table:
    """Rescoring weights and error rate before and after tuning, and the oracle's."""
    rate = "WER" if unit == "word" else "CER"
    t = Table(title=f"{rate} on {res['groups']:,} groups, {res['candidates']:,} candidates "
                    f"({method})")
    for col in ("", "lm-weight", "acoustic-weight", "word-penalty", rate):
        t.add_column(col, justify="left" if not col else "right")
    for name in ("before", "after"):
        r = res[name]
        t.add_row(name, f"{r['lm_weight']:.4g}", f"{r['acoustic_weight']:.4g}",
                  f"{r['word_penalty']:.4g}", f"{100 * r['wer']:.2f}%")
    t.add_row("oracle", "", "", "", f"{100 * res['oracle_wer']:.2f}%")
    return t


# ------------------------------------------------------------------------------------------------
# diagnose
# ------------------------------------------------------------------------------------------------
def gradient_table(r: dict) -> Table:
    """Mean gradient norm per distance k and layer, and the last layer's ratio to k = 1."""
    t = Table()
    t.add_column("k", justify="right")
    for layer in range(r["layers"]):
        t.add_column(f"layer {layer + 1}", justify="right")
    t.add_column("last / k=1", justify="right")
    first = r["grad_norm"][0][-1] or 1.0
    for k, row in zip(r["distance"], r["grad_norm"]):
        t.add_row(str(k), *[f"{v:.3e}" for v in row], f"{row[-1] / first:.3e}")
    return t


# ------------------------------------------------------------------------------------------------
# prepare --parallel, evaluate
# ------------------------------------------------------------------------------------------------
def parallel_table(m: dict) -> Table:
    """Pairs per split and each side's vocabulary; what the training filters dropped."""
    src, trg = m["src"], m["trg"]
    joint = " (joint)" if m["options"].get("joint_vocab") else ""
    t = Table(title=f"parallel corpus: vocabulary {src['vocab_size']:,} source, "
                    f"{trg['vocab_size']:,} target{joint} ({src['level']} level)")
    for col in ("split", "pairs", "source tokens", "target tokens", "source OOV", "target OOV"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for name, n in m["pairs"].items():
        s, g = m["splits"]["src"][name], m["splits"]["trg"][name]
        t.add_row(name, f"{n:,}", f"{s['tokens']:,}", f"{g['tokens']:,}",
                  f"{100 * s['oov_rate']:.2f}%", f"{100 * g['oov_rate']:.2f}%")
    d = m["dropped"]
    t.caption = (f"dropped from train: {d['max_length']:,} by --max-length, "
                 f"{d['max_ratio']:,} by --max-ratio; {d['blank_lines']:,} blank lines skipped")
    return t


def evaluate_table(r: dict) -> Table:
    """BLEU / chrF with their details; sacreBLEU's signatures in the caption (kept whole: they
    are meant to be copied into a paper)."""
    t = Table(title=f"{r['sentences']:,} sentences, {r['references']} reference set"
                    f"{'s' if r['references'] > 1 else ''}")
    for col in ("metric", "score", "details"):
        t.add_column(col, justify="right" if col == "score" else "left")
    signatures = []
    if "bleu" in r:
        b = r["bleu"]
        details = (f"{'/'.join(f'{p:.1f}' for p in b['precisions'])} (BP {b['bp']:.3f}, ratio "
                   f"{b['ratio']:.3f}, hyp {b['hyp_len']:,}, ref {b['ref_len']:,})")
        t.add_row("BLEU", f"{b['score']:.2f}", details)
        signatures.append(f"BLEU {b['signature']}")
    if "chrf" in r:
        t.add_row("chrF", f"{r['chrf']['score']:.2f}", "character 6-grams, beta 2")
        signatures.append(f"chrF {r['chrf']['signature']}")
    t.caption = "\n".join(signatures)
    return t


def doctor_table(d: dict) -> Table:
    t = Table(title="rnnkit doctor", show_header=False)
    t.add_column("item")
    t.add_column("value", overflow="fold")
    t.add_row("CPU", d["cpu"])
    t.add_row("microarchitecture", f"{d['microarchitecture']} ({d['vendor'] or 'unknown vendor'}, "
              f"family {d['family']:#x}, model {d['model']:#x})")
    t.add_row("flags", " ".join(f if on else f"-{f}" for f, on in d["flags"].items()))
    t.add_row("kernel path", f"{d['kernel_path']} (supported here: "
              f"{', '.join(d['supported_paths'])}; RNNKIT_ISA overrides)")
    t.add_row("layer products", f"{d['gemm_backend']}" + (
        f", blocking MC {d['blocking']['mc']}, KC max {d['blocking']['kc_max']} "
        f"(measured on {d['blocking']['measured_on']})" if d["gemm_backend"] == "packed" else ""))
    t.add_row("threads", f"{d['threads']} of {d['logical_cpus']} usable CPUs "
              "(RNNKIT_NUM_THREADS overrides)")
    for lib in d["blas"] or [{"internal_api": "none found"}]:
        t.add_row("BLAS", " ".join(str(lib[k]) for k in ("internal_api", "version", "architecture")
                                   if lib.get(k) is not None)
                  + (f", {lib['num_threads']} threads" if lib.get("num_threads") else "")
                  + (f" ({lib['filepath']})" if lib.get("filepath") else ""))
    return t

