"""`rnnkit translate`: sentences through a translation model, greedy or beam search."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..decoding.metrics import evaluate, read_parallel_text
from ..decoding.translate import TranslateOptions, translate_lines
from ..errors import RnnkitError
from ..loader import load
from ..models.seq2seq import Seq2Seq
from ..report.plots import check_png_name, require_matplotlib
from ..report.plots import plot_attention as plot_attention_png
from ..text.textio import check_output, read_lines
from ._common import LengthPenaltyOption, count_progress, err, print_json
from ._render import evaluate_table

app = typer.Typer()


@app.command(short_help="Translate sentences with a trained encoder-decoder (greedy or beam search).",
             epilog="Examples:\n\n"
             "rnnkit translate de-en.rnnkit test.de --beam 5 > test.hyp.en\n\n"
             "echo '자세히 보아야 예쁘다' | rnnkit translate ko-en.rnnkit - --json\n\n"
             "rnnkit translate de-en.rnnkit test.de --beam 5 --n-best 5 > nbest.tsv\n\n"
             "rnnkit translate de-en.rnnkit test.de --ref test.en > test.hyp.en   # BLEU, chrF "
             "on stderr")
def translate(
    model_path: Annotated[Path, typer.Argument(help="A translation model (train --type seq2seq).",
                                               metavar="MODEL")],
    input_path: Annotated[str, typer.Argument(help="Source sentences, one per line; - for stdin.",
                                              metavar="FILE")],
    beam: Annotated[int, typer.Option(help="Beam size; 1 is greedy search.")] = 5,
    alpha: LengthPenaltyOption = 1.0,
    n_best: Annotated[Optional[int], typer.Option(
        "--n-best", help="Write the N best translations of each sentence as an N-best list "
        "(id<TAB>translation<TAB>log10 p), which `rnnkit rescore` reads.")] = None,
    max_ratio: Annotated[float, typer.Option(
        help="At most this many target tokens per source token (plus --max-extra).")] = 2.0,
    max_extra: Annotated[int, typer.Option(help="Target tokens allowed beyond the ratio.")] = 10,
    max_length: Annotated[Optional[int], typer.Option(
        help="And at most this many target tokens, whatever the source's length (a translation "
        "stopped by a limit before its </s> is `complete: false` in --json).")] = None,
    batch: Annotated[int, typer.Option(help="Sentences decoded together.")] = 64,
    replace_unk: Annotated[bool, typer.Option(
        "--replace-unk", help="Replace each <unk> in a translation with the source word it "
        "attends to most (Luong et al. 2015); needs an attention model.")] = False,
    plot_attention: Annotated[Optional[Path], typer.Option(
        help="Draw the first sentence's attention as a heatmap PNG (needs matplotlib).")] = None,
    refs: Annotated[Optional[list[str]], typer.Option(
        "--ref", help="Reference translations aligned with FILE (repeat for several): BLEU and "
        "chrF (sacreBLEU) of the translations, on stderr (with --json, a last summary "
        "object).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per sentence: translation, score, tokens.")] = False,
):
    """Translate sentences with a trained encoder-decoder; one translation per line on stdout,
    in the order of the input."""
    if plot_attention is not None:
        check_png_name(plot_attention, "--plot-attention")
        check_output(plot_attention, [model_path, input_path, *(refs or [])],
                     flag="--plot-attention")
        require_matplotlib()
    model = load(model_path)
    if not isinstance(model, Seq2Seq):
        raise RnnkitError(f"{model_path}: a {model.model_type} model, not a translation model "
                          f"(train one with `rnnkit train DIR --type seq2seq`)")
    if plot_attention is not None and model.arch.attention == "none":
        raise RnnkitError(f"{model_path}: a model without attention has no attention to draw")
    opts = TranslateOptions(beam=beam, alpha=alpha, n_best=n_best or 1,
                            max_ratio=max_ratio, max_extra=max_extra, max_length=max_length,
                            batch=batch, replace_unk=replace_unk,
                            keep_attention=replace_unk or plot_attention is not None)
    if refs:
        lines, references = read_parallel_text(
            input_path, refs, aligned="--ref must be aligned with the sources line by line")
    else:
        lines, references = [text for _, text in read_lines(input_path)], []
    with count_progress("translating", len(lines)) as advance:
        results = translate_lines(model, lines, opts, progress=advance)
    for i, r in enumerate(results):
        if as_json:
            print_json({"line": i + 1, "source": r.source, "translation": r.best.text,
                        "log10_prob": r.best.score, "tokens": len(r.best.tokens),
                        "complete": r.best.complete,
                        "n_best": [{"translation": h.text, "log10_prob": h.score}
                                   for h in r.hypotheses] if n_best else None})
        elif n_best:
            for h in r.hypotheses:
                sys.stdout.write(f"{i + 1}\t{h.text}\t{h.score:.6f}\n")
        else:
            sys.stdout.write(r.best.text + "\n")
    if plot_attention is not None and results:
        r = results[0]
        note = plot_attention_png(r.source_tokens + ["</s>"], r.best.tokens + ["</s>"],
                                  r.best.attention, plot_attention)
        if note:
            err.print(f"warning: {note}", markup=False, soft_wrap=True)
        err.print(f"attention of sentence 1 -> {plot_attention}")
    if references:
        scores = evaluate([r.best.text for r in results], references)
        if as_json:
            print_json({"summary": scores})
        else:
            err.print(evaluate_table(scores))
    if any(not math.isfinite(r.best.score) for r in results):
        raise RnnkitError("a translation has probability 0 (a damaged model?)")
