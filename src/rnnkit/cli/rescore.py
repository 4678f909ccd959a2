"""`rnnkit rescore`, `tune-interp` and `tune-rescore`: N-best rescoring and model combination.
`tune-weights`, the two tune commands in one, stays as a hidden alias for existing scripts."""
from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from ..errors import RnnkitError
from ..loader import load, load_language_model, load_models
from ..models.mixture import tune_linear
from ..rescoring.nbest import NBestReader, best_line
from ..rescoring.rescore import Weights, build_devset, read_references, tune
from ..rescoring.rescore import rescore as run_rescore
from ..text.corpus import heldout_sentences
from ._common import (
    Combine,
    CombineOption,
    Method,
    ModelsArgument,
    NBestFormat,
    NBestFormatOption,
    Unit,
    WeightsOption,
    choice,
    err,
    model_names,
    out,
    print_json,
    stream_progress,
)
from ._render import group_table, interpolation_table, rescore_tuning_table

app = typer.Typer()


@app.command(epilog="Examples:\n\n"
             "rnnkit rescore lm.rnnkit nbest.txt\n\n"
             "rnnkit rescore tri.rnnkit lstm.rnnkit nbest.tsv --weights 0.3,0.7 --best-only > best.tsv\n\n"
             "rnnkit rescore lm.rnnkit nbest.srilm --lm-weight 12 --word-penalty -0.5 --json")
def rescore(
    paths: Annotated[list[str], typer.Argument(
        help="One or more models (rnnkit model files or ARPA), then the N-best list (`-` for "
        "stdin).", show_default=False)],
    fmt: NBestFormatOption = NBestFormat.auto,
    weights: WeightsOption = None,
    combine: CombineOption = Combine.linear,
    lm_weight: Annotated[float, typer.Option(help="Weight of the LM log10 probability.")] = 1.0,
    acoustic_weight: Annotated[float, typer.Option(
        help="Weight of the list's own (acoustic / decoder) score.")] = 1.0,
    word_penalty: Annotated[float, typer.Option(
        help="Added per word of the candidate (negative: favour shorter candidates).")] = 0.0,
    best_only: Annotated[bool, typer.Option(
        "--best-only", help="Print only each group's winner: `group_id<TAB>candidate` (TSV, "
        "id-prefixed), the input's own line (SRILM, Moses), the candidate (groups).")] = False,
    batch: Annotated[int, typer.Option(help="Candidates scored per call (several groups at "
                                       "once); memory stays bounded.")] = 256,
    share_prefixes: Annotated[bool, typer.Option(
        "--share-prefixes/--no-share-prefixes", help="Recurrent models: compute each prefix the "
        "candidates share once, stepping through their prefix tree (the same scores; about 2x "
        "faster on N-best lists whose candidates share prefixes, see bench/bench_inference.py).")
    ] = True,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per group with every candidate's scores, then a "
        "summary.")] = False,
):
    """Re-rank N-best candidate sentences with one or more language models.

    score = lm-weight x LM log10 + acoustic-weight x the list's score + word-penalty x words

    The highest score wins. Each candidate is scored on its own from <s>.
    """
    if batch < 1:
        raise RnnkitError(f"--batch {batch}: must be at least 1")
    if len(paths) < 2:
        raise RnnkitError("give one or more MODEL files and then the N-best list (or `-` for "
                          "stdin)")
    model_paths, nbest_path = paths[:-1], paths[-1]
    model = load_models(model_paths, weights, combine.value)
    names = model_names(model_paths) if len(model_paths) > 1 else None
    w = Weights(lm_weight, acoustic_weight, word_penalty)
    groups = candidates = changed = 0
    t0 = time.perf_counter()
    with stream_progress("rescoring", nbest_path) as advance:
        reader = NBestReader(nbest_path, fmt.value, progress=advance)
        for r in run_rescore(model, reader, w, batch=batch, share=share_prefixes):
            groups += 1
            candidates += len(r.lm)
            changed += r.best != 0
            if as_json:
                d = r.to_json()
                if names:
                    d["models"] = list(model_paths)
                print_json(d)
            elif best_only:
                c = r.group.candidates[r.best]
                sys.stdout.write(best_line(r.group, c, lm=float(r.lm[r.best]),
                                           total=float(r.total[r.best])) + "\n")
            else:
                out.print(group_table(r, names))
                out.print()
    seconds = time.perf_counter() - t0
    summary = {"groups": groups, "candidates": candidates, "changed": changed,
               "format": reader.format, "seconds": round(seconds, 3),
               "candidates_per_second": round(candidates / seconds, 1) if seconds > 0 else None,
               **w.to_dict()}
    if as_json:
        print_json({"summary": summary})
    else:
        err.print(f"{groups:,} groups, {candidates:,} candidates ({reader.format} format): the "
                  f"winner differs from the list's first candidate in {changed:,} group(s); "
                  f"{summary['candidates_per_second'] or 0:,.0f} candidates/s")


# --- tuning -------------------------------------------------------------------------------------
DataOption = Annotated[Optional[str], typer.Option(
    help="Held-out text (one sentence per line) or a prepared corpus (its valid split): "
    "find the linear interpolation weights minimising its perplexity (EM).")]
NBestOption = Annotated[Optional[str], typer.Option(
    help="A development N-best list: tune --lm-weight and --word-penalty for the lowest "
    "word error rate (needs --reference).")]
