"""`rnnkit score`, `generate`, `export` and `import-torch`: using a trained model. They work for
every model type, through the language-model protocol only."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..decoding.sampling import iter_samples
from ..decoding.scoring import Summary, score_lines
from ..errors import RnnkitError
from ..loader import is_model_file, load, load_language_model, load_models
from ..models.ngram.arpa import write_arpa
from ..models.ngram.estimate import NgramModel
from ..models.seq2seq import GivenSources, Seq2Seq
from ..models.torch_import import from_torch_state
from ..text.textio import read_lines
from ..text.vocab import Tokenizer
from ._common import (
    Combine,
    CombineOption,
    JsonSummary,
    Level,
    MmapOption,
    RecurrentType,
    WeightsOption,
    byte_progress,
    choice,
    err,
    out,
    print_json,
    stdout_is_data,
    writing,
)
from ._render import per_token_text, score_summary_table
from .caption import score_captions

app = typer.Typer()


@app.command(short_help="Log10 probability and perplexity of sentences under a model or a mixture.",
             epilog="Examples:\n\n"
             "rnnkit score tri.rnnkit test.txt\n\n"
             "echo 'the cat sat' | rnnkit score ptb.o5.arpa.gz - --per-token\n\n"
             "rnnkit score lstm.rnnkit test.txt --json > scores.jsonl\n\n"
             "rnnkit score tri.rnnkit lstm.rnnkit test.txt --weights 0.3,0.7\n\n"
             "rnnkit score de-en.rnnkit test.hyp.en --source test.de   (log10 p(target | source))")
def score(
    paths: Annotated[list[str], typer.Argument(
        metavar="MODEL [MODEL2 ...] [FILE|-]",
        help="One or more models (rnnkit model files or ARPA, plain or gzip; several are "
        "combined, see --weights and --combine), then the sentences, one per line (UTF-8, gzip "
        "allowed); `-` or nothing reads stdin. An empty line is the sentence <s> </s>.",
        show_default=False)],
    weights: WeightsOption = None,
    combine: CombineOption = Combine.linear,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sentence (text, "
                                          "log10_prob, tokens, oov, ppl), then a summary object.")] = False,
    per_token: Annotated[bool, typer.Option("--per-token", help="Show each token's log10 "
                                            "probability and the n-gram length used, coloured by "
                                            "surprisal in a terminal.")] = False,
    source: Annotated[Optional[str], typer.Option(
        help="With a translation model: the source sentences, line by line with the targets; "
        "the scores are log10 p(target | source).")] = None,
    features: Annotated[Optional[Path], typer.Option(
        help="With a caption model: the images' features; FILE is then image_id<TAB>caption "
        "lines, scored as log10 p(caption | image).")] = None,
    mmap: MmapOption = False,
):
    """Score sentences: log10 probability, tokens, OOVs and perplexity per sentence, and the
    corpus perplexity as KenLM's query defines it: 10^(-sum log10 p / (words + sentences))."""
    model_paths, input_path = _score_inputs(paths)
    if source is not None:
        _score_given_sources(model_paths, source, input_path, as_json, per_token)
        return
    if features is not None:
        if len(model_paths) != 1:
            raise RnnkitError("--features scores captions with one caption model")
        score_captions(model_paths[0], input_path, features, as_json)
        return
    if len(model_paths) == 1 and weights is None:
        _score(load_language_model(model_paths[0], mmap=mmap), model_paths[0], input_path,
               as_json, per_token)
        return
    mix = load_models(model_paths, weights, combine.value, mmap=mmap)
    name = (f"{combine.value} mixture of " + ", ".join(
        f"{p} ({w:g})" for p, w in zip(model_paths, mix.weights.tolist())))
    _score(mix, name, input_path, as_json, per_token)


def _score_given_sources(model_paths, source, input_path, as_json, per_token) -> None:
    if len(model_paths) != 1:
        raise RnnkitError("--source scores with one translation model")
    model = load(model_paths[0])
    if not isinstance(model, Seq2Seq):
        raise RnnkitError(f"{model_paths[0]}: --source needs a translation model (train --type "
                          f"seq2seq), not a {model.model_type} model")
    if source == input_path == "-":
        raise RnnkitError("the source and the targets cannot both be stdin")
    given = GivenSources(model, [text for _, text in read_lines(source)])
    _score(given, f"{model_paths[0]} given {source}", input_path, as_json, per_token)
    if given.used != len(given._sources):
        raise RnnkitError(f"{source} has {len(given._sources)} lines but {input_path} has "
                          f"{given.used}: the files must have the same number of lines")


