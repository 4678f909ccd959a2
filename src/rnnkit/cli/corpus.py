"""`rnnkit prepare` and `rnnkit synth`: text in, a corpus (or a synthetic text) out."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import RnnkitError
from ..text.parallel import prepare_parallel
from ..text.prepare import prepare as run_prepare
from ..text.prepare_stream import prepare_streamed
from ..text.synth import SynthSpec, parse_filler
from ..text.scenes import write_scenes
from ..text.synth import write as write_synth
from ._common import (
    JsonSummary,
    Level,
    Normalize,
    SubwordModel,
    Utf8Errors,
    byte_progress,
    choice,
    err,
    out,
    parse_size,
    print_json,
    writing,
)
from ._render import corpus_table, parallel_table

app = typer.Typer()


class _PairedOptions(typer.core.TyperCommand):
    """With --parallel, `--valid SRC TRG` and `--test SRC TRG` take two files: Click options take
    a fixed number of values, so the second file is passed on as --valid-trg / --test-trg."""

    def parse_args(self, ctx, args):
        if "--parallel" in args:
            out, i = [], 0
            while i < len(args):
                a = args[i]
                out.append(a)
                if (a in ("--valid", "--test") and i + 2 < len(args)
                        and not args[i + 1].startswith("--")
                        and not args[i + 2].startswith("--")):
                    out += [args[i + 1], f"{a}-trg", args[i + 2]]
                    i += 3
                    continue
                i += 1
            args = out
        return super().parse_args(ctx, args)


def _parallel_files(name: str, src: str | None, trg: str | None):
    if src is None and trg is None:
        return None
    if src is None or trg is None:
        raise RnnkitError(f"--{name} with --parallel needs two files: --{name} SRC TRG")
    return (src, trg)


@app.command(short_help="Turn UTF-8 text, or sentence pairs with --parallel, into a vocabulary "
                        "and token-id arrays.",
             cls=_PairedOptions, epilog="Examples:\n\n"
             "rnnkit prepare corpus.txt --out data/ --min-count 2\n\n"
             "rnnkit prepare train.txt.gz --valid valid.txt --test test.txt --out data/\n\n"
             "rnnkit prepare --sample ko --level char --out demo/ko\n\n"
             "rnnkit prepare big.txt.gz --split 1,0,0 --memory 2G --out big/\n\n"
             "rnnkit prepare ko.txt --level subword --vocab-size 8000 --out data/\n\n"
             "rnnkit prepare train.de.gz train.en.gz --parallel --valid val.de val.en "
             "--test test.de test.en --level subword --vocab-size 8000 --joint-vocab --max-length "
             "80 --out de-en/\n\n"
             "rnnkit prepare --sample ko-en --parallel --out ko-en/")
def prepare(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="UTF-8 text files, one sentence per line (gzip allowed); `-` reads stdin.",
        show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output directory.")] = None,
    sample: Annotated[Optional[str], typer.Option(
        help="Use the sample corpus shipped with rnnkit instead of INPUT: `en` or `ko`; with "
        "--parallel `ko-en` (Korean-English pairs).")] = None,
    parallel: Annotated[bool, typer.Option(
        "--parallel", help="INPUT is two files aligned line by line, SRC TRG (a translation "
        "corpus); --valid and --test then take two files each.")] = False,
    joint_vocab: Annotated[bool, typer.Option(
        "--joint-vocab", help="With --parallel: one vocabulary (and subword model) for both "
        "sides.")] = False,
    max_length: Annotated[Optional[int], typer.Option(
        help="With --parallel: drop training pairs with a side longer than this many tokens.")
    ] = None,
    max_ratio: Annotated[Optional[float], typer.Option(
        help="With --parallel: drop training pairs whose longer side has more than this many "
        "times the tokens of the shorter.")] = None,
    level: Annotated[Level, choice(Level, "--level", help="Tokens: `word` (split on whitespace), "
                                   "`char` or `subword` (SentencePiece, with --vocab-size).")
                     ] = Level.word,
    vocab_size: Annotated[Optional[int], typer.Option(
        help="With --level subword: the number of subword units to learn.")] = None,
    subword_model: Annotated[SubwordModel, choice(
        SubwordModel, "--subword-model", help="With --level subword: `unigram` or `bpe`.")
    ] = SubwordModel.unigram,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase the text.")] = False,
    min_count: Annotated[int, typer.Option(help="Map tokens seen fewer times to <unk>.")] = 1,
    max_vocab: Annotated[Optional[int], typer.Option(
        help="Keep at most this many tokens (specials included); the rest become <unk>.")] = None,
    vocab: Annotated[Optional[Path], typer.Option(
        help="Reuse this vocab.txt instead of building one (e.g. to fine-tune).")] = None,
    valid: Annotated[Optional[str], typer.Option(
        help="Validation text file (with --parallel: two, SRC TRG).")] = None,
    test: Annotated[Optional[str], typer.Option(
        help="Test text file (with --parallel: two, SRC TRG).")] = None,
    valid_trg: Annotated[Optional[str], typer.Option(hidden=True)] = None,
    test_trg: Annotated[Optional[str], typer.Option(hidden=True)] = None,
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
    memory: Annotated[Optional[str], typer.Option(
        help="Stream the token ids through temporary files within this memory (500M, 2G): the "
        "same directory, for text larger than memory (word and char levels).")] = None,
    temp_dir: Annotated[Optional[Path], typer.Option(
        help="Directory for --memory's temporary files (default: the system's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
):
    """Turn UTF-8 text into a vocabulary and token-id arrays (train / valid / test): DIR gets
    vocab.txt (token TAB count; <unk>, <s>, </s> are ids 0, 1, 2, then tokens by count), one
    uint32 .npy per split (each sentence followed by </s>) and manifest.json, all at once, so an
    interrupted run leaves no directory that looks complete. With --parallel, SRC TRG are
    translations aligned line by line and DIR gets two such corpora, src/ and trg/, and a
    manifest with the pair counts and what --max-length / --max-ratio dropped."""
    if (memory is not None or temp_dir is not None) and parallel:
        raise RnnkitError("--memory and --temp-dir are not supported with --parallel yet")
    if temp_dir is not None and memory is None:
        raise RnnkitError("--temp-dir goes with --memory")
    if memory is not None and (level.value == "subword" or vocab_size is not None):
        raise RnnkitError("--memory does not stream --level subword yet; prepare it without "
                          "--memory")
    if parallel:
        _prepare_parallel(inputs or [], out_dir, sample, level.value, lowercase, min_count,
                          max_vocab, vocab, _parallel_files("valid", valid, valid_trg),
                          _parallel_files("test", test, test_trg), split, seed, normalize.value,
                          errors.value, vocab_size, subword_model.value, joint_vocab,
                          max_length, max_ratio, force, as_json)
        return
    for flag, value in (("--joint-vocab", joint_vocab), ("--max-length", max_length),
                        ("--max-ratio", max_ratio), ("--valid", valid_trg),
                        ("--test", test_trg)):
        if value:
            raise RnnkitError(f"{flag} {'with two files ' if flag[2] in 'vt' else ''}is for "
                              f"parallel corpora: add --parallel and give SRC TRG")
    if sample == "ko-en":
        raise RnnkitError("--sample ko-en is a parallel corpus: add --parallel")
    files = [p for p in (inputs or []) + [valid, test] if p and p != "-"]
    # a directory given as an input is reported by prepare itself (it reads text files only)
    inputs_read = [p for p in files if not Path(p).is_dir()] + [vocab]
    options = dict(sample=sample, level=level.value, lowercase=lowercase, min_count=min_count,
                   max_vocab=max_vocab, vocab=vocab, valid=valid, test=test, split=split,
                   seed=seed, normalize=normalize.value, errors=errors.value, force=force)
    with writing(out_dir, inputs_read), byte_progress("reading", files) as advance:
        if memory is not None:
            manifest = prepare_streamed(inputs or [], out_dir,
                                        memory=parse_size("--memory", memory),
                                        temp_dir=temp_dir, progress=advance, **options)
        else:
            manifest = run_prepare(inputs or [], out_dir, vocab_size=vocab_size,
                                   subword_model=subword_model.value, progress=advance,
                                   **options)
    if as_json:
        print_json(manifest)
    else:
        out.print(corpus_table(manifest))


def _prepare_parallel(inputs, out_dir, sample, level, lowercase, min_count, max_vocab, vocab,
                      valid, test, split, seed, normalize, errors, vocab_size, subword_model,
                      joint_vocab, max_length, max_ratio, force, as_json):
    if vocab is not None:
        raise RnnkitError("--vocab is not supported with --parallel yet; prepare without it")
    if sample is None and len(inputs) != 2:
        raise RnnkitError(f"--parallel needs two files, SRC TRG, aligned line by line; got "
                          f"{len(inputs)}")
    src, trg = inputs if inputs else (None, None)
    manifest = prepare_parallel(
        src, trg, out_dir, sample=sample, level=level, lowercase=lowercase, min_count=min_count,
        max_vocab=max_vocab, valid=valid, test=test, split=split, seed=seed, normalize=normalize,
        errors=errors, vocab_size=vocab_size, subword_model=subword_model,
        joint_vocab=joint_vocab, max_length=max_length, max_ratio=max_ratio, force=force)
    if as_json:
        print_json(manifest)
    else:
        out.print(parallel_table(manifest))


@app.command(short_help="Write a synthetic corpus with one long-range dependency, or captioned "
                        "synthetic scenes.",
             epilog="Examples:\n\n"
             "rnnkit synth --out synth.txt --sentences 20000 --filler 5,40 --vocab 10\n\n"
             "rnnkit synth --out - --sentences 3 --filler 2,4 --seed 7\n\n"
             "rnnkit synth --scenes 2000 --out scenes/")
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
    scenes: Annotated[Optional[int], typer.Option(
        help="Instead: write N images of simple scenes to --out DIR (DIR/images/*.png and "
        "DIR/captions.tsv with several captions each; needs Pillow).")] = None,
    as_json: JsonSummary = False,
):
    """Write a synthetic corpus with one long-range dependency: each sentence is a key word
    k_i, a filler of MIN..MAX random filler words, then the key's answer word a_i. The last word
    is a function of the first and the filler says nothing about it, so a recurrent model can
    learn to carry the key to the end and an n-gram model cannot."""
    if scenes is not None:
        if out_path is None or out_path == "-":
            raise RnnkitError("--scenes needs --out DIR: the directory to write")
        summary = write_scenes(out_path, scenes, seed)
        if as_json:
            print_json(summary)
        else:
            out.print(f"{out_path}: {summary['images']:,} scenes, {summary['captions']:,} "
                      f"captions (images/*.png, captions.tsv)", markup=False)
        return
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
