"""Translation metrics: BLEU (Papineni et al. 2002) and chrF (Popović 2015) through sacreBLEU
(Post 2018), the field's reference implementation, so that scores are comparable with published
ones; each result carries sacreBLEU's signature (tokenizer, casing, version, ...).

Hypotheses and references are detokenized text, one sentence per line; several references per
sentence are allowed (one list of strings per reference set).
"""
from __future__ import annotations

import os

from ..errors import InputError
from ..text.textio import display_name, read_lines

# sacreBLEU's tokenizers that need no extra package or download
TOKENIZERS = ("13a", "intl", "zh", "char", "none")
METRICS = ("bleu", "chrf")


def _check(hypotheses, references, tokenize: str) -> list[list[str]]:
    if tokenize not in TOKENIZERS:
        raise InputError(f"unknown --tokenize {tokenize!r}: use one of {', '.join(TOKENIZERS)}")
    if references and isinstance(references[0], str):
        references = [references]  # one reference set
    if not references:
        raise InputError("no reference: give at least one reference file")
    for k, refs in enumerate(references):
        if len(refs) != len(hypotheses):
            raise InputError(f"reference set {k + 1} has {len(refs)} sentences, the hypotheses "
                             f"{len(hypotheses)}")
    return [list(r) for r in references]


def corpus_bleu(hypotheses: list[str], references, lowercase: bool = False,
                tokenize: str = "13a") -> float:
    """Corpus BLEU (0-100) of hypothesis strings against reference strings: `references` is a
    list of strings (one reference per sentence) or a list of such lists (several). Empty input
    scores 0."""
    hypotheses = list(hypotheses)
    if not hypotheses and not any(len(r) for r in references):
        return 0.0
    references = _check(hypotheses, references, tokenize)
    from sacrebleu.metrics import BLEU

    # force: a per-epoch score of tokenized references is expected, not worth a warning
    return float(BLEU(lowercase=lowercase, tokenize=tokenize, force=True)
                 .corpus_score(list(hypotheses), references).score)


def evaluate(hypotheses: list[str], references, lowercase: bool = False, tokenize: str = "13a",
             metrics=METRICS, force: bool = False) -> dict:
    """BLEU and/or chrF of the hypotheses with their details and sacreBLEU signatures.

    chrF works on characters: `tokenize` does not apply to it (its signature says so).
    force: score text that looks tokenized already without sacreBLEU's warning (logged).
    """
    hypotheses = list(hypotheses)
    references = _check(hypotheses, references, tokenize)
    for m in metrics:
        if m not in METRICS:
            raise InputError(f"unknown metric {m!r}: use {' or '.join(METRICS)}")
    if not hypotheses:
        raise InputError("no sentences to evaluate (the hypotheses are empty)")
    from sacrebleu.metrics import BLEU, CHRF

    out: dict = {"sentences": len(hypotheses), "references": len(references)}
    if "bleu" in metrics:
        bleu = BLEU(lowercase=lowercase, tokenize=tokenize, force=force)
        s = bleu.corpus_score(hypotheses, references)
        out["bleu"] = {"score": s.score, "precisions": list(s.precisions), "bp": s.bp,
                       "ratio": s.sys_len / s.ref_len if s.ref_len else 0.0,
                       "hyp_len": s.sys_len, "ref_len": s.ref_len,
                       "signature": str(bleu.get_signature())}
    if "chrf" in metrics:
        chrf = CHRF(lowercase=lowercase)
        s = chrf.corpus_score(hypotheses, references)
        out["chrf"] = {"score": s.score, "signature": str(chrf.get_signature())}
    return out


def read_parallel_text(hyp_path, ref_paths, errors: str = "strict",
                       aligned: str = "the hypotheses and references must be aligned line by "
                                      "line") -> tuple[list[str], list[list[str]]]:
    """The lines of a hypothesis file and of one or more reference files (`-` is stdin, at most
    once; gzip allowed); every file must have as many lines as the hypotheses (`aligned`: what
    the error says otherwise)."""
    paths = [hyp_path, *ref_paths]
    if not ref_paths:
        raise InputError("no reference: give at least one reference file, HYP REF [REF ...]")
    if sum(1 for p in paths if str(p) == "-") > 1:
        raise InputError("`-` (stdin) is given more than once; it can be read only once")
    texts = [[line for _, line in read_lines(os.fspath(p), errors)] for p in paths]
    hyp = texts[0]
    for p, ref in zip(ref_paths, texts[1:]):
        if len(ref) != len(hyp):
            raise InputError(f"{display_name(p)} has {len(ref)} lines but {display_name(hyp_path)}"
                             f" has {len(hyp)}: {aligned}")
    return hyp, texts[1:]