ReferenceOption = Annotated[Optional[str], typer.Option(
    help="The correct sentence of each group: `id text` lines, or one line per group in "
    "order.")]
LmWeightOption = Annotated[float, typer.Option(help="Starting lm-weight.")]
AcousticWeightOption = Annotated[float, typer.Option(
    help="Acoustic weight (kept fixed: only ratios matter).")]
WordPenaltyOption = Annotated[float, typer.Option(help="Starting word penalty.")]
MethodOption = Annotated[Method, choice(Method, "--method",
                                        help="grid or simplex (Nelder-Mead).")]
UnitOption = Annotated[Unit, choice(
    Unit, "--unit", help="Error rate over words, or characters (spaces ignored; e.g. Korean).")]
TuneJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("tune-interp",
             short_help="Tune linear interpolation weights of two or more models by EM on held-out "
                        "text.",
             epilog="Example: rnnkit tune-interp tri.rnnkit lstm.rnnkit "
             "--data valid.txt")
def tune_interp(
    models: ModelsArgument,
    data: DataOption = None,
    as_json: TuneJson = False,
):
    """Tune the linear interpolation weights of two or more models by EM on held-out text:
    the weights that minimise its perplexity (use them with --weights in score and rescore)."""
    if data is None:
        raise RnnkitError("--data HELDOUT is required: held-out text or a prepared corpus")
    if len(models) < 2:
        raise RnnkitError("--data tunes interpolation weights: give two or more models")
    res = tune_linear([load_language_model(p) for p in models], heldout_sentences(data))
    if as_json:
        print_json({**res, "models": list(models)})
        return
    out.print(interpolation_table(res, models))
    out.print("use: --weights " + ",".join(f"{x:.4f}" for x in res["weights"]))


@app.command("tune-rescore",
             short_help="Tune the LM weight and word penalty of rescoring on a development N-best "
                        "list.",
             epilog="Example: rnnkit tune-rescore lm.rnnkit --nbest dev.nbest "
             "--reference dev.ref")
def tune_rescore(
    models: ModelsArgument,
    nbest: NBestOption = None,
    reference: ReferenceOption = None,
    fmt: NBestFormatOption = NBestFormat.auto,
    weights: Annotated[Optional[str], typer.Option(
        help="Model weights when several models are given (default: equal).")] = None,
    combine: CombineOption = Combine.linear,
    lm_weight: LmWeightOption = 1.0,
    acoustic_weight: AcousticWeightOption = 1.0,
    word_penalty: WordPenaltyOption = 0.0,
    method: MethodOption = Method.grid,
    unit: UnitOption = Unit.word,
    as_json: TuneJson = False,
):
    """Tune the lm-weight and word penalty of rescoring for the lowest word (or character)
    error rate on a development N-best list with its references (use them in rescore)."""
    if nbest is None:
        raise RnnkitError("--nbest FILE is required: a development N-best list")
    if reference is None:
        raise RnnkitError("--nbest needs --reference REF: the correct sentence of each group")
    model = load_models(models, weights, combine.value)
    groups = list(NBestReader(nbest, fmt.value))
    refs = read_references(reference, groups)
    dev = build_devset(model, groups, refs, unit=unit.value)
    res = tune(dev, Weights(lm_weight, acoustic_weight, word_penalty), method=method.value)
    res.pop("weights")
    if as_json:
        print_json(res)
        return
    out.print(rescore_tuning_table(res, unit.value, method.value))
    a = res["after"]
    out.print(f"use: --lm-weight {a['lm_weight']:.4g} --acoustic-weight "
              f"{a['acoustic_weight']:.4g} --word-penalty {a['word_penalty']:.4g}")


@app.command("tune-weights", hidden=True, epilog="Examples (prefer tune-interp and "
             "tune-rescore):\n\n"
             "rnnkit tune-weights tri.rnnkit lstm.rnnkit --data valid.txt\n\n"
             "rnnkit tune-weights lm.rnnkit --nbest dev.nbest --reference dev.ref")
def tune_weights(
    models: ModelsArgument,
    data: DataOption = None,
    nbest: NBestOption = None,
    reference: ReferenceOption = None,
    fmt: Annotated[NBestFormat, choice(NBestFormat, "--format",
                                       help="Format of --nbest (as in rescore).")] = NBestFormat.auto,
    weights: Annotated[Optional[str], typer.Option(
        help="[--nbest] Model weights when several models are given (default: equal).")] = None,
    combine: Annotated[Combine, choice(Combine, "--combine",
                                       help="[--nbest] linear or loglinear.")] = Combine.linear,
    lm_weight: LmWeightOption = 1.0,
    acoustic_weight: AcousticWeightOption = 1.0,
    word_penalty: WordPenaltyOption = 0.0,
    method: MethodOption = Method.grid,
    unit: UnitOption = Unit.word,
    as_json: TuneJson = False,
):
    """The older name of tune-interp (--data) and tune-rescore (--nbest, --reference), kept
    for existing scripts."""
    if (data is None) == (nbest is None):
        raise RnnkitError("give either --data HELDOUT (interpolation weights) or --nbest FILE "
                          "--reference REF (rescoring weights)")
    if data is not None:
        tune_interp(models, data=data, as_json=as_json)
    else:
        tune_rescore(models, nbest=nbest, reference=reference, fmt=fmt, weights=weights,
                     combine=combine, lm_weight=lm_weight, acoustic_weight=acoustic_weight,
                     word_penalty=word_penalty, method=method, unit=unit, as_json=as_json)
