"""`rnnkit features` (images -> a features file) and `rnnkit caption` (a caption per image, with
BLEU/CIDEr against references); scoring captions given images is `rnnkit score MODEL
CAPTIONS.tsv --features FEATS`, through score_captions here."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..decoding.caption_metrics import caption_scores
from ..errors import RnnkitError
from ..loader import load
from ..models.caption import CaptionModel
from ..text.captions import read_captions, read_features, write_features
from ..text.images import check_extractor, extract_features, extract_for_model, list_images
from ._common import LengthPenaltyOption, err, out, print_json, writing

app = typer.Typer()

FEATURE_SUFFIXES = (".safetensors", ".npy", ".mat")


def _floats(text: str, flag: str) -> tuple[float, float, float]:
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        v = ()
    if len(v) != 3 or not all(math.isfinite(x) for x in v):
        raise RnnkitError(f"{flag} needs three finite numbers R,G,B, got {text!r}")
    return v


@app.command(short_help="Extract image features with a frozen CNN (ONNX) or the demo extractor.",
             epilog="Examples:\n\n"
             "rnnkit features scenes/images --out feats.safetensors\n\n"
             "rnnkit features photos/ --onnx resnet18.onnx --size 224 --output pooled "
             "--out feats.safetensors")
def features(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or directories.",
                                                 metavar="IMAGES_OR_DIR...", show_default=False)],
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="The features file to write (.safetensors: [N, D] with the ids).")] = None,
    onnx: Annotated[Optional[Path], typer.Option(
        help="A CNN as an ONNX model (run by ONNX Runtime); without it, rnnkit's demo extractor "
        "(see docs/commands.md).")] = None,
    size: Annotated[Optional[int], typer.Option(
        help="Resize images to SIZE x SIZE for the ONNX model \\[default: its input size, or "
        "224].")] = None,
    mean: Annotated[str, typer.Option(help="Per-channel mean of the ONNX model's "
                                      "normalisation.")] = "0.485,0.456,0.406",
    std: Annotated[str, typer.Option(help="Per-channel std of the ONNX model's "
                                     "normalisation.")] = "0.229,0.224,0.225",
    output: Annotated[Optional[str], typer.Option(
        help="The ONNX output (layer) to take: [N, D] pooled, or [N, D, h, w] as a spatial grid "
        "\\[default: the first output].")] = None,
    batch: Annotated[int, typer.Option(help="Images per run of the network.")] = 32,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime threads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
):
    """Extract image features with a frozen CNN, one row per image in sorted file-name order
    (the file name is the image id that captions.tsv uses)."""
    if out_path is None:
        raise RnnkitError("--out FILE is required: the features file to write (.safetensors)")
    files = list_images(inputs)
    from rich.progress import Progress
    with writing(out_path, [*files, onnx]), \
            Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        if out_path.suffix.lower() != ".safetensors":
            raise RnnkitError(f"--out {out_path}: features are written as safetensors; give a "
                              f"name ending in .safetensors (readers know the format by it)")
        task = bar.add_task("features", total=len(files))
        feats = extract_features(files, onnx, size=size, mean=_floats(mean, "--mean"),
                                 std=_floats(std, "--std"), output=output, batch=batch,
                                 threads=threads, progress=lambda n: bar.advance(task, n))
        write_features(out_path, feats)
    summary = {"out": str(out_path), "images": len(feats.ids), "shape": list(feats.array.shape),
               "extractor": feats.source, "extractor_record": feats.extractor}
    if as_json:
        print_json(summary)
    else:
        out.print(f"{out_path}: {len(feats.ids):,} images, features {list(feats.array.shape)} "
                  f"from {feats.source}", markup=False, soft_wrap=True)


def _load_caption_model(path: Path) -> CaptionModel:
    model = load(path)
    if not isinstance(model, CaptionModel):
        raise RnnkitError(f"{path}: a {model.model_type} model, not a caption model (train one "
                          f"with `rnnkit train DIR --type caption --features FEATS`)")
    return model


def _read_inputs(path: Path, onnx: Optional[Path], model: CaptionModel, model_path: Path):
    """Features of a file (made by the model's extractor) or of images (extracted the way the
    model's training features were); a missing record is one warning line."""
    if path.is_file() and path.suffix.lower() in FEATURE_SUFFIXES:
        feats = read_features(path)
        warning = check_extractor(model.extractor, feats, str(model_path))
    else:
        feats, warning = extract_for_model(path, model.extractor, onnx, model_path)
    model.check_features(feats.array)   # a wrong size is the error to give, not the warning
    if warning:
        err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    return feats


@app.command(short_help="Describe images with a trained caption model.",
             epilog="Examples:\n\n"
             "rnnkit caption scenes.rnnkit test/images\n\n"
             "rnnkit caption scenes.rnnkit feats.safetensors --beam 3 --n-best 3 --json\n\n"
             "rnnkit caption scenes.rnnkit test/images --references test/captions.tsv")
def caption(
    model_path: Annotated[Path, typer.Argument(help="A caption model (train --type caption).",
                                               metavar="MODEL")],
    inputs: Annotated[Path, typer.Argument(
        help="A features file (.safetensors, .npy, neuraltalk .mat), or images (a file or a "
        "directory: features made on the fly by the demo extractor or --onnx).",
        metavar="FEATURES_OR_IMAGES")],
    beam: Annotated[int, typer.Option(help="Beam size; 1 is greedy search.")] = 1,
    n_best: Annotated[int, typer.Option("--n-best", help="Captions per image, best first "
                                        "(id<TAB>caption<TAB>log10 p).")] = 1,
    alpha: LengthPenaltyOption = 0.6,
    max_len: Annotated[int, typer.Option(help="At most this many words per caption.")] = 30,
    onnx: Annotated[Optional[Path], typer.Option(
        help="For images: the ONNX CNN the model's training features came from (its size, mean, "
        "std and output are taken from the model; default: the recorded file beside the "
        "model).")] = None,
    references: Annotated[Optional[Path], typer.Option(
        help="Reference captions (image_id<TAB>caption): print BLEU-1..4 (and CIDEr where "
        "pycocoevalcap is installed) on stderr, or in the --json summary.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image: id, "
                                          "caption, log10_prob, n_best.")] = False,
):
    """Describe images: one caption per image (id<TAB>caption) on stdout, in id order."""
    model = _load_caption_model(model_path)
    if n_best > beam:
        beam = n_best
    feats = _read_inputs(inputs, onnx, model, model_path)
    refs = None
    if references is not None:  # checked before any caption is printed
        refs = read_captions(references)
        missing = [i for i in feats.ids if i not in refs]
        if missing:
            raise RnnkitError(f"{references}: no reference captions for image {missing[0]!r}")
    results = model.caption(feats.array, beam=beam, n_best=n_best, max_len=max_len, alpha=alpha)
    for image_id, hyps in zip(feats.ids, results):
        if as_json:
            print_json({"id": image_id, "caption": hyps[0][0], "log10_prob": hyps[0][1],
                        "n_best": [{"caption": t, "log10_prob": s} for t, s in hyps]
                        if n_best > 1 else None})
        elif n_best > 1:
            for t, s in hyps:
                sys.stdout.write(f"{image_id}\t{t}\t{s:.6f}\n")
        else:
            sys.stdout.write(f"{image_id}\t{hyps[0][0]}\n")
    if refs is not None:
        scores = caption_scores([h[0][0] for h in results], [refs[i] for i in feats.ids])
        if as_json:
            print_json({"summary": scores, "images": len(feats.ids), "beam": beam})
        else:
            line = "  ".join(f"BLEU-{n} {scores[f'bleu{n}']:.2f}" for n in range(1, 5))
            if "cider" in scores:
                line += f"  CIDEr {scores['cider']:.3f} ({scores['cider_implementation']})"
            err.print(f"{len(feats.ids)} images, beam {beam}: {line} "
                      f"({scores['bleu_implementation']})", markup=False, soft_wrap=True)
    if any(not math.isfinite(h[0][1]) for h in results):
        raise RnnkitError("a caption has probability 0 (a damaged model?)")


def score_captions(model_path: str, captions_path: str, features_path: Path, as_json: bool
                   ) -> None:
    """`rnnkit score MODEL CAPTIONS.tsv --features FEATS`: log10 p(caption | image) per line."""
    model = _load_caption_model(Path(model_path))
    feats = read_features(features_path)
    warning = check_extractor(model.extractor, feats, model_path)
    if warning:
        err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    caps = read_captions(captions_path)
    ids, texts = [], []
    for image_id, cs in caps.items():
        for c in cs:
            ids.append(image_id)
            texts.append(c)
    tok = model.tokenizer
    enc = [model.vocab.encode(tok.split(t)).astype("int64") for t in texts]
    lps = model.caption_log_probs(feats.rows(ids), enc)
    total, tokens = 0.0, 0
    for image_id, text, e, lp in zip(ids, texts, enc, lps):
        s = float(lp.sum())
        total += s
        tokens += len(lp)
        if as_json:
            print_json({"id": image_id, "caption": text, "log10_prob": s, "tokens": len(lp),
                        "oov": int((e == 0).sum())})
        else:
            sys.stdout.write(f"{image_id}\t{text}\t{s:.6f}\n")
    ppl = 10.0 ** (-total / max(tokens, 1))
    if as_json:
        print_json({"summary": {"captions": len(texts), "log10_prob": total, "tokens": tokens,
                                "ppl": ppl}})
    else:
        err.print(f"{len(texts)} captions, {tokens} tokens (</s> included): log10 p {total:.4f}, "
                  f"perplexity {ppl:.4f}", markup=False)
