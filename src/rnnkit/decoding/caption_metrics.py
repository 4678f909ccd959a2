"""Caption evaluation against several references: BLEU-1..4 (sacrebleu, every reference of an
image at once) and CIDEr-D where pycocoevalcap is installed. Each number says which
implementation gave it.

BLEU-n here is sacrebleu's corpus BLEU with max_ngram_order = n (uniform weights over orders 1..n,
brevity penalty against the closest reference length; Papineni et al. 2002), tokenised by
sacrebleu's default "13a" and given in percent, as sacrebleu prints it.
"""
from __future__ import annotations

from ..errors import InputError


def bleu_scores(hypotheses: list[str], references: list[list[str]]) -> dict:
    """{"bleu1".."bleu4": percent, "bleu_implementation": "sacrebleu X"} of one hypothesis per
    image against all of its references (any number per image)."""
    try:
        import sacrebleu
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise InputError("BLEU needs sacrebleu: pip install sacrebleu") from None
    if len(hypotheses) != len(references):
        raise InputError(f"{len(hypotheses)} captions for {len(references)} sets of references")
    if any(not r for r in references):
        raise InputError("every image needs at least one reference caption")
    width = max(len(r) for r in references)
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(width)]
    out = {}
    for n in range(1, 5):
        out[f"bleu{n}"] = float(BLEU(max_ngram_order=n).corpus_score(hypotheses, streams).score)
    out["bleu_implementation"] = f"sacrebleu {sacrebleu.__version__}"
    return out


def cider_score(hypotheses: list[str], references: list[list[str]]) -> dict:
    """{"cider": CIDEr-D, "cider_implementation": "pycocoevalcap"} (Vedantam et al. 2015), or {}
    when pycocoevalcap is not installed."""
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        return {}
    gts = {i: [r.lower() for r in refs] for i, refs in enumerate(references)}
    res = {i: [h.lower()] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return {"cider": float(score), "cider_implementation": "pycocoevalcap Cider"}


def caption_scores(hypotheses: list[str], references: list[list[str]]) -> dict:
    """BLEU-1..4 and, where available, CIDEr."""
    return {**bleu_scores(hypotheses, references), **cider_score(hypotheses, references)}