def _score_inputs(paths: list[str]) -> tuple[list[str], str]:
    """MODEL [MODEL2 ...] [FILE|-]: the last path is the input unless it is a model file."""
    if len(paths) == 1 or is_model_file(paths[-1]):
        return paths, "-"
    return paths[:-1], paths[-1]


def _score(model, name: str, input_path: str, as_json: bool, per_token: bool) -> None:
    summary = Summary()
    files = [input_path] if input_path != "-" and os.path.isfile(input_path) else []
    show_bar = bool(files) and stdout_is_data()  # a live bar would mix with a terminal
    bar = byte_progress("scoring", files) if show_bar else contextlib.nullcontext(None)
    with bar as advance:
        def lines():
            for number, text in read_lines(input_path):
                if show_bar:
                    advance(len(text) + 1)
                yield number, text

        if not as_json:
            out.print("[bold]   log10 p  tokens  OOV        ppl  sentence[/bold]")
        for rec in score_lines(model, lines(), per_token=per_token, summary=summary):
            if as_json:
                print_json(rec.to_json())
                continue
            out.print(f"{rec.log10_prob:10.4f}  {rec.tokens:6d}  {rec.oov:3d}  {rec.ppl:9.2f}  ",
                      end="", markup=False, highlight=False)
            if per_token:
                out.print(per_token_text(rec), soft_wrap=True)
            else:
                out.print(rec.text, markup=False, soft_wrap=True)
    if as_json:
        print_json({**summary.to_json(), "model": name})
    else:
        console = err if stdout_is_data() else out
        console.print(f"{name}: {summary.sentences:,} sentences, {summary.tokens:,} tokens "
                      f"(</s> included), {summary.oov:,} OOV", markup=False, soft_wrap=True)
        console.print(score_summary_table(summary))


@app.command(epilog="Examples:\n\n"
             "rnnkit generate tri.rnnkit --num 5 --seed 1\n\n"
             "rnnkit generate lstm.rnnkit --prompt 'the market' --top-p 0.9 --temperature 0.8 --json")
def generate(
    model_path: Annotated[str, typer.Argument(
        metavar="MODEL", help="A model: an rnnkit model file or an ARPA file (plain or gzip).")],
    num: Annotated[int, typer.Option(help="How many sentences.")] = 1,
    max_len: Annotated[int, typer.Option(help="Stop a sentence after this many tokens.")] = 100,
    temperature: Annotated[float, typer.Option(help="Divide the log-probabilities by this "
                                               "(< 1 sharper, > 1 flatter, 0 greedy).")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample among the k most likely tokens "
                                                 "only.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Sample among the most likely tokens "
                                                   "whose mass reaches p (nucleus).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (same seed, same text).")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Start every sentence with this text.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per sentence: text, "
                                          "tokens (the prompt's included), log10_prob (of the "
                                          "tokens after the prompt, </s> included when "
                                          "complete), complete, prompt_tokens.")] = False,
    mmap: MmapOption = False,
):
    """Sample sentences from <s> until </s> (or --max-len tokens), one per line."""
    model = load_language_model(model_path, mmap=mmap)
    samples = iter_samples(model, num, max_len=max_len, temperature=temperature, top_k=top_k,
                               top_p=top_p, seed=seed, prompt=prompt)
    for s in samples:
        text = model.tokenizer.join(model.vocab.decode(s.ids.tolist()))
        if as_json:
            print_json({"text": text, "tokens": int(len(s.ids)), "log10_prob": s.log10_prob,
                        "complete": s.complete, "prompt_tokens": int(s.prompt_tokens)})
        else:
            sys.stdout.write(text + "\n")


@app.command(epilog="Examples:\n\n"
             "rnnkit export tri.rnnkit --arpa tri.arpa\n\n"
             "rnnkit export tri.rnnkit --arpa tri.arpa.gz --json")
