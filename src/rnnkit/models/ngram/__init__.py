"""n-gram language models: estimation as KenLM's lmplz does it (estimate.py), ARPA in and out
(arpa.py), and the compiled index that scores them (_ngram.pyx)."""
from .arpa import read_arpa, write_arpa
from .estimate import NgramModel, train

__all__ = ["NgramModel", "train", "read_arpa", "write_arpa"]
