"""Subword units: training a SentencePiece model (Kudo & Richardson 2018) on the training text.

The model is a serialized protobuf; the Tokenizer (vocab.py) carries it as base64 inside every
corpus manifest and model file, so text is always split into the same pieces and `translate`,
`score` and `generate` read and write plain text.

Training is deterministic for a given input and options: one thread, no sampling of the input
sentences, and SentencePiece's global random seed set before each run.
"""
from __future__ import annotations

import io
from collections.abc import Iterable

from ..errors import InputError

SUBWORD_MODELS = ("unigram", "bpe")
SEED = 0


def train_sentencepiece(lines: Iterable[str], vocab_size: int, model_type: str = "unigram",
                        seed: int = SEED) -> bytes:
    """The serialized SentencePiece model trained on `lines` (already normalised and lowercased
    as the Tokenizer will: SentencePiece's own normalisation is off).

    The pieces <unk>, <s>, </s> are ids 0, 1, 2, the same as rnnkit's specials. vocab_size is
    an upper bound (SentencePiece's hard_vocab_limit off): small text may give fewer units.
    """
    import sentencepiece as spm

    if model_type not in SUBWORD_MODELS:
        raise InputError(f"unknown --subword-model {model_type!r}: use one of "
                         f"{', '.join(SUBWORD_MODELS)}")
    if vocab_size is None:
        raise InputError("--level subword needs --vocab-size N (the number of subword units, "
                         "e.g. 8000)")
    if vocab_size < 8:
        raise InputError(f"--vocab-size {vocab_size}: must be at least 8")
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise InputError("no training text to learn subword units from")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, num_threads=1,
            input_sentence_size=0, shuffle_input_sentence=False,
            normalization_rule_name="identity", unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            hard_vocab_limit=False, minloglevel=2)
    except RuntimeError as e:
        message = str(e).split("] ", 1)[-1]
        raise InputError(f"--vocab-size {vocab_size}: SentencePiece cannot train on this text "
                         f"({message}); every distinct character needs a unit: try a larger "
                         f"--vocab-size") from None
    return model.getvalue()


def load_processor(proto: bytes):
    """A SentencePieceProcessor over a serialized model."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError) as e:
        raise InputError(f"the subword model inside the tokenizer cannot be read ({e})") from None
    return sp