def export(
    model_path: Annotated[str, typer.Argument(
        metavar="MODEL", help="An n-gram model (rnnkit model file or ARPA).")],
    arpa_path: Annotated[Optional[str], typer.Option(
        "--arpa", help="Write standard ARPA here (gzip when the name ends in .gz; `-` is "
        "stdout).")] = None,
    as_json: JsonSummary = False,
):
    """Export an n-gram model as ARPA, for KenLM, SRILM and other toolkits."""
    if arpa_path is None:
        raise RnnkitError("--arpa OUT.arpa[.gz] is required: the file to write")
    if arpa_path == "-" and as_json:
        raise RnnkitError("--json and --arpa - both write to stdout; give --arpa a file name")
    with writing(arpa_path, [model_path], flag="--arpa"):
        model = load(model_path)
        if not isinstance(model, NgramModel):
            raise RnnkitError(f"{model_path}: a {model.model_type} model; ARPA export takes an "
                              f"n-gram model")
        write_arpa(model, arpa_path)
    summary = {"model": model_path, "arpa": arpa_path, "order": model.order,
               "ngrams": model.counts}
    if as_json:
        print_json(summary)
    elif arpa_path != "-":
        err.print(f"wrote {arpa_path}: order {model.order}, "
                  + ", ".join(f"{n:,} {k}-grams" for k, n in enumerate(model.counts, 1)),
                  markup=False, soft_wrap=True)


@app.command("import-torch", epilog="Example: rnnkit import-torch lm_state.safetensors "
             "--vocab vocab.txt --out lm.rnnkit")
def import_torch(
    state: Annotated[Path, typer.Argument(help="A PyTorch state dict saved with "
                                          "safetensors.torch.save_file (names encoder.weight, "
                                          "rnn.weight_ih_l0, ..., decoder.weight, decoder.bias; or "
                                          "an AdaptiveLogSoftmaxWithLoss named decoder: "
                                          "decoder.head.weight, decoder.tail.0.0.weight, ...).")],
    vocab: Annotated[Path, typer.Option(help="The model's tokens in its id order, one per line "
                                        "(a TAB and a count may follow).")],
    out_path: Annotated[Path, typer.Option("--out", help="The rnnkit model file to write.")],
    model_type: Annotated[Optional[RecurrentType], choice(
        RecurrentType, "--type", help="lstm, lstm-nofg, lstm-peephole or rnn \\[default: from "
        "the tensors].")] = None,
    level: Annotated[Level, choice(Level, "--level", help="How text is split for the model: "
                                   "word or char.")] = Level.word,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase text before "
                                            "splitting.")] = False,
    as_json: JsonSummary = False,
):
    """Bring a PyTorch-trained LSTM or RNN language model into rnnkit.

    <unk>, <s> and </s> become ids 0, 1, 2; `<eos>` is taken as </s>.
    A model without <s> (like PyTorch's word_language_model) reads <s> as <eos>.
    An adaptive softmax (AdaptiveLogSoftmaxWithLoss) keeps its cutoffs, div_value and head
    bias, read off the tensor shapes; the specials must be among its head words.
    The result works with score, generate and rescore like any rnnkit model.
    """
    with writing(out_path, [state, vocab]):
        model = from_torch_state(state, vocab,
                                 model_type=None if model_type is None else model_type.value,
                                 tokenizer=Tokenizer(level=level.value, lowercase=lowercase))
        model.save(out_path)
    a = model.arch
    summary = {"model": str(out_path), "model_type": a.model_type, "vocab_size": a.vocab_size,
               "emb": a.emb, "hidden": a.hidden, "layers": a.layers, "tie_weights": a.tie_weights,
               "parameters": model.num_parameters, "vocab_mapping": model.meta["vocab_mapping"],
               "output": a.output}
    if a.output == "adaptive":
        summary.update(cutoffs=list(a.cutoffs), div_value=a.div_value, head_bias=a.head_bias)
    if as_json:
        print_json(summary)
    else:
        output = "" if a.output == "full" else (
            f", adaptive softmax: cutoffs {','.join(map(str, a.cutoffs))}, div {a.div_value:g}")
        err.print(f"imported a {a.layers}-layer {a.model_type} (E={a.emb}, H={a.hidden}, "
                  f"V={a.vocab_size}{output}) into {out_path}", markup=False)
