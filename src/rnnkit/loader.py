"""`rnnkit.load`: the one place that knows every model type.

A file is recognised by its content, never its name: ARPA text (plain or gzip), an rnnkit model
file (safetensors with rnnkit metadata, dispatched on its `model_type`), or -- with a vocabulary
-- a PyTorch state dict saved as safetensors.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import modelfile
from .errors import ModelFileError, RnnkitError
from .models.mixture import COMBINES, Mixture, parse_weights
from .models.ngram.arpa import looks_like_arpa, read_arpa
from .models.ngram.estimate import MODEL_TYPE as NGRAM
from .models.ngram.estimate import NgramModel
from .models.caption import MODEL_TYPE as CAPTION
from .models.caption import CaptionModel
from .models.caption import from_file_parts as caption_from_file
from .models.protocol import LanguageModel
from .models.rnnlm import MODEL_TYPES as RECURRENT
from .models.rnnlm import from_file_parts as recurrent_from_file
from .models.seq2seq import MODEL_TYPE as SEQ2SEQ
from .models.seq2seq import Seq2Seq
from .models.seq2seq import from_file_parts as seq2seq_from_file
from .models.torch_import import from_torch_state


def load(path: str | os.PathLike, **options) -> LanguageModel | Seq2Seq | CaptionModel:
    """Any model rnnkit can read: its own model files, or ARPA (plain or gzip).

    `load(state, vocab="vocab.txt")` reads a PyTorch state dict (see models/torch_import.py);
    its other options are `model_type` and `tokenizer`. `load(model, mmap=True)` maps an rnnkit
    n-gram file instead of reading it (see NgramModel.from_tensors); other files ignore it.
    """
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, expected a model file")
    if not p.exists():
        raise ModelFileError(f"{p}: no such model file")
    if looks_like_arpa(p):
        return read_arpa(p)
    header = modelfile.read_header(p)
    if header is None:
        raise ModelFileError(f"{p}: not a model file (neither an rnnkit model nor ARPA text)")
    if modelfile.META_KEY not in (header.get("__metadata__") or {}) and \
            options.get("vocab") is not None:
        return from_torch_state(p, options["vocab"], model_type=options.get("model_type"),
                                tokenizer=options.get("tokenizer"))
    mmap = bool(options.get("mmap")) and modelfile.model_type(header) == NGRAM
    tensors, meta = modelfile.read(p, mmap=mmap)
    model_type = meta.get("model_type")
    if not isinstance(model_type, str) or model_type not in (NGRAM, SEQ2SEQ, CAPTION,
                                                                *RECURRENT):
        raise ModelFileError(f"{p}: unknown model type {model_type!r} (made by a newer rnnkit?)")
    # The one guard over the metadata document: a field of the wrong type or shape (a damaged
    # or hand-edited file) is a ModelFileError, whichever model type's reader trips on it.
    try:
        if model_type == NGRAM:
            return NgramModel.from_tensors(tensors, meta, p, mapped=mmap)
        if model_type in RECURRENT:
            return recurrent_from_file(p, tensors, meta)
        if model_type == SEQ2SEQ:
            return seq2seq_from_file(p, tensors, meta)
        return caption_from_file(p, tensors, meta)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        raise ModelFileError(f"{p}: malformed model metadata ({type(e).__name__}: {e}); the "
                             f"file is damaged or was not written by rnnkit") from None


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a file `load` can read by its content: ARPA text (plain or gzip) or a
    safetensors file (an rnnkit model, or a state dict). Never raises: a file of sentences, a
    directory, `-` or a missing path is simply not a model file."""
    p = Path(path)
    if str(path) == "-" or not p.is_file():
        return False
    try:
        return looks_like_arpa(p) or modelfile.read_header(p) is not None
    except RnnkitError:
        return False


def load_language_model(path: str | os.PathLike, mmap: bool = False) -> LanguageModel:
    """A model of sentences alone (n-gram or recurrent), for the commands that score, sample
    and rescore sentences; a translation or caption model is refused with what it needs."""
    model = load(path, mmap=mmap)
    if isinstance(model, Seq2Seq):
        raise ModelFileError(f"{path}: a translation model, not a language model: use it with "
                             f"rnnkit translate, or rnnkit score MODEL TARGETS --source SOURCES")
    if isinstance(model, CaptionModel):
        raise ModelFileError(f"{path}: a caption model, not a language model: use it with rnnkit "
                             f"caption, or rnnkit score MODEL CAPTIONS.tsv --features FEATURES")
    return model


def load_ngram(path: str | os.PathLike) -> NgramModel:
    """An n-gram model from an rnnkit model file or an ARPA file (plain or gzip)."""
    model = load(path)
    if not isinstance(model, NgramModel):
        raise ModelFileError(f"{path}: a {model.model_type} model, not an n-gram model")
    return model


def load_models(paths: Sequence[str], weights: Sequence[float] | str | None = None,
                combine: str = "linear", mmap: bool = False) -> LanguageModel:
    """Load one model (returned as it is, unless weights are given) or a Mixture of several;
    mmap maps the rnnkit n-gram files among them (see load)."""
    if not paths:
        raise RnnkitError("give at least one model")
    if combine not in COMBINES:
        raise RnnkitError(f"unknown --combine {combine!r}: use linear or loglinear")
    if isinstance(weights, str):
        weights = parse_weights(weights, len(paths))
    models = [load_language_model(p, mmap=mmap) for p in paths]
    if len(models) == 1 and weights is None:
        return models[0]
    mix = Mixture(models, weights, combine)
    mix.paths = [str(p) for p in paths]
    return mix
