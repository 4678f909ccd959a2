"""`rnnkit evaluate`: BLEU and chrF of translations against references (sacreBLEU)."""
from __future__ import annotations

from typing import Annotated

import typer

from ..decoding.metrics import METRICS, TOKENIZERS, evaluate as run_evaluate, read_parallel_text
from ..errors import RnnkitError
from ._common import _choices, choice, out, print_json
from ._render import evaluate_table

app = typer.Typer()
Tokenize = _choices("Tokenize", TOKENIZERS)


@app.command(short_help="BLEU and chrF of translations against one or more references (sacreBLEU).",
             epilog="Examples:\n\n"
             "rnnkit evaluate hyp.en ref.en\n\n"
             "rnnkit translate model.rnnkit test.ko | rnnkit evaluate - test.en --json\n\n"
             "rnnkit evaluate hyp.zh ref1.zh ref2.zh --tokenize zh --lowercase")
def evaluate(
    hyp: Annotated[str, typer.Argument(help="Translations, one per line (detokenized); `-` "
                                       "reads stdin.", show_default=False)],
    refs: Annotated[list[str], typer.Argument(
        help="One or more reference files aligned with HYP line by line.", show_default=False)],
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Compare lowercased text.")
                         ] = False,
    tokenize: Annotated[Tokenize, choice(Tokenize, "--tokenize", help="sacreBLEU's tokenizer "
                                         "for BLEU: 13a (the default of WMT), intl, zh, char, "
                                         "none.")] = Tokenize["13a"],
    metrics: Annotated[str, typer.Option(help="Comma-separated: bleu, chrf.")] = "bleu,chrf",
    force: Annotated[bool, typer.Option("--force", help="Score text that looks tokenized "
                                        "without sacreBLEU's warning about it.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores, details and "
                                          "signatures as JSON.")] = False,
):
    """Score translations with BLEU and chrF (sacreBLEU) against one or more references and
    print each score with sacreBLEU's signature, the string that makes it reproducible."""
    names = [m.strip().lower() for m in metrics.split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise RnnkitError(f"--metrics {metrics!r}: use bleu, chrf or both (bleu,chrf)")
    hypotheses, references = read_parallel_text(hyp, refs)
    result = run_evaluate(hypotheses, references, lowercase=lowercase, tokenize=tokenize.value,
                          metrics=names, force=force)
    if as_json:
        print_json(result)
    else:
        out.print(evaluate_table(result))
