"""`rnnkit prepare` and `rnnkit synth`: text in, a corpus (or a synthetic text) out."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import RnnkitError
from ..text.prepare import prepare as run_prepare
from ..text.synth import SynthSpec, parse_filler
from ..text.synth import write as write_synth
from ._common import (
    JsonSummary,
    Level,
    Normalize,
    Utf8Errors,
    byte_progress,
    choice,
    err,
    out,
    print_json,
    writing,
)
from ._render import corpus_table

app = typer.Typer()


@app.command(epilog="Examples:\n\n"
             "rnnkit prepare corpus.txt --out data/ --min-count 2\n\n"
             "rnnkit prepare train.txt.gz --valid valid.txt --test test.txt --out data/\n\n"
             "rnnkit prepare --sample ko --level char --out demo/ko")
def prepare(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="UTF-8 text files, one sentence per line (gzip allowed); `-` reads stdin.",
        show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output directory.")] = None,
    sample: Annotated[Optional[str], typer.Option(
        help="Use the sample corpus shipped with rnnkit instead of INPUT: `en` or `ko`.")] = None,
    level: Annotated[Level, choice(Level, "--level", help="Tokens: `word` (split on whitespace) "
                                   "or `char`.")] = Level.word,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase the text.")] = False,
    min_count: Annotated[int, typer.Option(help="Map tokens seen fewer times to <unk>.")] = 1,
    max_vocab: Annotated[Optional[int], typer.Option(
        help="Keep at most this many tokens (specials included); the rest become <unk>.")] = None,
    vocab: Annotated[Optional[Path], typer.Option(
        help="Reuse this vocab.txt instead of building one (e.g. to fine-tune).")] = None,
    valid: Annotated[Optional[str], typer.Option(help="Validation text file.")] = None,
    test: Annotated[Optional[str], typer.Option(help="Test text file.")] = None,
    split: Annotated[Optional[str], typer.Option(
        help="Train,valid,test fractions of the input's sentences when --valid/--test are not "
        "given [default: 0.9,0.05,0.05].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random split.")] = 0,
    normalize: Annotated[Normalize, choice(Normalize, "--normalize",
                                           help="Unicode normalisation: nfc, nfkc or none.")] = Normalize.nfc,
    errors: Annotated[Utf8Errors, choice(
        Utf8Errors, "--errors", help="Invalid UTF-8: `strict` (stop with an error) or `replace` "
        "(U+FFFD).")] = Utf8Errors.strict,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a directory that is not an "
                                        "rnnkit corpus.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
):
    """Turn UTF-8 text into a vocabulary and token-id arrays (train / valid / test): DIR gets
    vocab.txt (token TAB count; <unk>, <s>, </s> are ids 0, 1, 2, then tokens by count), one
    uint32 .npy per split (each sentence followed by </s>) and manifest.json, all at once, so an
    interrupted run leaves no directory that looks complete."""
    files = [p for p in (inputs or []) + [valid, test] if p and p != "-"]
    # a directory given as an input is reported by prepare itself (it reads text files only)
    inputs_read = [p for p in files if not Path(p).is_dir()] + [vocab]
    with writing(out_dir, inputs_read), byte_progress("reading", files) as advance:
        manifest = run_prepare(
            inputs or [], out_dir, sample=sample, level=level.value, lowercase=lowercase,
            min_count=min_count, max_vocab=max_vocab, vocab=vocab, valid=valid, test=test,
            split=split, seed=seed, normalize=normalize.value, errors=errors.value, force=force,
            progress=advance)
    if as_json:
        print_json(manifest)
    else:
        out.print(corpus_table(manifest))


@app.command(epilog="Examples:\n\n"
             "rnnkit synth --out synth.txt --sentences 20000 --filler 5,40 --vocab 10\n\n"
             "rnnkit synth --out - --sentences 3 --filler 2,4 --seed 7")
def synth(
    out_path: Annotated[Optional[str], typer.Option("--out", help="The text file to write; `-` "
                                                    "for stdout.")] = None,
    sentences: Annotated[int, typer.Option(help="Number of sentences.")] = 10000,
    filler: Annotated[str, typer.Option(help="MIN,MAX filler words between the key and its "
                                        "answer (inclusive; one number for a fixed length).")
                      ] = "5,40",
    keys: Annotated[int, typer.Option("--vocab", help="K: number of key/answer word pairs.")] = 10,
    filler_vocab: Annotated[int, typer.Option(help="Number of distinct filler words.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same corpus).")] = 0,
    as_json: JsonSummary = False,
):
    """Write a synthetic corpus with one long-range dependency: each sentence is a key word
    k_i, a filler of MIN..MAX random filler words, then the key's answer word a_i. The last word
    is a function of the first and the filler says nothing about it, so a recurrent model can
    learn to carry the key to the end and an n-gram model cannot."""
    if out_path is None:
        raise RnnkitError("--out FILE is required: the text file to write (`-` for stdout)")
    if as_json and out_path == "-":
        raise RnnkitError("--json prints to stdout, which --out - already uses for the corpus; "
                          "give --out a file")
    lo, hi = parse_filler(filler)
    spec = SynthSpec(sentences=sentences, filler_min=lo, filler_max=hi, keys=keys,
                     filler_vocab=filler_vocab, seed=seed)
    with writing(out_path, []):
        summary = write_synth(out_path, spec)
    if as_json:
        print_json(summary)
    else:
        (err if out_path == "-" else out).print(
            f"{summary['out']}: {summary['sentences']:,} sentences, {summary['tokens']:,} "
            f"tokens; {spec.keys} keys k_i -> answers a_i across {lo}-{hi} filler words "
            f"from {spec.filler_vocab}", markup=False, highlight=False)
